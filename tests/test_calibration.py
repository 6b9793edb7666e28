"""Posterior predictive groups and the calibration table, against independent computations.

Most checks use hand-made DataTrees (known predictive distributions, no
sampling); one tiny NUTS fit runs end to end, and a slow test checks interval
coverage of a well-specified model on fresh held-out data.
"""

import math
import warnings

import arviz as az
import numpy as np
import pymc as pm
import pytest
import xarray as xr
from scipy import optimize, special, stats

from bnncat.evaluation import calibration
from bnncat.evaluation.calibration import (
    HELD_OUT,
    IN_SAMPLE,
    LOO,
    add_predictive_groups,
    calibration_table,
    pit_values,
    select_output,
)
from bnncat.models import MLP, MixtureRegressor, OrderedMLP
from bnncat.models.attrs import write_attrs
from bnncat.models.prediction import net_and_spec

COLUMNS = ["metric", "data", "value", "se", "nominal", "note"]


# -- hand-made trees -------------------------------------------------------------------------


def hand_tree(net, X, y, params):
    """A DataTree that looks like a fit of ``net`` with the given draws (chain, draw, ...)."""
    X_arr, y_arr, spec = net.data_spec(X, y)
    post = xr.Dataset(
        {
            k: (("chain", "draw", *(f"{k}_dim_{i}" for i in range(v.ndim - 2))), v)
            for k, v in params.items()
        }
    )
    obs = np.arange(X_arr.shape[0])
    if net.lik.task == "regression":
        y_da = xr.DataArray(
            y_arr, dims=("obs", "output"), coords={"obs": obs, "output": list(spec.output_names)}
        )
    else:
        y_da = xr.DataArray(y_arr, dims=("obs",), coords={"obs": obs})
    tree = xr.DataTree.from_dict(
        {
            "posterior": post,
            "observed_data": xr.Dataset({"y": y_da}),
            "constant_data": xr.Dataset(
                {"X": xr.DataArray(X_arr, dims=("obs", "feature"), coords={"obs": obs})}
            ),
        }
    )
    write_attrs(tree, net, spec, {"method": "nuts", "random_seed": 0})
    return tree


def linear_draws(rng, chains=2, draws=300, n_out=1):
    """Identity 1-unit net with standardize=False: draw s predicts a_s x + c_s (per output)."""
    a = rng.normal(1.0, 0.15, size=(chains, draws, 1, n_out))
    c = rng.normal(0.0, 0.15, size=(chains, draws, n_out))
    return {
        "W1": np.ones((chains, draws, 1, 1)),
        "b1": np.zeros((chains, draws, 1)),
        "W_out": a,
        "b_out": c,
    }


@pytest.fixture(scope="module")
def regression_case():
    rng = np.random.default_rng(7)
    net = MLP((1,), activation="identity", standardize=False)
    X = rng.uniform(-2, 2, size=(25, 1))
    y = X[:, 0] + 0.7 * rng.normal(size=25)
    X_test = rng.uniform(-2, 2, size=(30, 1))
    y_test = X_test[:, 0] + 0.7 * rng.normal(size=30)
    params = linear_draws(rng)
    params["sigma"] = rng.uniform(0.5, 0.9, size=(2, 300, 1))
    tree = hand_tree(net, X, y, params)

    # the predictive distribution per draw, written out independently of the package
    def means(x):
        return params["W_out"][..., 0, 0].reshape(-1, 1) * x + params["b_out"].reshape(-1, 1)

    sds = params["sigma"][..., 0].ravel()[:, None]
    return tree, X, y, X_test, y_test, means, sds


def mixture_cdf(z, m, s):
    return stats.norm.cdf((z - m) / s).mean()


def central_interval(level, m, s):
    """Endpoints of the central interval of an equal-weight mixture of normals, by root finding."""
    lo, hi = m.min() - 10 * s.max(), m.max() + 10 * s.max()
    return [
        optimize.brentq(lambda z, p=p: mixture_cdf(z, m, s) - p, lo, hi, xtol=1e-12)
        for p in ((1 - level) / 2, (1 + level) / 2)
    ]


