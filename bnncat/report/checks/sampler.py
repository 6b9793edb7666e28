"""The sampler's health per chain: divergences, tree depth, E-BFMI (Markov chains only)."""

from typing import Any

import pandas as pd

from bnncat.identifiability.convergence import sampler_health
from bnncat.report.inputs import DiagnosisInputs


def run(inputs: DiagnosisInputs) -> dict[str, Any]:
    """NUTS statistics per chain (``sampler``); empty for fits that are not MCMC."""
    if inputs.kind != "mcmc":
        return {"sampler": pd.DataFrame()}
    depth = inputs.settings["max_treedepth"]
    return {"sampler": sampler_health(inputs.idata, max_treedepth=depth)}
