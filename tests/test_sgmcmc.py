"""Stochastic-gradient MCMC: the minibatch log density, the schedules, the usual result format."""

import json

import numpy as np
import pymc as pm
import pytest

from bnncat import data, diagnose
from bnncat import identifiability as ident
from bnncat.models import MLP, MixtureRegressor, OrderedMLP, fit, load, predict, save
from bnncat.models.inference import sgmcmc
from bnncat.models.inference.flat_draws import prior_flat
from bnncat.models.inference.laplace_curvature import flat_model
from bnncat.models.inference.minibatch_density import minibatch_density
from bnncat.models.inference.problem import prepare_problem
from bnncat.models.jax_runtime import jax_session

QUICK = {"draws": 20, "chains": 2, "thin": 2, "burn_in": 200, "random_seed": 4}
NETS = [MLP((3,)), OrderedMLP((3,)), MixtureRegressor((3,), n_components=2)]


@pytest.fixture(scope="module")
def sine():
    return data.load("sine", n=60, noise=0.1, seed=2)


def _quiet_fit(net, ds, **options):
    """Fit with the short runs of the tests: the convergence warning is expected."""
    with pytest.warns(UserWarning, match="R-hat|ESS"):
        return fit(net, ds.X, ds.y, method="sgmcmc", **(QUICK | options))


@pytest.mark.parametrize("net", NETS, ids=repr)
def test_sgmcmc_fits_predicts_saves_relabels_and_is_diagnosed(net, sine, tmp_path):
    idata = _quiet_fit(net, sine, batch_size=16)
    post, stats = idata["posterior"], idata["sample_stats"]
    assert post.sizes["chain"] == 2 and post.sizes["draw"] == 20
    assert idata.attrs["fit_kind"] == "mcmc" and idata.attrs["fit_method"] == "sgmcmc"
    assert np.isfinite(stats["log_p"]).all() and (stats["step_size"] == 2e-3 / 60).all()
    assert float(post["W1"].std("draw").min()) > 0  # the chains move
    assert predict(idata, np.zeros((3, 1)))["predictions"]["y"].shape == (2, 20, 3, 1)
    again = load(save(idata, tmp_path / "fit.nc"))
    np.testing.assert_array_equal(again["posterior"]["W1"], post["W1"])
    assert ident.canonicalize(idata)["posterior"]["W1"].shape == post["W1"].shape
    report = diagnose(again, random_seed=1)
    assert report.options["fit_kind"] == "mcmc" and report.verdict.sentence


@pytest.mark.parametrize(
    ("net", "temperature"), list(zip(NETS, [1.0, 1.0, 2.0], strict=True)), ids=repr
)
def test_the_minibatch_density_is_the_full_one_on_its_rows(net, temperature, sine):
    problem = prepare_problem(
        net, sine.X, sine.y, draws=1, random_seed=1, store_mu=False, temperature=temperature
    )
    with jax_session("float64"):
        flat = flat_model(problem.model, temperature)
        density = minibatch_density(problem.model, temperature)
        X, y = density.X, density.y
        for x in prior_flat(problem.model, flat, 2, seed=3):
            # all rows: PyMC's own (tempered) log posterior, exactly
            np.testing.assert_allclose(density.log_posterior(x, X, y), flat.log_density(x))
            np.testing.assert_allclose(density.log_prior(x), flat.log_prior(x))
            rows = np.asarray(flat.log_likelihood_rows(x))
            batch = np.asarray(density.log_likelihood_rows(x, X[7:19], y[7:19]))
            np.testing.assert_allclose(batch, rows[7:19])
            # a batch of B rows counts n / B times
            estimate = density.log_prior(x) + 60 / 12 * batch.sum()
            np.testing.assert_allclose(density.log_posterior(x, X[7:19], y[7:19]), estimate)


def test_one_evaluation_holds_no_full_data(sine):
    """The batch is the only data in the program: its cost does not grow with n."""
    import jax

    problem = prepare_problem(MLP((3,)), sine.X, sine.y, draws=1, random_seed=1, store_mu=False)
    with jax_session("float64"):
        density = minibatch_density(problem.model)
        x = prior_flat(problem.model, flat_model(problem.model), 1, seed=1)[0]
        program = jax.make_jaxpr(jax.grad(density.log_posterior))(x, density.X[:5], density.y[:5])
    sizes = [np.size(c) for c in program.consts]
    assert max(sizes, default=0) < 60


def test_a_model_without_catalogue_data_is_refused():
    with pm.Model() as model:
        w = pm.Normal("w")
        pm.Normal("y", w, 1.0, observed=np.zeros(5))
    with pytest.raises(ValueError, match="one pm.Data named 'X'"):
        minibatch_density(model)


SGHMC = {"kernel": "sghmc", "integration_steps": 2, "batch_size": 30}


@pytest.fixture(scope="module")
def sghmc_fit(sine):
    return _quiet_fit(MLP((2,)), sine, **SGHMC)


