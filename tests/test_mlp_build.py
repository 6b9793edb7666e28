"""Structure tier: building the MLP, its log joint and forward pass, input checks (no sampling)."""

import numpy as np
import pandas as pd
import pytensor
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy import special, stats

from bnncat.models import MLP, mlp_forward
from bnncat.models.activations import ACTIVATIONS

RNG = np.random.default_rng(42)


def _data(likelihood, n=15, p=2, outputs=1):
    X = RNG.normal(size=(n, p))
    if likelihood in ("normal", "studentt"):
        y = RNG.normal(size=(n, outputs)) * 3 + 5
        return X, (y[:, 0] if outputs == 1 else y)
    if likelihood == "bernoulli":
        return X, RNG.integers(0, 2, size=n)
    return X, np.arange(n) % 3


@pytest.mark.parametrize(
    "hidden, likelihood, prior",
    [
        ((3,), "normal", "lecun"),
        ((4, 5), "studentt", "hierarchical"),
        ((2, 3, 2), "bernoulli", "fixed"),
        ((5,), "categorical", "lecun"),
    ],
)
def test_variable_names_and_dims(hidden, likelihood, prior):
    X, y = _data(likelihood, p=3)
    model = MLP(hidden, likelihood=likelihood, prior=prior).build(X, y)
    dims = model.named_vars_to_dims
    prev = "feature"
    for i, h in enumerate(hidden, 1):
        assert dims[f"W{i}"] == (prev, f"hidden{i}")
        assert dims[f"b{i}"] == (f"hidden{i}",)
        assert len(model.coords[f"hidden{i}"]) == h
        prev = f"hidden{i}"
    assert dims["W_out"] == (prev, "output")
    assert dims["b_out"] == ("output",)
    assert dims["X"] == ("obs", "feature")
    assert dims["mu"] == ("obs", "output")
    n_out = {"normal": 1, "studentt": 1, "bernoulli": 1, "categorical": 3}[likelihood]
    assert len(model.coords["output"]) == n_out
    free = {v.name for v in model.free_RVs}
    weights = {f"W{i}" for i in range(1, len(hidden) + 1)} | {"W_out"}
    expected = weights | {f"b{i}" for i in range(1, len(hidden) + 1)} | {"b_out"}
    if likelihood in ("normal", "studentt"):
        expected.add("sigma")
    if likelihood == "studentt":
        expected.add("nu")
    if prior == "hierarchical":
        expected |= {f"{w}_sd" for w in weights}
    assert free == expected


def test_multi_output_regression_has_an_output_per_column():
    X, y = _data("normal", outputs=3)
    model = MLP((4,)).build(X, pd.DataFrame(y, columns=["a", "b", "c"]))
    assert list(model.coords["output"]) == ["a", "b", "c"]
    assert model.named_vars_to_dims["sigma"] == ("output",)


def test_feature_names_come_from_a_dataframe():
    X, y = _data("normal", p=2)
    model = MLP((2,)).build(pd.DataFrame(X, columns=["age", "dose"]), pd.Series(y, name="resp"))
    assert list(model.coords["feature"]) == ["age", "dose"]
    assert list(model.coords["output"]) == ["resp"]


def _reference_forward(params, X, activation, spec):
    """Independent of the package: explicit loop over layers."""
    f = ACTIVATIONS[activation].numpy
    h = (X - np.array(spec.x_loc)) / np.array(spec.x_scale)
    n_hidden = len([k for k in params if k.startswith("W") and k[1:].isdigit()])
    for i in range(1, n_hidden + 1):
        h = f(h.dot(params[f"W{i}"]) + params[f"b{i}"])
    out = h.dot(params["W_out"]) + params["b_out"]
    return np.array(spec.y_loc) + np.array(spec.y_scale) * out


def _random_point(model):
    point = {}
    for rv in model.free_RVs:
        shape = tuple(model.eval_rv_shapes()[rv.name])
        point[rv.name] = RNG.normal(size=shape) * 0.7
        if rv.name == "sigma" or rv.name.endswith("_sd"):
            point[rv.name] = np.abs(point[rv.name]) + 0.3
        if rv.name == "nu":
            point[rv.name] = np.array(4.5)
    return point


