"""SWAG and MultiSWAG: the Gaussian's moments, its draws, and the usual result format."""

import json

import numpy as np
import pytest

from bnncat import data, diagnose
from bnncat import identifiability as ident
from bnncat.evaluation.density import log_predictive_density
from bnncat.models import MLP, MixtureRegressor, OrderedMLP, fit, load, predict, save
from bnncat.models.inference import ensemble, swag
from bnncat.models.inference.flat_draws import prior_flat
from bnncat.models.inference.laplace_curvature import flat_model
from bnncat.models.inference.problem import prepare_problem
from bnncat.models.jax_runtime import jax_session

TRAINING = {"adam_steps": 100, "maxiter": 200, "random_seed": 4}
QUICK = TRAINING | {"members": 2, "draws": 20, "swag_epochs": 20, "rank": 5, "batch_size": 16}


@pytest.fixture(scope="module")
def sine():
    return data.load("sine", n=60, noise=0.1, seed=2)


@pytest.fixture(scope="module")
def mlp_fit(sine):
    """One quick fit that several tests read (each fit compiles two programs)."""
    return fit(MLP((3,)), sine.X, sine.y, method="swag", **QUICK)


@pytest.mark.parametrize(
    "net", [MLP((3,)), OrderedMLP((3,)), MixtureRegressor((3,), n_components=2)], ids=repr
)
def test_swag_fits_predicts_saves_relabels_and_is_diagnosed(net, sine, mlp_fit, tmp_path):
    idata = mlp_fit if net == MLP((3,)) else fit(net, sine.X, sine.y, method="swag", **QUICK)
    post = idata["posterior"]
    assert post.sizes["chain"] == 2 and post.sizes["draw"] == 20
    assert idata.attrs["fit_kind"] == "ensemble" and idata.attrs["fit_method"] == "swag"
    group = idata["swag"]
    assert np.isfinite(group["log_posterior"]).all() and (group["mean_sd"] > 0).all()
    assert (group["rank"] == 5).all() and (group["iterations"] > 0).all()
    assert np.isfinite(idata["sample_stats"]["log_p"]).all()
    assert float(post["W1"].std("draw").min()) > 0  # every weight moves under SGD
    assert predict(idata, np.zeros((3, 1)))["predictions"]["y"].shape == (2, 20, 3, 1)
    again = load(save(idata, tmp_path / "fit.nc"))
    np.testing.assert_array_equal(again["posterior"]["W1"], post["W1"])
    assert ident.canonicalize(idata)["posterior"]["W1"].shape == post["W1"].shape
    report = diagnose(idata, random_seed=1)
    assert report.options["fit_kind"] == "ensemble" and report.verdict.sentence


def test_the_moments_are_those_of_the_collected_iterates():
    import jax

    iterates = np.random.default_rng(1).normal(size=(7, 4)) * [1.0, 2.0, 0.1, 3.0] + 5.0
    with jax_session("float64"):
        moments = swag.start_moments(np.zeros(4), rank=3)
        moments, _ = jax.lax.scan(lambda m, x: (swag.collect(m, x), None), moments, iterates)
        mean, variance, deviations = map(np.asarray, swag.finish_moments(moments))
    np.testing.assert_allclose(mean, iterates.mean(axis=0))
    np.testing.assert_allclose(variance, iterates.var(axis=0))  # the paper's diag: ddof 0
    # the ring holds the last three iterates (in ring order); deviations from the final mean
    last = iterates[-3:] - iterates.mean(axis=0)
    np.testing.assert_allclose(deviations[[1, 2, 0]], last)


def test_the_draws_have_the_swag_mean_and_covariance():
    rng = np.random.default_rng(2)
    mean, variance = rng.normal(size=(1, 3)), rng.uniform(0.5, 2.0, size=(1, 3))
    deviations = rng.normal(size=(1, 4, 3))
    draws = swag.draw_swag(mean, variance, deviations, 40_000, seed=3)[0]
    cov = np.diag(variance[0]) / 2 + deviations[0].T @ deviations[0] / (2 * 3)
    se = np.sqrt(np.diag(cov) / len(draws))
    assert np.all(np.abs(draws.mean(axis=0) - mean[0]) < 4 * se)
    # sample covariance: sd of each entry ~ sqrt((c_ij^2 + c_ii c_jj) / n), ~1% here
    scale = np.sqrt((cov**2 + np.outer(np.diag(cov), np.diag(cov))) / len(draws))
    assert np.all(np.abs(np.cov(draws, rowvar=False) - cov) < 4 * scale)


