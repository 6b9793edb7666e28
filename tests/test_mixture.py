"""MixtureRegressor: log joint, ordering, relabelling of components, density, bad input."""

import warnings

import arviz as az
import numpy as np
import pymc as pm
import pytensor
import pytest
import xarray as xr
from scipy import special, stats

from bnncat import data
from bnncat import identifiability as ident
from bnncat.cli import main
from bnncat.evaluation import density
from bnncat.evaluation.density import log_predictive_density, predictive_density, predictive_mean
from bnncat.models import MLP, MixtureRegressor, load, predict, predictive_summary, read_net, save
from bnncat.models.inference.convergence_check import prediction_convergence
from bnncat.models.mlp import DEFAULT_PRIOR_SCALE
from bnncat.models.prediction import net_and_spec

TINY = {"draws": 60, "tune": 60, "chains": 2, "progressbar": False}
RNG = np.random.default_rng(7)


def _point_in_constrained_space(model):
    """A random point, valid for every constraint (ordered, positive, simplex)."""
    point = {}
    for rv in model.free_RVs:
        shape = tuple(model.eval_rv_shapes()[rv.name])
        value = RNG.normal(size=shape) * 0.6
        if rv.name in ("sigma",):
            value = np.abs(value) + 0.2
        if rv.name == "weights":
            value = RNG.dirichlet(np.ones(shape[-1]), size=shape[:-1])
        if rv.name == "loc_raw":  # increasing, which an ordered transform needs
            value = np.sort(value, axis=-1)
        if rv.name == "b_out_mean":  # increasing
            value = np.sort(value, axis=-1)
        point[rv.name] = value
    return point


def _to_value_space(model, point):
    out = {}
    for rv in model.free_RVs:
        value_var = model.rvs_to_values[rv]
        transform = model.rvs_to_transforms.get(rv)
        v = point[rv.name]
        out[value_var.name] = v if transform is None else transform.forward(v).eval()
    return out


def _centred_locations(raw, weights):
    """The free locations minus their weighted mean (mean-zero noise)."""
    return raw - (weights * raw).sum(axis=1, keepdims=True)


def _reference_log_joint(net, point, X, y, spec):
    """Independent of the package's mixture code: explicit layers and logsumexp."""
    lp = 0.0
    h = (X - np.array(spec.x_loc)) / np.array(spec.x_scale)
    fan_in = X.shape[1]
    for i, width in enumerate(net.hidden, 1):
        lp += stats.norm(0, DEFAULT_PRIOR_SCALE / np.sqrt(fan_in)).logpdf(point[f"W{i}"]).sum()
        lp += stats.norm(0, 1).logpdf(point[f"b{i}"]).sum()
        h = np.tanh(h @ point[f"W{i}"] + point[f"b{i}"])
        fan_in = width
    lp += stats.norm(0, DEFAULT_PRIOR_SCALE / np.sqrt(fan_in)).logpdf(point["W_out"]).sum()
    out = h @ point["W_out"]
    y_loc, y_scale = np.array(spec.y_loc), np.array(spec.y_scale)
    D, K = spec.n_outputs, net.n_components
    if net.form == "noise":
        lp += stats.norm(0, 1).logpdf(point["b_out"]).sum()
        out = out + point["b_out"]
        for d in range(D):
            lp += stats.dirichlet(np.full(K, 2.0)).logpdf(point["weights"][d])
        raw = point.get("loc_raw", np.zeros((D, 1)))  # K = 1: the one location is 0
        lp += stats.norm(0, 1).logpdf(point.get("loc_raw", np.zeros((D, 0)))).sum()
        lp += stats.halfnorm(scale=y_scale[:, None]).logpdf(point["sigma"]).sum()
        loc = _centred_locations(raw, point["weights"]) * y_scale[:, None]
        means = (y_loc + y_scale * out)[:, :, None] + loc[None]
        logw = np.log(point["weights"])[None]
        sd = point["sigma"][None]
    else:
        if net.ordered:
            parts = [point[f"b_out_{k}"] for k in ("logit", "mean", "scale")]
            for part in parts:
                lp += stats.norm(0, 1).logpdf(part).sum()
            b = np.stack(parts, axis=1).reshape(-1)
        else:
            b = point["b_out"]
            lp += stats.norm(0, 1).logpdf(b).sum()
        head = (out + b).reshape(len(X), D, 3, K)
        logw = head[:, :, 0] - special.logsumexp(head[:, :, 0], axis=-1, keepdims=True)
        means = y_loc[:, None] + y_scale[:, None] * head[:, :, 1]
        sd = y_scale[:, None] * (np.log1p(np.exp(head[:, :, 2])) + 1e-3)
    y2 = y[:, None] if y.ndim == 1 else y
    lp += special.logsumexp(logw + stats.norm.logpdf(y2[:, :, None], means, sd), axis=-1).sum()
    return lp


