"""The check every MCMC fit ends with: whether the chains agree on the fitted function."""

import os
import warnings
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import arviz as az
import numpy as np
import xarray as xr

from bnncat.models.prediction import FORWARD_FLOATS
from bnncat.thresholds import MIN_ESS_PER_CHAIN, RHAT_MAX

#: bnncat.models: warnings point at the user's call, not at a frame in here
_MODELS_DIR = Path(__file__).resolve().parents[1]
#: Distinct training inputs at most that the check evaluates the network at, evenly
#: spaced in the data's order: R-hat and ESS at thousands of rows can take longer than
#: the fit itself (``diagnose`` checks every probe input).
CHECK_ROWS = 200
#: Draws x rows from which the check shares its rows out over threads.
_THREADED_VALUES = 2**22


def prediction_convergence(idata: xr.DataTree, net: Any, spec: Any) -> dict[str, float]:
    """R-hat and ESS of the network output at the training inputs, and divergences.

    At most ``CHECK_ROWS`` distinct training inputs, evenly spaced in the data's order.
    Chains started in groups (a ``superchain`` coordinate, e.g. ChEES-HMC's many
    chains) get nested R-hat over the groups, and ``chains`` counts the groups: many
    short chains answer together what a few long ones answer each.

    The network output is invariant to permuting or sign-flipping hidden
    units, so, unlike raw weights, its R-hat says whether the chains agree on
    the function.

    Returns
    -------
    dict
        ``max_rhat`` and ``min_ess_bulk`` over those inputs and all outputs,
        ``divergences`` and ``chains`` (or superchains).
    """
    post = idata["posterior"]
    X = check_inputs(idata["constant_data"]["X"].values)
    params = {k: post[k].values for k in post.data_vars}
    groups = superchain_ids(post)
    values = post.sizes["chain"] * post.sizes["draw"] * len(X)
    max_rhat, min_ess = _over_threads(
        lambda rows: _extremes(net, params, rows, spec, groups), X, values
    )
    stats = idata["sample_stats"] if "sample_stats" in idata.children else None
    diverging = stats["diverging"] if stats is not None and "diverging" in stats else None
    return {
        "max_rhat": max_rhat if post.sizes["chain"] > 1 else float("nan"),
        "min_ess_bulk": min_ess,
        "divergences": int(diverging.sum()) if diverging is not None else 0,  # none for ADVI
        "chains": int(post.sizes["chain"]) if groups is None else len(set(groups)),
    }


def check_inputs(X: np.ndarray) -> np.ndarray:
    """Return the rows of ``X`` to check: distinct, in the data's order, at most ``CHECK_ROWS``.

    A repeated input (``mcycle`` has 94 distinct times in 133 rows) gives the same
    column of predictions, so the same R-hat and ESS: it is checked once.
    """
    first = np.sort(np.unique(X, axis=0, return_index=True)[1])
    keep = np.unique(np.linspace(0, len(first) - 1, min(len(first), CHECK_ROWS)).round())
    return X[first[keep.astype(int)]]


def _extremes(
    net: Any, params: dict[str, np.ndarray], X: np.ndarray, spec: Any, groups: np.ndarray | None
) -> tuple[float, float]:
    """Largest R-hat (nested, with superchains) and smallest bulk ESS of the output at ``X``."""
    chains, draws = next(iter(params.values())).shape[:2]
    # in blocks of draws: the hidden activations of all draws at all rows at once would
    # take chains x draws x n x width floats (2 GB for 4 x 1000 draws, N=2000, width 32)
    width = max(*net.hidden, net.head_size(spec))
    block = max(1, FORWARD_FLOATS // (chains * X.shape[0] * width))
    mu = np.concatenate(
        [
            net.forward({k: v[:, i : i + block] for k, v in params.items()}, X, spec)
            for i in range(0, draws, block)
        ],
        axis=1,
    )
    mu = xr.Dataset({"mu": (("chain", "draw", "obs", "output"), mu)})
    if groups is None:
        rhat = az.rhat(mu)
    else:
        rhat = az.rhat_nested(mu, superchain_ids=list(groups))
    return float(rhat["mu"].max()), float(az.ess(mu, method="bulk")["mu"].min())


def _over_threads(extremes: Any, X: np.ndarray, values: int) -> tuple[float, float]:
    """``extremes`` of the rows of ``X``, shared out over one thread per core.

    NumPy's forward pass and ArviZ's rank normalisation (one input at a time) release
    the GIL; with many chains the rank normalisation is most of the check. Below
    ``_THREADED_VALUES`` draws x rows, ArviZ's own Python work per input dominates and
    a second thread only waits for the GIL. At most ``OMP_NUM_THREADS`` threads where it
    is set (the executors' workers set it to 1).
    """
    workers = min(len(os.sched_getaffinity(0)), len(X)) if values >= _THREADED_VALUES else 1
    if os.environ.get("OMP_NUM_THREADS", "").isdigit():
        workers = min(workers, int(os.environ["OMP_NUM_THREADS"]))
    if workers < 2:
        return extremes(X)
    with ThreadPoolExecutor(workers) as pool:
        parts = list(pool.map(extremes, np.array_split(X, workers)))
    # fmax and fmin skip a block's NaN, as xarray's max and min skip an input's
    rhats, esses = zip(*parts, strict=True)
    return float(np.fmax.reduce(rhats)), float(np.fmin.reduce(esses))


def superchain_ids(posterior: Any) -> np.ndarray | None:
    """Each chain's group (the ``superchain`` coordinate): two or more equal groups, or None."""
    if "superchain" not in posterior.coords:
        return None
    return equal_groups(posterior.coords["superchain"].values)


def equal_groups(ids: Any) -> np.ndarray | None:
    """``ids`` if they form two or more groups of equal size (nested R-hat's need), else None."""
    ids = np.asarray(ids)
    counts = np.unique(ids, return_counts=True)[1]
    return ids if len(counts) >= 2 and len(set(counts)) == 1 else None


def warn_if_unconverged(conv: dict[str, float]) -> None:
    """Warn in plain words when the chains disagree on predictions or diverged."""
    problems = []
    if conv["max_rhat"] > RHAT_MAX:
        problems.append(
            f"R-hat of the predictions at the training inputs is {conv['max_rhat']:.3f} "
            f"(> {RHAT_MAX}): the chains disagree on the fitted function; run longer "
            "(warm-up, draws) or compare chains"
        )
    if conv["min_ess_bulk"] < MIN_ESS_PER_CHAIN * conv["chains"]:
        problems.append(
            f"the smallest bulk ESS of the predictions is {conv['min_ess_bulk']:.0f}, "
            f"fewer than {MIN_ESS_PER_CHAIN} per chain or superchain "
            f"({MIN_ESS_PER_CHAIN * conv['chains']} for {conv['chains']}): "
            "draw more"
        )
    if conv["divergences"]:
        problems.append(
            f"{conv['divergences']} divergent transitions: raise target_accept (e.g. 0.95) "
            "or simplify the prior"
        )
    if problems:
        warnings.warn(
            "; ".join(problems) + ".", UserWarning, skip_file_prefixes=(str(_MODELS_DIR),)
        )