def crps_by_integral(draws, y):
    """Integral of (F_S(z) - 1[z >= y])^2 for the empirical CDF F_S (exact: piecewise constant)."""
    points = np.sort(np.append(draws, y))
    x = np.sort(draws)
    total = 0.0
    for left, right in zip(points[:-1], points[1:], strict=True):
        F = np.searchsorted(x, left, side="right") / x.size
        total += (right - left) * (F - (left >= y)) ** 2
    return total


def row(table, metric, data):
    hit = table[(table.metric == metric) & (table.data == data)]
    assert len(hit) == 1, (metric, data, table[["metric", "data"]])
    return hit.iloc[0]


# -- log-likelihood against PyMC ---------------------------------------------------------------


def prior_tree(net, X, y, *, chains=2, draws=25, seed=3):
    """A tree whose 'posterior' is prior draws: enough to compare likelihood formulas."""
    X_arr, y_arr, spec = net.data_spec(X, y)
    model = net.build_validated(X_arr, y_arr, spec)
    names = [v.name for v in model.free_RVs + model.deterministics if v.name != "mu"]
    prior = pm.sample_prior_predictive(
        draws=chains * draws, model=model, var_names=names, random_seed=seed
    )["prior"]
    params = {
        k: prior[k].values.reshape(chains, draws, *prior[k].shape[2:]) for k in prior.data_vars
    }
    return hand_tree(net, X, y, params), model


def _data(kind, rng, n=12):
    X = rng.uniform(-2, 2, size=(n, 2))
    if kind == "bernoulli":
        return X, (X[:, 0] > 0).astype(int)
    if kind == "categorical":
        return X, np.arange(n) % 3
    if kind == "two_outputs":
        return X, np.c_[X[:, 0], X[:, 1] ** 2]
    return X, np.sin(X[:, 0]) + 0.1 * rng.normal(size=n)


@pytest.mark.parametrize(
    ("net", "kind"),
    [
        (MLP((3,)), "normal"),
        (MLP((3,)), "two_outputs"),
        (MLP((2,), likelihood="studentt"), "normal"),
        (MLP((3,), likelihood="bernoulli"), "bernoulli"),
        (MLP((3,), likelihood="categorical"), "categorical"),
        (OrderedMLP((3,)), "normal"),
        (MixtureRegressor((3,), n_components=2), "normal"),
        (MixtureRegressor((3,), n_components=2, form="mdn"), "two_outputs"),
    ],
    ids=["normal", "two_outputs", "studentt", "bernoulli", "categorical", "ordered", "mix", "mdn"],
)
def test_log_likelihood_equals_pymc(net, kind):
    X, y = _data(kind, np.random.default_rng(1))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # few rows per mixture component
        tree, model = prior_tree(net, X, y)
    ours = add_predictive_groups(tree)["log_likelihood"]["y"]
    # pm.compute_log_likelihood refuses models with initvals (ordered transforms); the
    # likelihood does not depend on them
    for rv in model.rvs_to_initial_values:
        model.rvs_to_initial_values[rv] = None
    theirs = pm.compute_log_likelihood(
        tree, model=model, extend_inferencedata=False, progressbar=False
    )["y"]
    if "output" in theirs.dims:
        theirs = theirs.sum("output")
    assert ours.dims == ("chain", "draw", "obs")
    np.testing.assert_allclose(ours.values, theirs.values, rtol=1e-8)


# -- the groups ------------------------------------------------------------------------------


