"""Small real fits: fit / predict / save / load end to end, with tiny draws and fixed seeds."""

import json
import warnings
from functools import partial

import arviz as az
import numpy as np
import pymc as pm
import pytest
import xarray as xr

from bnncat import data
from bnncat.models import MLP, load, mlp_forward, predict, read_net, save
from bnncat.models.inference.advi import (
    DRAWS_AT_ONCE,
    _log_posterior_of_draws,
    warn_if_loss_falling,
)
from bnncat.models.inference.convergence_check import prediction_convergence, warn_if_unconverged
from bnncat.models.persistence import check_posterior_matches

TINY = {"draws": 60, "tune": 60, "chains": 2, "progressbar": False}


@pytest.fixture(scope="module")
def nuts_fit():
    ds = data.load("sine", n=40, seed=3)
    net = MLP((5,))
    # 60 draws per chain cannot give 100 effective draws per chain: fit must say so
    with pytest.warns(UserWarning, match="smallest bulk ESS of the predictions"):
        idata = net.fit(ds.X, ds.y, random_seed=11, **TINY)
    return net, ds, idata


@pytest.fixture(scope="module")
def advi_fit():
    ds = data.load("sine", n=40, seed=3)
    net = MLP((5,))
    idata = net.fit(
        ds.X, ds.y, method="advi", draws=80, advi_iterations=1500, random_seed=5, progressbar=False
    )
    return net, ds, idata


def test_nuts_result_layout_and_attrs(nuts_fit):
    net, ds, idata = nuts_fit
    assert {"posterior", "sample_stats", "observed_data", "constant_data"} <= set(idata.children)
    post = idata["posterior"]
    assert post.sizes["chain"] == 2 and post.sizes["draw"] == 60
    assert post["W1"].dims == ("chain", "draw", "feature", "hidden1")
    assert "mu" not in post  # predictions are computed on demand, not stored per draw
    assert "diverging" in idata["sample_stats"]
    attrs = idata.attrs
    assert json.loads(attrs["bnncat_config"]) == net.options()
    fit_opts = json.loads(attrs["bnncat_fit"])
    assert fit_opts["method"] == "nuts" and fit_opts["nuts_sampler"] == "numpyro"
    assert fit_opts["draws"] == 60 and attrs["random_seed"] == 11
    versions = json.loads(attrs["bnncat_versions"])
    assert versions["pymc"].startswith("6.") and versions["arviz"].startswith("1.")
    rebuilt, spec = read_net(idata)
    assert rebuilt == net and spec.feature_names == ("x",)


def test_same_seed_same_draws(nuts_fit):
    net, ds, idata = nuts_fit
    again = net.fit(ds.X, ds.y, random_seed=11, **TINY)
    xr.testing.assert_equal(again["posterior"].to_dataset(), idata["posterior"].to_dataset())


def test_fit_draws_what_pymcs_numpyro_sampler_draws_of_the_same_log_density():
    """fit runs NumPyro's NUTS in one program of its own, from PyMC's seed and start points.

    Inside the larger program XLA rounds a few float32 operations otherwise: the draws
    agree to rounding without warm-up, and drift apart over a long adaptation.
    """
    import pymc.sampling.jax as pymc_jax

    from bnncat.models.inference.numpyro_program import model_with_data_inputs, program_for
    from bnncat.models.inference.nuts import _chain_seed, numpyro_chain_method
    from bnncat.models.inference.problem import prepare_problem
    from bnncat.models.jax_runtime import jax_session
    from bnncat.models.pymc_internals import derived_seed, jittered_start_points

    ds, net, short = data.load("sine", n=40, seed=0), MLP((3,)), {"tune": 0, "draws": 10}
    with pytest.warns(UserWarning):  # too few draws for the convergence check
        idata = net.fit(ds.X, ds.y, chains=2, random_seed=11, progressbar=False, **short)
    problem = prepare_problem(net, ds.X, ds.y, draws=10, random_seed=11, store_mu=False)
    seed = derived_seed(_chain_seed(11, 2))
    with jax_session("float32"):
        model_data = model_with_data_inputs(problem.model, problem.keep)
        program = program_for(model_data)
        potential = partial(program.potential, arrays=model_data.values)
        start = jittered_start_points(problem.model, 2, seed, potential, 10)
        raw, stats, _ = pymc_jax._sample_numpyro_nuts(
            model=problem.model,
            target_accept=0.8,
            chains=2,
            chain_method=numpyro_chain_method(2),
            progressbar=False,
            random_seed=seed,
            initial_points=start,
            nuts_kwargs={},
            logp_fn=potential,
            **short,
        )
    for value, draws in zip(problem.model.value_vars, raw, strict=True):
        name = value.name.removesuffix("_log__")
        expected = np.exp(draws) if name != value.name else draws
        np.testing.assert_allclose(idata["posterior"][name].values, expected, rtol=1e-5)
    np.testing.assert_array_equal(idata["sample_stats"]["n_steps"].values, stats["n_steps"])


