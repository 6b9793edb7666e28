"""The ordered-node identifiable MLP: hidden-unit symmetries removed by PyMC transforms.

Which constraint removes which symmetry, layer by layer (H_l units in layer l):

- Permutations (``order_by="bias"``, the default): every hidden layer's biases
  ``b{l}`` are *ordered* (b_1 < ... < b_H). A permutation of the layer's units
  permutes its biases and nothing else moves them.
- Sign flips, for activations that have one (tanh, sin, arctan, identity,
  sigmoid), with ``sign_by="bias"`` (the default): the biases are *positively*
  ordered (0 < b_1 < ... < b_H). With ``sign_by="input"``: each unit's weight
  from the layer's first input (the first feature, or the first unit of the
  layer before) is positive, ``W{l}[0, :] > 0``, and the biases are ordered
  only. A flip negates the unit's incoming weights, and the first input is
  itself already fixed by the layers below, so exactly one sign qualifies.
- With ``order_by="output"`` the last hidden layer is keyed instead on its
  outgoing weights to the first output, ``W_out[:, 0]``, positively ordered
  (that fixes its signs too); the other outputs' weights stay free.

In every case exactly one of the H_l!·2^H_l copies of each layer (H_l! without
flips) satisfies the constraints, for generic parameters, independently of the
other layers (tested by enumerating the group).

Which samples better was measured (README, "Identifiability" and "The model
grid"): ordering the outgoing weights leaves a funnel in the incoming weights of
a unit whose ordered weight nears 0. Every sign rule puts a boundary at the zero
of some parameter, and NUTS loses effective samples wherever posterior mass lies
there: a bias near 0 (a unit whose transition sits in the middle of the
standardised inputs) for ``sign_by="bias"``, a first incoming weight near 0 (an
idle unit) for ``sign_by="input"``. Neither wins everywhere; "bias" failed fewer
of the convergence checks, hence the default.

The transforms are ``pm.distributions.transforms.Ordered`` (``positive=True``
for the positive ordering, which has better geometry than chaining an ordering
with a log transform); they work on the last axis, so the first output's
weights are a vector ``W_out_lead`` and ``W_out`` (hidden{L}, output) is a
Deterministic. Likewise a positive first row of incoming weights is a
half-normal ``W{l}_lead`` (hidden{l}) with the other rows in ``W{l}_rest``, and
``W{l}`` is a Deterministic. Initial values lie inside the constrained region,
so NUTS and ADVI start from a valid point.
"""

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pymc as pm
import pytensor.tensor as pt

from bnncat.models.activations import has_sign_flip
from bnncat.models.attrs import register_model
from bnncat.models.data_spec import DataSpec
from bnncat.models.mlp import MLP, weight_names, weight_prior_scale
from bnncat.models.validation import check_choice

