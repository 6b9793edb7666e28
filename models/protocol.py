"""What a model builder provides to the rest of the catalogue, as a typed protocol.

Fitting, prediction, the predictive density, relabelling, the diagnosis and the
command line use a builder only through these members; ``MLP``, ``OrderedMLP`` and
``MixtureRegressor`` implement all of them (``tests/test_protocol.py``). A new model
family implements them too, and needs no other change to be fitted, relabelled and
diagnosed.
"""

from collections.abc import Mapping
from typing import Any, Protocol, runtime_checkable

import numpy as np
import pymc as pm
import xarray as xr

from bnncat.models.data_spec import DataSpec
from bnncat.models.likelihoods import Likelihood


@runtime_checkable
class ModelBuilder(Protocol):
    """The members of a catalogue model that callers rely on."""

    hidden: tuple[int, ...]
    activation: str
    likelihood: str
    #: Dim of the last layer of the network (``output``, or the MDN's ``head``).
    head_dim: str
    #: Whether draws already lie in one canonical copy of the symmetric modes.
    samples_canonically: bool

    @property
    def n_hidden_layers(self) -> int:
        """Number of hidden layers."""

    @property
    def lik(self) -> Likelihood:
        """The observation model."""

    def options(self) -> dict[str, Any]:
        """All builder options, as stored in a fit's attrs."""

    def data_spec(self, X: object, y: object) -> tuple[np.ndarray, np.ndarray, DataSpec]:
        """Validate the data; return arrays and the data spec."""

    def build(self, X: object, y: object) -> pm.Model:
        """Build the PyMC model of the data."""

    def build_validated(
        self,
        X: np.ndarray,
        y: np.ndarray | None,
        spec: DataSpec,
        *,
        batch_size: int | None = None,
        integrate_output: bool = False,
    ) -> pm.Model:
        """Build the PyMC model of validated arrays (``y=None``: for prediction).

        ``batch_size``: the minibatch model; ``integrate_output``: the likelihood with the
        output layer integrated out (for a net with ``output_layer="integrated"``).
        """

    def fit(self, X: object, y: object, **kwargs: Any) -> xr.DataTree:
        """Fit by any method of :func:`bnncat.models.fit`."""

    def forward(
        self, params: Mapping[str, np.ndarray], X: np.ndarray, spec: DataSpec
    ) -> np.ndarray:
        """Symmetry-invariant network output (..., n, output) for a batch of draws."""

    def observation_parameters(
        self, params: Mapping[str, np.ndarray], X: np.ndarray, spec: DataSpec
    ) -> dict[str, np.ndarray]:
        """Arguments of ``lik.dist`` per draw at the inputs ``X`` (y | x, in y units)."""

    def component_labels(
        self, params: Mapping[str, np.ndarray], X: np.ndarray | None, spec: DataSpec | None
    ) -> np.ndarray | None:
        """Per-draw order of the likelihood's components (None: nothing to relabel)."""

    def apply_component_labels(
        self, params: Mapping[str, np.ndarray], perm: np.ndarray
    ) -> dict[str, np.ndarray]:
        """Permute the likelihood's components as ``component_labels`` says."""

    def free_pieces(self, params: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        """Recompute sampled pieces of stored variables after relabelling."""

    def head_size(self, spec: DataSpec) -> int:
        """Width of the network's last layer."""

    def relabel_rule(self) -> tuple[str, str]:
        """Return the keys (``order_by``, ``sign_by``) relabelling orders and signs units by."""

    def head_label(self) -> str:
        """Describe what the last layer models, for titles."""
