"""predict_summary: per-row summaries in blocks of rows, equal to those of predict's draws."""

import tracemalloc

import numpy as np
import pytest
import xarray as xr

from bnncat import data
from bnncat.evaluation.density import predictive_mean
from bnncat.models import MLP, MixtureRegressor, predict, predict_summary, predictive_summary

# tiny fits: their convergence warnings are expected and beside the point here
pytestmark = pytest.mark.filterwarnings("ignore:R-hat of the predictions")

TINY = {"draws": 50, "tune": 50, "chains": 2, "progressbar": False, "random_seed": 3}


@pytest.fixture(scope="module")
def regression_fit():
    ds = data.load("sine", n=40, noise=0.2, seed=1)
    return ds, MLP((4,)).fit(ds.X, ds.y, method="nuts", **TINY)


@pytest.fixture(scope="module")
def binary_fit():
    rng = np.random.default_rng(0)
    X = rng.normal(size=(60, 2))
    y = (X[:, 0] + 0.5 * rng.normal(size=60) > 0).astype(int)
    return X, MLP((3,), likelihood="bernoulli").fit(X, y, method="nuts", **TINY)


def test_summaries_are_those_of_the_draws_of_predict(regression_fit):
    _, idata = regression_fit
    X_new = np.linspace(-3, 3, 25)[:, None]
    mu = predict(idata, X_new, random_seed=1)["predictions"]["mu"].values[..., 0]
    s = predict_summary(idata, X_new, probs=(0.1, 0.9), random_seed=1)
    assert s["quantiles"].dims == ("obs", "output", "quantile")
    np.testing.assert_allclose(s["mean"].values[:, 0], mu.mean(axis=(0, 1)), rtol=1e-10)
    np.testing.assert_allclose(s["mean_sd"].values[:, 0], mu.std(axis=(0, 1)), rtol=1e-10)
    # the summary's y draws are other draws of the same predictive: equal up to Monte Carlo
    # error, which 20 of predict's draws of y per posterior draw leave mostly on the
    # summary's side (one per posterior draw: 100)
    y = [predict(idata, X_new, random_seed=k)["predictions"]["y"].values for k in range(20)]
    sd_y = np.concatenate([draws[..., 0].reshape(-1, 25) for draws in y]).std(axis=0)
    np.testing.assert_allclose(s["sd"].values[:, 0], sd_y, rtol=0.35)
    assert (s["sd"] > s["mean_sd"]).all()  # the noise adds to the network's uncertainty
    q = s["quantiles"].values[:, 0]
    assert (q[:, 0] < s["mean"].values[:, 0]).all() and (q[:, 1] > s["mean"].values[:, 0]).all()


def test_blocks_of_rows_give_the_summaries_of_one_block(regression_fit, monkeypatch):
    _, idata = regression_fit
    X_new = np.linspace(-3, 3, 50)[:, None]
    whole = predict_summary(idata, X_new, random_seed=2)
    monkeypatch.setattr(predictive_summary, "BLOCK_FLOATS", 100 * 4 * 7)  # 7 rows a block
    blocks = predict_summary(idata, X_new, random_seed=2)
    assert whole.attrs["row_blocks"] == 1 and blocks.attrs["row_blocks"] == 8
    xr.testing.assert_allclose(blocks[["mean", "mean_sd"]], whole[["mean", "mean_sd"]])
    np.testing.assert_allclose(blocks["sd"], whole["sd"], rtol=0.5)


def test_the_same_seed_gives_the_same_summaries(regression_fit):
    _, idata = regression_fit
    X_new = np.linspace(-3, 3, 9)[:, None]
    first = predict_summary(idata, X_new, random_seed=5)
    xr.testing.assert_identical(first, predict_summary(idata, X_new, random_seed=5))


def test_class_probabilities_are_the_mean_over_draws(binary_fit):
    X, idata = binary_fit
    logits = predict(idata, X[:10])["predictions"]["mu"].values[..., 0]
    s = predict_summary(idata, X[:10])
    p1 = 1 / (1 + np.exp(-logits))
    np.testing.assert_allclose(s["p"].sel({"class": 1}), p1.mean(axis=(0, 1)), rtol=1e-9)
    np.testing.assert_allclose(s["p"].sum("class"), 1.0, rtol=1e-12)
    np.testing.assert_allclose(s["p_sd"].sel({"class": 1}), p1.std(axis=(0, 1)), rtol=1e-9)


