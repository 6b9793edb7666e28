"""Sequential Monte Carlo: the usual result format, the stages, seeds and option checks."""

import json

import numpy as np
import pymc as pm
import pytest

from bnncat import data, diagnose
from bnncat import identifiability as ident
from bnncat.models import MLP, MixtureRegressor, OrderedMLP, fit, load, predict, save
from bnncat.models.inference.problem import prepare_problem

QUICK = {"draws": 100, "chains": 2, "random_seed": 3, "progressbar": False}


@pytest.fixture(scope="module")
def sine():
    return data.load("sine", n=60, noise=0.1, seed=2)


@pytest.mark.parametrize(
    "net", [MLP((3,)), OrderedMLP((3,)), MixtureRegressor((3,), n_components=2)], ids=repr
)
def test_smc_fits_predicts_saves_relabels_and_is_diagnosed(net, sine, tmp_path):
    idata = fit(net, sine.X, sine.y, method="smc", **QUICK)
    post = idata["posterior"].to_dataset()
    assert post.sizes["chain"] == 2 and post.sizes["draw"] == 100
    assert idata.attrs["fit_kind"] == "smc" and idata.attrs["fit_method"] == "smc"
    # the names and dims a NUTS fit stores: the model's free variables and deterministics
    model = prepare_problem(net, sine.X, sine.y, draws=1, random_seed=1, store_mu=False).model
    expected = {
        v.name: model.named_vars_to_dims.get(
            v.name, tuple(f"{v.name}_dim_{i}" for i in range(v.ndim))
        )
        for v in model.free_RVs + model.deterministics
        if v.name != "mu"  # store_mu=False
    }
    assert {k: post[k].dims[2:] for k in post} == expected
    assert all(post[k].dtype == np.float64 for k in post)
    stages = idata["smc"]
    for beta, n in zip(stages["beta"].values, stages["stages"].values, strict=True):
        assert beta[n - 1] == 1.0 and np.isnan(beta[n:]).all()  # padded after the last stage
    assert np.isfinite(stages["log_marginal_likelihood"]).all()
    assert np.isfinite(idata["sample_stats"]["log_p"]).all()
    assert predict(idata, np.zeros((3, 1)))["predictions"]["y"].shape == (2, 100, 3, 1)
    again = load(save(idata, tmp_path / "fit.nc"))
    np.testing.assert_array_equal(again["posterior"]["W1"], post["W1"])
    np.testing.assert_array_equal(again["smc"]["beta"], stages["beta"])
    assert ident.canonicalize(idata)["posterior"]["W1"].shape == post["W1"].shape
    report = diagnose(idata, random_seed=1)
    assert report.options["fit_kind"] == "smc" and report.verdict.sentence


def test_the_same_seed_gives_the_same_draws_in_one_process_or_several(sine):
    a = fit(MLP((3,)), sine.X, sine.y, method="smc", **QUICK)
    b = fit(MLP((3,)), sine.X, sine.y, method="smc", cores=2, **QUICK)
    c = fit(MLP((3,)), sine.X, sine.y, method="smc", **(QUICK | {"random_seed": 4}))
    np.testing.assert_array_equal(a["posterior"]["W1"], b["posterior"]["W1"])
    np.testing.assert_array_equal(a["smc"]["beta"], b["smc"]["beta"])
    assert not np.allclose(a["posterior"]["W1"], c["posterior"]["W1"])