@pytest.mark.parametrize(
    "form, ordered, outputs, K",
    [
        ("noise", True, 1, 3),
        ("noise", False, 1, 3),
        ("noise", True, 2, 2),
        ("noise", False, 1, 1),
        ("mdn", False, 1, 3),
        ("mdn", True, 1, 3),
        ("mdn", True, 2, 2),
        ("mdn", False, 2, 1),
    ],
)
def test_logp_matches_an_independent_log_joint(form, ordered, outputs, K):
    X = RNG.normal(size=(40, 2))
    y = RNG.normal(size=(40, outputs)) * 2 + 3
    y = y[:, 0] if outputs == 1 else y
    net = MixtureRegressor((4, 3), n_components=K, form=form, ordered=ordered)
    X_arr, y_arr, spec = net.data_spec(X, y)
    model = net.build_validated(X_arr, y_arr, spec)
    point = _point_in_constrained_space(model)
    got = model.compile_logp(jacobian=False)(_to_value_space(model, point))
    np.testing.assert_allclose(
        got, _reference_log_joint(net, point, X_arr, y_arr, spec), rtol=0, atol=1e-6
    )


def test_numpy_components_agree_with_the_pymc_graph():
    ds = data.load("inverse_sine", n=30, seed=1)
    for form in ("noise", "mdn"):
        net = MixtureRegressor((3,), n_components=2, form=form)
        X, y, spec = net.data_spec(ds.X, ds.y)
        model = net.build_validated(X, y, spec)
        point = _point_in_constrained_space(model)
        names = [rv.name for rv in model.free_RVs]
        inputs = [model[n] for n in names]
        mu_fn = pytensor.function(inputs, model["mu"], on_unused_input="ignore")
        params = dict(point)
        if form == "noise":
            params["loc"] = _centred_locations(point["loc_raw"], point["weights"]) * spec.y_scale[0]
        np.testing.assert_allclose(
            net.forward(params, X, spec), mu_fn(*[point[n] for n in names]), atol=1e-10
        )


@pytest.fixture(scope="module")
def mdn_fit():
    ds = data.load("inverse_sine", n=80, seed=1)
    net = MixtureRegressor((4,), n_components=3, form="mdn")
    return net, ds, net.fit(ds.X, ds.y, random_seed=3, **TINY)


def test_orderings_hold_in_every_draw():
    ds = data.load("inverse_sine", n=60, seed=2)
    noise = MixtureRegressor((3,), n_components=3, ordered=True)
    loc, weights = (
        noise.fit(ds.X, ds.y, random_seed=1, **TINY)["posterior"][k].values
        for k in ("loc", "weights")
    )
    assert (np.diff(loc, axis=-1) > 0).all()
    # mean-zero noise, up to the float32 the sampler computes in
    np.testing.assert_allclose((weights * loc).sum(axis=-1), 0.0, atol=1e-6)
    mdn = MixtureRegressor((3,), n_components=3, form="mdn", ordered=True)
    post = mdn.fit(ds.X, ds.y, random_seed=1, **TINY)["posterior"]
    assert (np.diff(post["b_out_mean"].values, axis=-1) > 0).all()
    labels = ident.canonicalize(mdn.fit(ds.X, ds.y, random_seed=2, **TINY))["relabelling"]
    assert "perm_component" not in labels  # the constraint already fixes the labels


