"""The Laplace approximation: its Hessian, its draws, and the usual result format."""

import json

import numpy as np
import pymc as pm
import pytensor.tensor as pt
import pytest
from scipy import stats

from bnncat import data, diagnose
from bnncat import identifiability as ident
from bnncat.evaluation.density import log_predictive_density
from bnncat.models import (
    MLP,
    MixtureRegressor,
    OrderedMLP,
    fit,
    load,
    predict,
    predictive_summary,
    save,
)
from bnncat.models.attrs import read_net
from bnncat.models.inference import laplace, laplace_curvature, linearized
from bnncat.models.inference.laplace_curvature import flat_model
from bnncat.models.jax_runtime import jax_session
from bnncat.models.mlp import NET_OUT
from bnncat.models.prediction import PREDICTIVES


@pytest.fixture(scope="module")
def tiny_model():
    ds = data.load("sine", n=20, noise=0.1, seed=3)
    return MLP((2,)).build(ds.X, ds.y)


def _fd_hessian(model, x, h=1e-5):
    """Central differences of PyMC's gradient of -logp (Jacobians included), flat space."""
    dlogp = model.compile_dlogp(jacobian=True)
    shapes = {v.name: np.shape(model.initial_point()[v.name]) for v in model.value_vars}

    def grad(flat):
        return -dlogp(
            {k: v[0] for k, v in laplace_curvature.unflatten_values(flat[None], shapes).items()}
        )

    cols = []
    for j in range(x.size):
        e = np.zeros_like(x)
        e[j] = h
        cols.append((grad(x + e) - grad(x - e)) / (2 * h))
    return np.stack(cols, axis=1)


def _mode(model, flat, seed, hessian, maxiter=15_000):
    """One restart's Gaussian, as ``fit_laplace`` finds it."""
    return laplace._search_modes(model, flat, np.array([seed]), hessian, None, maxiter)[0]


def test_the_covariance_is_the_inverse_hessian_at_the_map(tiny_model):
    with jax_session("float64"):
        flat = flat_model(tiny_model)
        mode = _mode(tiny_model, flat, seed=1, hessian="full")
        diag = _mode(tiny_model, flat, seed=1, hessian="diag")["cov"]
    shapes = {v.name: np.shape(tiny_model.initial_point()[v.name]) for v in tiny_model.value_vars}
    point = {
        k: v[0] for k, v in laplace_curvature.unflatten_values(mode["mean"][None], shapes).items()
    }
    dlogp = tiny_model.compile_dlogp(jacobian=True)
    assert np.abs(dlogp(point)).max() < 1e-3  # a mode: the gradient vanishes
    assert mode["converged"] and mode["newton_decrement"] < 1e-8
    hessian = _fd_hessian(tiny_model, mode["mean"])
    exact = np.linalg.inv(mode["cov"])
    assert np.abs(exact - hessian).max() <= 1e-5 * np.abs(hessian).max()
    np.testing.assert_allclose(np.diag(diag), 1 / np.diag(exact), rtol=1e-8)
    assert np.count_nonzero(diag - np.diag(np.diag(diag))) == 0


def _linear_model(X, y, sigma=None):
    """Bayesian linear regression written as a network without hidden layers."""
    with pm.Model() as model:
        W = pm.Normal("W_out", 0.0, 1.5, shape=(X.shape[1], 1))
        b = pm.Normal("b_out", 0.0, 0.7, shape=(1,))
        net_out = pt.as_tensor(X) @ W + b
        net_out.name = NET_OUT
        noise = pm.HalfNormal("sigma", 1.0) if sigma is None else sigma
        pm.Normal("y", net_out, noise, observed=y[:, None])
    return model


def _linear_data(n=40, seed=0):
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, 3))
    return X, X @ np.array([1.0, -0.5, 0.2]) + 0.3 + 0.4 * rng.normal(size=n)


