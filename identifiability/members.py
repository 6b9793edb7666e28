"""The members of an ensemble: symmetric copies of one network, or different functions.

Members trained from different prior draws land in different places of weight
space for two reasons: a symmetry (permuted or sign-flipped hidden units) maps one
onto the other, or they compute different functions. Relabelling tells the two
apart: it brings symmetric copies together in weight space and leaves their
functions as they were. :func:`member_modes` groups the members by the function
they compute and measures, for every pair, how much of their distance in weight
space relabelling removes.
"""

from typing import Any

import numpy as np
import pandas as pd
import xarray as xr
from scipy.spatial.distance import pdist

from bnncat.identifiability.functional import cluster_groups, top_rms_distance
from bnncat.identifiability.relabel import canonicalize, resolve_net
from bnncat.models.mlp import weight_names
from bnncat.models.prediction import net_and_spec
from bnncat.models.validation import check_X

#: Share of two members' weight distance that relabelling must remove for them to be
#: called symmetric copies of one network.
COPY_SHARE = 0.9
#: Weight distance (RMS, standardised units) below which two members are one network,
#: where ``symmetry_share`` is noise. L-BFGS stops members within ~1e-3 of their optimum
#: (relabelled copies on 60 ``sine`` rows: 7e-4 apart; one network twice: 1.2e-3).
SAME_NETWORK = 1e-2
#: Predictions of two members differing by less than this many noise sds (RMS over the
#: 10% of inputs where they differ most) are one function.
FUNCTION_THRESHOLD = 0.5


