"""Members of an ensemble: symmetric copies of one network, or different functions."""

import numpy as np
import pytest

from bnncat import data, diagnose
from bnncat import identifiability as ident
from bnncat.identifiability.symmetry import apply_group_element, random_group_element
from bnncat.models import MLP, fit

# 1x3 tanh on 60 sine rows has two functional modes (log posterior 25.7 and 32.0)
TRAINING = {"members": 6, "adam_steps": 300, "maxiter": 500, "random_seed": 4}


@pytest.fixture(scope="module")
def sine():
    return data.load("sine", n=60, noise=0.1, seed=2)


@pytest.fixture(scope="module")
def members(sine):
    return fit(MLP((3,)), sine.X, sine.y, method="ensemble", **TRAINING)


def test_members_are_grouped_by_function_and_copies_are_recognised(members):
    table, pairs = ident.member_modes(members)
    log_post = members["ensemble"]["log_posterior"].values
    assert table["function"].nunique() == 2
    # one function per log posterior level: the two modes differ by 6 nats
    for _, group in table.groupby("function"):
        assert np.ptp(group["log_posterior"]) < 0.01
    assert np.ptp(log_post) > 5
    same = pairs[pairs["same_function"]]
    assert len(same) == 7 and (same["symmetry_share"] > 0.99).all()
    assert (same["relabelled_distance"] < 1e-3).all() and (same["raw_distance"] > 0.1).all()
    different = pairs[~pairs["same_function"]]
    assert (different["function_distance"] > 0.5).all()
    sentence = ident.describe_members(table, pairs)
    assert "2 different functions" in sentence and "7 are symmetric copies" in sentence


def test_a_member_moved_by_a_symmetry_is_a_copy_of_it(members):
    net = MLP((3,))
    post = members["posterior"].isel(chain=[0]).to_dataset()
    rng = np.random.default_rng(0)
    params = {k: post[k].values for k in post.data_vars}
    moved = apply_group_element(params, *random_group_element(net, rng), net.activation)
    copy = members.copy()
    both = {k: np.concatenate([params[k], np.asarray(moved[k])]) for k in params}
    copy["posterior"] = post.isel(chain=[0, 0]).copy(data=both).assign_coords(chain=[0, 1])
    del copy["ensemble"]
    table, pairs = ident.member_modes(copy, net=net)
    assert table["function"].nunique() == 1
    assert float(pairs["function_distance"].iloc[0]) < 1e-8
    assert float(pairs["symmetry_share"].iloc[0]) > 0.999


def test_two_members_at_one_optimum_are_one_network_not_different_weights(members):
    """Members that stopped at one optimum, as far apart as L-BFGS stops: one network twice."""
    net = MLP((3,))
    post = members["posterior"].to_dataset().isel(chain=[0, 0]).assign_coords(chain=[0, 1])
    moved = post["W1"].values.copy()
    moved[1] += 3e-3  # where an optimiser stops, not another network
    post["W1"] = (post["W1"].dims, moved)
    copy = members.copy()
    copy["posterior"] = post
    del copy["ensemble"]
    _, pairs = ident.member_modes(copy, net=net)
    assert bool(pairs["same_function"].iloc[0]) and bool(pairs["copies"].iloc[0])
    assert float(pairs["raw_distance"].iloc[0]) > 1e-3


@pytest.mark.filterwarnings("ignore::UserWarning")  # ArviZ's PPC plot on 6 draws
def test_the_diagnosis_of_an_ensemble_groups_its_members_and_counts_copies(sine, members):
    held_out = data.load("sine", n=40, noise=0.1, seed=7)
    report = diagnose(members, X_test=held_out.X, y_test=held_out.y)
    by_member, _ = ident.member_modes(members)
    assert report.functional["mode"].tolist() == by_member["function"].tolist()
    modes = report.modes
    assert len(modes) == 2 and modes["share"].sum() == pytest.approx(1.0)
    assert modes["pairs"].sum() == 7 and modes["symmetric_copies"].sum() == 7
    lpd = modes["lpd_per_row (held-out)"]
    # the better mode by log posterior predicts the held-out rows better
    best = int(by_member.groupby("function")["log_posterior"].mean().idxmax())
    assert lpd.idxmax() == best and (modes["lpd_se"] > 0).all()
    assert report.verdict.status == "-"
    assert "predictions, nested R-hat" not in report.convergence.index  # no chains, no superchains
    assert "6 members differ both by symmetry and in function" in report.verdict.sentence
    assert "members" in report.figures()


@pytest.mark.filterwarnings("ignore:R-hat of the predictions")
def test_chains_from_members_keep_both_functional_modes(sine, members):
    idata = fit(MLP((3,)), sine.X, sine.y, method="dei", draws=20, tune=30, **TRAINING)
    report = diagnose(idata, random_seed=1)
    modes = report.functional["mode"].values
    by_member, _ = ident.member_modes(members)
    started = by_member["function"].values[idata["ensemble"]["chain_member"].values]
    # the diagnosis groups the chains as their members: each keeps its member's function
    assert len(set(modes)) == 2
    assert len(set(zip(modes, started, strict=True))) == 2
    # and says how the members differ, with each mode's share of the chains
    assert "symmetric_copies" in report.modes and report.modes["pairs"].sum() == 7
    assert "The chains started from ensemble members" in report.verdict.sentence
    # nested R-hat, each member a superchain: members in two functions disagree
    nested = report.convergence.loc["predictions, nested R-hat", "max_rhat"]
    assert nested > 1.1 and np.isnan(report.convergence.loc["predictions, nested R-hat"].iloc[-1])