def test_the_ggn_is_the_hessian_of_a_model_linear_in_its_weights():
    X, y = _linear_data()
    model = _linear_model(X, y)  # sigma learned: the GGN keeps its exact curvature
    with jax_session("float64"):
        flat = flat_model(model)
        x = np.random.default_rng(1).normal(size=flat.size)  # anywhere, not only at the mode
        full = sum(laplace_curvature.precision_parts(flat, x, "full"))
        ggn = sum(laplace_curvature.precision_parts(flat, x, "ggn"))
        mlp = MLP((3,)).build(X, y)  # a network is not linear in its weights: they differ
        flat_mlp = flat_model(mlp)
        z = np.random.default_rng(2).normal(size=flat_mlp.size)
        gap = sum(laplace_curvature.precision_parts(flat_mlp, z, "full")) - sum(
            laplace_curvature.precision_parts(flat_mlp, z, "ggn")
        )
    np.testing.assert_allclose(ggn, full, rtol=1e-10, atol=1e-10 * np.abs(full).max())
    assert np.abs(gap).max() > 1e-3


def test_the_laplace_evidence_of_bayesian_linear_regression_is_the_closed_form():
    X, y = _linear_data()
    sigma = 0.4
    model = _linear_model(X, y, sigma=sigma)
    with jax_session("float64"):
        flat = flat_model(model)
        evidences = [_mode(model, flat, 3, h)["log_evidence"] for h in ("full", "ggn")]
    design = np.column_stack([X, np.ones(len(X))])
    prior_cov = np.diag([1.5**2] * 3 + [0.7**2])
    cov = sigma**2 * np.eye(len(X)) + design @ prior_cov @ design.T
    exact = stats.multivariate_normal(np.zeros(len(X)), cov).logpdf(y)
    np.testing.assert_allclose(evidences, exact, rtol=0, atol=1e-6)


def test_a_search_stopped_short_is_reported_and_last_layer_still_centres_its_gaussian(tiny_model):
    with jax_session("float64"):
        flat = flat_model(tiny_model)
        full = _mode(tiny_model, flat, seed=1, hessian="full", maxiter=3)
        last = _mode(tiny_model, flat, seed=1, hessian="last_layer", maxiter=3)
        grad = np.asarray(flat.value_and_grad(last["mean"])[1])
    assert not full["converged"] and full["newton_decrement"] > 1e-2
    # the output layer's own search converges: its Gaussian sits on the conditional mode
    assert not last["converged"] and last["newton_decrement"] < 1e-8
    assert np.abs(grad[flat.last_layer_indices()]).max() < 1e-3
    assert np.abs(grad).max() > 1e-2  # while the hidden layers are not at a mode
    ds = data.load("sine", n=20, noise=0.1, seed=3)
    with pytest.warns(UserWarning, match=r"stopped before converging .*Newton decrements"):
        fit(MLP((2,)), ds.X, ds.y, method="laplace", maxiter=3, draws=10, restarts=2)
    with pytest.warns(UserWarning, match=r"hidden layers are not at a mode"):
        fit(MLP((2,)), ds.X, ds.y, method="laplace", hessian="last_layer", maxiter=3, draws=10)


def test_last_layer_keeps_the_hidden_layers_at_the_map_and_its_predictive_is_linear(monkeypatch):
    ds = data.load("sine", n=40, noise=0.1, seed=5)
    idata = fit(
        MLP((3,)),
        ds.X,
        ds.y,
        method="laplace",
        hessian="last_layer",
        draws=50,
        restarts=2,
        random_seed=2,
    )
    post = idata["posterior"]
    for name in ("W1", "b1"):  # the same value in every draw of a chain
        assert float((post[name].max("draw") - post[name].min("draw")).max()) == 0.0
    assert float(post["W_out"].std("draw").min()) > 0 and float(post["sigma"].std("draw").min()) > 0
    assert np.isfinite(idata["sample_stats"]["log_q"]).all()
    X_new = np.linspace(-3, 3, 7)[:, None]
    sampled = predict(idata, X_new, random_seed=1)["predictions"]["mu"]
    linear = predict(idata, X_new, predictive="linearized", random_seed=1)["predictions"]["mu"]
    np.testing.assert_allclose(linear, sampled, rtol=1e-9, atol=1e-9)  # the output layer is linear
    lpd = {p: log_predictive_density(idata, ds.X, ds.y, predictive=p)["total"] for p in PREDICTIVES}
    np.testing.assert_allclose(lpd["linearized"], lpd["sampled"], rtol=1e-9)
    monkeypatch.setattr(predictive_summary, "BLOCK_FLOATS", 100 * 3 * 9)  # 9 rows a block
    in_blocks = log_predictive_density(idata, ds.X, ds.y, predictive="linearized")["total"]
    np.testing.assert_allclose(in_blocks, lpd["linearized"], rtol=1e-12)


