"""The Examples sections of the modules' docstrings run (those not marked +SKIP)."""

import doctest
import importlib

import pytest

MODULES = [
    "bnncat.models",
    "bnncat.models.mlp",
    "bnncat.models.inference",
    "bnncat.models.inference.dispatch",
    "bnncat.models.inference.progress",
    "bnncat.models.prediction",
    "bnncat.models.persistence",
    "bnncat.identifiability",
    "bnncat.identifiability.symmetry",
    "bnncat.identifiability.relabel",
    "bnncat.identifiability.plots",
    "bnncat.identifiability.hopping",
    "bnncat.evaluation",
    "bnncat.evaluation.density",
    "bnncat.evaluation.plots",
    "bnncat.report",
    "bnncat.report.diagnosis",
    "bnncat.models.mixture",
    "bnncat.models.ordered_mlp",
]


@pytest.mark.parametrize("name", MODULES)
def test_docstring_examples(name):
    result = doctest.testmod(importlib.import_module(name), optionflags=doctest.ELLIPSIS)
    assert result.failed == 0