def test_noise_components_are_sorted_by_location_and_move_together():
    ds = data.load("inverse_sine", n=60, seed=2)
    idata = MixtureRegressor((3,), n_components=3).fit(ds.X, ds.y, random_seed=1, **TINY)
    canon = ident.canonicalize(idata)
    post, raw = canon["posterior"], idata["posterior"]
    assert (np.diff(post["loc"].values, axis=-1) >= 0).all()
    perm = canon["relabelling"]["perm_component"].values
    for name in ("weights", "loc", "sigma", "loc_raw"):
        expected = np.take_along_axis(raw[name].values, perm, axis=-1)
        np.testing.assert_array_equal(post[name].values, expected)
    x = np.linspace(0, 1, 5)[:, None]
    np.testing.assert_allclose(
        predict(canon, x)["predictions"]["mu"].values,
        predict(idata, x)["predictions"]["mu"].values,
        atol=1e-10,
    )


def test_component_relabelling_is_idempotent_and_keeps_the_density(mdn_fit):
    net, ds, idata = mdn_fit
    canon = ident.canonicalize(idata)
    post = canon["posterior"]
    _, spec = read_net(idata)
    params = {k: post[k].values for k in post.data_vars}
    means = net.observation_parameters(params, ds.X, spec)["mu"]
    assert (np.diff(means.mean(axis=-3), axis=-1) >= 0).all()  # key: mean at the data
    assert canon["relabelling"]["perm_component"].dims == ("chain", "draw", "output", "component")
    assert list(canon["relabelling"]["component"].values) == [0, 1, 2]
    twice = ident.canonicalize(canon)
    xr.testing.assert_equal(twice["posterior"].to_dataset(), canon["posterior"].to_dataset())
    grid = np.linspace(-0.5, 1.5, 81)
    before = predictive_density(idata, [[0.2], [0.5]], grid)
    after = predictive_density(canon, [[0.2], [0.5]], grid)
    np.testing.assert_allclose(after.values, before.values, rtol=1e-10, atol=1e-12)
    x = np.linspace(0, 1, 7)[:, None]
    np.testing.assert_allclose(
        predict(canon, x)["predictions"]["mu"].values,
        predict(idata, x)["predictions"]["mu"].values,
        atol=1e-10,
    )


def test_density_agrees_with_direct_computation_for_a_gaussian_mlp():
    ds = data.load("sine", n=30, seed=1)
    net = MLP((3,))
    idata = net.fit(ds.X, ds.y, random_seed=1, **TINY)
    grid = np.linspace(-2, 2, 41)
    dens = predictive_density(idata, [[0.3]], grid).values[0, 0]
    mu = predict(idata, [[0.3]])["predictions"]["mu"].values.reshape(-1)
    sigma = idata["posterior"]["sigma"].values.reshape(-1)
    direct = stats.norm.pdf(grid[:, None], mu[None], sigma[None]).mean(axis=1)
    np.testing.assert_allclose(dens, direct, rtol=1e-10)
    lpd = log_predictive_density(idata, [[0.3]], [0.1])
    np.testing.assert_allclose(lpd["total"], np.log(stats.norm.pdf(0.1, mu, sigma).mean()))


def test_density_integrates_to_one(mdn_fit):
    net, ds, idata = mdn_fit
    grid = np.linspace(-3, 4, 1401)
    dens = predictive_density(idata, [[0.1], [0.5], [0.9]], grid)
    np.testing.assert_allclose(np.trapezoid(dens.values, grid, axis=-1), 1.0, atol=1e-3)