def test_the_same_seed_gives_the_same_draws_and_other_seeds_other_ones(sine, sghmc_fit):
    again = _quiet_fit(MLP((2,)), sine, **SGHMC)
    other = _quiet_fit(MLP((2,)), sine, **(SGHMC | {"random_seed": 5}))
    np.testing.assert_array_equal(sghmc_fit["posterior"]["W1"], again["posterior"]["W1"])
    assert not np.allclose(sghmc_fit["posterior"]["W1"], other["posterior"]["W1"])


def test_the_cyclical_schedule_follows_the_cosine_and_keeps_its_sampling_stage(sine):
    idata = _quiet_fit(
        MLP((3,)), sine, schedule="cyclical", cycles=2, exploration=0.5, step_size=1e-4, thin=3
    )
    # 10 draws a cycle, 3 steps apart: 30 sampling steps, 60 steps a cycle, no burn-in
    j = 30 + 3 * np.arange(1, 11) - 1
    expected = np.tile(1e-4 / 2 * (np.cos(np.pi * j / 60) + 1), 2)
    np.testing.assert_allclose(idata["sample_stats"]["step_size"].values[0], expected)
    options = {**json.loads(idata.attrs["bnncat_fit"]), "burn_in": 0}
    plan = sgmcmc.make_schedule(20, options)
    assert len(plan.step_size) == 120 and plan.noise.tolist() == ([0] * 30 + [1] * 30) * 2


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        ({"batch_size": 61}, ValueError, "batch_size=61 is larger than the data's 60 rows"),
        ({"batch_size": 0}, ValueError, "batch_size must be >= 1"),
        ({"kernel": "sgnht"}, ValueError, "kernel='sgnht' is not known"),
        ({"step_size": -1.0}, ValueError, "step_size must be finite and > 0"),
        ({"schedule": "cosine"}, ValueError, "schedule='cosine' is not known"),
        ({"cycles": 3}, ValueError, "cycles is an option of schedule='cyclical'"),
        ({"schedule": "cyclical", "cycles": 3}, ValueError, "multiple of cycles=3"),
        ({"schedule": "cyclical", "exploration": 1.0}, ValueError, r"exploration must be in"),
        ({"friction": 1.0}, ValueError, "friction is an option of kernel='sghmc'"),
        ({"kernel": "sghmc", "integration_steps": 0}, ValueError, "integration_steps must be"),
        ({"thin": 1.5}, TypeError, "thin must be an integer"),
        ({"burn_in": -1}, ValueError, "burn_in must be >= 0"),
        ({"tune": 100}, ValueError, "set burn_in"),
        ({"target_accept": 0.9}, ValueError, "no Metropolis step"),
    ],
)
def test_bad_options_fail_before_any_sampling(kwargs, error, match, sine, monkeypatch):
    monkeypatch.setattr(sgmcmc, "run_chains", lambda *a, **k: pytest.fail("sampled"))
    monkeypatch.setattr(sgmcmc, "minibatch_density", lambda *a, **k: pytest.fail("translated"))
    with pytest.raises(error, match=match):
        fit(MLP((2,)), sine.X, sine.y, method="sgmcmc", draws=20, **kwargs)


def test_the_options_are_recorded_with_the_defaults_they_resolved_to(sghmc_fit):
    options = json.loads(sghmc_fit.attrs["bnncat_fit"])
    step = (1e-4 / 60) ** 0.5
    assert options["kernel"] == "sghmc" and options["batch_size"] == 30
    assert options["step_size"] == pytest.approx(step)
    assert options["friction"] == pytest.approx(0.1 / step)
    assert options["integration_steps"] == 2 and options["burn_in"] == 200
    assert options["schedule"] == "constant" and options["cycles"] is None


@pytest.mark.slow
@pytest.mark.filterwarnings("ignore:R-hat of the predictions")  # chains in different modes
def test_sgld_on_minibatches_predicts_held_out_data_nearly_as_well_as_an_ensemble():
    """SGLD with batches of 50 of 1000 rows against a deep ensemble, held-out LPD per row."""
    from bnncat.evaluation import log_predictive_density

    train, test = (data.load("sine", n=n, noise=0.1, seed=s) for n, s in ((1000, 2), (500, 9)))
    sgld = fit(
        MLP((8,)),
        train.X,
        train.y,
        method="sgmcmc",
        batch_size=50,
        draws=100,
        thin=50,
        burn_in=20_000,
        random_seed=1,
    )
    ensemble = fit(MLP((8,)), train.X, train.y, method="ensemble", members=4, random_seed=1)
    lpd = {
        name: log_predictive_density(idata, test.X, test.y)["mean"]
        for name, idata in (("sgld", sgld), ("ensemble", ensemble))
    }
    # the noise sd is 0.1: a perfect mean gives 0.88 per row; the prior's functions far less
    assert lpd["ensemble"] > 0.8
    assert lpd["sgld"] > lpd["ensemble"] - 0.02