@pytest.mark.filterwarnings("ignore:Estimated shape parameter of Pareto")
def test_groups_layout_single_output_works_with_arviz(regression_case):
    tree = regression_case[0]
    out = add_predictive_groups(tree, random_seed=1)
    assert out["observed_data"]["y"].dims == ("obs",)
    assert out["observed_data"]["y"].coords["output"].item() == "y"
    assert out["posterior_predictive"]["y"].dims == ("chain", "draw", "obs")
    assert out["log_likelihood"]["y"].shape == (2, 300, 25)
    # the input is left alone
    assert tree["observed_data"]["y"].dims == ("obs", "output")
    assert "log_likelihood" not in tree.children
    np.testing.assert_array_equal(
        out["observed_data"]["y"].values, tree["observed_data"]["y"].values[:, 0]
    )
    # ArviZ's functions take the tree as it is
    assert np.isfinite(az.loo(out).elpd)
    assert az.loo_pit(out)["y"].shape == (25,)
    assert math.isfinite(az.loo_score(out).mean)
    assert math.isfinite(az.loo_metrics(out, round_to="none").mean)
    # a second call recomputes (same seed, same draws) rather than trusting the groups
    again = add_predictive_groups(out, random_seed=1)
    xr.testing.assert_equal(
        again["posterior_predictive"].to_dataset(), out["posterior_predictive"].to_dataset()
    )
    other = add_predictive_groups(out, random_seed=2)["posterior_predictive"]["y"]
    assert not np.allclose(other.values, out["posterior_predictive"]["y"].values)


def test_groups_layout_multi_output_and_classification():
    rng = np.random.default_rng(2)
    X, Y = _data("two_outputs", rng)
    params = linear_draws(rng, draws=40, n_out=2)
    params["sigma"] = np.full((2, 40, 2), 0.5)
    out = add_predictive_groups(hand_tree(MLP((1,), standardize=False), X[:, :1], Y, params))
    assert out["observed_data"]["y"].dims == ("obs", "output")
    assert out["posterior_predictive"]["y"].dims == ("chain", "draw", "obs", "output")
    assert out["log_likelihood"]["y"].dims == ("chain", "draw", "obs")
    one = select_output(out, "y1")
    assert one["posterior_predictive"]["y"].dims == ("chain", "draw", "obs")
    np.testing.assert_array_equal(one["observed_data"]["y"].values, Y[:, 1])
    assert az.loo_pit(one)["y"].shape == (12,)
    xr.testing.assert_equal(one["log_likelihood"].to_dataset(), out["log_likelihood"].to_dataset())
    with pytest.raises(ValueError, match="not one of"):
        select_output(out, "nope")

    Xc, yc = _data("categorical", rng)
    tree, _ = prior_tree(MLP((2,), likelihood="categorical"), Xc, yc)
    out = add_predictive_groups(tree)
    assert out["posterior_predictive"]["y"].dims == ("chain", "draw", "obs")
    assert out["posterior_predictive"]["y"].dtype.kind == "i"
    assert set(np.unique(out["posterior_predictive"]["y"].values)) <= {0, 1, 2}