def test_a_mixture_density_network_summarises_its_mixture_mean():
    ds = data.load("sine", n=40, noise=0.2, seed=1)
    net = MixtureRegressor((4,), n_components=2, form="mdn")
    idata = net.fit(ds.X, ds.y, method="nuts", **TINY)
    X_new = np.linspace(-3, 3, 11)[:, None]
    s = predict_summary(idata, X_new)
    np.testing.assert_allclose(s["mean"].values, predictive_mean(idata, X_new), rtol=1e-10)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"probs": (0.0, 0.5)}, "probs must be one or more levels in"),
        ({"probs": ()}, "probs must be one or more levels in"),
        ({"probs": "high"}, "probs must be a sequence of numbers"),
        ({"random_seed": -1}, "random_seed"),
    ],
)
def test_bad_options_are_refused(regression_fit, kwargs, message):
    _, idata = regression_fit
    with pytest.raises((ValueError, TypeError), match=message):
        predict_summary(idata, [[0.0]], **kwargs)


def test_bad_inputs_are_refused(regression_fit):
    _, idata = regression_fit
    with pytest.raises(ValueError, match="X_new"):
        predict_summary(idata, np.zeros((3, 2)))
    with pytest.raises(ValueError, match="X_new"):
        predict_summary(idata, [[np.nan]])
    with pytest.raises(ValueError, match="no posterior group"):
        predict_summary(xr.DataTree(), [[0.0]])


def test_predict_refuses_draws_that_would_not_fit_and_names_the_way_out(regression_fit):
    _, idata = regression_fit
    X_new = np.zeros((1000, 1))  # 100 draws x 1000 rows x (mu, y) x 2 x 8 bytes = 3.2 MB
    with pytest.raises(ValueError, match=r"X_new has 1000 rows.*predict_summary"):
        predict(idata, X_new, max_bytes=3_000_000)
    assert predict(idata, X_new, max_bytes=3_300_000)["predictions"]["y"].shape == (2, 50, 1000, 1)
    with pytest.raises(ValueError, match="max_bytes"):
        predict(idata, X_new, max_bytes=0)


@pytest.mark.slow
def test_memory_stays_bounded_whatever_the_number_of_rows(regression_fit):
    """4000 draws of a 1x16 net at 40,000 rows: predict would hold 5.1 GB; the blocks 256 MiB."""
    ds, _ = regression_fit
    small = MLP((16,)).fit(ds.X, ds.y, method="nuts", **TINY)
    post = small["posterior"].to_dataset()
    many = xr.concat([post] * 40, dim="draw").assign_coords(draw=np.arange(2000))
    idata = small.copy()
    idata["posterior"] = xr.DataTree(many)
    X_new = np.linspace(-3, 3, 40_000)[:, None]
    with pytest.raises(ValueError, match="predict_summary"):
        predict(idata, X_new)  # 4000 x 40,000 x 2 x 2 x 8 bytes = 5.1 GB
    tracemalloc.start()
    s = predict_summary(idata, X_new, random_seed=0)
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    assert s.attrs["n_draws"] == 4000 and s.attrs["row_blocks"] == 77
    assert peak < 4 * 8 * predictive_summary.BLOCK_FLOATS  # a few blocks' arrays: 1 GiB


def test_diagnose_refuses_held_out_rows_whose_draws_would_not_fit(regression_fit, monkeypatch):
    from bnncat import diagnose
    from bnncat.evaluation import calibration

    _, idata = regression_fit
    X_test = np.linspace(-3, 3, 1000)[:, None]  # 100 draws x 1000 rows x 2 arrays x 8 bytes
    monkeypatch.setattr(calibration, "MAX_BYTES", 1_000_000)
    with pytest.raises(ValueError, match=r"X_test has 1000 rows.*log_predictive_density"):
        diagnose(idata, X_test=X_test, y_test=np.sin(X_test[:, 0]))
