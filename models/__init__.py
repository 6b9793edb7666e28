"""PyMC model builders and fitting.

Examples
--------
>>> from bnncat.models import MLP
>>> MLP(hidden=(8,), activation="tanh").hidden
(8,)
"""

from bnncat.models.attrs import read_net
from bnncat.models.inference import fit
from bnncat.models.inference.executors import fit_each
from bnncat.models.mixture import MixtureRegressor
from bnncat.models.mlp import MLP, build_mlp, mlp_forward
from bnncat.models.ordered_mlp import OrderedMLP
from bnncat.models.persistence import load, save
from bnncat.models.prediction import predict
from bnncat.models.predictive_summary import predict_summary

__all__ = [
    "MLP",
    "MixtureRegressor",
    "OrderedMLP",
    "build_mlp",
    "fit",
    "fit_each",
    "load",
    "mlp_forward",
    "predict",
    "predict_summary",
    "read_net",
    "save",
]