@pytest.mark.parametrize(
    "net",
    [
        MLP((2,), likelihood="studentt"),
        MixtureRegressor((2,), n_components=3, form="mdn"),
        MLP((2,), likelihood="categorical"),
    ],
    ids=["studentt", "mdn", "categorical"],
)
def test_posterior_predictive_is_exact_in_distribution(net):
    rng = np.random.default_rng(4)
    kind = "categorical" if net.likelihood == "categorical" else "normal"
    X, y = _data(kind, rng, n=6)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        tree, _ = prior_tree(net, X, y, chains=2, draws=1500, seed=5)
    draws = add_predictive_groups(tree, random_seed=3)["posterior_predictive"]["y"].values
    post = tree["posterior"]
    params = {k: post[k].values for k in post.data_vars}
    _, spec = net_and_spec(tree, None)
    if kind == "categorical":
        logits = net.forward(params, X, spec)  # (chain, draw, n, K)
        p = special.softmax(logits, axis=-1).reshape(-1, 6, 3)
        # each draw's label, one-hot, minus its probability has mean 0 and known variance
        onehot = np.eye(3)[draws.reshape(-1, 6)]
        z = (onehot - p).sum(axis=0) / np.sqrt((p * (1 - p)).sum(axis=0))
        assert np.abs(z).max() < 4.5
        return
    # each draw's own CDF at its predictive draw is Uniform(0, 1)
    obs = net.observation_parameters(params, X, spec)
    if "w" in obs:  # a mixture's components
        w, mean, scale, df = obs["w"], obs["mu"], obs["sigma"], None
    else:  # an MLP's: one component
        mean = obs["mu"][..., None]
        w, scale = np.ones(mean.shape), np.broadcast_to(obs["sigma"][..., None], mean.shape)
        df = obs["nu"][..., None] if "nu" in obs else None
    yy = draws[..., None, None]
    cdf = (
        stats.norm.cdf((yy - mean) / scale) if df is None else stats.t.cdf((yy - mean) / scale, df)
    )
    u = (w * cdf).sum(axis=-1)[..., 0]
    assert stats.kstest(u.ravel(), "uniform").pvalue > 1e-3


# -- the table against direct computations -----------------------------------------------------


def test_regression_metrics_match_direct_computation(regression_case):
    tree, X, y, X_test, y_test, means, sds = regression_case
    levels = (0.5, 0.8)
    held = calibration_table(tree, X_test=X_test, y_test=y_test, levels=levels)
    train = calibration_table(tree, levels=levels)
    assert list(held.columns) == COLUMNS and list(train.columns) == COLUMNS
    assert set(held.data) == {HELD_OUT, LOO} and set(train.data) == {IN_SAMPLE, LOO}

    for table, data, Xd, yd in ((held, HELD_OUT, X_test, y_test), (train, IN_SAMPLE, X, y)):
        m, s = means(Xd[:, 0]), sds
        n = yd.size
        for level in levels:
            inside = 0
            for i in range(n):
                lo, hi = central_interval(level, m[:, i], s[:, 0])
                inside += lo <= yd[i] <= hi
            r = row(table, f"coverage {100 * level:g}%", data)
            assert r.value == pytest.approx(inside / n, abs=1e-12)
            assert r.nominal == level
            assert r.se == pytest.approx(math.sqrt(level * (1 - level) / n))
        lpd = np.array(
            [math.log(np.mean(stats.norm.pdf(yd[i], m[:, i], s[:, 0]))) for i in range(n)]
        )
        r = row(table, "log predictive density", data)
        assert r.value == pytest.approx(lpd.sum(), rel=1e-10)
        assert r.se == pytest.approx(math.sqrt(n) * lpd.std(ddof=1), rel=1e-10)
        r = row(table, "log predictive density per row", data)
        assert r.value == pytest.approx(lpd.mean(), rel=1e-10)
        rmse = math.sqrt(np.mean((yd - m.mean(axis=0)) ** 2))
        assert row(table, "RMSE", data).value == pytest.approx(rmse, rel=1e-10)

    # held-out PIT distance: the exact predictive CDF at y_test
    m = means(X_test[:, 0])
    pit = np.array([mixture_cdf(y_test[i], m[:, i], sds[:, 0]) for i in range(y_test.size)])
    ks = stats.kstest(pit, "uniform").statistic
    assert row(held, "PIT KS distance", HELD_OUT).value == pytest.approx(ks, rel=1e-10)
    np.testing.assert_allclose(
        pit_values(tree, X_test=X_test, y_test=y_test)["heldout_pit"].values[:, 0], pit, rtol=1e-10
    )

    # CRPS in-sample: the predictive draws of add_predictive_groups with the same seed,
    # scored by the integral of the squared CDF difference
    draws = add_predictive_groups(tree, random_seed=0)["posterior_predictive"]["y"].values
    draws = draws.reshape(-1, y.size)
    crps = np.array([crps_by_integral(draws[:, i], y[i]) for i in range(y.size)])
    r = row(train, "CRPS", IN_SAMPLE)
    assert r.value == pytest.approx(crps.mean(), rel=1e-9)
    assert r.se == pytest.approx(crps.std() / math.sqrt(y.size), rel=1e-9)

    # CRPS held-out: Monte Carlo estimate against the closed form for a normal mixture
    m = means(X_test[:, 0])
    s = sds[:, 0]

    def A(mu, var):
        sd = np.sqrt(var)
        return 2 * sd * stats.norm.pdf(mu / sd) + mu * (2 * stats.norm.cdf(mu / sd) - 1)

    exact = [
        A(y_test[i] - m[:, i], s**2).mean()
        - 0.5 * A(m[:, i][:, None] - m[:, i][None, :], s[:, None] ** 2 + s[None, :] ** 2).mean()
        for i in range(y_test.size)
    ]
    assert row(held, "CRPS", HELD_OUT).value == pytest.approx(np.mean(exact), rel=0.05)


