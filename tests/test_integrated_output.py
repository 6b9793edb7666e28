"""The output layer integrated out: the marginal likelihood, the conditional draws, the fit."""

import numpy as np
import pytest
from scipy import stats

from bnncat import data, diagnose
from bnncat.models import MLP, MixtureRegressor, OrderedMLP, fit, load, predict, save
from bnncat.models.integrated_output import (
    MARGINAL,
    _conditional_draws,
    _marginal_value,
    marginal_log_likelihood,
)
from bnncat.models.mlp import hidden_activations

QUICK = {"draws": 100, "tune": 100, "chains": 2, "random_seed": 4, "progressbar": False}


@pytest.fixture(scope="module")
def sine():
    return data.load("sine", n=40, noise=0.1, seed=2)


def _dense_log_likelihood(net, X, y, spec, point, w_sd):
    """log N(y; mu_0, Sigma) with Sigma = sigma^2 I + H S H^T built in full, in y's units."""
    h = hidden_activations(point, X, activation=net.activation, spec=spec)[-1]
    total = 0.0
    for k in range(y.shape[1]):
        scale, sigma = spec.y_scale[k], point["sigma"][k]
        cov = sigma**2 * np.eye(len(y)) + scale**2 * (w_sd**2 * h @ h.T + net.bias_scale**2)
        total += stats.multivariate_normal(np.full(len(y), spec.y_loc[k]), cov).logpdf(y[:, k])
    return total


@pytest.mark.parametrize(
    "net",
    [
        MLP((3,), output_layer="integrated"),
        MLP((4, 3), prior="fixed", prior_scale=1.5, output_layer="integrated"),
        MLP((3,), noise_sd=0.3, output_layer="integrated"),
    ],
    ids=["one_layer", "two_layers_fixed_prior", "fixed_noise"],
)
def test_marginal_likelihood_equals_the_dense_gaussian(net):
    rng = np.random.default_rng(0)
    X, Y = rng.normal(size=(30, 2)), rng.normal(size=(30, 2)) * [1.0, 5.0] + [0.0, 3.0]
    X, Y, spec = net.data_spec(X, Y)
    model = net.build_validated(X, Y, spec, integrate_output=True)
    assert {v.name for v in model.free_RVs}.isdisjoint({"W_out", "b_out"})
    point = {k: rng.normal(size=np.shape(v)) * 0.7 for k, v in model.initial_point().items()}
    logp = model.compile_logp(vars=[model[MARGINAL]])(point)
    values = {k: v for k, v in point.items() if not k.endswith("_log__")}
    values["sigma"] = np.exp(point["sigma_log__"]) if "sigma_log__" in point else [0.3, 0.3]
    w_sd = net.prior_scale / np.sqrt(net.hidden[-1]) if net.prior == "lecun" else net.prior_scale
    np.testing.assert_allclose(logp, _dense_log_likelihood(net, X, Y, spec, values, w_sd))


@pytest.fixture(scope="module")
def woodbury_case():
    import pytensor.tensor as pt

    rng = np.random.default_rng(3)
    inputs = [pt.matrix("P"), pt.matrix("y"), pt.vector("s")]
    values = [rng.normal(size=(25, 6)), rng.normal(size=(25, 2)) * [1.0, 3.0], np.array([0.4, 1.7])]
    return inputs, values


def _value_and_gradients(value, inputs, mode=None):
    import pytensor

    return pytensor.function(inputs, [value, *pytensor.grad(value, inputs)], mode=mode)


def test_the_closed_form_gradient_is_autodiff_through_the_cholesky_factor(woodbury_case):
    inputs, values = woodbury_case
    ours = _value_and_gradients(marginal_log_likelihood(*inputs), inputs)(*values)
    autodiff = _value_and_gradients(_marginal_value(*inputs), inputs)(*values)
    for a, b in zip(ours, autodiff, strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-8, atol=1e-10)


def test_jax_differentiates_the_marginal_likelihood_by_the_closed_form(woodbury_case):
    import jax
    from pymc.sampling.jax import get_jaxified_graph

    from bnncat.models.jax_runtime import jax_precision

    inputs, values = woodbury_case
    reference = _value_and_gradients(_marginal_value(*inputs), inputs)(*values)
    value = get_jaxified_graph(inputs, [marginal_log_likelihood(*inputs)])
    with jax_precision("float64"):
        ours = jax.value_and_grad(lambda *a: value(*a)[0], argnums=(0, 1, 2))(*values)
    np.testing.assert_allclose(ours[0], reference[0], rtol=1e-10)
    for a, b in zip(ours[1], reference[1:], strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-7, atol=1e-9)


