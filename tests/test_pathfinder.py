"""Multi-path Pathfinder: the usual result format, PSIS resampling, and bad options."""

import json
import warnings

import numpy as np
import pytest

from bnncat import data, diagnose
from bnncat import identifiability as ident
from bnncat.models import MLP, MixtureRegressor, OrderedMLP, fit, load, predict, save
from bnncat.models.inference import pathfinder


@pytest.fixture(scope="module")
def sine():
    return data.load("sine", n=60, noise=0.1, seed=2)


@pytest.mark.parametrize(
    "net", [MLP((3,)), OrderedMLP((3,)), MixtureRegressor((3,), n_components=2)], ids=repr
)
def test_pathfinder_fits_predicts_saves_relabels_and_is_diagnosed(net, sine, tmp_path):
    idata = fit(net, sine.X, sine.y, method="pathfinder", draws=60, paths=3, random_seed=4)
    post = idata["posterior"]
    assert post.sizes["chain"] == 3 and post.sizes["draw"] == 60
    assert idata.attrs["fit_kind"] == "approximation" and idata.attrs["fit_method"] == "pathfinder"
    info = idata["pathfinder"]
    np.testing.assert_allclose(float(info["weight_share"].sum()), 1.0, rtol=1e-9)
    assert np.isfinite(info["elbo"]).all()
    assert predict(idata, np.zeros((3, 1)))["predictions"]["y"].shape == (3, 60, 3, 1)
    again = load(save(idata, tmp_path / "fit.nc"))
    np.testing.assert_array_equal(again["posterior"]["W1"], post["W1"])
    k = idata["sample_stats"].attrs["pareto_k"]
    assert again["sample_stats"].attrs["pareto_k"] == k
    assert ident.canonicalize(idata)["posterior"]["W1"].shape == post["W1"].shape
    report = diagnose(again, random_seed=1)
    assert f"PSIS k-hat of the approximation is {k:.2f}" in report.verdict.sentence


def test_without_resampling_each_chain_is_a_path_with_its_log_densities(sine):
    kwargs = {"method": "pathfinder", "draws": 40, "paths": 2, "random_seed": 7}
    raw = fit(MLP((2,)), sine.X, sine.y, importance_sampling="none", **kwargs)
    again = fit(MLP((2,)), sine.X, sine.y, importance_sampling="none", **kwargs)
    np.testing.assert_array_equal(raw["posterior"]["W1"], again["posterior"]["W1"])
    stats = raw["sample_stats"]
    assert np.isfinite(stats["log_p"]).all() and np.isfinite(stats["log_q"]).all()
    resampled = fit(MLP((2,)), sine.X, sine.y, **kwargs)
    # the resample is drawn from the same pool: every draw is one of the paths' draws
    pool = raw["posterior"]["W1"].values.reshape(-1, 2)
    picked = resampled["posterior"]["W1"].values.reshape(-1, 2)
    assert all(np.any(np.all(pool == row, axis=1)) for row in picked)
    source = resampled["sample_stats"]["source_path"].values
    share = raw["pathfinder"]["weight_share"].values
    assert set(np.unique(source)) <= set(np.flatnonzero(share > 0))
    options = json.loads(resampled.attrs["bnncat_fit"])
    assert options["paths"] == 2 and options["importance_sampling"] == "psis"


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        ({"paths": 0}, ValueError, "paths must be >= 1"),
        ({"maxiter": 0}, ValueError, "maxiter must be >= 1"),
        ({"importance_sampling": "is"}, ValueError, "importance_sampling='is' is not known"),
        ({"chains": 4}, ValueError, "its chains are its paths"),
        ({"temperature": 0}, ValueError, "temperature must be finite and > 0"),
    ],
)
def test_bad_options_fail_before_any_path(kwargs, error, match, sine, monkeypatch):
    monkeypatch.setattr(pathfinder, "_run_paths", lambda *a, **k: pytest.fail("ran"))
    with pytest.raises(error, match=match):
        fit(MLP((2,)), sine.X, sine.y, method="pathfinder", **kwargs)


def test_a_path_too_large_for_the_memory_is_refused_with_what_to_change(sine, monkeypatch):
    monkeypatch.setattr(pathfinder, "memory_budget", lambda: 10_000)
    monkeypatch.setattr(pathfinder, "_run_paths", lambda *a, **k: pytest.fail("ran"))
    with pytest.raises(
        ValueError, match=r"matrix per iteration: maxiter=1000 needs .* set maxiter"
    ):
        fit(MLP((2,)), sine.X, sine.y, method="pathfinder")


def test_a_resample_on_a_few_draws_says_so():
    """PSIS k-hat far above 0.7: the resample repeats a few draws, and the fit warns."""
    pool = np.repeat(np.arange(3.0)[:, None], 10, axis=0).reshape(30, 1)
    with pytest.warns(UserWarning, match=r"k-hat 12.00 > 0.7.*holds 3 distinct draws of 30"):
        pathfinder.warn_if_resample_degenerate(12.0, pool)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        pathfinder.warn_if_resample_degenerate(0.5, pool)