@pytest.mark.parametrize(
    "likelihood, prior, hidden, activation",
    [
        ("normal", "lecun", (4,), "tanh"),
        ("normal", "fixed", (3, 2), "relu"),
        ("studentt", "hierarchical", (3,), "gelu"),
        ("bernoulli", "lecun", (3,), "sigmoid"),
        ("categorical", "fixed", (2, 2), "softplus"),
    ],
)
def test_logp_matches_independent_scipy_log_joint(likelihood, prior, hidden, activation):
    X, y = _data(likelihood)
    net = MLP(
        hidden,
        likelihood=likelihood,
        prior=prior,
        activation=activation,
        prior_scale=1.3,
        bias_scale=0.8,
    )
    X_arr, y_arr, spec = net.data_spec(X, y)
    model = net.build_validated(X_arr, y_arr, spec)
    point = _random_point(model)

    expected = 0.0
    fan_in = X.shape[1]
    layer_names = [f"W{i}" for i in range(1, len(hidden) + 1)] + ["W_out"]
    for w_name, b_name, fan in zip(
        layer_names,
        [f"b{i}" for i in range(1, len(hidden) + 1)] + ["b_out"],
        [fan_in, *hidden],
        strict=True,
    ):
        scale = 1.3 if prior == "fixed" else 1.3 / np.sqrt(fan)
        if prior == "hierarchical":
            sd = point[f"{w_name}_sd"]
            expected += stats.halfnorm(scale=scale).logpdf(sd) + np.log(sd)  # log-Jacobian
            scale = sd
        expected += stats.norm(0, scale).logpdf(point[w_name]).sum()
        expected += stats.norm(0, 0.8).logpdf(point[b_name]).sum()
    mu = _reference_forward(point, X_arr, activation, spec)
    if likelihood in ("normal", "studentt"):
        sigma = point["sigma"]
        expected += (
            stats.halfnorm(scale=np.array(spec.y_scale)).logpdf(sigma) + np.log(sigma)
        ).sum()
        if likelihood == "normal":
            expected += stats.norm(mu, sigma).logpdf(y_arr).sum()
        else:
            nu = point["nu"]
            expected += stats.gamma(2.0, scale=10.0).logpdf(nu) + np.log(nu)
            expected += stats.t(nu, mu, sigma).logpdf(y_arr).sum()
    elif likelihood == "bernoulli":
        expected += stats.bernoulli(special.expit(mu[:, 0])).logpmf(y_arr).sum()
    else:
        logp = mu - special.logsumexp(mu, axis=1, keepdims=True)
        expected += logp[np.arange(len(y_arr)), y_arr].sum()

    value_point = {}
    for rv in model.free_RVs:
        value = model.rvs_to_values[rv]
        v = point[rv.name]
        value_point[value.name] = np.log(v) if value.name.endswith("_log__") else v
    got = model.compile_logp()(value_point)
    np.testing.assert_allclose(got, expected, rtol=0, atol=1e-6)


@settings(max_examples=25, deadline=None)
@given(
    hidden=st.lists(st.integers(1, 5), min_size=1, max_size=3),
    activation=st.sampled_from(sorted(ACTIVATIONS)),
    n_features=st.integers(1, 3),
    seed=st.integers(0, 2**16),
)
def test_numpy_forward_equals_pymc_mu(hidden, activation, n_features, seed):
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(7, n_features)) * 2 + 1
    y = rng.normal(size=7)
    net = MLP(tuple(hidden), activation=activation)
    X_arr, y_arr, spec = net.data_spec(X, y)
    model = net.build_validated(X_arr, y_arr, spec)
    names = [v.name for v in model.free_RVs if v.name != "sigma"]
    mu_fn = pytensor.function([model[n] for n in names], model["mu"])
    # a batch of 3 draws through the numpy helper at once, one by one through PyMC
    shapes = model.eval_rv_shapes()
    draws = {n: rng.normal(size=(3, *shapes[n])) for n in names}
    batch = mlp_forward(draws, X_arr, activation=activation, spec=spec)
    assert batch.shape == (3, 7, 1)
    for d in range(3):
        np.testing.assert_allclose(
            batch[d], mu_fn(*[draws[n][d] for n in names]), rtol=1e-10, atol=1e-10
        )


@pytest.mark.parametrize("name", sorted(ACTIVATIONS))
def test_activation_forms_agree(name):
    z = np.linspace(-4, 4, 41)
    act = ACTIVATIONS[name]
    np.testing.assert_allclose(
        act.numpy(z), act.tensor(pytensor.tensor.as_tensor(z)).eval(), atol=1e-12
    )
    if act.odd:
        np.testing.assert_allclose(act.numpy(-z), -act.numpy(z), atol=1e-12)
    else:
        assert not np.allclose(act.numpy(-z), -act.numpy(z))


def test_standardisation_is_undone_in_mu():
    X = np.linspace(100, 200, 30)[:, None]
    y = 1000 + 50 * np.sin(X[:, 0] / 20)
    net = MLP((3,))
    X_arr, y_arr, spec = net.data_spec(X, y)
    assert spec.x_loc[0] == pytest.approx(150) and spec.y_scale[0] == pytest.approx(y.std())
    params = {
        "W1": np.zeros((1, 3)),
        "b1": np.zeros(3),
        "W_out": np.zeros((3, 1)),
        "b_out": np.ones(1),
    }
    mu = mlp_forward(params, X_arr, activation="tanh", spec=spec)
    np.testing.assert_allclose(mu, y.mean() + y.std())  # f = 1 in standard units
    raw = MLP((3,), standardize=False).data_spec(X, y)[2]
    assert raw.x_loc == (0.0,) and raw.y_scale == (1.0,)


