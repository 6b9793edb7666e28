"""The ordered-node identifiable MLP: hidden-unit symmetries removed by PyMC transforms.

Which constraint removes which symmetry, layer by layer (H_l units in layer l,
L hidden layers):

- Last hidden layer L: the outgoing weights to the first output,
  ``W_out[:, 0]``, are *positively ordered* (0 < w_1 < ... < w_H) for
  activations with a sign flip (tanh, sin, arctan, identity, sigmoid), and
  *ordered* otherwise. A permutation of the units permutes this vector and a
  flip negates an entry, so exactly one of the H_L!·2^H_L copies (H_L! without
  flips) satisfies the constraint, for generic parameters (all entries
  non-zero and distinct). The other outputs' weights stay free: they move with
  the units but need no constraint.
- Inner hidden layers l < L: the biases ``b{l}`` are positively ordered (with
  sign flips) or ordered. A unit's own bias flips and moves with the unit and
  with nothing else, so this removes that layer's H_l!·2^H_l copies
  independently of the other layers (a sigmoid flip changes only the *next*
  layer's bias).

The transforms are ``pm.distributions.transforms.Ordered`` (``positive=True``
for the positive ordering, which has better geometry than chaining an ordering
with a log transform); they work on the last axis, so the first output's
weights are a vector ``W_out_lead`` and ``W_out`` (hidden{L}, output) is a
Deterministic. Initial values are spread evenly inside the constrained region,
so NUTS and ADVI start from a valid point.

Constraints can make NUTS mix worse: the sampler can meet the ordering boundary
(two units swapping roles) and, where an ordered outgoing weight approaches 0,
a funnel in that unit's incoming weights. The README compares this model with
the plain MLP plus relabelling on one problem.
"""

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pymc as pm
import pytensor.tensor as pt

from bnncat.models.activations import ACTIVATIONS
from bnncat.models.attrs import register_model
from bnncat.models.data_spec import DataSpec
from bnncat.models.mlp import MLP, weight_names, weight_prior_scale
from bnncat.models.validation import check_choice

ORDER_BY = ("output", "bias")

_Ordered = pm.distributions.transforms.Ordered


@register_model
@dataclass(frozen=True)
class OrderedMLP(MLP):
    """An MLP whose hidden units are ordered (and sign-fixed) by PyMC transforms.

    Same options as :class:`MLP`, plus:

    order_by : {"output", "bias"}
        What orders the last hidden layer: its outgoing weights to the first
        output (default), or, like the inner layers, its biases. The README's
        comparison says why the default is "output".

    See the module docstring for the constraints.

    Examples
    --------
    >>> import numpy as np
    >>> from bnncat.models import OrderedMLP
    >>> X = np.linspace(-1, 1, 20)[:, None]
    >>> model = OrderedMLP(hidden=(4,)).build(X, np.sin(3 * X[:, 0]))
    >>> model.rvs_to_transforms[model["W_out_lead"]].positive
    True
    """

    order_by: str = field(default="output", kw_only=True)

    def __post_init__(self) -> None:
        super().__post_init__()
        check_choice(self.order_by, ORDER_BY, "order_by")

    def layer_parameters(
        self, layer: int, fan_in: int, dims: tuple[str, str], spec: DataSpec
    ) -> tuple[Any, Any]:
        """Create layer ``layer``'s weights and bias, with the ordering constraints."""
        w_name, b_name = weight_names(self.n_hidden_layers)[layer]
        positive = self.sign_flips
        last_hidden = self.n_hidden_layers - 1
        scale = weight_prior_scale(self, w_name, fan_in)
        if w_name != "W_out":
            W = pm.Normal(w_name, 0.0, scale, dims=dims)
            if layer == last_hidden and self.order_by == "output":
                return W, pm.Normal(b_name, 0.0, self.bias_scale, dims=dims[1])
            b = pm.Normal(
                b_name,
                0.0,
                self.bias_scale,
                dims=dims[1],
                transform=_Ordered(positive=positive),
                initval=_spread(self.hidden[layer], positive, self.bias_scale),
            )
            return W, b
        H = self.hidden[-1]
        if self.order_by == "bias":
            W = pm.Normal(w_name, 0.0, scale, dims=dims)
            return W, pm.Normal(b_name, 0.0, self.bias_scale, dims=dims[1])
        lead = pm.Normal(
            "W_out_lead",
            0.0,
            scale,
            dims=dims[0],
            transform=_Ordered(positive=positive),
            initval=_spread(H, positive, 1.0),
        )
        columns = [lead[:, None]]
        if spec.n_outputs > 1:
            columns.append(pm.Normal("W_out_rest", 0.0, scale, shape=(H, spec.n_outputs - 1)))
        W = pm.Deterministic("W_out", pt.concatenate(columns, axis=1), dims=dims)
        return W, pm.Normal(b_name, 0.0, self.bias_scale, dims=dims[1])

    def in_constrained_region(self, params: dict[str, np.ndarray]) -> np.ndarray:
        """Whether each draw satisfies the constraints (strictly), over the sample dims.

        Examples
        --------
        >>> import numpy as np
        >>> from bnncat.models import OrderedMLP
        >>> p = {"W1": np.ones((1, 2)), "b1": np.zeros(2), "W_out": np.array([[0.5], [2.0]])}
        >>> bool(OrderedMLP(hidden=(2,)).in_constrained_region(p))
        True
        """
        names = weight_names(self.n_hidden_layers)
        keys = [params[names[i][1]] for i in range(self.n_hidden_layers)]
        if self.order_by == "output":
            keys[-1] = params["W_out"][..., :, 0]
        ok = np.ones(np.shape(keys[0])[:-1], dtype=bool)
        for key in keys:
            ok &= (np.diff(key, axis=-1) > 0).all(axis=-1)
            if self.sign_flips:
                ok &= (key > 0).all(axis=-1)
        return ok

    @property
    def sign_flips(self) -> bool:
        """Whether the activation has a sign-flip symmetry to remove as well."""
        return ACTIVATIONS[self.activation].sign_flip is not None


def _spread(n: int, positive: bool, scale: float) -> np.ndarray:
    """Evenly spaced, strictly increasing initial values inside the constraint."""
    return scale * (np.linspace(0.1, 1.0, n) if positive else np.linspace(-1.0, 1.0, n))