def test_the_linearized_predictive_expands_the_network_at_each_map():
    ds = data.load("sine", n=40, noise=0.1, seed=5)
    net = MLP((4,))
    idata = fit(
        net, ds.X, ds.y, method="laplace", hessian="ggn", draws=30, restarts=2, random_seed=3
    )
    X_new = np.linspace(-3, 3, 5)[:, None]
    pred = predict(idata, X_new, predictive="linearized", random_seed=1)["predictions"]
    sampled = predict(idata, X_new, random_seed=1)["predictions"]
    assert pred["mu"].dims == sampled["mu"].dims and pred["y"].dims == sampled["y"].dims
    assert pred["mu"].shape == sampled["mu"].shape
    # at the MAP itself the expansion is the network
    spec = read_net(idata)[1]
    model = net.build_validated(X_new, None, spec)
    means = idata["laplace"]["mean"].values
    with jax_session("float64"):
        names = [v.name for v in model.value_vars if v.name != "y"]
        head = linearized._linearized_head(model, names, means, means[:, None, :])
    shapes = {n: np.shape(model.initial_point()[n]) for n in names}
    at_map = laplace_curvature.unflatten_values(means, shapes)
    at_map["sigma"] = np.exp(at_map.pop("sigma_log__"))
    np.testing.assert_allclose(
        net.mean_of_head(head[:, 0], {}, spec), net.forward(at_map, X_new, spec), atol=1e-9
    )
    # linearised draws spread far less than sampled ones on a 4-unit net (the known result)
    assert float(pred["mu"].std("draw").mean()) < float(sampled["mu"].std("draw").mean())


def test_the_linearized_predictive_needs_a_laplace_fit_as_fitted():
    ds = data.load("sine", n=30, seed=1)
    advi = fit(MLP((2,)), ds.X, ds.y, method="advi", draws=20, random_seed=1)
    with pytest.raises(ValueError, match="needs a Laplace fit"):
        predict(advi, ds.X, predictive="linearized")
    lap = fit(MLP((2,)), ds.X, ds.y, method="laplace", draws=20, restarts=1, random_seed=1)
    with pytest.raises(ValueError, match="were relabelled"):
        predict(ident.canonicalize(lap), ds.X, predictive="linearized")
    with pytest.raises(ValueError, match="predictive='glm' is not known"):
        predict(lap, ds.X, predictive="glm")


@pytest.mark.parametrize(
    "net", [MLP((3,)), OrderedMLP((3,)), MixtureRegressor((3,), n_components=2)], ids=repr
)
def test_laplace_fits_predicts_saves_relabels_and_is_diagnosed(net, tmp_path):
    ds = data.load("sine", n=60, noise=0.1, seed=2)
    idata = fit(net, ds.X, ds.y, method="laplace", draws=100, restarts=2, random_seed=4)
    post = idata["posterior"]
    assert post.sizes["chain"] == 2 and post.sizes["draw"] == 100
    assert idata.attrs["fit_kind"] == "approximation" and idata.attrs["fit_method"] == "laplace"
    stats = idata["sample_stats"]
    assert np.isfinite(stats["log_p"]).all() and np.isfinite(stats["log_q"]).all()
    assert predict(idata, np.zeros((3, 1)))["predictions"]["y"].shape == (2, 100, 3, 1)
    again = load(save(idata, tmp_path / "fit.nc"))
    np.testing.assert_array_equal(again["posterior"]["W1"], post["W1"])
    canon = ident.canonicalize(idata)
    assert canon["posterior"]["W1"].shape == post["W1"].shape
    report = diagnose(idata, random_seed=1)
    assert "PSIS k-hat" in report.verdict.sentence and report.sampler.empty


