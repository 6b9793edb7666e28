"""How far draws from a fitted approximation are from the posterior: PSIS k-hat of p/q."""

from typing import Any

import numpy as np
import xarray as xr

from bnncat.report.inputs import DiagnosisInputs


def run(inputs: DiagnosisInputs) -> dict[str, Any]:
    """PSIS k-hat of the importance ratios (``vi_pareto_k``; None without log p and log q)."""
    return {"vi_pareto_k": vi_pareto_k(inputs.idata)}


def vi_pareto_k(idata: xr.DataTree) -> float | None:
    """PSIS k-hat of an approximation's importance ratios p/q (Yao et al. 2018), if it has them.

    A method whose stored draws are already an importance resample (Pathfinder's
    ``importance_sampling="psis"``) records the k-hat of its proposal as
    ``sample_stats.attrs["pareto_k"]``: the draws no longer come from q.
    """
    stats = idata["sample_stats"] if "sample_stats" in idata.children else None
    if stats is not None and "pareto_k" in stats.attrs:
        return float(stats.attrs["pareto_k"])
    if stats is None or "log_p" not in stats or "log_q" not in stats:
        return None
    log_ratio = stats["log_p"] - stats["log_q"]
    # ArviZ 1.3's pareto_khat(log_weights=True) fits the Pareto tail to the log weights
    # themselves; the tail of the weights is what matters, so pass them (scaled to max 1).
    # The draws are independent (r_eff = 1).
    weights = np.exp(log_ratio - log_ratio.max())
    with np.errstate(all="ignore"):  # a far-off approximation overflows inside the tail fit
        return float(weights.azstats.pareto_khat(tail="right", r_eff=1.0))