def test_held_out_scores_in_blocks_of_rows_are_those_of_all_rows_at_once(mdn_fit, monkeypatch):
    _, ds, idata = mdn_fit
    whole = log_predictive_density(idata, ds.X, ds.y)["pointwise"], predictive_mean(idata, ds.X)
    draws, width = 120, 4  # TINY's 2 chains x 60 draws; 4 hidden units
    monkeypatch.setattr(predictive_summary, "BLOCK_FLOATS", draws * width * 7)  # 7 rows a block
    net = MixtureRegressor((4,), n_components=3, form="mdn")
    assert len(density._row_blocks(idata, net, len(ds.y), max_draws=4000)) == 12
    blocks = log_predictive_density(idata, ds.X, ds.y)["pointwise"], predictive_mean(idata, ds.X)
    np.testing.assert_allclose(blocks[0], whole[0], rtol=1e-12)
    np.testing.assert_allclose(blocks[1], whole[1], rtol=1e-12)


def test_fit_predict_save_load_and_cli(mdn_fit, tmp_path):
    net, ds, idata = mdn_fit
    back = load(save(idata, tmp_path / "m.nc"), net=net)
    assert predict(back, np.zeros((37, 1)))["predictions"]["y"].shape == (2, 60, 37, 1)
    out = tmp_path / "res"
    assert (
        main(
            [
                "fit",
                "--model",
                "mixture",
                "--form",
                "mdn",
                "--components",
                "2",
                "--data",
                "faithful",
                "--draws",
                "30",
                "--tune",
                "30",
                "--chains",
                "2",
                "--out",
                str(out),
                "--no-progress",
                "--no-figures",
            ]
        )
        == 0
    )
    assert load(out / "fit.nc").attrs["bnncat_model"] == "MixtureRegressor"


@pytest.mark.parametrize("batch_size", [None, 20])
def test_advi_fits_both_forms(batch_size):
    ds = data.load("inverse_sine", n=60, seed=2)
    for form in ("noise", "mdn"):
        idata = MixtureRegressor((3,), n_components=2, form=form).fit(
            ds.X,
            ds.y,
            method="advi",
            batch_size=batch_size,
            draws=50,
            advi_iterations=400,
            random_seed=1,
            progressbar=False,
        )
        assert idata["posterior"].sizes["draw"] == 50
        assert idata["observed_data"]["y"].shape[0] == 60  # the full data, minibatch or not


@pytest.mark.parametrize(
    "kwargs, exc, match",
    [
        ({"n_components": 0}, ValueError, "n_components must be >= 1"),
        ({"n_components": 2.5}, TypeError, "n_components must be an integer"),
        ({"form": "bogus"}, ValueError, "form='bogus' is not known"),
        ({"likelihood": "studentt"}, ValueError, "mixes Gaussian components"),
        ({"form": "mdn", "ordered": "yes"}, TypeError, "ordered must be True, False or None"),
    ],
)
def test_bad_options(kwargs, exc, match):
    with pytest.raises(exc, match=match):
        MixtureRegressor((3,), **kwargs)


def test_bad_data_and_too_many_components(monkeypatch):
    monkeypatch.setattr(pm, "sample", lambda *a, **k: pytest.fail("sampling started"))
    X = np.linspace(0, 1, 30)[:, None]
    with pytest.raises(ValueError, match="y contains NaN"):
        MixtureRegressor((3,)).fit(X, np.where(X[:, 0] > 0.5, np.nan, 1.0))
    with pytest.warns(UserWarning, match="n_components=5 for 30 rows"):
        MixtureRegressor((3,), n_components=5).build(X, X[:, 0])
    assert main(["fit", "--components", "3", "--no-progress"]) == 2  # not a mixture model


def read_net_spec(idata, net):
    return net_and_spec(idata, net)[1]


def _bimodal(n, seed):
    """y = ±(1 + x) + noise: two modes at every x."""
    rng = np.random.default_rng(seed)
    x = rng.uniform(0, 2, n)
    y = rng.choice([-1.0, 1.0], n) * (1 + x) + 0.15 * rng.normal(size=n)
    return x[:, None], y