@pytest.mark.filterwarnings("ignore:Estimated shape parameter of Pareto")
def test_loo_rows_are_arviz_numbers(regression_case):
    tree = regression_case[0]
    table = calibration_table(tree, random_seed=5)
    groups = add_predictive_groups(tree, random_seed=5)
    elpd = az.loo(groups)
    assert row(table, "log predictive density", LOO).value == pytest.approx(elpd.elpd)
    assert row(table, "log predictive density", LOO).se == pytest.approx(elpd.se)
    assert "Pareto k > 0.7" in row(table, "log predictive density", LOO).note
    pit = az.loo_pit(groups)["y"].values
    assert row(table, "coverage 90%", LOO).value == pytest.approx(
        np.mean((pit >= 0.05) & (pit <= 0.95))
    )
    crps = az.loo_score(groups, kind="crps")
    assert crps.mean < 0  # ArviZ's orientation: larger is better
    assert row(table, "CRPS", LOO).value == pytest.approx(-crps.mean)
    assert row(table, "CRPS", LOO).se == pytest.approx(crps.se)
    rmse = az.loo_metrics(groups, kind="rmse", round_to="none")
    assert row(table, "RMSE", LOO).value == pytest.approx(rmse.mean)


def class_probs_by_loops(logit_fn, params, X):
    """Posterior mean class probabilities, with explicit loops over draws and classes."""
    n_draws = params["W_out"].shape[0] * params["W_out"].shape[1]
    flat = {k: v.reshape(n_draws, *v.shape[2:]) for k, v in params.items()}
    out = []
    for i in range(X.shape[0]):
        acc = None
        for s in range(n_draws):
            z = logit_fn({k: v[s] for k, v in flat.items()}, X[i])
            e = [math.exp(v - max(z)) for v in z]
            p = np.array([v / sum(e) for v in e])
            acc = p if acc is None else acc + p
        out.append(acc / n_draws)
    return np.array(out)


def ece_by_loops(probs, y, n_bins=10):
    total = 0.0
    for b in range(n_bins):
        lo, hi = b / n_bins, (b + 1) / n_bins
        members = [
            i
            for i in range(len(y))
            if (lo < probs[i].max() <= hi) or (b == 0 and probs[i].max() == 0)
        ]
        if members:
            acc = np.mean([probs[i].argmax() == y[i] for i in members])
            conf = np.mean([probs[i].max() for i in members])
            total += len(members) / len(y) * abs(acc - conf)
    return total