def test_draws_repeat_with_the_seed_and_log_q_is_the_mixture_of_the_restarts():
    ds = data.load("sine", n=30, seed=1)
    a = fit(MLP((2,)), ds.X, ds.y, method="laplace", draws=50, restarts=2, random_seed=9)
    b = fit(MLP((2,)), ds.X, ds.y, method="laplace", draws=50, restarts=2, random_seed=9)
    np.testing.assert_array_equal(a["posterior"]["W1"], b["posterior"]["W1"])
    means = a["laplace"]["mean"].values
    assert means.shape[0] == 2 and np.isfinite(a["laplace"]["map_logp"]).all()


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        ({"hessian": "kron"}, ValueError, "hessian='kron' is not known"),
        ({"marglik": "yes"}, TypeError, "marglik must be True or False"),
        ({"restarts": 0}, ValueError, "restarts must be >= 1"),
        ({"chains": 4}, ValueError, "its chains are its MAP restarts"),
    ],
)
def test_bad_options_fail_before_any_search(kwargs, error, match, monkeypatch):
    monkeypatch.setattr(laplace, "find_modes", lambda *a, **k: pytest.fail("searched"))
    ds = data.load("sine", n=20, seed=1)
    with pytest.raises(error, match=match):
        fit(MLP((2,)), ds.X, ds.y, method="laplace", **kwargs)


@pytest.mark.parametrize(
    ("net", "match"),
    [
        (OrderedMLP((2,)), "plain MLP, not OrderedMLP"),
        (MixtureRegressor((2,), n_components=2), "plain MLP, not MixtureRegressor"),
        (MLP((2,), prior="hierarchical"), "use prior='lecun'"),
    ],
    ids=["ordered", "mixture", "hierarchical"],
)
def test_marglik_is_refused_where_no_gaussian_layer_prior_is_tuned(net, match, monkeypatch):
    monkeypatch.setattr(laplace, "find_modes", lambda *a, **k: pytest.fail("searched"))
    ds = data.load("sine", n=20, seed=1)
    with pytest.raises(ValueError, match=match):
        fit(net, ds.X, ds.y, method="laplace", marglik=True)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"noise_sd": 0.1, "likelihood": "studentt"}, "noise_sd fixes the sd of"),
        ({"noise_sd": -1.0}, "noise_sd must be"),
        ({"layer_prior_scales": (1.0,)}, "one sd per layer"),
        ({"layer_prior_scales": (1.0, 0.0)}, r"layer_prior_scales\[1\] must be"),
    ],
)
def test_fixed_scales_are_validated(kwargs, match):
    with pytest.raises(ValueError, match=match):
        MLP((3,), **kwargs)


@pytest.mark.slow
def test_marglik_finds_the_noise_sd_and_records_its_rounds():
    ds = data.load("sine", n=200, noise=0.1, seed=1)
    idata = fit(
        MLP((8,)),
        ds.X,
        ds.y,
        method="laplace",
        hessian="ggn",
        marglik=True,
        draws=50,
        restarts=1,
        random_seed=1,
    )
    options = json.loads(idata.attrs["bnncat_fit"])
    sd = options["tuned_noise_sd"]
    assert abs(sd / 0.1 - 1) < 0.15
    net = read_net(idata)[0]
    assert (
        net.noise_sd == sd and list(net.layer_prior_scales) == options["tuned_layer_prior_scales"]
    )
    rounds = idata["laplace_evidence"]
    assert rounds.sizes["round"] == options["tuning_rounds"] >= 2
    assert float(rounds["log_evidence"][-1]) >= float(rounds["log_evidence"][0])
    np.testing.assert_allclose(idata["posterior"]["sigma"], sd)  # fixed in the tuned model
