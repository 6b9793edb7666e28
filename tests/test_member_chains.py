"""Chains started from ensemble members: DEI-NUTS and MCLMC, in the usual result format."""

import json

import numpy as np
import pytest

from bnncat import data, diagnose
from bnncat import identifiability as ident
from bnncat.models import MLP, MixtureRegressor, OrderedMLP, fit, load, predict, save
from bnncat.models.inference import member_chains
from bnncat.models.inference.problem import prepare_problem

TRAINING = {"members": 2, "adam_steps": 50, "maxiter": 500, "random_seed": 3}
QUICK = {
    "dei": TRAINING | {"draws": 20, "tune": 30, "max_treedepth": 5},
    "mclmc": TRAINING | {"draws": 20, "thin": 2, "tune": 60},
}


@pytest.fixture(scope="module")
def sine():
    return data.load("sine", n=40, noise=0.1, seed=2)


@pytest.mark.filterwarnings("ignore:R-hat of the predictions")
@pytest.mark.parametrize(
    ("method", "net"),
    [
        ("dei", MLP((3,))),
        ("dei", OrderedMLP((3,))),
        ("dei", MixtureRegressor((3,), n_components=2)),
        ("mclmc", MLP((3,))),
    ],
    ids=repr,
)
def test_member_chains_fit_predict_save_relabel_and_diagnose(method, net, sine, tmp_path):
    idata = fit(net, sine.X, sine.y, method=method, chains_per_member=2, **QUICK[method])
    post, stats, members = idata["posterior"], idata["sample_stats"], idata["ensemble"]
    assert (post.sizes["chain"], post.sizes["draw"]) == (4, 20)
    assert post["b_out"].dtype == np.float64
    assert idata.attrs["fit_kind"] == "mcmc" and idata.attrs["fit_method"] == method
    assert members.sizes["member"] == 2 and list(members["chain_member"].values) == [0, 0, 1, 1]
    assert (members["tuning_steps"] > 0).all() and (members["step_size"] > 0).all()
    assert np.isfinite(stats["log_p"]).all() and (stats["n_steps"] >= 1).all()
    # the chains sample: they leave their member's end point, and below its log density
    # where that is a mode (a search stopped short may lie below what the chains find)
    assert float(post["b_out"].std("draw").min()) > 0
    of_chain = members["chain_member"].values
    at_mode = members["converged"].values[of_chain]
    assert at_mode.any()
    member_best = members["log_posterior"].values[of_chain]
    assert (stats["log_p"].mean("draw").values[at_mode] < member_best[at_mode]).all()
    assert predict(idata, np.zeros((3, 1)))["predictions"]["y"].shape == (4, 20, 3, 1)
    again = load(save(idata, tmp_path / "fit.nc"))
    np.testing.assert_array_equal(again["posterior"]["b_out"], post["b_out"])
    assert ident.canonicalize(idata)["posterior"]["b_out"].shape == post["b_out"].shape
    report = diagnose(idata, random_seed=1)
    assert report.options["fit_kind"] == "mcmc" and report.verdict.sentence
    if method == "mclmc":  # the same seed gives the same chains (DEI's: the test below)
        again = fit(net, sine.X, sine.y, method=method, chains_per_member=2, **QUICK[method])
        np.testing.assert_array_equal(again["posterior"]["W1"], post["W1"])


@pytest.mark.filterwarnings("ignore:R-hat of the predictions")
def test_the_same_seed_gives_the_same_chains(sine):
    a = fit(MLP((2,)), sine.X, sine.y, method="dei", **QUICK["dei"])
    b = fit(MLP((2,)), sine.X, sine.y, method="dei", **QUICK["dei"])
    c = fit(MLP((2,)), sine.X, sine.y, method="dei", **(QUICK["dei"] | {"random_seed": 4}))
    np.testing.assert_array_equal(a["posterior"]["W1"], b["posterior"]["W1"])
    assert not np.allclose(a["posterior"]["W1"], c["posterior"]["W1"])
    options = json.loads(a.attrs["bnncat_fit"])
    assert options["members"] == 2 and options["precision"] == "float32"