def member_modes(
    idata: xr.DataTree,
    X: object = None,
    *,
    net: Any = None,
    threshold: float = FUNCTION_THRESHOLD,
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Group the chains (members) of a fit by the function they compute, and say why they differ.

    Each member is summarised by its mean over draws: predictions at ``X`` (the
    training inputs by default) and weights, raw and relabelled (``pivot``). Two
    members compute one function when the RMS, over the 10% of inputs where they
    differ most, of their predictions' difference is below ``threshold`` noise sds
    (the members' mean ``sigma``; the sd of the predictions where the fit has none).

    Returns
    -------
    members : pandas.DataFrame
        Per chain: ``function`` (1, 2, ... in order of first appearance) and the
        member's log posterior where the fit keeps it (``ensemble`` group).
    pairs : pandas.DataFrame
        Per pair of members: ``same_function``, ``function_distance``,
        ``raw_distance`` and ``relabelled_distance`` (RMS over weights), and
        ``symmetry_share``, the share of the raw distance relabelling removes, and
        ``copies`` (see :func:`symmetry_pairs`).
    """
    net = resolve_net(idata, net)
    net, spec = net_and_spec(idata, net)
    X = idata["constant_data"]["X"].values if X is None else X
    X = check_X(X, "X", n_features=spec.n_features)
    post = idata["posterior"]
    params = {k: post[k].mean("draw").values[:, None] for k in _weights(net)}
    pred = np.asarray(net.forward(params | _rest(post), X, spec))[:, 0]
    members, distance = member_functions(pred, noise_scale(post, pred), threshold=threshold)
    canon = canonicalize(idata, method="pivot", net=net)
    pairs = symmetry_pairs(post, canon["posterior"], net)
    i, j = pairs["member_a"].to_numpy(), pairs["member_b"].to_numpy()
    function = members["function"].to_numpy()
    pairs.insert(2, "same_function", function[i] == function[j])
    pairs.insert(3, "function_distance", distance[i, j])
    if "ensemble" in idata.children and "log_posterior" in idata["ensemble"]:
        log_post = idata["ensemble"]["log_posterior"].values
        if len(log_post) == len(members):
            members["log_posterior"] = log_post
    return members, pairs


def member_functions(
    pred: np.ndarray, scale: float, *, threshold: float = FUNCTION_THRESHOLD
) -> tuple[pd.DataFrame, np.ndarray]:
    """Group members by their mean predictions ``pred`` (member, ...) in units of ``scale``.

    Returns the per-member ``function`` (1, 2, ... in order of first appearance) and the
    member-to-member distances (RMS over the 10% of inputs where two members differ most).
    A member's own draws (a Laplace or SWAG Gaussian) are too narrow a yardstick, so the
    scale is the noise sd, not the posterior sd that :func:`functional_modes` uses for chains.
    """
    distance = top_rms_distance(pred.reshape(len(pred), -1) / scale)
    function = cluster_groups(distance, threshold)
    index = pd.RangeIndex(len(pred), name="chain")
    return pd.DataFrame({"function": function}, index=index), distance


def symmetry_pairs(posterior: Any, relabelled: Any, net: Any) -> pd.DataFrame:
    """For every pair of chains, their mean weights' distance raw and after relabelling.

    ``raw_distance`` and ``relabelled_distance`` are RMS over weights; ``symmetry_share``
    is the share of the raw distance that relabelling removes; ``copies`` says the pair
    is symmetric copies of one network (a share of at least :data:`COPY_SHARE`, or one
    network twice: relabelled within :data:`SAME_NETWORK`).
    """
    raw = pdist(_flat_weights(posterior, net), "euclidean")
    canon = _flat_weights(relabelled, net)
    moved = pdist(canon, "euclidean")
    i, j = np.triu_indices(len(canon), k=1)
    size = np.sqrt(canon.shape[1])
    return pd.DataFrame(
        {
            "member_a": i,
            "member_b": j,
            "raw_distance": raw / size,
            "relabelled_distance": moved / size,
            "symmetry_share": 1 - moved / np.maximum(raw, 1e-300),
            "copies": (moved <= (1 - COPY_SHARE) * raw) | (moved / size < SAME_NETWORK),
        }
    )


def copies_within(groups: np.ndarray, pairs: pd.DataFrame) -> tuple[int, int]:
    """Return the pairs of chains within one group, and how many are symmetric copies."""
    i, j = pairs["member_a"].to_numpy(), pairs["member_b"].to_numpy()
    same = groups[i] == groups[j]
    return int(same.sum()), int((same & pairs["copies"].to_numpy()).sum())


def copies_among(chains: np.ndarray, pairs: pd.DataFrame) -> tuple[int, int]:
    """Return the pairs among ``chains``, and how many are symmetric copies."""
    inside = np.isin(pairs["member_a"], chains) & np.isin(pairs["member_b"], chains)
    return int(inside.sum()), int((inside & pairs["copies"].to_numpy()).sum())


def how_members_differ(n_groups: int, same_pairs: int, copies: int) -> str:
    """Say in a phrase whether members differ by symmetry, in function, or both."""
    if n_groups == 1:
        if same_pairs == copies:
            return "only by symmetry: every pair is a symmetric copy of one network"
        return (
            "not in function: they compute one function, but only "
            f"{copies} of {same_pairs} pairs are symmetric copies; the others differ in "
            "weights that do not change the function (dead or duplicated units)"
        )
    if copies == 0:
        return "in function only: no two members are symmetric copies of one network"
    return (
        f"both by symmetry and in function: {n_groups} functions, and {copies} of the "
        f"{same_pairs} pairs within a function are symmetric copies"
    )


def describe_members(members: pd.DataFrame, pairs: pd.DataFrame) -> str:
    """Say in words what :func:`member_modes` found: functions, and symmetric copies among them."""
    groups = members.groupby("function").groups
    listed = "; ".join(f"function {f}: {_chains(idx)}" for f, idx in groups.items())
    same_pairs, copies = copies_within(members["function"].to_numpy(), pairs)
    n = len(members)
    if len(groups) == 1:
        head = f"all {n} members compute one function"
    else:
        head = f"the {n} members compute {len(groups)} different functions ({listed})"
    if same_pairs == 0:
        return head + "; no two members share a function."
    return (
        f"{head}; of the {same_pairs} pairs that share a function, {copies} are symmetric copies "
        f"(relabelling removes at least {COPY_SHARE:.0%} of their distance in weight space, "
        "or they are one network), "
        f"{same_pairs - copies} differ in weights that no symmetry maps onto each other."
    )


def _chains(index: Any) -> str:
    """List chain numbers as 'members 0, 3, 4'."""
    return "members " + ", ".join(str(int(i)) for i in index)


def _weights(net: Any) -> list[str]:
    """Names of the weights and biases of every layer."""
    return [name for pair in weight_names(len(net.hidden)) for name in pair]


def _rest(post: xr.Dataset) -> dict[str, np.ndarray]:
    """Every other variable (noise sd, mixture weights) as each member's mean, (chain, 1, ...)."""
    return {k: post[k].mean("draw").values[:, None] for k in post.data_vars if k[0] not in "Wb"}


def noise_scale(post: xr.Dataset, pred: np.ndarray) -> float:
    """Return the members' mean noise sd, or the sd of the predictions where there is none."""
    if "sigma" in post:
        return float(post["sigma"].mean())
    return float(pred.std()) or 1.0


def _flat_weights(post: xr.Dataset, net: Any) -> np.ndarray:
    """Each member's mean weights and biases in one vector, (chain, size)."""
    parts = [post[k].mean("draw").values.reshape(post.sizes["chain"], -1) for k in _weights(net)]
    return np.concatenate(parts, axis=1)