@pytest.mark.parametrize(("n", "batch_size"), [(10, 3), (60, 16), (5, 5)])
def test_an_epoch_weights_every_row_once_by_n_over_its_batch(n, batch_size):
    import jax

    with jax_session("float64"):
        weights = np.asarray(swag.epoch_weights(jax.random.key(0), n, batch_size))
    assert weights.shape == (-(-n // batch_size), n)
    assert ((weights > 0).sum(axis=0) == 1).all()  # each row in one batch
    np.testing.assert_allclose(weights.sum(axis=1), n)  # each batch estimates the whole data
    sizes = (weights > 0).sum(axis=1)
    assert (sizes[:-1] == batch_size).all() and sizes[-1] == n - batch_size * (len(sizes) - 1)


def test_members_start_where_the_ensembles_members_end(sine, mlp_fit):
    ens = fit(MLP((3,)), sine.X, sine.y, method="ensemble", **TRAINING, members=2)
    np.testing.assert_allclose(
        mlp_fit["swag"]["pretrained_log_posterior"], ens["ensemble"]["log_posterior"]
    )
    np.testing.assert_array_equal(mlp_fit["swag"]["converged"], ens["ensemble"]["converged"])


def test_the_same_seed_gives_the_same_draws_and_each_member_its_own(sine, mlp_fit):
    again = fit(MLP((3,)), sine.X, sine.y, method="swag", **QUICK)
    np.testing.assert_array_equal(again["posterior"]["W1"], mlp_fit["posterior"]["W1"])
    w1 = mlp_fit["posterior"]["W1"].values
    assert not np.allclose(w1[0], w1[1])  # own prior draw, own minibatches, own draws


def test_sgd_that_diverges_says_which_option_to_lower(sine):
    problem = prepare_problem(MLP((3,)), sine.X, sine.y, draws=1, random_seed=1, store_mu=False)
    options = {"swag_learning_rate": 10.0, "momentum": 0.9, "batch_size": 16}
    with jax_session("float64"):
        flat = flat_model(problem.model)
        starts = prior_flat(problem.model, flat, 2, seed=1)
        with pytest.raises(FloatingPointError, match="lower it"):
            swag.run_swag(flat, starts, 60, 1, options | {"swag_epochs": 5, "rank": 2})


def test_the_default_step_stays_inside_sgds_stability_bound_on_data_with_little_noise():
    """With noise 0.01 the curvature is ~100x sine's: 1e-3 diverges, the default step does not."""
    quiet = data.load("sine", n=60, noise=0.01, seed=2)
    idata = fit(MLP((3,)), quiet.X, quiet.y, method="swag", **QUICK)
    curvature = idata["swag"]["largest_curvature"].values
    step = json.loads(idata.attrs["bnncat_fit"])["swag_learning_rate"]
    bound = 2 * (1 + 0.9) / curvature.max()
    assert bound < swag.SWAG_LEARNING_RATE  # the fixed step would leave the bound
    assert step == pytest.approx(swag.STABILITY_SHARE * bound)
    assert np.isfinite(idata["posterior"]["W1"]).all()
    with pytest.raises(FloatingPointError, match="lower it"):
        fit(MLP((3,)), quiet.X, quiet.y, method="swag", swag_learning_rate=1e-3, **QUICK)


def test_the_default_step_is_the_fixed_one_where_the_bound_is_far_or_undefined():
    assert swag.default_learning_rate(np.array([14.8, 10.0]), 0.9) == swag.SWAG_LEARNING_RATE
    assert swag.default_learning_rate(np.array([-3.0]), 0.9) == swag.SWAG_LEARNING_RATE
    assert swag.default_learning_rate(np.array([np.nan]), 0.9) == swag.SWAG_LEARNING_RATE
    assert swag.default_learning_rate(np.array([1e4, 2e4]), 0.5) == pytest.approx(0.1 * 3 / 2e4)
    assert swag.default_learning_rate(np.array([np.nan, 2e4]), 0.5) == pytest.approx(0.1 * 3 / 2e4)


def test_the_largest_curvature_is_that_of_the_hessian():
    """Lanczos on Hessian-vector products gives the dense Hessian's largest eigenvalue."""
    import jax

    sine = data.load("sine", n=30, noise=0.1, seed=3)
    problem = prepare_problem(MLP((2,)), sine.X, sine.y, draws=1, random_seed=1, store_mu=False)
    with jax_session("float64"):
        flat = flat_model(problem.model)
        x = prior_flat(problem.model, flat, 1, seed=1)
        objective = ensemble.member_objective(flat)
        terms = (np.ones(30), np.zeros(flat.size))
        hessian = jax.hessian(lambda v: -objective(v, terms) / 30)(x[0])
        found = swag.largest_curvatures(flat, x, 30)
    np.testing.assert_allclose(found, np.linalg.eigvalsh(np.asarray(hessian)).max(), rtol=1e-3)


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        ({"batch_size": 61}, ValueError, "batch_size=61 exceeds the 60 rows"),
        ({"batch_size": 0}, ValueError, "batch_size must be >= 1"),
        ({"rank": 1}, ValueError, "rank must be >= 2"),
        ({"rank": 30, "swag_epochs": 20}, ValueError, "rank=30 exceeds swag_epochs=20"),
        ({"momentum": 1.0}, ValueError, r"momentum must be in \[0, 1\)"),
        ({"momentum": "0.9"}, TypeError, "momentum must be a number"),
        ({"swag_learning_rate": 0.0}, ValueError, "swag_learning_rate must be finite and > 0"),
        ({"swag_epochs": 2.5}, TypeError, "swag_epochs must be an integer"),
        ({"members": 0}, ValueError, "members must be >= 1"),
        ({"chains": 4}, ValueError, "its chains are its members"),
        ({"tune": 100}, ValueError, "set adam_steps and maxiter"),
    ],
)
def test_bad_options_fail_before_any_training(kwargs, error, match, sine, monkeypatch):
    monkeypatch.setattr(ensemble, "find_modes", lambda *a, **k: pytest.fail("trained"))
    monkeypatch.setattr(swag, "run_swag", lambda *a, **k: pytest.fail("walked"))
    with pytest.raises(error, match=match):
        fit(MLP((2,)), sine.X, sine.y, method="swag", **kwargs)


