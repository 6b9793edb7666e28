"""The checks of a diagnosis, one module each, run in the order listed in ``CHECKS``.

Each check is a function ``run(inputs: DiagnosisInputs) -> dict`` whose keys
name fields of :class:`~bnncat.report.diagnosis.DiagnosticReport` (or land in
its ``extra``). Adding a check is a module here and one line in ``CHECKS``.
"""

from bnncat.report.checks import (
    approximation,
    calibration,
    convergence,
    functional,
    hopping,
    sampler,
    units,
)

CHECKS = (
    convergence.run,
    sampler.run,
    hopping.run,
    functional.run,
    units.run,
    calibration.run,
    approximation.run,
)

__all__ = ["CHECKS"]