@pytest.mark.parametrize("likelihood", ["bernoulli", "categorical"])
def test_classification_metrics_match_direct_computation(likelihood):
    rng = np.random.default_rng(11)
    K = 2 if likelihood == "bernoulli" else 3
    n_out = 1 if likelihood == "bernoulli" else K
    net = MLP((1,), activation="identity", likelihood=likelihood, standardize=False)
    X = rng.uniform(-2, 2, size=(40, 1))
    cut = [0.0] if K == 2 else [-0.6, 0.6]
    y = np.digitize(X[:, 0] + 0.6 * rng.normal(size=40), cut)
    X_test = rng.uniform(-2, 2, size=(50, 1))
    y_test = np.digitize(X_test[:, 0] + 0.6 * rng.normal(size=50), cut)
    params = {
        "W1": np.ones((2, 100, 1, 1)),
        "b1": np.zeros((2, 100, 1)),
        "W_out": rng.normal(
            [[-2.0, 0.0, 2.0][:n_out]] if K == 3 else [[2.0]], 0.3, (2, 100, 1, n_out)
        ),
        "b_out": rng.normal(0.0, 0.3, size=(2, 100, n_out)),
    }
    tree = hand_tree(net, X, y, params)

    def logits(p, x):
        z = [x[0] * p["W1"][0, 0] * p["W_out"][0, k] + p["b_out"][k] for k in range(n_out)]
        return [0.0, z[0]] if K == 2 else z  # binary: class 0 has logit 0

    for data, Xd, yd in ((HELD_OUT, X_test, y_test), (IN_SAMPLE, X, y)):
        kwargs = {"X_test": Xd, "y_test": yd} if data == HELD_OUT else {}
        table = calibration_table(tree, **kwargs)
        assert list(table.columns) == COLUMNS
        probs = class_probs_by_loops(logits, params, Xd)
        n = len(yd)
        acc = np.mean([probs[i].argmax() == yd[i] for i in range(n)])
        assert row(table, "accuracy", data).value == pytest.approx(acc, abs=1e-12)
        brier = [sum((probs[i][k] - (yd[i] == k)) ** 2 for k in range(K)) for i in range(n)]
        if K == 2:  # the usual binary score: one squared difference per row
            brier = [(probs[i][1] - yd[i]) ** 2 for i in range(n)]
        assert row(table, "Brier score", data).value == pytest.approx(np.mean(brier), rel=1e-10)
        assert row(table, "ECE", data).value == pytest.approx(ece_by_loops(probs, yd), abs=1e-12)
        lpd = sum(math.log(probs_i_yi) for probs_i_yi in probs[np.arange(n), yd])
        assert row(table, "log predictive density", data).value == pytest.approx(lpd, rel=1e-10)

    # LOO accuracy: plain importance sampling (no smoothing) agrees on these well-behaved draws
    loo = row(table, "accuracy", LOO)
    ll = add_predictive_groups(tree)["log_likelihood"]["y"].values.reshape(-1, len(y))
    w = np.exp(-ll - special.logsumexp(-ll, axis=0))
    flat = {k: v.reshape(200, *v.shape[2:]) for k, v in params.items()}
    p_loo = []
    for i in range(len(y)):
        p_i = np.zeros(K)
        for s in range(200):
            z = np.array(logits({k: v[s] for k, v in flat.items()}, X[i]))
            p_i += w[s, i] * special.softmax(z)
        p_loo.append(p_i)
    acc_loo = np.mean([p_loo[i].argmax() == y[i] for i in range(len(y))])
    assert loo.value == pytest.approx(acc_loo, abs=1.5 / len(y))


def test_ece_on_a_tiny_hand_case():
    probs = np.array([[0.95, 0.05], [0.85, 0.15], [0.35, 0.65], [0.45, 0.55], [0.5, 0.5]])
    y = np.array([0, 1, 1, 0, 0])
    # bins (0.9, 1]: 1 row, correct, conf 0.95; (0.8, 0.9]: 1 row, wrong, conf 0.85;
    # (0.6, 0.7]: 1 row, correct, 0.65; (0.5, 0.6]: 1 row, wrong, 0.55; (0.4, 0.5]: 1 right, 0.5
    expected = (0.05 + 0.85 + 0.35 + 0.55 + 0.5) / 5
    assert calibration._ece(probs, y) == pytest.approx(expected)
    assert ece_by_loops(probs, y) == pytest.approx(expected)


