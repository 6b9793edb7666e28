"""Convergence in three spaces: raw and relabelled weights, predictions (and log-likelihood).

Chains started in groups also get nested R-hat: ChEES-HMC's superchains, or chains
started from ensemble members (each member a superchain).
"""

from typing import Any

import numpy as np
import xarray as xr

from bnncat.identifiability.convergence import convergence_table, weight_dataset
from bnncat.models.inference.convergence_check import equal_groups, superchain_ids
from bnncat.report.inputs import DiagnosisInputs


def run(inputs: DiagnosisInputs) -> dict[str, Any]:
    """R-hat and ESS of each space (``convergence``)."""
    spaces = {
        "raw weights": weight_dataset(inputs.idata["posterior"]),
        "relabelled weights": weight_dataset(inputs.canon["posterior"]),
        "predictions": xr.Dataset(
            {"f": (("chain", "draw", "probe", "output"), inputs.predictions)}
        ),
        "log-likelihood": xr.Dataset({"loglik": (("chain", "draw", "obs"), inputs.loglik)}),
    }
    threshold = inputs.settings["rhat_threshold"]
    table = convergence_table(
        spaces, rhat_threshold=threshold, superchain_ids=superchains(inputs.idata)
    )
    return {"convergence": table}


def superchains(idata: xr.DataTree) -> np.ndarray | None:
    """Each chain's group (superchain, or member it started from); None where it can't apply.

    Nested R-hat needs at least two superchains of equal size (``chains_per_member``).
    """
    grouped = superchain_ids(idata["posterior"])
    if grouped is not None:
        return grouped
    if "ensemble" not in idata.children or "chain_member" not in idata["ensemble"]:
        return None
    return equal_groups(idata["ensemble"]["chain_member"].values)