ORDER_BY = ("bias", "output")
SIGN_BY = ("bias", "input")

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
    sign_by : {"bias", "input"}
        What fixes the sign of each unit, for activations with a sign flip:
        its bias, with the biases positively ordered (default), or its weight
        from the layer's first input, positive. See the module docstring.

    See the module docstring for the constraints.

    Examples
    --------
    >>> import numpy as np
    >>> from bnncat.models import OrderedMLP
    >>> X = np.linspace(-1, 1, 20)[:, None]
    >>> model = OrderedMLP(hidden=(4,)).build(X, np.sin(3 * X[:, 0]))
    >>> model.rvs_to_transforms[model["b1"]].positive
    True
    >>> model = OrderedMLP(hidden=(4,), sign_by="input").build(X, np.sin(3 * X[:, 0]))
    >>> model.named_vars_to_dims["W1_lead"]  # signs fixed by W1[0, :] > 0
    ('hidden1',)
    """

    order_by: str = field(default="bias", kw_only=True)
    sign_by: str = field(default="bias", kw_only=True)
    samples_canonically = True

    def __post_init__(self) -> None:
        super().__post_init__()
        check_choice(self.order_by, ORDER_BY, "order_by")
        check_choice(self.sign_by, SIGN_BY, "sign_by")

    def relabel_rule(self) -> tuple[str, str]:
        """Relabel by the keys the constraints order and sign by (draws then stay as sampled)."""
        return self.order_by, self.sign_by

    def layer_parameters(
        self, layer: int, fan_in: int, dims: tuple[str, str], spec: DataSpec
    ) -> tuple[Any, Any]:
        """Create layer ``layer``'s weights and bias, with the ordering constraints."""
        w_name, b_name = weight_names(self.n_hidden_layers)[layer]
        scale = weight_prior_scale(self, w_name, fan_in)
        if w_name == "W_out":
            return self._output_layer(dims, scale, spec.n_outputs)
        if self._signs_by_input(layer):
            W = _positive_first_row(w_name, scale, fan_in, dims)
        else:
            W = pm.Normal(w_name, 0.0, scale, dims=dims)
        if self._keyed_on_output(layer):
            return W, pm.Normal(b_name, 0.0, self.bias_scale, dims=dims[1])
        positive = self.sign_flips and self.sign_by == "bias"
        b = pm.Normal(
            b_name,
            0.0,
            self.bias_scale,
            dims=dims[1],
            transform=_Ordered(positive=positive),
            initval=_spread(self.hidden[layer], positive, self.bias_scale),
        )
        return W, b

    def _output_layer(self, dims: tuple[str, str], scale: Any, n_outputs: int) -> tuple[Any, Any]:
        """``W_out`` (free, or its first column positively ordered) and ``b_out``."""
        if self.order_by == "bias":
            W = pm.Normal("W_out", 0.0, scale, dims=dims)
            return W, pm.Normal("b_out", 0.0, self.bias_scale, dims=dims[1])
        H = self.hidden[-1]
        lead = pm.Normal(
            "W_out_lead",
            0.0,
            scale,
            dims=dims[0],
            transform=_Ordered(positive=self.sign_flips),
            initval=_spread(H, self.sign_flips, 1.0),
        )
        columns = [lead[:, None]]
        if n_outputs > 1:
            columns.append(pm.Normal("W_out_rest", 0.0, scale, shape=(H, n_outputs - 1)))
        W = pm.Deterministic("W_out", pt.concatenate(columns, axis=1), dims=dims)
        return W, pm.Normal("b_out", 0.0, self.bias_scale, dims=dims[1])

    def _keyed_on_output(self, layer: int) -> bool:
        """Whether hidden layer ``layer`` is ordered (and sign-fixed) by ``W_out[:, 0]``."""
        return layer == self.n_hidden_layers - 1 and self.order_by == "output"

    def _signs_by_input(self, layer: int) -> bool:
        """Whether hidden layer ``layer``'s signs are fixed by its first incoming weights."""
        return self.sign_flips and self.sign_by == "input" and not self._keyed_on_output(layer)

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
        ok = np.ones(np.shape(params["b1"])[:-1], dtype=bool)
        for layer in range(self.n_hidden_layers):
            key, sign_key = unit_keys(
                params, layer, self.n_hidden_layers, order_by=self.order_by, sign_by=self.sign_by
            )
            ok &= (np.diff(key, axis=-1) > 0).all(axis=-1)
            if self.sign_flips:
                ok &= (sign_key > 0).all(axis=-1)
        return ok

    def free_pieces(self, params: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        """Split Deterministic weights into their sampled pieces (``W1_lead``, ...)."""
        pieces = {}
        names = weight_names(self.n_hidden_layers)
        for layer in range(self.n_hidden_layers):
            if self._signs_by_input(layer):
                pieces |= _split_rows(names[layer][0], np.asarray(params[names[layer][0]]))
        if self.order_by == "output":
            W = np.asarray(params["W_out"])
            pieces["W_out_lead"] = W[..., 0]
            if W.shape[-1] > 1:
                pieces["W_out_rest"] = W[..., 1:]
        return pieces

    @property
    def sign_flips(self) -> bool:
        """Whether the activation has a sign-flip symmetry to remove as well."""
        return has_sign_flip(self.activation)


def unit_keys(
    params: dict[str, np.ndarray],
    layer: int,
    n_layers: int,
    *,
    order_by: str = "bias",
    sign_by: str = "bias",
) -> tuple[np.ndarray, np.ndarray]:
    """Return the keys of hidden layer ``layer``'s units (0-based): what orders and signs them.

    The order key is the layer's biases, or for the last hidden layer with
    ``order_by="output"`` its outgoing weights to the first output. The sign key
    is the order key, or with ``sign_by="input"`` each unit's weight from the
    layer's first input. ``OrderedMLP`` constrains both to be increasing and
    positive; ``canonicalize(method="sort")`` flips and sorts units by them.
    """
    w_name, b_name = weight_names(n_layers)[layer]
    on_output = layer == n_layers - 1 and order_by == "output"
    key = params["W_out"][..., :, 0] if on_output else params[b_name]
    sign_key = params[w_name][..., 0, :] if sign_by == "input" and not on_output else key
    return np.asarray(key), np.asarray(sign_key)


def _spread(n: int, positive: bool, scale: float) -> np.ndarray:
    """Evenly spaced, strictly increasing initial values inside the constraint."""
    return scale * (np.linspace(0.1, 1.0, n) if positive else np.linspace(-1.0, 1.0, n))


def _positive_first_row(name: str, scale: Any, fan_in: int, dims: tuple[str, str]) -> Any:
    """Weights ``name`` (fan_in, H) whose first row is positive: half-normal, same scale."""
    rows = [pm.HalfNormal(f"{name}_lead", scale, dims=dims[1])[None, :]]
    if fan_in > 1:
        H = len(pm.modelcontext(None).coords[dims[1]])
        rows.append(pm.Normal(f"{name}_rest", 0.0, scale, shape=(fan_in - 1, H)))
    return pm.Deterministic(name, pt.concatenate(rows, axis=0), dims=dims)


def _split_rows(name: str, W: np.ndarray) -> dict[str, np.ndarray]:
    """``{name}_lead`` (first row) and ``{name}_rest`` of weights (..., fan_in, H)."""
    pieces = {f"{name}_lead": W[..., 0, :]}
    if W.shape[-2] > 1:
        pieces[f"{name}_rest"] = W[..., 1:, :]
    return pieces