def test_blackjax_nuts_is_refused_while_pymc_cannot_drive_it(monkeypatch):
    from bnncat.models.inference import nuts

    ds = data.load("sine", n=20, seed=3)
    model = MLP((2,)).build(ds.X, ds.y)
    if nuts._blackjax_nuts_broken():  # PyMC's own call fails: the refusal is needed
        with pytest.raises(TypeError, match="progress_bar"):
            pm.sample(5, tune=5, chains=1, model=model, nuts_sampler="blackjax", progressbar=False)
    monkeypatch.setattr(nuts, "_blackjax_nuts_broken", lambda: True)
    monkeypatch.setattr(nuts, "_sample", lambda *a, **k: pytest.fail("sampled"))
    with pytest.raises(ValueError, match="nuts_sampler='blackjax' does not run"):
        MLP((2,)).fit(ds.X, ds.y, nuts_sampler="blackjax", **TINY)


def test_omitted_seed_is_drawn_and_recorded():
    ds = data.load("sine", n=20, seed=1)
    idata = MLP((2,)).fit(ds.X, ds.y, method="advi", draws=5, advi_iterations=50, progressbar=False)
    seed = idata.attrs["random_seed"]
    assert isinstance(seed, int) and seed >= 0


def test_predict_at_37_new_rows(nuts_fit):
    net, ds, idata = nuts_fit
    X_new = np.linspace(-4, 4, 37)[:, None]
    pred = predict(idata, X_new, random_seed=1)["predictions"]
    assert pred["mu"].shape == (2, 60, 37, 1) and pred["y"].shape == (2, 60, 37, 1)
    post = idata["posterior"]
    params = {k: post[k].values for k in ("W1", "b1", "W_out", "b_out")}
    _, spec = read_net(idata)
    np.testing.assert_allclose(
        pred["mu"].values, mlp_forward(params, X_new, activation="tanh", spec=spec), atol=1e-10
    )
    # predictive draws scatter around mu with the posterior noise scale
    resid = (pred["y"] - pred["mu"]).values / post["sigma"].values[:, :, None, :]
    assert abs(resid.std() - 1) < 0.1
    # a different number of rows again, through the method: no shape trap
    assert net.predict(idata, X_new[:3])["predictions"]["y"].shape == (2, 60, 3, 1)


def test_predict_rejects_bad_inputs(nuts_fit):
    net, ds, idata = nuts_fit
    with pytest.raises(ValueError, match="X_new has 2 columns but the model was fitted on 1"):
        predict(idata, np.zeros((4, 2)))
    with pytest.raises(ValueError, match="X_new contains NaN"):
        predict(idata, np.array([[np.nan]]))
    with pytest.raises(ValueError, match="does not match the model stored"):
        predict(idata, np.zeros((4, 1)), net=MLP((6,)))
    with pytest.raises(ValueError, match="no posterior group"):
        predict(xr.DataTree(), np.zeros((4, 1)))


def test_save_load_round_trip_is_bit_exact(nuts_fit, tmp_path):
    net, ds, idata = nuts_fit
    path = save(idata, tmp_path / "fit.nc")
    back = load(path)
    xr.testing.assert_identical(back, idata)
    for group in idata.children:
        for name, var in idata[group].data_vars.items():
            assert np.array_equal(back[group][name].values, var.values)
    assert load(path, net=net).attrs == idata.attrs
    # prediction works from the loaded file alone
    pred = predict(back, np.zeros((37, 1)), random_seed=1)["predictions"]
    assert pred["y"].shape[2] == 37
    assert sorted(p.name for p in tmp_path.iterdir()) == ["fit.nc"]  # no temp file left


