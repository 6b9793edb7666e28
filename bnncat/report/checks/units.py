"""Hidden units: contribution, death, node duplication and label changes."""

from typing import Any

import numpy as np

from bnncat.identifiability.functional import unit_census
from bnncat.identifiability.hopping import unit_label_changes
from bnncat.report.inputs import DiagnosisInputs


def run(inputs: DiagnosisInputs) -> dict[str, Any]:
    """Per unit and per layer (``units``, ``layers``), on evenly thinned relabelled draws."""
    post = inputs.canon["posterior"]
    flat = {k: post[k].values.reshape(-1, *post[k].shape[2:]) for k in post.data_vars}
    n_flat = next(iter(flat.values())).shape[0]
    n_keep = min(inputs.settings["max_unit_draws"], n_flat)
    keep = np.unique(np.linspace(0, n_flat - 1, n_keep).astype(int))
    units, layers = unit_census(
        {k: v[keep] for k, v in flat.items()},
        inputs.X_probe,
        activation=inputs.net.activation,
        spec=inputs.spec,
    )
    return {"units": units.join(unit_label_changes(inputs.canon)), "layers": layers}
