"""Functional modes: chains grouped by the functions they fit (their predictions)."""

from typing import Any

from bnncat.identifiability.functional import functional_modes
from bnncat.report.inputs import DiagnosisInputs


def run(inputs: DiagnosisInputs) -> dict[str, Any]:
    """Modes per chain and chain-to-chain distances (``functional``, ``chain_distance``)."""
    table, distance = functional_modes(
        inputs.predictions, threshold=inputs.settings["mode_threshold"], loglik=inputs.loglik
    )
    return {"functional": table, "chain_distance": distance}