def test_load_refuses_a_mismatched_configuration(nuts_fit, tmp_path):
    net, ds, idata = nuts_fit
    path = save(idata, tmp_path / "fit.nc")
    with pytest.raises(ValueError, match=r"differs from net in \{'hidden': \(\[6\], \[5\]\)"):
        load(path, net=MLP((6,)))
    tampered = idata.copy()
    tampered.attrs["bnncat_config"] = json.dumps({**net.options(), "hidden": [4]})
    save(tampered, tmp_path / "tampered.nc")
    with pytest.raises(ValueError, match=r"'W1' has shape \(1, 5\), the configuration implies"):
        load(tmp_path / "tampered.nc")
    with pytest.raises(ValueError, match="is not a file"):
        load(tmp_path / "missing.nc")


@pytest.mark.parametrize("damage", ["truncated", "random bytes", "empty"])
def test_load_names_a_damaged_file(nuts_fit, tmp_path, damage):
    _, _, idata = nuts_fit
    good = save(idata, tmp_path / "fit.nc").read_bytes()
    damaged = {
        "truncated": good[: len(good) // 2],
        "random bytes": np.random.default_rng(0).bytes(4000),
        "empty": b"",
    }[damage]
    path = tmp_path / "damaged.nc"
    path.write_bytes(damaged)
    with pytest.raises(ValueError, match=r"damaged.nc' is not a readable netCDF file"):
        load(path)


def test_save_refuses_what_it_could_not_load(tmp_path):
    with pytest.raises(ValueError, match="no bnncat configuration"):
        save(xr.DataTree(), tmp_path / "x.nc")
    assert list(tmp_path.iterdir()) == []


def test_check_posterior_matches_names_missing_variables(nuts_fit):
    net, ds, idata = nuts_fit
    broken = idata.copy()
    broken["posterior"] = broken["posterior"].to_dataset().drop_vars("b1")
    with pytest.raises(ValueError, match="'b1' is missing"):
        check_posterior_matches(broken, *read_net(idata))


def test_advi_layout_and_loss_history(advi_fit):
    net, ds, idata = advi_fit
    post = idata["posterior"]
    assert post.sizes["chain"] == 1 and post.sizes["draw"] == 80
    assert set(post.data_vars) == {"W1", "b1", "W_out", "b_out", "sigma"}
    loss = idata["fit_history"]["loss"].values
    assert loss.shape == (1500,) and np.isfinite(loss).all()
    assert np.median(loss[-200:]) < np.median(loss[:200])  # the optimiser made progress
    # no sampler statistics, but each draw's log densities under the target and under q
    assert set(idata["sample_stats"].data_vars) == {"log_p", "log_q"}
    assert idata["sample_stats"]["log_q"].shape == (1, 80)
    assert np.isfinite(idata["sample_stats"]["log_p"].values).all()
    assert json.loads(idata.attrs["bnncat_fit"])["method"] == "advi"
    assert predict(idata, np.zeros((37, 1)))["predictions"]["mu"].shape == (1, 80, 37, 1)


def test_the_log_posterior_of_draws_in_blocks_is_each_draws_own():
    """Draws past a block's end (80 = 64 + 16) get their own log density with the Jacobians."""
    ds = data.load("sine", n=30, seed=2)
    net = MLP((3,))
    model = net.build_validated(*net.data_spec(ds.X, ds.y))
    draws = DRAWS_AT_ONCE + 16
    rng = np.random.default_rng(0)
    values = {
        v.name: rng.normal(size=(1, draws, *model.initial_point()[v.name].shape))
        for v in model.value_vars
    }
    posterior = xr.Dataset(
        {
            k: (("chain", "draw", *(f"{k}_{i}" for i in range(v.ndim - 2))), v)
            for k, v in values.items()
        }
    )
    found = _log_posterior_of_draws(model, posterior)
    logp = model.compile_logp(jacobian=True)
    expected = [logp({k: v[0, d] for k, v in values.items()}) for d in range(draws)]
    np.testing.assert_allclose(found, expected, rtol=1e-10)


def test_fullrank_advi_runs():
    ds = data.load("sine", n=30, seed=2)
    idata = MLP((3,)).fit(
        ds.X,
        ds.y,
        method="fullrank_advi",
        draws=20,
        advi_iterations=300,
        random_seed=1,
        progressbar=False,
    )
    assert idata["posterior"]["W1"].shape == (1, 20, 1, 3)


@pytest.mark.parametrize("likelihood", ["bernoulli", "categorical"])
def test_classification_fit_and_predict(likelihood):
    ds = data.load("two_moons", n=40, seed=1)
    y = ds.y if likelihood == "bernoulli" else (ds.y + (ds.X[:, 0] > 1)).astype(int)
    net = MLP((3,), likelihood=likelihood)
    idata = net.fit(ds.X, y, random_seed=2, **TINY)
    pred = predict(idata, ds.X[:37], random_seed=3)["predictions"]
    k = 2 if likelihood == "bernoulli" else 3
    assert pred["mu"].shape[-1] == (1 if likelihood == "bernoulli" else 3)
    assert pred["y"].shape == (2, 60, 37)
    assert set(np.unique(pred["y"].values)) <= set(range(k))


def test_studentt_and_hierarchical_fit():
    ds = data.load("sine", n=30, seed=2)
    net = MLP((3,), likelihood="studentt", prior="hierarchical")
    idata = net.fit(ds.X, ds.y, random_seed=4, **TINY)
    assert {"nu", "W1_sd", "W_out_sd"} <= set(idata["posterior"].data_vars)
    assert (idata["posterior"]["W1_sd"] > 0).all()


def test_users_own_pm_sample_on_net_build_can_predict():
    ds = data.load("sine", n=30, seed=2)
    net = MLP((3,))
    model = net.build(ds.X, ds.y)
    idata = pm.sample(
        30,
        tune=30,
        chains=1,
        model=model,
        random_seed=1,
        progressbar=False,
        nuts_sampler="numpyro",
        compute_convergence_checks=False,
    )
    pred = predict(idata, np.zeros((37, 1)), net=net)["predictions"]
    assert pred["mu"].shape == (1, 30, 37, 1)
    with pytest.raises(ValueError, match="pass the net you built"):
        predict(idata, np.zeros((2, 1)))


def test_store_mu_keeps_the_network_output():
    ds = data.load("sine", n=25, seed=2)
    idata = MLP((2,)).fit(ds.X, ds.y, store_mu=True, random_seed=1, **TINY)
    assert idata["posterior"]["mu"].dims == ("chain", "draw", "obs", "output")


@pytest.mark.parametrize(
    "kwargs, exc, match",
    [
        ({"method": "hmc"}, ValueError, "method='hmc' is not known"),
        ({"nuts_sampler": "stan"}, ValueError, "nuts_sampler='stan' is not known"),
        ({"draws": 0}, ValueError, "draws must be >= 1"),
        ({"tune": -5}, ValueError, "tune must be >= 0"),
        ({"chains": 1.5}, TypeError, "chains must be an integer"),
        ({"target_accept": 1.0}, ValueError, r"target_accept must lie in \(0, 1\)"),
        ({"random_seed": -1}, ValueError, "random_seed must be >= 0"),
        ({"method": "advi", "advi_iterations": 0}, ValueError, "advi_iterations must be >= 1"),
    ],
)
def test_bad_fit_options_fail_before_sampling(kwargs, exc, match, monkeypatch):
    def no_sampling(*a, **k):
        raise AssertionError("sampling started despite bad input")

    monkeypatch.setattr(pm, "sample", no_sampling)
    monkeypatch.setattr(pm, "fit", no_sampling)
    with pytest.raises(exc, match=match):
        MLP((2,)).fit(np.zeros((5, 1)), np.arange(5.0), **kwargs)


def test_bad_data_fails_before_sampling(monkeypatch):
    monkeypatch.setattr(pm, "sample", lambda *a, **k: pytest.fail("sampling started"))
    with pytest.raises(ValueError, match="y contains NaN"):
        MLP((2,)).fit(np.zeros((3, 1)), np.array([1.0, np.nan, 2.0]))


@pytest.mark.slow
def test_nuts_recovers_the_sine_function_and_noise():
    """Recovery: 1x8 tanh on 100 noisy sine points; the truth lies in the posterior bands."""
    ds = data.load("sine", n=100, noise=0.1, seed=7)
    net = MLP((8,))
    idata = net.fit(ds.X, ds.y, draws=400, tune=400, chains=4, random_seed=3, progressbar=False)
    x = np.linspace(-2.5, 2.5, 25)[:, None]
    mu = predict(idata, x)["predictions"]["mu"].values[..., 0].reshape(-1, 25)
    lo, hi = np.quantile(mu, [0.005, 0.995], axis=0)
    assert ((lo <= np.sin(x[:, 0])) & (np.sin(x[:, 0]) <= hi)).mean() >= 0.9
    assert np.abs(mu.mean(axis=0) - np.sin(x[:, 0])).max() < 0.15
    sigma = idata["posterior"]["sigma"].values.ravel()
    assert np.quantile(sigma, 0.01) < 0.1 < np.quantile(sigma, 0.99)


@pytest.mark.slow
def test_advi_recovers_the_sine_function():
    ds = data.load("sine", n=100, noise=0.1, seed=7)
    idata = MLP((8,)).fit(
        ds.X,
        ds.y,
        method="advi",
        draws=500,
        advi_iterations=20_000,
        random_seed=3,
        progressbar=False,
    )
    x = np.linspace(-2.5, 2.5, 25)[:, None]
    mu = predict(idata, x)["predictions"]["mu"].values[..., 0].reshape(-1, 25)
    assert np.abs(mu.mean(axis=0) - np.sin(x[:, 0])).max() < 0.2
    # mean-field ADVI that prunes units inflates the noise instead; the truth is 0.1
    assert 0.08 < float(idata["posterior"]["sigma"].mean()) < 0.13


def test_advi_warns_while_its_loss_still_falls():
    rng = np.random.default_rng(0)
    noise = rng.normal(0.0, 20.0, size=30_000)  # the one-draw loss is this noisy on yacht
    converged = 700.0 + noise
    falling = np.linspace(730.0, 700.0, 30_000) + noise  # 3 nats a tenth
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        warn_if_loss_falling(converged)
        warn_if_loss_falling(np.linspace(705.0, 700.0, 30_000) + noise)  # 0.5 nats a tenth
        warn_if_loss_falling(falling[:50])  # too short to judge
    with pytest.warns(UserWarning, match=r"still falling: by [23]\.\d+ nats .* 30000 iterations"):
        warn_if_loss_falling(falling)


@pytest.mark.slow
def test_advi_that_stops_early_says_so():
    ds = data.load("yacht")
    with pytest.warns(UserWarning, match="raise advi_iterations"):
        MLP((50,)).fit(ds.X, ds.y, method="advi", draws=20, advi_iterations=3_000, random_seed=3)


def _with_chain_changed(idata, change):
    out = idata.copy()
    post = out["posterior"].to_dataset()
    for name, value in change(post).items():
        post[name] = post[name].copy(data=value)
    out["posterior"] = post
    return out


def test_prediction_convergence_ignores_symmetric_copies(nuts_fit):
    """Chain 1 moved to a permuted, sign-flipped copy: same function, so same verdict."""
    net, ds, idata = nuts_fit
    perm, signs = np.array([4, 2, 0, 1, 3]), -np.ones(5)

    def flip_chain_1(post):
        W1, b1, W_out = post["W1"].values.copy(), post["b1"].values.copy(), post["W_out"].values
        W_out = W_out.copy()
        W1[1] = W1[1][..., perm] * signs
        b1[1] = b1[1][..., perm] * signs
        W_out[1] = W_out[1][:, perm, :] * signs[:, None]
        return {"W1": W1, "b1": b1, "W_out": W_out}

    moved = _with_chain_changed(idata, flip_chain_1)
    spec = read_net(idata)[1]
    before = prediction_convergence(idata, net, spec)
    after = prediction_convergence(moved, net, spec)
    assert after["max_rhat"] == pytest.approx(before["max_rhat"], abs=1e-9)
    raw = float(az.rhat(moved, var_names=["W1"])["W1"].max())
    assert raw > 1.5  # raw weights say "not converged" although the function agrees


def test_prediction_convergence_checks_evenly_spaced_rows(nuts_fit, monkeypatch):
    """At most CHECK_ROWS training inputs, spread over the data, first and last included."""
    from bnncat.models.inference import convergence_check

    net, ds, idata = nuts_fit
    spec = read_net(idata)[1]
    post = idata["posterior"]
    params = {k: post[k].values for k in post.data_vars}
    monkeypatch.setattr(convergence_check, "CHECK_ROWS", 5)
    rows = [0, 10, 20, 29, 39]  # 40 rows: np.linspace(0, 39, 5) rounded
    mu = net.forward(params, np.asarray(ds.X)[rows], spec)
    mu = xr.Dataset({"mu": (("chain", "draw", "obs", "output"), mu)})
    conv = prediction_convergence(idata, net, spec)
    assert conv["max_rhat"] == pytest.approx(float(az.rhat(mu)["mu"].max()), rel=1e-12)
    assert conv["min_ess_bulk"] == pytest.approx(float(az.ess(mu)["mu"].min()), rel=1e-12)
    monkeypatch.setattr(convergence_check, "CHECK_ROWS", 200)  # more than the data: every row
    mu_all = xr.Dataset(
        {"mu": (("chain", "draw", "obs", "output"), net.forward(params, np.asarray(ds.X), spec))}
    )
    conv = prediction_convergence(idata, net, spec)
    assert conv["max_rhat"] == pytest.approx(float(az.rhat(mu_all)["mu"].max()), rel=1e-12)


def test_prediction_convergence_checks_each_distinct_input_once(nuts_fit):
    """A repeated input has the same predictions: the figures are those of the distinct ones."""
    from bnncat.models.inference.convergence_check import check_inputs

    X = np.array([[2.0, 0.0], [1.0, 0.0], [2.0, 0.0], [2.0, 1.0], [1.0, 0.0]])
    assert check_inputs(X).tolist() == [[2.0, 0.0], [1.0, 0.0], [2.0, 1.0]]  # data's order
    net, ds, idata = nuts_fit
    spec = read_net(idata)[1]
    doubled = idata.copy()
    rows = np.repeat(np.asarray(ds.X), 2, axis=0)
    doubled["constant_data"] = xr.Dataset({"X": (("obs", "feature"), rows)})
    assert prediction_convergence(doubled, net, spec) == prediction_convergence(idata, net, spec)


def test_prediction_convergence_is_the_same_on_one_thread(nuts_fit, monkeypatch):
    """Shared over threads or on the one thread a worker has: the same figures."""
    from bnncat.models.inference import convergence_check

    net, ds, idata = nuts_fit
    spec = read_net(idata)[1]
    monkeypatch.setattr(convergence_check, "_THREADED_VALUES", 0)  # threads even for this
    shared = prediction_convergence(idata, net, spec)
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    alone = prediction_convergence(idata, net, spec)
    assert alone == pytest.approx(shared, rel=1e-12)


def test_fit_warns_in_plain_words_when_chains_disagree(nuts_fit):
    net, ds, idata = nuts_fit

    def shift_chain_1(post):
        b_out = post["b_out"].values.copy()
        b_out[1] += 3.0
        return {"b_out": b_out}

    conv = prediction_convergence(
        _with_chain_changed(idata, shift_chain_1), net, read_net(idata)[1]
    )
    assert conv["max_rhat"] > 1.5
    with pytest.warns(UserWarning, match="chains disagree on the fitted function"):
        warn_if_unconverged(conv)
    with pytest.warns(UserWarning, match=r"smallest bulk ESS of the predictions is \d+"):
        warn_if_unconverged({**conv, "max_rhat": 1.0, "min_ess_bulk": 50.0})
    with pytest.warns(UserWarning, match="3 divergent transitions: raise target_accept"):
        warn_if_unconverged({"max_rhat": 1.0, "min_ess_bulk": 1e4, "divergences": 3, "chains": 2})


def test_fullrank_advi_improves_on_its_start():
    """With PyMC's start for L and Adam at 0.01 the loss rose from 387 to 607 here."""
    ds = data.load("faithful")
    idata = MLP((8,)).fit(
        ds.X, ds.y, method="fullrank_advi", draws=20, random_seed=1, progressbar=False
    )
    loss = idata["fit_history"]["loss"].values
    assert np.median(loss[-1000:]) < loss[:50].mean()
    assert json.loads(idata.attrs["bnncat_fit"])["learning_rate"] == 0.001
