"""Functional modes: chains (or ensemble members) grouped by the functions they fit.

Many short chains started in groups (superchains) are compared group by group, each
group's draws pooled: a chain of a few draws has no mean worth comparing.

Chains are compared in units of their posterior sd (:func:`functional_modes`);
ensemble members, whose own draws have no posterior spread worth the name, in
units of the noise sd (:func:`member_functions`). Each mode gets its share of
chains and its log predictive density (held-out where the diagnosis has test
data), and for fits made of ensemble members the count of members within a mode
that are symmetric copies of each other (:func:`symmetry_pairs`).
"""

from typing import Any

import numpy as np
import pandas as pd

from bnncat.evaluation.calibration import lpd_from_loglik, pointwise_loglik
from bnncat.identifiability.functional import functional_modes
from bnncat.identifiability.members import (
    copies_among,
    member_functions,
    noise_scale,
    symmetry_pairs,
)
from bnncat.models.inference.convergence_check import superchain_ids
from bnncat.report.inputs import DiagnosisInputs
from bnncat.report.verdict import index_ranges


def run(inputs: DiagnosisInputs) -> dict[str, Any]:
    """Modes per chain, chain distances, one row per mode (``functional``, ``modes``, ...)."""
    if inputs.kind == "ensemble":
        pred = inputs.predictions.mean(axis=1)
        table, distance = member_functions(pred, noise_scale(inputs.idata["posterior"], pred))
        table = table.rename(columns={"function": "mode"})
        table["mean_loglik"] = inputs.loglik.sum(axis=-1).mean(axis=1)
    else:
        table, distance = _chain_functions(inputs)
    pairs = None
    if from_members(inputs):
        pairs = symmetry_pairs(inputs.idata["posterior"], inputs.canon["posterior"], inputs.net)
    modes = mode_table(table["mode"].to_numpy(), *_scored_loglik(inputs), pairs)
    if table.index.name == "superchain":
        modes = modes.rename(columns={"chains": "superchains"})
    return {"functional": table, "chain_distance": distance, "modes": modes, "member_pairs": pairs}


def _chain_functions(inputs: DiagnosisInputs) -> tuple[pd.DataFrame, np.ndarray]:
    """Functional modes of the chains, or of the superchains (draws pooled) where grouped."""
    groups = superchain_ids(inputs.idata["posterior"])
    predictions, loglik = inputs.predictions, inputs.loglik
    if groups is not None:  # many short chains: the function of each group
        predictions, loglik = pool_chains(predictions, groups), pool_chains(loglik, groups)
    table, distance = functional_modes(
        predictions, threshold=inputs.settings["mode_threshold"], loglik=loglik
    )
    return (table if groups is None else table.rename_axis("superchain")), distance


def pool_chains(values: np.ndarray, groups: np.ndarray) -> np.ndarray:
    """(chain, draw, ...) -> (group, draw, ...): each group's chains one after another."""
    order = np.argsort(groups, kind="stable")
    n_groups = len(np.unique(groups))
    return values[order].reshape(n_groups, -1, *values.shape[2:])


def from_members(inputs: DiagnosisInputs) -> bool:
    """Whether the chains are ensemble members or started from them (DEI, MCLMC)."""
    return inputs.kind == "ensemble" or "ensemble" in inputs.idata.children


def _scored_loglik(inputs: DiagnosisInputs) -> tuple[np.ndarray, str]:
    """Pointwise log-likelihood for the modes' LPD: held-out when given, else training.

    Pooled by superchain where the modes are of superchains.
    """
    if inputs.test is None:
        loglik, data = inputs.loglik, "training"
    else:
        X_test, y_test = inputs.test
        loglik = pointwise_loglik(inputs.idata, X_test, y_test, net=inputs.net)
        data = "held-out"
    groups = superchain_ids(inputs.idata["posterior"])
    return (loglik if groups is None else pool_chains(loglik, groups)), data


def mode_table(
    modes: np.ndarray, loglik: np.ndarray, data: str, pairs: pd.DataFrame | None = None
) -> pd.DataFrame:
    """One row per mode: its chains, share, LPD per row of ``data`` (with SE) and copies.

    The LPD of a mode pools its chains' draws, so modes compare as predictives.
    """
    rows = []
    for mode in dict.fromkeys(modes):
        chains = np.flatnonzero(modes == mode)
        pointwise = lpd_from_loglik(loglik[chains])
        n = pointwise.size
        row = {
            "mode": int(mode),
            "chains": index_ranges(chains),
            "share": len(chains) / len(modes),
            f"lpd_per_row ({data})": float(pointwise.mean()),
            "lpd_se": float(pointwise.std(ddof=1) / np.sqrt(n)) if n > 1 else float("nan"),
        }
        if pairs is not None:
            row["pairs"], row["symmetric_copies"] = copies_among(chains, pairs)
        rows.append(row)
    return pd.DataFrame(rows).set_index("mode")