# -- bad input ---------------------------------------------------------------------------

GOOD_X = np.zeros((5, 2))
GOOD_Y = np.arange(5.0)


@pytest.mark.parametrize(
    "X, y, exc, match",
    [
        (np.array([[1.0, np.nan]] * 5), GOOD_Y, ValueError, "X contains NaN or infinite"),
        (np.array([[1.0, np.inf]] * 5), GOOD_Y, ValueError, "X contains NaN or infinite"),
        (GOOD_X, np.array([1, 2, np.nan, 4, 5.0]), ValueError, "y contains NaN or infinite"),
        (GOOD_X, np.array([1, 2, -np.inf, 4, 5.0]), ValueError, "y contains NaN or infinite"),
        (np.zeros(5), GOOD_Y, ValueError, "X must be 2-D"),
        (np.zeros((2, 2, 2)), GOOD_Y, ValueError, "X must be 2-D"),
        (GOOD_X, np.arange(4.0), ValueError, "y has 4 rows but X has 5"),
        (np.zeros((0, 2)), np.zeros(0), ValueError, "X is empty"),
        (np.zeros((5, 0)), GOOD_Y, ValueError, "X has no columns"),
        (np.array([["a", "b"]] * 5), GOOD_Y, TypeError, "X must be numeric"),
        (GOOD_X, np.array(list("abcde")), TypeError, "y must be numeric"),
        (GOOD_X, np.zeros((5, 2, 2)), ValueError, "y must be 1-D or 2-D"),
    ],
)
def test_bad_regression_input(X, y, exc, match):
    with pytest.raises(exc, match=match):
        MLP((3,)).build(X, y)


@pytest.mark.parametrize(
    "likelihood, y, n_classes, match",
    [
        ("bernoulli", [0, 1, 2, 1, 0], None, r"y has class labels outside 0\.\.1: \[2\]"),
        ("bernoulli", [0, 1, -1, 1, 0], None, r"outside 0\.\.1: \[-1\]"),
        ("categorical", [0, 1, 3, 1, 0], 3, r"outside 0\.\.2: \[3\]"),
        ("categorical", [0, -2, 1, 1, 0], None, r"outside 0, 1, 2"),
        ("categorical", [0.5, 1, 1, 1, 0], None, "integer class labels"),
        ("categorical", [0, 0, 0, 0, 0], None, "single class"),
        ("bernoulli", [0, 1, np.nan, 1, 0], None, "NaN or infinite class labels"),
        ("categorical", [[0, 1]] * 5, None, "1-D array of class labels"),
    ],
)
def test_bad_class_labels(likelihood, y, n_classes, match):
    with pytest.raises(ValueError, match=match):
        MLP((3,), likelihood=likelihood, n_classes=n_classes).build(GOOD_X, np.array(y))


@pytest.mark.parametrize(
    "kwargs, exc, match",
    [
        ({"hidden": (0,)}, ValueError, r"hidden\[0\] must be >= 1"),
        ({"hidden": (4, -1)}, ValueError, r"hidden\[1\] must be >= 1"),
        ({"hidden": ()}, ValueError, "at least one hidden layer"),
        ({"hidden": (2.5,)}, TypeError, r"hidden\[0\] must be an integer"),
        ({"hidden": "8"}, TypeError, "hidden must be a sequence"),
        ({"activation": "tanhh"}, ValueError, "activation='tanhh' is not known.*'tanh'"),
        ({"likelihood": "poisson"}, ValueError, "likelihood='poisson' is not known"),
        ({"prior": "xavier"}, ValueError, "prior='xavier' is not known"),
        ({"prior_scale": -1.0}, ValueError, "prior_scale must be finite and > 0"),
        ({"bias_scale": float("nan")}, ValueError, "bias_scale must be finite and > 0"),
        ({"standardize": "yes"}, TypeError, "standardize must be True or False"),
        ({"n_classes": 3}, ValueError, "n_classes is only used with likelihood='categorical'"),
        ({"likelihood": "categorical", "n_classes": 1}, ValueError, "n_classes must be >= 2"),
    ],
)
def test_bad_options(kwargs, exc, match):
    with pytest.raises(exc, match=match):
        MLP(**kwargs)


def test_an_int_hidden_means_one_layer():
    assert MLP(6).hidden == (6,)
