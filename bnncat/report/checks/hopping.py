"""The mode-hopping census: which symmetric copies each chain visits, from relabelling's labels."""

from typing import Any

from bnncat.identifiability.hopping import mode_hopping
from bnncat.report.inputs import DiagnosisInputs


def run(inputs: DiagnosisInputs) -> dict[str, Any]:
    """Per chain and across chains (``hopping``, ``hopping_summary``)."""
    table, summary = mode_hopping(inputs.canon, net=inputs.net, tol=inputs.settings["tol"])
    return {"hopping": table, "hopping_summary": summary}