def test_the_options_are_recorded(mlp_fit):
    options = json.loads(mlp_fit.attrs["bnncat_fit"])
    assert options["members"] == 2 and options["batch_size"] == 16
    assert options["rank"] == 5 and options["swag_epochs"] == 20 and options["momentum"] == 0.9
    curvature = mlp_fit["swag"]["largest_curvature"].values
    assert options["swag_learning_rate"] == swag.default_learning_rate(curvature, 0.9)
    assert options["adam_steps"] == 100 and options["kind"] == "ensemble"


def test_the_batch_size_by_default_is_32_rows_or_all_of_them():
    assert swag._batch_size(None, 60) == 32 and swag._batch_size(None, 20) == 20


@pytest.mark.slow
def test_multiswag_predicts_held_out_data_as_well_as_the_ensemble_and_is_calibrated(sine):
    """MultiSWAG's held-out LPD is no worse than its members' ensemble, its 90% band covers.

    Written: LPD 0.9176 against the ensemble's 0.9171 per row, coverage 0.92 (truth's
    LPD 0.88). Too large a step spreads the draws across the valley's sharp walls
    (swag_learning_rate=3e-3, batch_size=8: LPD 0.76, coverage 0.98) and fails both.
    """
    test = data.load("sine", n=300, noise=0.1, seed=7)
    options = {"members": 4, "random_seed": 1}
    ens = fit(MLP((8,)), sine.X, sine.y, method="ensemble", **options)
    multi = fit(MLP((8,)), sine.X, sine.y, method="swag", **options)
    lpd = {
        name: log_predictive_density(i, test.X, test.y)["mean"]
        for name, i in [("e", ens), ("s", multi)]
    }
    assert lpd["s"] >= lpd["e"] - 0.01
    y = predict(multi, test.X, random_seed=0)["predictions"]["y"].values
    low, high = np.quantile(y.reshape(-1, len(test.y)), [0.05, 0.95], axis=0)
    coverage = np.mean((test.y >= low) & (test.y <= high))
    assert 0.85 <= coverage <= 0.95  # 300 rows: the binomial sd is 0.017
