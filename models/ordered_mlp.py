"""The ordered-node identifiable MLP: hidden-unit symmetries removed by PyMC transforms.

Which constraint removes which symmetry, layer by layer (H_l units in layer l):

- Every hidden layer l (``order_by="bias"``, the default): the biases
  ``b{l}`` are *positively ordered* (0 < b_1 < ... < b_H) for activations with
  a sign flip (tanh, sin, arctan, identity, sigmoid) and *ordered* otherwise.
  A permutation of the layer's units permutes its biases and a flip negates
  one, and nothing else moves them (a sigmoid flip changes only the *next*
  layer's bias), so exactly one of the layer's H_l!·2^H_l copies (H_l!
  without flips) satisfies the constraint, for generic parameters (biases
  non-zero and distinct), independently of the other layers.
- With ``order_by="output"`` the last hidden layer is keyed instead on its
  outgoing weights to the first output, ``W_out[:, 0]``, (positively)
  ordered; the other outputs' weights stay free. Same counting argument.

Which samples better was measured (``benchmarks/identifiability_compare.py``,
README): on ``mcycle`` with 1x8 tanh, ordering the outgoing weights gave
canonical-weight R-hat 1.53 and bulk ESS 7 (an ordered weight pinned near 0
leaves its unit's incoming weights in a funnel), ordering the biases 1.025 and
155; hence the default. The plain MLP relabelled afterwards did better than
both (1.002 and 2019).

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

ORDER_BY = ("bias", "output")

_Ordered = pm.distributions.transforms.Ordered


@register_model
@dataclass(frozen=True)
class OrderedMLP(MLP):
    """An MLP whose hidden units are ordered (and sign-fixed) by PyMC transforms.

    Same options as :class:`MLP`, plus:

    order_by : {"bias", "output"}
        What orders the last hidden layer: its biases like every other layer
        (default), or its outgoing weights to the first output. The README's
        comparison says why the default is "bias".

    See the module docstring for the constraints.

    Examples
    --------
    >>> import numpy as np
    >>> from bnncat.models import OrderedMLP
    >>> X = np.linspace(-1, 1, 20)[:, None]
    >>> model = OrderedMLP(hidden=(4,)).build(X, np.sin(3 * X[:, 0]))
    >>> model.rvs_to_transforms[model["b1"]].positive
    True
    """

    order_by: str = field(default="bias", kw_only=True)

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
        >>> p = {"W1": np.ones((1, 2)), "b1": np.array([0.5, 2.0]), "W_out": np.ones((2, 1))}
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

    def free_pieces(self, params: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        """``W_out_lead`` (and ``W_out_rest``) from ``W_out``, for ``order_by="output"``."""
        if self.order_by != "output":
            return {}
        W = np.asarray(params["W_out"])
        pieces = {"W_out_lead": W[..., 0]}
        if W.shape[-1] > 1:
            pieces["W_out_rest"] = W[..., 1:]
        return pieces

    @property
    def sign_flips(self) -> bool:
        """Whether the activation has a sign-flip symmetry to remove as well."""
        return ACTIVATIONS[self.activation].sign_flip is not None


def _spread(n: int, positive: bool, scale: float) -> np.ndarray:
    """Evenly spaced, strictly increasing initial values inside the constraint."""
    return scale * (np.linspace(0.1, 1.0, n) if positive else np.linspace(-1.0, 1.0, n))