@pytest.mark.parametrize(
    ("method", "kwargs", "error", "match"),
    [
        ("dei", {"members": 0}, ValueError, "members must be >= 1"),
        ("dei", {"target_accept": 1.0}, ValueError, "target_accept must lie in"),
        ("dei", {"chains": 4}, ValueError, "its chains start from the members"),
        ("mclmc", {"thin": 0}, ValueError, "thin must be >= 1"),
        ("mclmc", {"chains_per_member": 1.5}, TypeError, "chains_per_member"),
        ("mclmc", {"precision": "float16"}, ValueError, "precision='float16' is not known"),
        ("mclmc", {"batch_size": 10}, ValueError, "the chains need the full data"),
    ],
)
def test_bad_options_fail_before_any_training(method, kwargs, error, match, sine, monkeypatch):
    monkeypatch.setattr(member_chains, "train_members", lambda *a, **k: pytest.fail("trained"))
    with pytest.raises(error, match=match):
        fit(MLP((2,)), sine.X, sine.y, method=method, **kwargs)


def _stuck_in_float32(flat):
    """A chain that stays at its start in float32 and moves in float64 (a collapsed step)."""
    import jax
    import jax.numpy as jnp

    def run(x0, key):
        noise = jax.random.normal(jax.random.wrap_key_data(key), (5, x0.shape[0]), x0.dtype)
        moves = 0.0 if x0.dtype == jnp.float32 else 0.1
        positions = x0 + moves * noise
        stats = {"log_p": jax.vmap(flat.log_density)(positions)}
        return positions, stats, {"step_size": jnp.asarray(moves)}, jnp.asarray(5)

    return run


@pytest.mark.parametrize(("precision", "used"), [("auto", "float64"), ("float32", "float32")])
def test_chains_that_do_not_move_in_float32_are_sampled_again_in_float64_under_auto(
    precision, used, sine
):
    problem = prepare_problem(MLP((2,)), sine.X, sine.y, draws=5, random_seed=1, store_mu=False)
    options = member_chains.check_member_chains(2, 1, 10, 20, 0.01, 20, precision)
    with pytest.warns(UserWarning, match=r"chain\(s\) \[0, 1\] did not move in float32"):
        _, _, run = member_chains.sample_from_members(
            problem, options, _stuck_in_float32, vectorise=False
        )
    assert options["precision"] == used
    assert (member_chains.frozen_chains(run.positions).size == 0) == (used == "float64")


def test_a_chain_is_frozen_only_when_every_draw_equals_its_first():
    positions = np.zeros((3, 4, 2))
    positions[1, 3, 0] = 1e-12
    positions[2] = np.arange(8).reshape(4, 2)
    assert member_chains.frozen_chains(positions).tolist() == [0]
    assert member_chains.frozen_chains(positions[:, :1]).tolist() == []


@pytest.mark.filterwarnings("ignore:R-hat of the predictions")
def test_the_float64_run_after_a_frozen_float32_one_gives_precision_float64s_draws(
    sine, monkeypatch
):
    options = {
        "members": 2,
        "draws": 20,
        "tune": 50,
        "adam_steps": 100,
        "maxiter": 50,
        "random_seed": 3,
    }
    asked = fit(MLP((2,)), sine.X, sine.y, method="mclmc", precision="float64", **options)
    first = []

    def frozen_once(positions):  # the float32 run's chain 0 "froze"
        first.append(positions)
        return np.array([0]) if len(first) == 1 else np.array([], dtype=int)

    monkeypatch.setattr(member_chains, "frozen_chains", frozen_once)
    with pytest.warns(UserWarning, match="sampling again in float64"):
        again = fit(MLP((2,)), sine.X, sine.y, method="mclmc", **options)
    assert json.loads(again.attrs["bnncat_fit"])["precision"] == "float64"
    np.testing.assert_array_equal(again["posterior"]["W1"], asked["posterior"]["W1"])
