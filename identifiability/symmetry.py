"""The symmetry group of an MLP: its size, and applying a group element to draws.

Each hidden layer l of width H_l contributes

- the H_l! permutations of its units (always), and
- 2^H_l sign flips where the activation allows an exact one: for odd
  activations (tanh, sin, arctan, identity) f(-z) = -f(z), so negating a
  unit's incoming weights and bias and its outgoing weights changes nothing;
  for the sigmoid, sigma(-z) = 1 - sigma(z), so the same flip holds once the
  next layer's bias absorbs the flipped unit's outgoing weights.

Continuous symmetries are not counted: relu is positively homogeneous (scale a
unit's incoming weights and bias by c > 0 and its outgoing weights by 1/c) and
identity admits any invertible linear map. softplus and gelu satisfy
f(-z) = f(z) - z, which no change of weights within the layer structure can
absorb, so they have no sign flip. Besides these exact symmetries, a posterior
also meets near-symmetries (dead units, duplicated units) that the diagnostics
report separately.
"""

import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from bnncat.models.activations import has_sign_flip, sign_flip
from bnncat.models.mlp import MLP, weight_names


def symmetry_size(net: MLP) -> int:
    """Count the discrete symmetries: the product of H_l! (times 2^H_l with sign flips).

    For generic parameters this is the number of distinct weight settings that
    compute the same function as any one of them.

    Examples
    --------
    >>> from bnncat.models import MLP
    >>> from bnncat.identifiability import symmetry_size
    >>> symmetry_size(MLP(hidden=(8,), activation="tanh"))
    10321920
    >>> symmetry_size(MLP(hidden=(8,), activation="relu"))
    40320
    """
    flips = has_sign_flip(net.activation)
    return math.prod(math.factorial(h) * (2**h if flips else 1) for h in net.hidden)


def log10_symmetry_size(net: MLP) -> float:
    """``log10(symmetry_size(net))``, computed without forming the integer.

    Examples
    --------
    >>> from bnncat.models import MLP
    >>> from bnncat.identifiability import log10_symmetry_size
    >>> round(log10_symmetry_size(MLP(hidden=(64, 64))), 1)
    216.7
    """
    flips = has_sign_flip(net.activation)
    return sum(
        (math.lgamma(h + 1) + (h * math.log(2) if flips else 0.0)) / math.log(10)
        for h in net.hidden
    )


def apply_group_element(
    params: Mapping[str, np.ndarray],
    perms: Sequence[np.ndarray],
    signs: Sequence[np.ndarray] | None,
    activation: str,
) -> dict[str, np.ndarray]:
    """Permute and sign-flip the hidden units of every layer, for a batch of draws.

    New unit ``k`` of layer ``l`` is old unit ``perms[l][..., k]`` multiplied
    by ``signs[l][..., k]``. ``perms`` and ``signs`` may carry the same leading
    sample dims as the parameters (one group element per draw) or none (one
    element for all). The network output is unchanged.

    Parameters
    ----------
    params : mapping of str to ndarray
        ``W1``, ``b1``, ..., ``W_out``, ``b_out`` with leading sample dims;
        other entries (``sigma``, scales) are passed through.
    perms : sequence of int ndarray
        One permutation of ``range(H_l)`` per hidden layer.
    signs : sequence of ndarray of +1/-1, optional
        One sign vector per hidden layer; None or all +1 for no flips.
    activation : str
        Activation of the hidden units (decides how a flip is absorbed).

    Returns
    -------
    dict of str to ndarray
        The transformed parameters (new arrays; the input is not modified).

    Examples
    --------
    >>> import numpy as np
    >>> p = {"W1": np.array([[1.0, 2.0]]), "b1": np.array([0.5, -0.5]),
    ...      "W_out": np.array([[3.0], [4.0]]), "b_out": np.array([0.0])}
    >>> q = apply_group_element(p, [np.array([1, 0])], [np.array([-1, 1])], "tanh")
    >>> q["W1"], q["W_out"][:, 0]
    (array([[-2.,  1.]]), array([-4.,  3.]))
    """
    flip = sign_flip(activation)
    if signs is not None and flip is None and np.any(np.asarray(signs[0]) != 1):
        raise ValueError(f"activation={activation!r} has no sign-flip symmetry; pass signs=None")
    out = {k: np.array(v, dtype=np.float64, copy=True) for k, v in params.items()}
    for layer, perm in enumerate(perms):
        apply_to_layer(out, layer, len(perms), perm, None if signs is None else signs[layer], flip)
    return out


def apply_to_layer(
    params: dict[str, np.ndarray],
    layer: int,
    n_layers: int,
    perm: np.ndarray,
    sign: np.ndarray | None,
    flip: str | None,
) -> None:
    """Permute and flip the units of hidden layer ``layer`` (0-based), in place in ``params``."""
    names = weight_names(n_layers)
    (w_in, b_in), (w_next, b_next) = names[layer], names[layer + 1]
    perm = np.asarray(perm)
    W, b, V = params[w_in], params[b_in], params[w_next]
    # incoming columns and biases, outgoing rows: unit k takes old unit perm[k]
    W = np.take_along_axis(W, _index(perm, W.ndim, "columns"), axis=-1)
    b = np.take_along_axis(b, _index(perm, b.ndim, "vector"), axis=-1)
    V = np.take_along_axis(V, _index(perm, V.ndim, "rows"), axis=-2)
    if sign is not None:
        sign = np.asarray(sign, dtype=np.float64)
        W = W * sign[..., None, :]
        b = b * sign
        if flip == "complement":
            # sigmoid(-z) = 1 - sigmoid(z): the flipped unit's outgoing weight moves into
            # the next bias before it changes sign
            params[b_next] = params[b_next] + np.sum(V * (sign[..., :, None] < 0), axis=-2)
        V = V * sign[..., :, None]
    params[w_in], params[b_in], params[w_next] = W, b, V


def _index(perm: np.ndarray, ndim: int, where: str) -> np.ndarray:
    """Shape a (..., H) unit index for ``take_along_axis`` on an ``ndim`` array.

    ``where`` is "columns" (incoming weights), "vector" (biases) or "rows"
    (outgoing weights); missing leading sample dims become 1 and broadcast.
    """
    idx = {"columns": perm[..., None, :], "vector": perm, "rows": perm[..., :, None]}[where]
    return idx.reshape((1,) * (ndim - idx.ndim) + idx.shape)


def random_group_element(
    net: MLP, rng: np.random.Generator, sample_shape: tuple[int, ...] = ()
) -> tuple[list[np.ndarray], list[np.ndarray] | None]:
    """Draw uniform random permutations (and signs, where allowed) for every layer."""
    perms = [np.argsort(rng.random((*sample_shape, h)), axis=-1) for h in net.hidden]
    if not has_sign_flip(net.activation):
        return perms, None
    signs = [rng.choice([-1, 1], size=(*sample_shape, h)) for h in net.hidden]
    return perms, signs


def describe_symmetries(net: MLP) -> dict[str, Any]:
    """Per-layer account of the discrete and continuous symmetries of ``net``."""
    flip = sign_flip(net.activation)
    continuous = {
        "relu": "positive rescaling of each unit (c * incoming, outgoing / c)",
        "identity": "any invertible linear map between consecutive layers",
    }.get(net.activation)
    return {
        "layers": [
            {
                "layer": f"hidden{i}",
                "width": h,
                "permutations": math.factorial(h),
                "sign_flips": 2**h if flip else 1,
            }
            for i, h in enumerate(net.hidden, 1)
        ],
        "sign_flip": flip,
        "continuous": continuous,
        "size": symmetry_size(net),
    }
