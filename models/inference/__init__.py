"""How a model is fitted: one module per inference method, a registry, and ``fit``.

Each method module exposes ``fit_<method>(net, X, y, *, <its options>) -> DataTree``
and registers it with its kind (``mcmc``, ``approximation``, ``ensemble``, ``smc``);
adding a method is one module and one import line below.

Examples
--------
>>> from bnncat.models.inference import METHODS
>>> {name: m.kind for name, m in METHODS.items()}  # doctest: +ELLIPSIS
{'nuts': 'mcmc', 'advi': 'approximation', 'fullrank_advi': 'approximation', ...}
"""

# the method modules, in the order users see them; importing one registers it
from bnncat.models.inference.nuts import fit_nuts  # isort: skip
from bnncat.models.inference.advi import fit_advi, fit_fullrank_advi  # isort: skip
from bnncat.models.inference.laplace import fit_laplace  # isort: skip
from bnncat.models.inference.pathfinder import fit_pathfinder  # isort: skip
from bnncat.models.inference.ensemble import fit_ensemble  # isort: skip
from bnncat.models.inference.swag import fit_swag  # isort: skip
from bnncat.models.inference.dei import fit_dei  # isort: skip
from bnncat.models.inference.mclmc import fit_mclmc  # isort: skip
from bnncat.models.inference.chees import fit_chees  # isort: skip
from bnncat.models.inference.smc import fit_smc  # isort: skip
from bnncat.models.inference.sgmcmc import fit_sgmcmc  # isort: skip
from bnncat.models.inference.dispatch import fit
from bnncat.models.inference.registry import (
    KINDS,
    METHODS,
    Method,
    fit_kind,
    method_kind,
    register,
)

__all__ = [
    "KINDS",
    "METHODS",
    "Method",
    "fit",
    "fit_advi",
    "fit_chees",
    "fit_dei",
    "fit_ensemble",
    "fit_fullrank_advi",
    "fit_kind",
    "fit_laplace",
    "fit_mclmc",
    "fit_nuts",
    "fit_pathfinder",
    "fit_sgmcmc",
    "fit_smc",
    "fit_swag",
    "method_kind",
    "register",
]
