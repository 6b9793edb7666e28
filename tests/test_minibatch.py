"""Minibatch ADVI, and the other fast paths of fit: the JAX ADVI engine and float32.

Small real fits with fixed seeds; the speed itself is measured by
``benchmarks/performance.py``, not here.
"""

import json

import numpy as np
import pymc as pm
import pytest

from bnncat import data
from bnncat.models import MLP, OrderedMLP, predict, read_net

GRID = np.linspace(-2.5, 2.5, 25)[:, None]


def _mean_function(idata):
    return predict(idata, GRID)["predictions"]["mu"].values[..., 0].reshape(-1, len(GRID)).mean(0)


@pytest.fixture(scope="module")
def sine():
    return data.load("sine", n=200, noise=0.1, seed=7)


@pytest.fixture(scope="module")
def full_and_minibatch(sine):
    kwargs = {"method": "advi", "draws": 300, "advi_iterations": 20_000, "progressbar": False}
    full = MLP((8,)).fit(sine.X, sine.y, random_seed=3, **kwargs)
    mini = MLP((8,)).fit(sine.X, sine.y, random_seed=3, batch_size=50, **kwargs)
    return full, mini


def test_minibatch_fit_stores_the_full_data(sine, full_and_minibatch):
    _, mini = full_and_minibatch
    assert mini["constant_data"]["X"].shape == (200, 1)
    assert mini["observed_data"]["y"].shape == (200, 1)
    np.testing.assert_array_equal(mini["constant_data"]["X"].values, sine.X)
    assert mini["posterior"].sizes["draw"] == 300 and "mu" not in mini["posterior"]
    assert json.loads(mini.attrs["bnncat_fit"])["batch_size"] == 50
    assert mini["fit_history"]["loss"].shape == (20_000,)
    # predictions at any rows, and the log densities of each draw use the full model
    assert predict(mini, GRID)["predictions"]["y"].shape == (1, 300, 25, 1)
    assert np.isfinite(mini["sample_stats"]["log_p"].values).all()


def test_minibatch_mean_function_is_close_to_full_batch(full_and_minibatch):
    full, mini = full_and_minibatch
    f_full, f_mini = _mean_function(full), _mean_function(mini)
    truth = np.sin(GRID[:, 0])
    assert np.abs(f_full - truth).max() < 0.2
    assert np.abs(f_mini - truth).max() < 0.2
    assert np.abs(f_mini - f_full).max() < 0.15
    # the noise scale is learned from batches scaled to the whole data (truth 0.1)
    assert 0.07 < float(mini["posterior"]["sigma"].mean()) < 0.14


def test_minibatch_model_scales_the_likelihood_to_the_data():
    # all rows alike: any batch, scaled by n / batch_size, gives the full log-likelihood
    X, y = np.ones((30, 1)), np.full(30, 0.3)
    net = MLP((3,), standardize=False)
    X_arr, y_arr, spec = net.data_spec(X, y)
    full = net.build_validated(X_arr, y_arr, spec)
    mini = net.build_validated(X_arr, y_arr, spec, batch_size=7)
    assert mini.dim_lengths["obs"].eval() == 7
    point = full.initial_point()
    point = {k: v + 0.1 for k, v in point.items()}
    lik_full = full.compile_logp(vars=full.observed_RVs)(point)
    lik_mini = mini.compile_logp(vars=mini.observed_RVs)(point)
    np.testing.assert_allclose(lik_mini, lik_full, rtol=1e-10)
    assert [v.name for v in mini.free_RVs] == [v.name for v in full.free_RVs]


def test_minibatch_with_other_models_and_classification():
    ds = data.load("two_moons", n=60, seed=1)
    kwargs = {"method": "advi", "draws": 20, "advi_iterations": 300, "progressbar": False}
    kwargs["random_seed"] = 5  # fixed: every sampling test is repeatable
    idata = MLP((3,), likelihood="bernoulli").fit(ds.X, ds.y, batch_size=16, **kwargs)
    assert predict(idata, ds.X[:5])["predictions"]["y"].shape == (1, 20, 5)
    sine = data.load("sine", n=40, seed=2)
    net = OrderedMLP((3,))
    idata = net.fit(sine.X, sine.y, batch_size=10, store_mu=True, **kwargs)
    post = idata["posterior"]
    assert post["mu"].shape == (1, 20, 40, 1)  # mu on the full data
    # ordered biases, signs fixed: every draw
    assert net.in_constrained_region({k: post[k].values for k in post.data_vars}).all()


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        ({"batch_size": 0}, ValueError, "batch_size must be >= 1"),
        ({"batch_size": 41}, ValueError, r"batch_size=41 is larger than the data \(40 rows\)"),
        ({"batch_size": 2.5}, TypeError, "batch_size must be an integer"),
        ({"batch_size": 10, "method": "nuts"}, ValueError, "NUTS needs the full data"),
        ({"precision": "float16"}, ValueError, "precision='float16' is not known"),
        ({"precision": "float32", "nuts_sampler": "pymc", "method": "nuts"}, ValueError, "JAX"),
        ({"precision": "float32", "advi_engine": "pymc"}, ValueError, "needs a JAX"),
        ({"advi_engine": "numba"}, ValueError, "advi_engine='numba' is not known"),
        ({"precision": "float32", "batch_size": 10}, ValueError, "does not work with batch"),
    ],
)
def test_bad_options_fail_before_any_sampling(kwargs, error, match, monkeypatch):
    def no_sampling(*args, **kw):
        raise AssertionError("sampled despite a bad option")

    monkeypatch.setattr(pm, "sample", no_sampling)
    monkeypatch.setattr(pm, "fit", no_sampling)
    monkeypatch.setattr(pm, "find_MAP", no_sampling)
    ds = data.load("sine", n=40, seed=1)
    kwargs = {"method": "advi"} | kwargs
    with pytest.raises(error, match=match):
        MLP((2,)).fit(ds.X, ds.y, progressbar=False, **kwargs)


