"""Calibration and posterior predictive checks, on the predictive groups computed once."""

from typing import Any

from bnncat.evaluation.calibration import calibration_table
from bnncat.report.inputs import DiagnosisInputs


def run(inputs: DiagnosisInputs) -> dict[str, Any]:
    """Tabulate calibration (``calibration``): PSIS-LOO, and held-out or in-sample rows."""
    X_test, y_test = inputs.test if inputs.test is not None else (None, None)
    table = calibration_table(
        inputs.idata,
        X_test=X_test,
        y_test=y_test,
        net=inputs.net,
        random_seed=inputs.settings["random_seed"],
        groups=inputs.groups,
    )
    return {"calibration": table}