@pytest.mark.slow
def test_mixture_beats_the_gaussian_mlp_and_finds_both_modes():
    X, y = _bimodal(200, 1)
    X_test, y_test = _bimodal(200, 2)
    mlp = MLP((6,)).fit(X, y, draws=300, tune=300, random_seed=1, progressbar=False)
    mix = MixtureRegressor((6,), n_components=2, form="mdn").fit(
        X, y, draws=300, tune=300, random_seed=1, progressbar=False
    )
    a, b = log_predictive_density(mix, X_test, y_test), log_predictive_density(mlp, X_test, y_test)
    diff = a["pointwise"] - b["pointwise"]
    assert diff.sum() > 2 * np.sqrt(len(diff)) * diff.std(ddof=1)
    grid = np.linspace(-4, 4, 401)
    dens = predictive_density(mix, [[1.0]], grid).values[0, 0]
    peaks = grid[1:-1][(dens[1:-1] > dens[:-2]) & (dens[1:-1] > dens[2:]) & (dens[1:-1] > 0.05)]
    assert len(peaks) == 2 and np.allclose(np.sort(peaks), [-2.0, 2.0], atol=0.25)


@pytest.mark.slow
def test_label_switching_between_chains_is_removed_by_relabelling(sample_from_starts):
    """Chains started from one fitted point with its components permuted differently."""
    X, y = _bimodal(150, 3)
    # the prior this set-up was built with: under the default scale 2 the mean-head biases
    # sit closer to 0 (W_out carries more), so the copies differ less in b_out (R-hat 1.33)
    net = MixtureRegressor((4,), n_components=2, form="mdn", prior_scale=1.0)
    model = net.build(X, y)
    one = pm.sample(
        200,
        tune=400,
        chains=1,
        model=model,
        random_seed=1,
        nuts_sampler="numpyro",
        progressbar=False,
        compute_convergence_checks=False,
    )
    point = {k: one["posterior"][k].values[0, -1] for k in ("W1", "b1", "W_out", "b_out")}
    starts = [
        net.apply_component_labels(point, np.array([perm]))
        for perm in ([0, 1], [1, 0], [0, 1], [1, 0])
    ]
    idata = sample_from_starts(model, starts, draws=500)
    raw = float(az.rhat(idata, var_names=["b_out"])["b_out"].max())
    canon = ident.canonicalize(idata, net=net)
    relabelled = float(az.rhat(canon, var_names=["b_out"])["b_out"].max())
    assert raw > 1.5 and relabelled <= 1.01
    # and relabelling must not swap components within a chain: at x = 1 the branches are
    # at -2 and +2, so every draw of every chain should order them the same way
    post = canon["posterior"]
    means = net.observation_parameters(
        {k: post[k].values for k in post.data_vars}, [[1.0]], read_net_spec(canon, net)
    )["mu"]
    order = np.argsort(means[:, :, 0, 0, :], axis=-1)[..., 0]  # (chain, draw)
    assert (order == order[0, 0]).mean() >= 0.99


def test_mdn_components_need_the_training_inputs(mdn_fit):
    net, ds, idata = mdn_fit
    bare = xr.DataTree.from_dict({"posterior": idata["posterior"].to_dataset()})
    with pytest.raises(ValueError, match="needs the training inputs"):
        ident.canonicalize(bare, net=net)


@pytest.mark.slow
def test_noise_form_converges_on_faithful():
    """Before the mean-zero noise and the logaddexp likelihood: 3978 of 4000 draws divergent."""
    ds = data.load("faithful")
    net = MixtureRegressor((8,), n_components=2)
    idata = net.fit(ds.X, ds.y, draws=500, tune=500, random_seed=1, progressbar=False)
    conv = prediction_convergence(idata, net, read_net(idata)[1])
    assert conv["divergences"] <= 0.005 * 4 * 500
    assert conv["max_rhat"] <= 1.01
    assert conv["min_ess_bulk"] >= 400


