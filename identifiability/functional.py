"""Functional modes, node duplication and dead units: what relabelling cannot remove.

After relabelling, chains can still disagree because they found different
*functions* (Müller & Insua 1998; Izmailov et al. 2021): no symmetry maps one
onto the other. Inside one draw, two hidden units can compute nearly the same
thing (node duplication: their sum is identified, each alone is not) or a unit
can contribute nothing (a dead unit: its incoming weights are free).
"""

from collections.abc import Mapping
from typing import Any

import numpy as np
import pandas as pd
from scipy.cluster.hierarchy import fcluster, linkage
from scipy.spatial.distance import squareform

from bnncat.models.mlp import hidden_activations, weight_names


def functional_modes(
    pred: np.ndarray, *, threshold: float = 1.0, loglik: np.ndarray | None = None
) -> tuple[pd.DataFrame, np.ndarray]:
    """Group chains by the function they sampled.

    Each chain is summarised by its mean prediction at every probe input. The
    distance of two chains is the root mean square, over the 10% of probe
    points where they differ most, of the difference of their means in units
    of the pooled within-chain posterior sd. Chains that sample one function
    differ only by Monte Carlo error (a distance of about 0.3 with 100
    effective draws per chain); chains in different modes differ by
    posterior sds somewhere. Average-linkage clustering cut at ``threshold``
    gives the modes.

    Parameters
    ----------
    pred : ndarray (chain, draw, n, ...)
        Symmetry-invariant predictions at n probe inputs.
    threshold : float
        Distance above which two groups of chains are different modes.
    loglik : ndarray (chain, draw, n_obs), optional
        Pointwise log-likelihood; adds each chain's mean total log-likelihood.

    Returns
    -------
    per_chain : pandas.DataFrame
        ``mode`` (1, 2, ... in order of first appearance) per chain, and
        ``mean_loglik`` when ``loglik`` is given.
    distance : ndarray (chain, chain)
        The chain-to-chain distances.
    """
    chains = pred.shape[0]
    flat = pred.reshape(chains, pred.shape[1], -1)
    means = flat.mean(axis=1)
    var = flat.var(axis=1, ddof=1).mean(axis=0) if flat.shape[1] > 1 else np.zeros(flat.shape[2])
    scale = np.sqrt(var + 1e-12 * (1 + var.mean()))  # a constant output has no spread
    distance = top_rms_distance(means / scale)
    modes = cluster_groups(distance, threshold)
    per_chain = pd.DataFrame({"mode": modes}, index=pd.RangeIndex(chains, name="chain"))
    if loglik is not None:
        per_chain["mean_loglik"] = loglik.sum(axis=-1).mean(axis=1)
    return per_chain, distance


def top_rms_distance(rows: np.ndarray) -> np.ndarray:
    """RMS over the 10% of coordinates where two rows differ most, for every pair of rows."""
    sq = (rows[:, None, :] - rows[None, :, :]) ** 2
    top = max(1, int(np.ceil(0.1 * sq.shape[-1])))
    return np.sqrt(np.sort(sq, axis=-1)[..., -top:].mean(axis=-1))


def cluster_groups(distance: np.ndarray, threshold: float) -> np.ndarray:
    """Cut the average-linkage tree of ``distance`` at ``threshold``: groups 1, 2, ... in order."""
    if len(distance) < 2:
        return np.ones(len(distance), dtype=int)
    tree = linkage(squareform(distance, checks=False), method="average")
    raw = fcluster(tree, t=threshold, criterion="distance")
    relabel: dict[int, int] = {}
    return np.array([relabel.setdefault(int(c), len(relabel) + 1) for c in raw])


def unit_census(
    params: Mapping[str, np.ndarray],
    X: np.ndarray,
    *,
    activation: str,
    spec: Any,
    dead_tol: float = 0.01,
    duplicate_corr: float = 0.99,
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Dead units and duplicated pairs in every draw of (relabelled) parameters.

    A unit's *contribution* is the sd of its activation over the inputs ``X``
    times the norm of its outgoing weights. A unit is dead in a draw when its
    contribution is below ``dead_tol`` times the largest of its layer. Two
    live units are duplicates when their activations over ``X`` correlate
    with ``|r| > duplicate_corr`` (the sign covers flipped copies).

    Parameters
    ----------
    params : mapping
        Weights with leading sample dims (draws, ...), relabelled so that a
        unit's index means the same in every draw.
    X : ndarray (n, n_features)
        Probe inputs in original units.

    Returns
    -------
    units : pandas.DataFrame
        One row per (layer, unit): ``dead_share`` (share of draws in which it
        is dead) and ``mean_contribution`` (relative to the largest of its
        layer, averaged over draws).
    layers : pandas.DataFrame
        One row per layer: ``units``, ``mean_dead`` (dead units per draw),
        ``always_dead`` (units dead in > 90% of draws), ``duplicate_share``
        (share of draws with at least one duplicated pair) and
        ``mean_duplicate_pairs``.
    """
    acts = hidden_activations(params, X, activation=activation, spec=spec)
    names = weight_names(len(acts))
    unit_rows, layer_rows = [], []
    for layer, h in enumerate(acts, 1):
        w_next = np.asarray(params[names[layer][0]])  # (..., H, next)
        spread = h.std(axis=-2)  # (..., H)
        contribution = spread * np.linalg.norm(w_next, axis=-1)
        top = contribution.max(axis=-1, keepdims=True)
        relative = np.divide(contribution, top, out=np.zeros_like(contribution), where=top > 0)
        dead = relative < dead_tol
        live = ~dead
        centred = h - h.mean(axis=-2, keepdims=True)
        norm = np.sqrt((centred**2).sum(axis=-2))
        corr = np.einsum("...ni,...nj->...ij", centred, centred)
        denom = norm[..., :, None] * norm[..., None, :]
        corr = np.divide(corr, denom, out=np.zeros_like(corr), where=denom > 0)
        both_live = live[..., :, None] & live[..., None, :]
        upper = np.triu(np.ones(corr.shape[-2:], dtype=bool), k=1)
        pairs = ((np.abs(corr) > duplicate_corr) & both_live & upper).sum(axis=(-2, -1))
        dead_flat = dead.reshape(-1, dead.shape[-1])
        rel_flat = relative.reshape(-1, relative.shape[-1])
        for unit in range(dead.shape[-1]):
            unit_rows.append(
                {
                    "layer": layer,
                    "unit": unit,
                    "dead_share": float(dead_flat[:, unit].mean()),
                    "mean_contribution": float(rel_flat[:, unit].mean()),
                }
            )
        pairs = pairs.reshape(-1)
        layer_rows.append(
            {
                "layer": layer,
                "units": dead.shape[-1],
                "mean_dead": float(dead_flat.sum(axis=-1).mean()),
                "always_dead": int((dead_flat.mean(axis=0) > 0.9).sum()),
                "duplicate_share": float((pairs > 0).mean()),
                "mean_duplicate_pairs": float(pairs.mean()),
            }
        )
    return (
        pd.DataFrame(unit_rows).set_index(["layer", "unit"]),
        pd.DataFrame(layer_rows).set_index("layer"),
    )