def test_jax_and_pymc_advi_engines_agree(sine, full_and_minibatch):
    full, _ = full_and_minibatch  # the default engine, "jax"
    assert json.loads(full.attrs["bnncat_fit"])["advi_engine"] == "jax"
    kwargs = {"method": "advi", "draws": 300, "advi_iterations": 20_000, "progressbar": False}
    ref = MLP((8,)).fit(sine.X, sine.y, random_seed=3, advi_engine="pymc", **kwargs)
    assert np.abs(_mean_function(ref) - _mean_function(full)).max() < 0.1
    # the same objective: the losses agree once both have converged
    tail = slice(-2000, None)
    loss_jax, loss_pymc = full["fit_history"]["loss"].values, ref["fit_history"]["loss"].values
    assert abs(np.median(loss_jax[tail]) - np.median(loss_pymc[tail])) < 5
    assert abs(float(full["posterior"]["sigma"].mean() - ref["posterior"]["sigma"].mean())) < 0.02


def test_float32_nuts_is_stored_in_float64():
    ds = data.load("sine", n=40, seed=3)
    net = MLP((3,))
    with pytest.warns(UserWarning, match="smallest bulk ESS"):
        idata = net.fit(
            ds.X,
            ds.y,
            draws=40,
            tune=60,
            chains=2,
            random_seed=1,
            precision="float32",
            progressbar=False,
        )
    assert json.loads(idata.attrs["bnncat_fit"])["precision"] == "float32"
    post = idata["posterior"]
    assert all(post[k].dtype == np.float64 for k in post.data_vars)
    w = post["W1"].values
    np.testing.assert_array_equal(w, w.astype(np.float32))  # computed in float32
    assert idata["sample_stats"]["lp"].dtype == np.float64
    # the stored draws are float32 numbers: the network output agrees with predict
    _, spec = read_net(idata)
    params = {k: post[k].values for k in post.data_vars}
    mu = predict(idata, GRID)["predictions"]["mu"].values
    np.testing.assert_allclose(mu, net.forward(params, GRID, spec), atol=1e-10)


def test_auto_precision():
    def precision(idata):
        return json.loads(idata.attrs["bnncat_fit"])["precision"]

    ds = data.load("sine", n=40, seed=3)
    advi = {"method": "advi", "draws": 5, "advi_iterations": 20, "progressbar": False}
    advi |= {"advi_init": "pymc"}
    # ADVI's compiled loop runs in float32; minibatches and pm.fit in float64
    fast = MLP((2,)).fit(ds.X, ds.y, **advi)
    assert precision(fast) == "float32" and fast["posterior"]["W1"].dtype == np.float64
    loss = fast["fit_history"]["loss"].values
    np.testing.assert_array_equal(loss, loss.astype(np.float32))  # optimised in float32
    assert precision(MLP((2,)).fit(ds.X, ds.y, batch_size=10, **advi)) == "float64"
    pymc_engine = MLP((2,)).fit(ds.X, ds.y, advi_engine="pymc", **advi)
    assert precision(pymc_engine) == "float64"
    loss = pymc_engine["fit_history"]["loss"].values
    assert not np.array_equal(loss, loss.astype(np.float32))
    # NUTS: float32 on numpyro, float64 on PyMC's own sampler
    nuts = {"draws": 10, "tune": 10, "chains": 1, "progressbar": False, "random_seed": 1}
    with pytest.warns(UserWarning):
        on_jax = MLP((2,)).fit(ds.X, ds.y, **nuts)
    assert precision(on_jax) == "float32"
    w = on_jax["posterior"]["W1"].values
    assert w.dtype == np.float64
    np.testing.assert_array_equal(w, w.astype(np.float32))
    with pytest.warns(UserWarning):
        assert precision(MLP((2,)).fit(ds.X, ds.y, nuts_sampler="pymc", **nuts)) == "float64"