def test_noise_form_prior_draws_match_the_stated_priors():
    """Dirichlet(2) weights, half-normal scales in y units, mean-zero noise, N(0, 1) raw locs."""
    ds = data.load("mcycle")
    net = MixtureRegressor((3,), n_components=2)
    X, y, spec = net.data_spec(ds.X, ds.y)
    prior = pm.sample_prior_predictive(
        draws=2000, model=net.build_validated(X, y, spec), random_seed=5
    )["prior"]
    w = prior["weights"].values[0, :, 0, 0]
    assert stats.kstest(w, stats.beta(2, 2).cdf).pvalue > 0.01
    s = prior["sigma"].values[0, :, 0].ravel()
    assert stats.kstest(s, stats.halfnorm(scale=spec.y_scale[0]).cdf).pvalue > 0.01
    raw = prior["loc_raw"].values[0].ravel()
    assert stats.kstest(raw, stats.norm().cdf).pvalue > 0.01
    loc, weights = prior["loc"].values, prior["weights"].values
    np.testing.assert_allclose((loc * weights).sum(axis=-1), 0.0, atol=1e-9)
    # exchangeable components: either order of the locations, equally often
    assert (np.diff(loc, axis=-1) > 0).mean() == pytest.approx(0.5, abs=0.05)


def test_mdn_prior_draws_match_the_stated_priors():
    """LeCun-rule head weights, N(0, 1) head biases, and y drawn from the stated mixture."""
    ds = data.load("inverse_sine")
    net = MixtureRegressor((4,), n_components=2, form="mdn")
    X, y, spec = net.data_spec(ds.X, ds.y)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # numba's object mode for the random
        idata = pm.sample_prior_predictive(
            draws=2000, model=net.build_validated(X, y, spec), random_seed=5
        )
    prior = {k: v.values[0] for k, v in idata["prior"].items()}
    w_scale = net.prior_scale / np.sqrt(4)
    assert stats.kstest(prior["W_out"][:, 0, 0], stats.norm(scale=w_scale).cdf).pvalue > 0.01
    assert stats.kstest(prior["b_out"][:, 2], stats.norm(scale=net.bias_scale).cdf).pvalue > 0.01
    # y at one input against draws from the components that the same parameters give
    row = 50
    mixture = net.observation_parameters(prior, X[row : row + 1], spec)
    w, means, sds = mixture["w"], mixture["mu"], mixture["sigma"]
    rng = np.random.default_rng(0)
    k = (rng.random(2000)[:, None] > np.cumsum(w[:, 0, 0], axis=-1)).sum(axis=-1)
    pick = np.arange(2000)
    by_hand = rng.normal(means[pick, 0, 0, k], sds[pick, 0, 0, k])
    drawn = idata["prior_predictive"]["y"].values[0, :, row, 0]
    assert stats.ks_2samp(drawn, by_hand).pvalue > 0.01


@pytest.mark.parametrize("form", ["noise", "mdn"])
def test_minibatch_likelihood_is_scaled_to_the_data(form):
    # all rows alike: any batch, scaled by n / batch_size, gives the full log-likelihood
    X, y = np.ones((30, 1)), np.full(30, 0.3)
    net = MixtureRegressor((3,), n_components=2, form=form, standardize=False)
    X_arr, y_arr, spec = net.data_spec(X, y)
    full = net.build_validated(X_arr, y_arr, spec)
    mini = net.build_validated(X_arr, y_arr, spec, batch_size=7)
    point = full.initial_point()
    lik_full = full.compile_logp(vars=full.observed_RVs)(point)
    np.testing.assert_allclose(mini.compile_logp(vars=mini.observed_RVs)(point), lik_full)


def test_fullrank_advi_on_the_mdn_gives_finite_log_q():
    """L Lᵀ of this fit failed SciPy's positive-definiteness check (a LinAlgError in fit)."""
    ds = data.load("faithful")
    rows = np.sort(np.random.default_rng(0).permutation(len(ds.y))[:204])
    idata = MixtureRegressor((8,), n_components=2, form="mdn").fit(
        ds.X[rows],
        ds.y[rows],
        method="fullrank_advi",
        draws=100,
        random_seed=1,
        progressbar=False,
    )
    assert np.isfinite(idata["sample_stats"]["log_q"].values).all()
