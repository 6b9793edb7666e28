"""Convergence in three spaces: raw and relabelled weights, predictions (and log-likelihood)."""

from typing import Any

import xarray as xr

from bnncat.identifiability.convergence import convergence_table, weight_dataset
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
    return {"convergence": convergence_table(spaces, rhat_threshold=threshold)}
