"""predict: the network in NumPy over blocks of draws, against PyMC's per-draw predictive."""

import numpy as np
import pymc as pm
import pytest
from scipy import stats

from bnncat.models import MLP, MixtureRegressor, OrderedMLP, fit, predict, prediction
from bnncat.models.pymc_internals import more_chains_than_draws

# ADVI fits of a few iterations: what is compared is the prediction of the draws they hold
pytestmark = pytest.mark.filterwarnings("ignore")

RNG = np.random.default_rng(0)
X = RNG.normal(size=(40, 2))
Y = np.sin(X[:, 0]) + 0.1 * RNG.normal(size=40)
X_NEW = RNG.normal(size=(6, 2))
ADVI = {"method": "advi", "random_seed": 1, "progressbar": False}
CASES = {
    "normal": (MLP((3,)), Y),
    "studentt": (MLP((3,), likelihood="studentt"), Y),
    "bernoulli": (MLP((3,), likelihood="bernoulli"), (X[:, 0] > 0).astype(int)),
    "categorical": (MLP((3,), likelihood="categorical"), np.digitize(X[:, 0], [-0.5, 0.5])),
    "ordered": (OrderedMLP((3,)), Y),
    "mixture-noise": (MixtureRegressor((3,), n_components=2), Y),
    "mixture-mdn": (MixtureRegressor((3,), n_components=2, form="mdn"), Y),
    "two-outputs": (MLP((3,)), np.c_[Y, 2 * Y + 5]),
}


def pymc_predictive(idata, net):
    """PyMC's posterior predictive of the prediction model at X_NEW, one draw at a time."""
    _, spec, X_new, _ = prediction.check_prediction(idata, X_NEW, net, None, "sampled")
    with more_chains_than_draws():
        return pm.sample_posterior_predictive(
            idata,
            model=net.build_validated(X_new, None, spec),
            var_names=["mu", "y"],
            predictions=True,
            random_seed=5,
            progressbar=False,
        )


@pytest.mark.parametrize("name", list(CASES))
def test_predictions_are_pymcs_posterior_predictive(name):
    net, y = CASES[name]
    idata = fit(net, X, y, advi_iterations=2000, draws=1000, **ADVI)
    ours, theirs = predict(idata, X_NEW, random_seed=5), pymc_predictive(idata, net)
    for var in ("mu", "y"):
        a, b = ours["predictions"][var], theirs["predictions"][var]
        assert a.dims == b.dims and a.dtype.kind == b.dtype.kind
        assert all(np.array_equal(a[c].values, b[c].values) for c in b.coords)
    np.testing.assert_allclose(ours["predictions"]["mu"], theirs["predictions"]["mu"], atol=1e-12)
    ours_y = ours["predictions"]["y"].values.reshape(1000, len(X_NEW), -1)
    theirs_y = theirs["predictions"]["y"].values.reshape(1000, len(X_NEW), -1)
    for row, output in np.ndindex(ours_y.shape[1:]):  # the same distribution, draw for draw
        p = stats.ks_2samp(ours_y[:, row, output], theirs_y[:, row, output]).pvalue
        assert p > 1e-3, (row, output, p)
    constant = ours["predictions_constant_data"].to_dataset()
    assert constant.identical(theirs["predictions_constant_data"].to_dataset().drop_attrs())


def test_blocks_of_draws_change_nothing_but_the_streams_of_y(monkeypatch):
    net, y = CASES["mixture-mdn"]
    idata = fit(net, X, y, advi_iterations=500, draws=200, **ADVI)
    whole = predict(idata, X_NEW, random_seed=2)["predictions"]
    again = predict(idata, X_NEW, random_seed=2)["predictions"]
    assert whole.identical(again)
    width = 3 * 2  # the MDN's head: (mean, scale, weight) x 2 components
    monkeypatch.setattr(prediction, "FORWARD_FLOATS", 7 * len(X_NEW) * width)  # 7 draws a block
    blocks = predict(idata, X_NEW, random_seed=2)["predictions"]
    np.testing.assert_array_equal(blocks["mu"], whole["mu"])
    assert blocks["y"].shape == whole["y"].shape and np.isfinite(blocks["y"]).all()
