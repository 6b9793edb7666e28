"""Activation functions, each with a PyTensor and a NumPy form and its symmetry.

The two forms must agree: the PyTensor one builds the PyMC graph, the NumPy one
runs the forward pass over posterior draws without compiling anything.
"""

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import pytensor.tensor as pt
from scipy import special


@dataclass(frozen=True)
class Activation:
    """An elementwise activation and what its symmetry group looks like.

    Attributes
    ----------
    name : str
        Registry key, e.g. ``"tanh"``.
    tensor : callable
        PyTensor implementation, used inside the PyMC model.
    numpy : callable
        NumPy implementation, used by the forward pass over draws.
    sign_flip : {"odd", "complement"} or None
        How a unit can be sign-flipped without changing the network. "odd":
        ``f(-z) == -f(z)``, so negating its incoming weights, bias and
        outgoing weights changes nothing. "complement" (sigmoid): ``f(-z) ==
        1 - f(z)``, the same once the next layer's bias absorbs the unit's
        outgoing weights. None: no such flip. Each flippable unit doubles the
        symmetry group.
    """

    name: str
    tensor: Callable
    numpy: Callable
    sign_flip: str | None

    @property
    def odd(self) -> bool:
        """``f(-z) == -f(z)``."""
        return self.sign_flip == "odd"


def sign_flip(activation: str) -> str | None:
    """How units with ``activation`` can be sign-flipped: "odd", "complement" or None.

    The one answer every part of the catalogue asks (symmetry group, relabelling,
    ``OrderedMLP``'s constraints).
    """
    return ACTIVATIONS[activation].sign_flip


def has_sign_flip(activation: str) -> bool:
    """Whether units with ``activation`` can be sign-flipped exactly."""
    return sign_flip(activation) is not None


def _gelu_tensor(z):
    return 0.5 * z * (1.0 + pt.erf(z / np.sqrt(2.0)))


def _gelu_numpy(z):
    return 0.5 * z * (1.0 + special.erf(z / np.sqrt(2.0)))


ACTIVATIONS: dict[str, Activation] = {
    a.name: a
    for a in (
        Activation("tanh", pt.tanh, np.tanh, "odd"),
        Activation("sin", pt.sin, np.sin, "odd"),
        Activation("arctan", pt.arctan, np.arctan, "odd"),
        Activation("identity", lambda z: z, lambda z: z, "odd"),
        Activation("relu", lambda z: pt.maximum(z, 0.0), lambda z: np.maximum(z, 0.0), None),
        Activation("sigmoid", pt.sigmoid, special.expit, "complement"),
        Activation("softplus", pt.softplus, lambda z: np.logaddexp(0.0, z), None),
        Activation("gelu", _gelu_tensor, _gelu_numpy, None),
    )
}
