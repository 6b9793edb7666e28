"""Deep ensembles: members from prior draws, anchoring, bootstrap, and the usual result format."""

import json

import numpy as np
import pytest

from bnncat import data, diagnose
from bnncat import identifiability as ident
from bnncat.models import MLP, MixtureRegressor, OrderedMLP, fit, load, predict, save
from bnncat.models.inference import ensemble
from bnncat.models.inference.flat_draws import prior_flat
from bnncat.models.inference.laplace_curvature import flat_model
from bnncat.models.inference.problem import prepare_problem
from bnncat.models.jax_runtime import jax_session
from bnncat.models.mlp import weight_prior_scale

QUICK = {"members": 3, "adam_steps": 100, "maxiter": 200, "random_seed": 4}


@pytest.fixture(scope="module")
def sine():
    return data.load("sine", n=60, noise=0.1, seed=2)


@pytest.mark.parametrize(
    "net", [MLP((3,)), OrderedMLP((3,)), MixtureRegressor((3,), n_components=2)], ids=repr
)
def test_an_ensemble_fits_predicts_saves_and_relabels(net, sine, tmp_path):
    idata = fit(net, sine.X, sine.y, method="ensemble", **QUICK)
    post = idata["posterior"]
    assert post.sizes["chain"] == 3 and post.sizes["draw"] == 1
    assert idata.attrs["fit_kind"] == "ensemble" and idata.attrs["fit_method"] == "ensemble"
    members = idata["ensemble"]
    assert np.isfinite(members["log_posterior"]).all() and (members["iterations"] > 0).all()
    # a member is its trained network: the stored log p is its end point's
    np.testing.assert_allclose(
        idata["sample_stats"]["log_p"].values[:, 0], members["log_posterior"].values
    )
    assert predict(idata, np.zeros((3, 1)))["predictions"]["y"].shape == (3, 1, 3, 1)
    again = load(save(idata, tmp_path / "fit.nc"))
    np.testing.assert_array_equal(again["posterior"]["W1"], post["W1"])
    assert ident.canonicalize(idata)["posterior"]["W1"].shape == post["W1"].shape


def test_members_with_laplace_gaussians_give_draws_and_are_diagnosed(sine):
    idata = fit(MLP((3,)), sine.X, sine.y, method="ensemble", gaussian="laplace", draws=30, **QUICK)
    post = idata["posterior"]
    assert post.sizes["draw"] == 30 and float(post["W_out"].std("draw").min()) > 0
    for name in ("W1", "b1"):  # last_layer, the default: hidden layers at each member's end
        assert float((post[name].max("draw") - post[name].min("draw")).max()) == 0.0
    report = diagnose(idata, random_seed=1)
    assert report.options["fit_kind"] == "ensemble" and report.verdict.sentence


def test_the_same_seed_gives_the_same_members_and_other_seeds_other_ones(sine):
    a = fit(MLP((3,)), sine.X, sine.y, method="ensemble", **QUICK)
    b = fit(MLP((3,)), sine.X, sine.y, method="ensemble", **QUICK)
    c = fit(MLP((3,)), sine.X, sine.y, method="ensemble", **(QUICK | {"random_seed": 5}))
    np.testing.assert_array_equal(a["posterior"]["W1"], b["posterior"]["W1"])
    assert not np.allclose(a["posterior"]["W1"], c["posterior"]["W1"])


def test_members_start_from_draws_of_the_prior():
    ds = data.load("sine", n=20, seed=1)
    net = MLP((50,))
    problem = prepare_problem(net, ds.X, ds.y, draws=1, random_seed=1, store_mu=False)
    with jax_session("float64"):
        flat = flat_model(problem.model)
        starts = prior_flat(problem.model, flat, 400, seed=3)
    w1 = flat.unflatten(starts)["W1"]
    expected = float(weight_prior_scale(net, "W1", 1))  # LeCun: prior_scale / sqrt(fan-in)
    assert abs(w1.std() / expected - 1) < 0.05 and abs(w1.mean()) < 0.05 * expected
    with jax_session("float64"):  # an ordered vector drawn unordered: still a finite start
        ordered = prepare_problem(
            OrderedMLP((3,)), ds.X, ds.y, draws=1, random_seed=1, store_mu=False
        )
        starts = prior_flat(ordered.model, flat_model(ordered.model), 20, seed=3)
    assert np.isfinite(starts).all()


def test_each_member_is_the_mode_of_its_own_anchored_and_bootstrapped_objective(sine):
    problem = prepare_problem(MLP((3,)), sine.X, sine.y, draws=1, random_seed=1, store_mu=False)
    with jax_session("float64"):
        flat = flat_model(problem.model)
        anchors = prior_flat(problem.model, flat, 3, seed=2)
        weights, tilts = ensemble._member_terms(problem, flat, anchors, True, True, seed=5)
        found = ensemble.find_modes(
            ensemble.member_objective(flat), anchors, args=(weights, tilts), maxiter=3000
        )
        grads = np.stack([np.asarray(flat.value_and_grad(x)[1]) for x in found.x])
    assert (weights.sum(axis=1) == len(sine.y)).all() and (weights != 1).any()
    assert not np.allclose(weights[0], weights[1])
    # anchoring tilts the weights and biases by (anchor - 0) / s^2 and leaves sigma alone
    sigma = flat.unflatten(np.arange(flat.size))["sigma_log__"]
    assert (tilts[:, sigma] == 0).all() and (tilts != 0).sum() == 3 * (flat.size - 1)
    w1 = flat.unflatten(np.arange(flat.size))["W1"].ravel()
    scale = float(weight_prior_scale(MLP((3,)), "W1", 1))
    np.testing.assert_allclose(tilts[:, w1], anchors[:, w1] / scale**2)
    assert found.converged.all()
    # at each member's end the posterior's gradient is what the member's own terms cancel
    assert np.abs(grads).max() > 1.0
    with jax_session("float64"):
        import jax

        own = np.stack(
            [
                np.asarray(jax.grad(ensemble.member_objective(flat))(x, (w, t)))
                for x, w, t in zip(found.x, weights, tilts, strict=True)
            ]
        )
    # ~1e-4 of the posterior's own gradient there (0.03 against 475 when written)
    assert np.abs(own).max() < 1e-3 * np.abs(grads).max()


@pytest.mark.parametrize(
    ("net", "kwargs", "error", "match"),
    [
        (MLP((2,), prior="hierarchical"), {"anchored": True}, ValueError, "fixed sd on every"),
        (MLP((2,)), {"draws": 10}, ValueError, "gaussian='laplace'"),
        (MLP((2,)), {"members": 0}, ValueError, "members must be >= 1"),
        (MLP((2,)), {"anchored": "yes"}, TypeError, "anchored must be True or False"),
        (MLP((2,)), {"gaussian": "swag"}, ValueError, "gaussian='swag' is not known"),
        (MLP((2,)), {"chains": 4}, ValueError, "its chains are its members"),
    ],
)
def test_bad_options_fail_before_any_training(net, kwargs, error, match, sine, monkeypatch):
    monkeypatch.setattr(ensemble, "find_modes", lambda *a, **k: pytest.fail("trained"))
    with pytest.raises(error, match=match):
        fit(net, sine.X, sine.y, method="ensemble", **kwargs)


def test_the_options_are_recorded(sine):
    idata = fit(MLP((2,)), sine.X, sine.y, method="ensemble", bootstrap=True, **QUICK)
    options = json.loads(idata.attrs["bnncat_fit"])
    assert options["members"] == 3 and options["bootstrap"] is True
    assert options["anchored"] is False and options["adam_steps"] == 100
