"""Numerical edges: extreme scales, constant columns, duplicate and single rows, classes, ties."""

import numpy as np
import pytest

from bnncat import diagnose
from bnncat.models import MLP, predict_summary, read_net

pytestmark = pytest.mark.filterwarnings(
    "ignore:R-hat of the predictions", "ignore:the smallest bulk ESS", "ignore:ADVI"
)

NUTS = {"method": "nuts", "draws": 40, "tune": 100, "chains": 1, "progressbar": False}
ADVI = {"method": "advi", "draws": 40, "advi_iterations": 500, "progressbar": False}


def _sine(n=30, seed=0):
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, 1))
    return X, np.sin(2 * X[:, 0]) + 0.1 * rng.normal(size=n)


def _mean(idata, X):
    return predict_summary(idata, X, random_seed=0)["mean"].values[:, 0]


@pytest.mark.parametrize("scale", [1e6, 1e-6])
def test_inputs_on_any_scale_give_the_same_fit(scale):
    """The net standardises its inputs: rescaled inputs give the same draws, up to rounding."""
    X, y = _sine()
    base = _mean(MLP((3,)).fit(X, y, random_seed=1, **NUTS), X[:5])
    scaled = _mean(MLP((3,)).fit(X * scale, y, random_seed=1, **NUTS), X[:5] * scale)
    np.testing.assert_allclose(scaled, base, rtol=1e-6, atol=1e-9)


@pytest.mark.parametrize("scale", [1e6, 1e-6])
def test_targets_on_any_scale_give_the_fit_in_their_units(scale):
    """Outputs are standardised too; float32 rounding moves the chain a little (< 5%)."""
    X, y = _sine()
    base = _mean(MLP((3,)).fit(X, y, random_seed=1, **NUTS), X[:5])
    scaled = _mean(MLP((3,)).fit(X, y * scale, random_seed=1, **NUTS), X[:5]) / scale
    assert np.abs(scaled - base).max() < 0.05 * np.abs(base).max()


@pytest.mark.parametrize(("argument", "scale"), [("X", 1e300), ("X", 1e-300), ("y", 1e120)])
def test_magnitudes_beyond_what_the_models_compute_with_are_refused(argument, scale):
    X, y = _sine()
    X, y = (X * scale, y) if argument == "X" else (X, y * scale)
    with pytest.raises(ValueError, match=rf"^{argument} has values of magnitude .* rescale it"):
        MLP((3,)).fit(X, y, **ADVI)


def test_float32_falls_back_to_float64_where_it_cannot_hold_the_data():
    X, y = _sine()
    with pytest.warns(UserWarning, match="beyond what float32 holds.*float64 instead"):
        idata = MLP((3,)).fit(X, y * 1e50, random_seed=1, **ADVI)
    assert '"precision": "float64"' in idata.attrs["bnncat_fit"]
    assert np.isfinite(_mean(idata, X[:5])).all()


def test_a_log_density_float32_cannot_hold_at_the_start_is_refused_naming_the_precision():
    """Unstandardised targets of 1e20 square beyond float32: every start point is -inf there."""
    from pymc.exceptions import SamplingError

    X, y = _sine()
    net = MLP((3,), standardize=False)
    with pytest.raises(SamplingError, match=r"not finite at the start points .* in float32"):
        net.fit(X, y + 1e20, random_seed=1, **NUTS)
    idata = net.fit(X, y + 1e20, random_seed=1, precision="float64", **NUTS)
    assert np.isfinite(idata["sample_stats"]["lp"].values).all()


def test_a_constant_column_is_centred_and_fits():
    """Centred, a constant column is zero: its weights change nothing the net computes."""
    X, y = _sine()
    X2 = np.column_stack([X, np.full(len(X), 7.0)])
    net = MLP((3,))
    idata = net.fit(X2, y, random_seed=1, **NUTS)
    spec = read_net(idata)[1]
    assert spec.x_loc[1] == 7.0 and spec.x_scale[1] == 1.0
    params = {k: v.values for k, v in idata["posterior"].data_vars.items()}
    without = params | {"W1": params["W1"] * np.array([1.0, 0.0])[:, None]}
    np.testing.assert_array_equal(net.forward(params, X2, spec), net.forward(without, X2, spec))
    assert np.isfinite(params["W1"]).all()


def test_duplicated_rows_and_a_single_row_fit():
    X, y = _sine(10)
    twice = MLP((3,)).fit(np.vstack([X, X]), np.concatenate([y, y]), random_seed=1, **ADVI)
    assert np.isfinite(_mean(twice, X)).all()
    one = MLP((3,)).fit(X[:1], y[:1], random_seed=1, **ADVI)
    assert np.isfinite(_mean(one, X)).all()


def test_a_class_never_seen_in_training_and_an_unknown_label():
    rng = np.random.default_rng(0)
    X = rng.normal(size=(40, 2))
    y = (X[:, 0] > 0).astype(int)  # classes 0 and 1 of 3: class 2 never seen
    idata = MLP((3,), likelihood="categorical", n_classes=3).fit(X, y, random_seed=1, **ADVI)
    p = predict_summary(idata, X)["p"]
    assert p.sizes["class"] == 3 and float(p.sel({"class": 2}).mean()) < 0.2
    with pytest.raises(ValueError, match="y_test"):
        diagnose(idata, X_test=X[:5], y_test=[0, 1, 3, 0, 1])


def test_targets_with_ties_are_diagnosed():
    X, y = _sine(40)
    y = np.round(y)  # three values: many ties
    idata = MLP((3,)).fit(X, y, random_seed=1, **ADVI)
    report = diagnose(idata, X_test=X[:10], y_test=y[:10])
    assert np.isfinite(report.calibration["value"].astype(float)).any()
