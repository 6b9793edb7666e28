"""Identifiability layer: symmetries of an MLP, relabelling of its draws, and their diagnostics.

Symmetry group (:mod:`~bnncat.identifiability.symmetry`),
relabelling (:mod:`~bnncat.identifiability.relabel`), mode hopping
(:mod:`~bnncat.identifiability.hopping`), functional modes
(:mod:`~bnncat.identifiability.functional`), the members of an ensemble
(:mod:`~bnncat.identifiability.members`), convergence in three spaces
(:mod:`~bnncat.identifiability.convergence`), online updating on relabelled
draws (:mod:`~bnncat.identifiability.online`) and plots of raw against
relabelled weights (:mod:`~bnncat.identifiability.plots`). Predictive checks
and calibration live in :mod:`bnncat.evaluation`; ``diagnose`` and its report
in :mod:`bnncat.report`.

Examples
--------
>>> from bnncat.models import MLP
>>> from bnncat import identifiability as ident
>>> ident.symmetry_size(MLP(hidden=(3,), activation="tanh"))
48
"""

from bnncat.identifiability.hopping import copy_ids, mode_hopping
from bnncat.identifiability.members import describe_members, member_modes
from bnncat.identifiability.online import update
from bnncat.identifiability.relabel import canonicalize
from bnncat.identifiability.symmetry import (
    apply_group_element,
    describe_symmetries,
    has_sign_flip,
    log10_symmetry_size,
    random_group_element,
    symmetry_size,
)

__all__ = [
    "apply_group_element",
    "canonicalize",
    "copy_ids",
    "describe_members",
    "describe_symmetries",
    "has_sign_flip",
    "log10_symmetry_size",
    "member_modes",
    "mode_hopping",
    "random_group_element",
    "symmetry_size",
    "update",
]