# -- a real fit --------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def small_fit():
    rng = np.random.default_rng(0)
    X = rng.uniform(-2, 2, size=(40, 1))
    y = np.tanh(X[:, 0]) + 0.2 * rng.normal(size=40)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # small ESS of 2 x 200 draws
        idata = MLP((3,)).fit(X, y, draws=200, tune=200, chains=2, random_seed=1, progressbar=False)
    X_test = rng.uniform(-2, 2, size=(30, 1))
    y_test = np.tanh(X_test[:, 0]) + 0.2 * rng.normal(size=30)
    return idata, X_test, y_test


def test_real_fit_end_to_end_and_single_chain(small_fit):
    idata, X_test, y_test = small_fit
    table = calibration_table(idata, X_test=X_test, y_test=y_test)
    assert np.isfinite(table.value).all()
    expected = {"log predictive density", "coverage 50%", "coverage 90%", "coverage 95%"}
    expected |= {"PIT KS distance", "RMSE", "CRPS", "log predictive density per row"}
    assert set(table.metric) == expected
    assert set(table[table.data == LOO].metric) == expected
    # a single chain and no sample_stats, as ADVI gives
    one = idata.copy()
    one["posterior"] = idata["posterior"].to_dataset().isel(chain=[0])
    del one["sample_stats"]
    single = calibration_table(one, X_test=X_test, y_test=y_test)
    assert np.isfinite(single.value).all() and list(single.metric) == list(table.metric)
    assert add_predictive_groups(one)["log_likelihood"]["y"].shape == (1, 200, 40)


def test_loo_of_draws_from_an_approximation_is_corrected_by_p_over_q():
    rng = np.random.default_rng(1)
    X = rng.uniform(-2, 2, size=(40, 1))
    y = np.tanh(X[:, 0]) + 0.2 * rng.normal(size=40)
    idata = MLP((3,)).fit(
        X, y, method="advi", draws=200, advi_iterations=2000, random_seed=1, progressbar=False
    )
    table = calibration_table(idata, random_seed=5)
    groups = add_predictive_groups(idata, random_seed=5)
    st = groups["sample_stats"]
    elpd = az.loo_approximate_posterior(groups, st["log_p"], st["log_q"], pointwise=True)
    lpd = row(table, "log predictive density", LOO)
    assert lpd.value == pytest.approx(elpd.elpd) and lpd.se == pytest.approx(elpd.se)
    assert "az.loo_approximate_posterior" in lpd.note
    assert lpd.value != pytest.approx(az.loo(groups).elpd)  # plain LOO would score q
    # the LOO-PIT weights carry the same p/q correction (ArviZ's PSIS of the ratios);
    # elpd.log_weights is None here, which would give plain PSIS weights of q's draws
    ratios = st["log_p"] - st["log_q"] - groups["log_likelihood"]["y"]
    log_weights, _ = ratios.azstats.psislw(dim=["chain", "draw"], r_eff=1.0)
    pit = az.loo_pit(
        groups,
        log_weights=xr.Dataset({"y": log_weights}),
        pareto_k=xr.Dataset({"y": elpd.pareto_k}),
    )["y"].values
    plain = az.loo_pit(groups)["y"].values
    assert not np.allclose(pit, plain)  # the correction changes the values
    assert row(table, "coverage 90%", LOO).value == pytest.approx(
        np.mean((pit >= 0.05) & (pit <= 0.95))
    )
    np.testing.assert_allclose(pit_values(idata, random_seed=5)["loo_pit"].values[:, 0], pit)


# -- validation ------------------------------------------------------------------------------