def test_one_tempered_mh_run_keeps_its_stages_and_the_tempered_log_density(sine):
    net = MLP((3,))
    idata = fit(
        net, sine.X, sine.y, method="smc", kernel="mh", temperature=2.0, **(QUICK | {"chains": 1})
    )
    stages = idata["smc"]
    n = int(stages["stages"][0])
    assert stages.sizes == {"chain": 1, "stage": n} and stages["beta"].values[0, -1] == 1.0
    assert (np.diff(stages["beta"].values[0]) > 0).all()
    assert {"accept_rate", "proposal_scale"} <= set(stages.data_vars)
    # log p of a draw: prior (with the log transform's Jacobian) + half the log likelihood
    model = prepare_problem(net, sine.X, sine.y, draws=1, random_seed=1, store_mu=False).model
    prior = model.compile_logp(vars=model.free_RVs, jacobian=True)
    likelihood = model.compile_logp(vars=model.observed_RVs)
    post = idata["posterior"].isel(chain=0, draw=7)
    point = {k: post[k].values for k in ("W1", "b1", "W_out", "b_out")}
    point["sigma_log__"] = np.log(post["sigma"].values)
    expected = prior(point) + likelihood(point) / 2
    np.testing.assert_allclose(idata["sample_stats"]["log_p"].values[0, 7], expected, rtol=1e-10)


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        ({"kernel": "hmc"}, ValueError, "kernel='hmc' is not known"),
        ({"kernel": 1}, TypeError, "kernel must be a string"),
        ({"threshold": 1.0}, ValueError, r"threshold must lie in \(0, 1\)"),
        ({"threshold": 0}, ValueError, "threshold must be finite and > 0"),
        ({"correlation_threshold": "low"}, TypeError, "correlation_threshold must be a number"),
        ({"chains": 0}, ValueError, "chains must be >= 1"),
        ({"cores": 1.5}, TypeError, "cores must be an integer"),
        ({"backend": "jax"}, ValueError, "backend='jax' is not known"),
        ({"draws": 1}, ValueError, "draws must be >= 2"),
        ({"temperature": -1.0}, ValueError, "temperature must be finite and > 0"),
        ({"store_mu": "yes"}, TypeError, "store_mu must be True or False"),
        ({"tune": 100}, ValueError, "SMC has no warm-up"),
    ],
)
def test_bad_options_fail_before_any_sampling(kwargs, error, match, sine, monkeypatch):
    monkeypatch.setattr(pm, "sample_smc", lambda *a, **k: pytest.fail("sampled"))
    with pytest.raises(error, match=match):
        fit(MLP((2,)), sine.X, sine.y, method="smc", **kwargs)


def test_the_options_are_recorded(sine):
    idata = fit(MLP((2,)), sine.X, sine.y, method="smc", threshold=0.6, **QUICK)
    options = json.loads(idata.attrs["bnncat_fit"])
    assert options["kind"] == "smc" and options["kernel"] == "imh"
    assert options["threshold"] == 0.6 and options["correlation_threshold"] == 0.01
    assert options["chains"] == 2 and options["draws"] == 100 and options["cores"] == 1
    assert options["random_seed"] == 3 and options["store_mu"] is False


@pytest.mark.slow
def test_four_runs_agree_on_the_log_marginal_likelihood_of_sine_1x4():
    """The issue's target: on sine 1x4 the estimates of 4 runs agree within 1 nat.

    It holds on 20 points with 2000 particles and slow tempering (spreads 0.48, 0.86
    and 0.42 nats for seeds 1, 2, 3 when written), not with PyMC's defaults
    (threshold 0.5, correlation_threshold 0.01: 1.6 to 1.9 nats at 1000 to 4000
    particles) nor on 60 points (1.9 nats at 16000 particles). Agreement is not
    accuracy: random-walk runs (kernel="mh") with the same settings agree as well,
    about 2.6 nats higher.
    """
    ds = data.load("sine", n=20, noise=0.1, seed=2)
    idata = fit(
        MLP((4,)),
        ds.X,
        ds.y,
        method="smc",
        draws=2000,
        chains=4,
        threshold=0.9,
        correlation_threshold=0.001,
        backend="numba",  # the same draws as C, faster per particle
        random_seed=1,
        progressbar=False,
    )
    log_ml = idata["smc"]["log_marginal_likelihood"].values
    assert np.isfinite(log_ml).all() and np.ptp(log_ml) < 1.0


def test_the_verdict_of_smc_runs_speaks_of_particles_and_their_evidence():
    from bnncat.report.verdict import _judge_smc

    apart = _judge_smc(4, 1.002, 1.01, 3.0)
    assert apart.status == "d" and "span 3.0 nats" in apart.sentence
    assert "particles" in apart.sentence and "threshold" in apart.next_steps[0]
    together = _judge_smc(4, 1.002, 1.01, 0.4)
    assert together.status == "-" and "cover the same function" in together.sentence
    assert _judge_smc(4, 1.2, 1.01, 0.4).status == "d"
