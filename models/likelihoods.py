"""Observation models that sit on top of a network's output ``mu``.

Each likelihood adds its own parameters (named as in DESIGN.md: ``sigma``,
``nu``) and the observed variable ``y``. With ``observed=None`` the same code
builds the prediction model, whose ``y`` PyMC then samples.
"""

from dataclasses import dataclass
from typing import Literal

import numpy as np
import pymc as pm
import pytensor.tensor as pt

from bnncat.models.data_spec import DataSpec


@dataclass(frozen=True)
class Likelihood:
    """A named observation model.

    Attributes
    ----------
    name : str
        Registry key.
    task : {"regression", "classification"}
        Regression targets are real (one column per output); classification
        targets are integer labels.
    binary : bool
        Classification with a single logit output (class 1 against class 0).
    """

    name: str
    task: Literal["regression", "classification"]
    binary: bool = False

    def add(self, mu: pt.TensorVariable, observed: np.ndarray | None, spec: DataSpec) -> None:
        """Add the noise parameters and ``y`` to the model on the context stack."""
        if self.name in ("normal", "studentt"):
            # Half-normal noise scale in the units of y: on standardised data
            # this is the usual HalfNormal(1).
            sigma = pm.HalfNormal("sigma", sigma=np.asarray(spec.y_scale), dims="output")
            if self.name == "normal":
                pm.Normal("y", mu, sigma, observed=observed, shape=mu.shape, dims=("obs", "output"))
            else:
                # Gamma(2, 0.1) on the degrees of freedom (Juarez & Steel 2010).
                nu = pm.Gamma("nu", alpha=2.0, beta=0.1)
                pm.StudentT(
                    "y",
                    nu=nu,
                    mu=mu,
                    sigma=sigma,
                    observed=observed,
                    shape=mu.shape,
                    dims=("obs", "output"),
                )
        elif self.name == "bernoulli":
            pm.Bernoulli("y", logit_p=mu[:, 0], observed=observed, shape=mu.shape[0], dims="obs")
        elif self.name == "categorical":
            pm.Categorical("y", logit_p=mu, observed=observed, shape=mu.shape[0], dims="obs")
        else:  # pragma: no cover - the registry below lists every name
            raise AssertionError(self.name)


LIKELIHOODS: dict[str, Likelihood] = {
    lik.name: lik
    for lik in (
        Likelihood("normal", "regression"),
        Likelihood("studentt", "regression"),
        Likelihood("bernoulli", "classification", binary=True),
        Likelihood("categorical", "classification"),
    )
}
