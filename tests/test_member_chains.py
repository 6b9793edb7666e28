"""Chains started from ensemble members: DEI-NUTS and MCLMC, in the usual result format."""

import json

import numpy as np
import pytest

from bnncat import data, diagnose
from bnncat import identifiability as ident
from bnncat.models import MLP, MixtureRegressor, OrderedMLP, fit, load, predict, save
from bnncat.models.inference import member_chains

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