@pytest.fixture
def no_compute(monkeypatch):
    """Fail the test if anything is computed: errors must come first."""

    def boom(*args, **kwargs):
        raise AssertionError("computed before validating")

    monkeypatch.setattr(calibration, "_groups", boom)
    monkeypatch.setattr(calibration, "_draws_and_loglik", boom)


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        ({"X_test": [[np.nan]], "y_test": [0.0]}, ValueError, "X_test contains NaN"),
        (
            {"X_test": np.zeros((3, 2)), "y_test": np.zeros(3)},
            ValueError,
            "X_test has 2 columns.*1",
        ),
        (
            {"X_test": np.zeros((6, 1)), "y_test": np.zeros(5)},
            ValueError,
            "y_test has 5 rows but X_test has 6",
        ),
        (
            {"X_test": np.zeros((3, 1)), "y_test": np.zeros((3, 2))},
            ValueError,
            "y_test has 2 columns",
        ),
        ({"X_test": np.zeros((2, 1)), "y_test": [0.0, np.inf]}, ValueError, "y_test contains NaN"),
        ({"y_test": np.zeros(3)}, ValueError, "y_test was given without X_test"),
        ({"X_test": np.zeros((3, 1))}, ValueError, "X_test was given without y_test"),
        ({"levels": (0.5, 1.0)}, ValueError, "levels must lie strictly between 0 and 1"),
        ({"levels": (0.0,)}, ValueError, "levels"),
        ({"levels": ()}, ValueError, "levels is empty"),
        ({"levels": "0.9"}, TypeError, "levels"),
        ({"levels": (0.5, "a")}, TypeError, "levels"),
        ({"random_seed": -1}, ValueError, "random_seed"),
    ],
)
def test_bad_input_is_refused_before_computing(regression_case, no_compute, kwargs, error, match):
    with pytest.raises(error, match=match):
        calibration_table(regression_case[0], **kwargs)


def test_bad_idata_and_classification_labels(regression_case, no_compute):
    tree = regression_case[0]
    bare = xr.DataTree.from_dict({"constant_data": tree["constant_data"].to_dataset()})
    bare.attrs = dict(tree.attrs)
    for func in (calibration_table, add_predictive_groups, pit_values):
        with pytest.raises(ValueError, match="no posterior group"):
            func(bare)
    with pytest.raises(TypeError, match="DataTree"):
        calibration_table({"posterior": None})
    rng = np.random.default_rng(0)
    X, y = _data("categorical", rng)
    params = {
        "W1": np.ones((1, 5, 2, 1)),
        "b1": np.zeros((1, 5, 1)),
        "W_out": np.ones((1, 5, 1, 3)),
        "b_out": np.zeros((1, 5, 3)),
    }
    cat = hand_tree(MLP((1,), likelihood="categorical"), X, y, params)
    with pytest.raises(ValueError, match="y_test has class labels outside 0..2"):
        calibration_table(cat, X_test=X[:2], y_test=[0, 3])
    with pytest.raises(ValueError, match="classification likelihood"):
        pit_values(cat)


# -- statistical check -----------------------------------------------------------------------


@pytest.mark.slow
def test_coverage_of_a_well_specified_model_is_nominal():
    rng = np.random.default_rng(2024)

    def simulate(n):
        X = rng.uniform(-2, 2, size=(n, 1))
        return X, 0.8 * X[:, 0] + 0.3 * np.sin(2 * X[:, 0]) + 0.3 * rng.normal(size=n)

    # the se is binomial at the nominal level given the posterior; the posterior's own
    # uncertainty (of the noise sd above all) adds to it, less so with more training rows
    X, y = simulate(200)
    X_test, y_test = simulate(400)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        idata = MLP((4,)).fit(X, y, draws=300, tune=400, chains=2, random_seed=3, progressbar=False)
    table = calibration_table(idata, X_test=X_test, y_test=y_test)
    for level in (0.5, 0.9, 0.95):
        r = row(table, f"coverage {100 * level:g}%", HELD_OUT)
        assert r.se == pytest.approx(math.sqrt(level * (1 - level) / 400))
        assert abs(r.value - level) <= 3 * r.se, (level, r.value)
