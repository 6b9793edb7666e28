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
        ``symmetry_share``, the share of the raw distance relabelling removes (near 1:
        symmetric copies of one network).
    """
    net = resolve_net(idata, net)
    net, spec = net_and_spec(idata, net)
    X = idata["constant_data"]["X"].values if X is None else X
    X = check_X(X, "X", n_features=spec.n_features)
    post = idata["posterior"]
    params = {k: post[k].mean("draw").values[:, None] for k in _weights(net)}
    pred = np.asarray(net.forward(params | _rest(post), X, spec))[:, 0]
    scale = _noise_scale(post, pred)
    function_distance = top_rms_distance(pred.reshape(len(pred), -1) / scale)
    raw = pdist(_flat_weights(post, net), "euclidean")
    canon = _flat_weights(canonicalize(idata, method="pivot", net=net)["posterior"], net)
    relabelled = pdist(canon, "euclidean")
    function = cluster_groups(function_distance, threshold)
    members = pd.DataFrame({"function": function}, index=pd.RangeIndex(len(pred), name="chain"))
    if "ensemble" in idata.children and "log_posterior" in idata["ensemble"]:
        log_post = idata["ensemble"]["log_posterior"].values
        if len(log_post) == len(members):
            members["log_posterior"] = log_post
    i, j = np.triu_indices(len(pred), k=1)
    size = np.sqrt(canon.shape[1])
    pairs = pd.DataFrame(
        {
            "member_a": i,
            "member_b": j,
            "same_function": function[i] == function[j],
            "function_distance": function_distance[i, j],
            "raw_distance": raw / size,
            "relabelled_distance": relabelled / size,
            "symmetry_share": 1 - relabelled / np.maximum(raw, 1e-300),
        }
    )
    return members, pairs


def describe_members(members: pd.DataFrame, pairs: pd.DataFrame) -> str:
    """Say in words what :func:`member_modes` found: functions, and symmetric copies among them."""
    groups = members.groupby("function").groups
    listed = "; ".join(f"function {f}: {_chains(idx)}" for f, idx in groups.items())
    same = pairs[pairs["same_function"]]
    copies = int((same["symmetry_share"] >= COPY_SHARE).sum())
    n = len(members)
    if len(groups) == 1:
        head = f"all {n} members compute one function"
    else:
        head = f"the {n} members compute {len(groups)} different functions ({listed})"
    if same.empty:
        return head + "; no two members share a function."
    return (
        f"{head}; of the {len(same)} pairs that share a function, {copies} are symmetric copies "
        f"(relabelling removes at least {COPY_SHARE:.0%} of their distance in weight space), "
        f"{len(same) - copies} differ in weights that no symmetry maps onto each other."
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


def _noise_scale(post: xr.Dataset, pred: np.ndarray) -> float:
    """Return the members' mean noise sd, or the sd of the predictions where there is none."""
    if "sigma" in post:
        return float(post["sigma"].mean())
    return float(pred.std()) or 1.0


def _flat_weights(post: xr.Dataset, net: Any) -> np.ndarray:
    """Each member's mean weights and biases in one vector, (chain, size)."""
    parts = [post[k].mean("draw").values.reshape(post.sizes["chain"], -1) for k in _weights(net)]
    return np.concatenate(parts, axis=1)