def test_conditional_draws_have_the_bayesian_linear_regression_posterior():
    rng = np.random.default_rng(1)
    P, y, s = rng.normal(size=(25, 4)), rng.normal(size=(25, 1)), np.array([0.7])
    reps = 40_000
    v = _conditional_draws(np.broadcast_to(P, (1, reps, 25, 4)), y, np.tile(s, (1, reps, 1)), rng)
    cov = np.linalg.inv(np.eye(4) + P.T @ P / s[0] ** 2)  # prior N(0, I) in whitened units
    mean = cov @ P.T @ y[:, 0] / s[0] ** 2
    draws = v[0, :, :, 0]
    se = np.sqrt(np.diag(cov) / reps)
    assert (np.abs(draws.mean(axis=0) - mean) < 4 * se).all()
    np.testing.assert_allclose(np.cov(draws.T), cov, atol=0.02 * np.abs(cov).max())


def test_integrated_fit_predicts_saves_and_diagnoses_like_a_plain_one(sine, tmp_path):
    net = MLP((3,), output_layer="integrated")
    idata = fit(net, sine.X, sine.y, **QUICK)
    post = idata["posterior"]
    assert post["W_out"].dims == ("chain", "draw", "hidden1", "output")
    assert post["W_out"].shape == (2, 100, 3, 1) and post["b_out"].shape == (2, 100, 1)
    assert float(post["W_out"].std("draw").min()) > 0
    np.testing.assert_array_equal(idata["observed_data"]["y"].values[:, 0], sine.y)
    again = fit(net, sine.X, sine.y, **QUICK)
    np.testing.assert_array_equal(again["posterior"]["W_out"], post["W_out"])
    loaded = load(save(idata, tmp_path / "fit.nc"))
    assert loaded.attrs["bnncat_config"] == idata.attrs["bnncat_config"]
    mu = predict(loaded, sine.X[:5])["predictions"]["mu"]
    assert mu.shape == (2, 100, 5, 1) and np.isfinite(mu).all()
    report = diagnose(idata, random_seed=1)
    assert report.verdict.status in "abcd" and "relabelled weights" in report.convergence.index


def test_ordered_nets_integrate_their_output_layer(sine):
    idata = fit(OrderedMLP((3,), output_layer="integrated"), sine.X, sine.y, **QUICK)
    assert (np.diff(idata["posterior"]["b1"].values, axis=-1) > 0).all()
    assert "W_out" in idata["posterior"]


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda: MLP((3,), output_layer="marginal"), "output_layer"),
        (lambda: MLP((3,), likelihood="studentt", output_layer="integrated"), "Gaussian"),
        (lambda: MixtureRegressor((3,), output_layer="integrated"), "Gaussian"),
    ],
)
def test_integrated_output_refuses_non_gaussian_heads(make, message):
    with pytest.raises(ValueError, match=message):
        make()


@pytest.mark.parametrize(
    "options",
    [{"method": "advi"}, {"method": "chees"}, {"temperature": 0.5}, {"store_mu": True}],
    ids=["advi", "chees", "tempered", "store_mu"],
)
def test_integrated_output_refuses_what_it_cannot_fit(sine, options):
    with pytest.raises(ValueError, match="output_layer='integrated'"):
        fit(MLP((3,), output_layer="integrated"), sine.X, sine.y, **options)


@pytest.mark.slow
def test_integrated_and_plain_models_predict_the_same_distribution(sine):
    """Long runs of both models: predictive mean and sd at probe inputs agree."""
    long = {"draws": 1000, "tune": 1000, "chains": 4, "progressbar": False}
    probes = np.linspace(-3, 3, 9)[:, None]
    preds = {}
    for layer in ("sampled", "integrated"):
        idata = fit(MLP((3,), output_layer=layer), sine.X, sine.y, random_seed=7, **long)
        preds[layer] = predict(idata, probes, random_seed=1)["predictions"]["y"].values
        preds[layer] = preds[layer].reshape(-1, 9)
    plain, integrated = preds["sampled"], preds["integrated"]
    sd = plain.std(axis=0)
    assert np.abs(integrated.mean(axis=0) - plain.mean(axis=0)).max() < 0.1 * sd.max()
    np.testing.assert_allclose(integrated.std(axis=0), sd, rtol=0.1)
    for j in range(9):  # the whole predictive distribution at each probe
        assert stats.ks_2samp(plain[::4, j], integrated[::4, j]).pvalue > 0.001
