"""Relabelling posterior draws of an MLP to one canonical member of each symmetry orbit.

Two methods, both layer by layer from the input side (a layer is relabelled
once the layer feeding it is canonical, so its incoming weights mean the same
in every draw):

``sort``
    The rule of ``OrderedMLP``'s constraints: flip each unit so that its bias
    (``sign_by="bias"``, the default) or its weight from the layer's first
    input (``sign_by="input"``) is positive, for activations with a sign
    flip, and sort the units by bias; with ``order_by="output"`` the last
    hidden layer uses its outgoing weights to the first output instead, for
    both. A pure function of the draw:
    ``canonicalize(g·θ) == canonicalize(θ)`` for every group element g,
    relabelling twice changes nothing, and draws of an ``OrderedMLP`` are
    already canonical.
``pivot``
    Match every draw's units, with the best sign, to a reference by
    ``scipy.optimize.linear_sum_assignment`` on squared distances of their
    incoming weights and bias (plus outgoing weights for the last hidden
    layer), then re-estimate the reference as the mean of the relabelled
    draws, until the labels stop changing (Stephens 2000; the ECR idea of
    Papastamoulis & Iliopoulos 2010). It starts from ``sort`` and adapts to
    the posterior, so it breaks fewer draws where two units are nearly tied
    on the sort key. Each pass finds every draw's optimal assignment, and the
    passes stop only when one changes no label (or after ``max_iter``).
"""

from typing import Any

import numpy as np
import xarray as xr
from scipy.optimize import linear_sum_assignment

from bnncat.identifiability.symmetry import apply_to_layer
from bnncat.models.activations import sign_flip
from bnncat.models.attrs import stored_or_given_net
from bnncat.models.mlp import MLP, weight_names
from bnncat.models.ordered_mlp import ORDER_BY, SIGN_BY, unit_keys
from bnncat.models.prediction import net_and_spec
from bnncat.models.protocol import ModelBuilder
from bnncat.models.validation import check_choice, check_positive_int

METHODS = ("sort", "pivot")


def canonicalize(
    idata: xr.DataTree,
    *,
    method: str = "sort",
    net: MLP | None = None,
    order_by: str | None = None,
    sign_by: str | None = None,
    max_iter: int = 50,
) -> xr.DataTree:
    """Map every posterior draw of an MLP to a canonical representative of its orbit.

    Parameters
    ----------
    idata : xarray.DataTree
        A fit of a catalogue MLP (``net.fit``, ``load``), or your own
        ``pm.sample`` / ``pm.fit`` result on a model from ``net.build`` with
        ``net`` given.
    method : {"sort", "pivot"}
        See the module docstring.
    net : MLP, optional
        The architecture; read from ``idata.attrs`` when omitted.
    order_by : {"bias", "output"}, optional
        The key of the last hidden layer for ``sort`` (and ``pivot``'s start):
        its biases, or its outgoing weights to the first output. Defaults to
        the net's own ``order_by`` (``OrderedMLP``), else "bias".
    sign_by : {"bias", "input"}, optional
        For activations with a sign flip, what ``sort`` makes positive: each
        unit's bias, or its weight from the layer's first input. Defaults to
        the net's own ``sign_by`` (``OrderedMLP``), else "bias".
    max_iter : int
        Most reference updates per layer for ``pivot``.

    Returns
    -------
    xarray.DataTree
        A copy of ``idata`` whose posterior holds the relabelled weights and
        biases (everything else unchanged), plus a group ``relabelling`` with
        ``perm_hidden{l}`` and ``sign_hidden{l}`` (chain, draw, hidden{l}):
        canonical unit k of layer l is original unit ``perm[k]`` times
        ``sign[k]``; for ``pivot`` its attr ``pivot_passes`` counts the
        matching passes per layer (``max_iter`` means labels still changed).
        For a mixture regressor, components are relabelled first (noise form:
        by location; MDN: by each component's mean averaged over the training
        inputs) and
        ``perm_component`` (chain, draw, output, component) records it. The
        input is not modified.

    Examples
    --------
    >>> from bnncat.identifiability import canonicalize
    >>> canon = canonicalize(idata, method="pivot")  # doctest: +SKIP
    >>> canon["relabelling"]["perm_hidden1"].sel(chain=0, draw=0).values  # doctest: +SKIP
    array([3, 0, 7, 1, 5, 2, 6, 4])
    """
    method = check_choice(method, METHODS, "method")
    max_iter = check_positive_int(max_iter, "max_iter")
    net = resolve_net(idata, net)
    own_order, own_sign = net.relabel_rule()
    order_by = check_choice(order_by or own_order, ORDER_BY, "order_by")
    sign_by = check_choice(sign_by or own_sign, SIGN_BY, "sign_by")
    post = idata["posterior"]
    names = [n for pair in weight_names(net.n_hidden_layers) for n in pair]
    everything = {k: post[k].values for k in post.data_vars}
    # likelihood components first: their key does not depend on how units are labelled
    X, spec = None, None  # a hand-built posterior may lack the training data
    if "constant_data" in idata.children:
        _, spec = net_and_spec(idata, net)
        X = idata["constant_data"]["X"].values
    comp_perm = net.component_labels(everything, X, spec)
    components = {}
    if comp_perm is not None:
        everything = net.apply_component_labels(everything, comp_perm)
        components = {k: v for k, v in everything.items() if k not in names}
    params = {n: everything[n] for n in names}
    attrs = {"method": method, "order_by": order_by, "sign_by": sign_by}
    keys = {"order_by": order_by, "sign_by": sign_by}
    if method == "sort":
        canon, perms, signs = sort_labels(params, net, **keys)
    else:
        canon, perms, signs, passes = pivot_labels(params, net, max_iter=max_iter, **keys)
        attrs["pivot_passes"] = passes

    new_post = post.to_dataset()
    for name, value in (components | canon | net.free_pieces(canon)).items():
        if name in new_post:
            new_post[name] = post[name].copy(data=value)
    labels = xr.Dataset(coords=dict(post.coords.items()))
    for layer, (perm, sign) in enumerate(zip(perms, signs, strict=True), 1):
        dims = ("chain", "draw", f"hidden{layer}")
        labels[f"perm_hidden{layer}"] = (dims, perm)
        labels[f"sign_hidden{layer}"] = (dims, sign.astype(np.int8))
    if comp_perm is not None:
        labels["perm_component"] = (("chain", "draw", "output", "component"), comp_perm)
        labels = labels.assign_coords(
            output=list(spec.output_names), component=np.arange(comp_perm.shape[-1])
        )
    labels = labels.drop_vars([c for c in labels.coords if c not in labels.dims])
    labels.attrs.update(attrs)
    out = idata.copy()
    out["posterior"] = new_post
    out["relabelling"] = labels
    return out


def sort_labels(
    params: dict[str, np.ndarray], net: MLP, *, order_by: str = "bias", sign_by: str = "bias"
) -> tuple[dict[str, np.ndarray], list[np.ndarray], list[np.ndarray]]:
    """Canonical draws by the sign rule and bias order; also the labels applied."""
    flip = sign_flip(net.activation)
    cur = {k: np.array(v, dtype=np.float64) for k, v in params.items()}
    perms, signs = [], []
    for layer in range(net.n_hidden_layers):
        perm, sign = _sort_rule(
            cur, layer, net.n_hidden_layers, flip is not None, order_by, sign_by
        )
        apply_to_layer(cur, layer, net.n_hidden_layers, perm, sign if flip else None, flip)
        perms.append(perm)
        signs.append(sign)
    return cur, perms, signs


def pivot_labels(
    params: dict[str, np.ndarray],
    net: MLP,
    *,
    order_by: str = "bias",
    sign_by: str = "bias",
    max_iter: int = 50,
) -> tuple[dict[str, np.ndarray], list[np.ndarray], list[np.ndarray], list[int]]:
    """Canonical draws by iterated matching to a reference (Hungarian algorithm).

    Also returns the labels applied and, per layer, the number of matching
    passes: the last pass changed no label, unless the count is ``max_iter``.
    """
    flip = sign_flip(net.activation)
    with_signs = flip is not None
    n_layers = net.n_hidden_layers
    cur = {k: np.array(v, dtype=np.float64) for k, v in params.items()}
    perms, signs, passes = [], [], []
    for layer in range(n_layers):
        # start from the sort labels of this layer, then refine by matching
        perm0, sign0 = _sort_rule(cur, layer, n_layers, with_signs, order_by, sign_by)
        feats = _unit_features(cur, layer, n_layers)  # (..., H, d), original unit order
        shape = feats.shape[:-2]
        # one contiguous copy: every pass gathers rows of it and multiplies blocks of it
        flat = np.ascontiguousarray(feats.reshape(-1, *feats.shape[-2:]))
        perm = perm0.reshape(-1, flat.shape[1])
        sign = sign0.reshape(-1, flat.shape[1])
        n_pass, changed = 0, True
        while changed and n_pass < max_iter:
            new_perm, new_sign = _match(flat, _mean_relabelled(flat, perm, sign), with_signs)
            changed = not (np.array_equal(new_perm, perm) and np.array_equal(new_sign, sign))
            perm, sign, n_pass = new_perm, new_sign, n_pass + 1
        perm, sign = perm.reshape(*shape, -1), sign.reshape(*shape, -1)
        apply_to_layer(cur, layer, n_layers, perm, sign if flip else None, flip)
        perms.append(perm)
        signs.append(sign)
        passes.append(n_pass)
    return cur, perms, signs, passes


def _sort_rule(
    cur: dict[str, np.ndarray],
    layer: int,
    n_layers: int,
    with_signs: bool,
    order_by: str,
    sign_by: str,
) -> tuple[np.ndarray, np.ndarray]:
    """Labels that put layer ``layer`` into the region ``OrderedMLP`` samples in.

    The last hidden layer is keyed on its outgoing weights to the first output
    (``order_by="output"``) or on its biases, inner layers on their biases.
    Where the activation has a sign flip, each unit is first flipped so that
    its key (``sign_by="bias"``, or any layer keyed on the output) or its weight
    from the layer's first input (``sign_by="input"``; that input is already
    labelled) is positive; then the keys are sorted ascending. No key depends
    on how any later layer is labelled.
    """
    key, sign_key = unit_keys(cur, layer, n_layers, order_by=order_by, sign_by=sign_by)
    sign = np.where(sign_key >= 0, 1.0, -1.0) if with_signs else np.ones(key.shape)
    perm = np.argsort(key * sign, axis=-1, kind="stable")
    return perm, np.take_along_axis(sign, perm, axis=-1)


def _unit_features(cur: dict[str, np.ndarray], layer: int, n_layers: int) -> np.ndarray:
    """Per unit: incoming weights and bias, and for the last hidden layer the outgoing row.

    Everything here flips sign with the unit and none of it depends on how later
    layers are labelled (the output layer's columns are fixed).
    """
    names = weight_names(n_layers)
    (w_in, b_in), (w_next, _) = names[layer], names[layer + 1]
    parts = [np.swapaxes(cur[w_in], -1, -2), cur[b_in][..., None]]
    if w_next == "W_out":
        parts.append(cur[w_next])
    return np.concatenate(parts, axis=-1)


def _mean_relabelled(flat: np.ndarray, perm: np.ndarray, sign: np.ndarray) -> np.ndarray:
    """Return the reference: slot k's mean of ``sign[i, k] * flat[i, perm[i, k]]`` over draws i."""
    n, n_units = perm.shape
    # one gather of rows of the (n * H, d) array and one contraction, rather than
    # take_along_axis, a product and a mean over (n, H, d)
    rows = flat.reshape(n * n_units, -1)[perm + n_units * np.arange(n)[:, None]]
    return np.einsum("ik,ikd->kd", sign, rows) / n


def _match(
    flat: np.ndarray, reference: np.ndarray, with_signs: bool
) -> tuple[np.ndarray, np.ndarray]:
    """Best assignment (and signs) of each draw's units to the reference units.

    Slot k of draw i takes unit ``perm[i, k]`` times ``sign[i, k]``.
    """
    n, n_units = flat.shape[:2]
    perm = np.empty((n, n_units), dtype=np.int64)
    sign = np.ones((n, n_units))
    units = np.arange(n_units)
    # blocks of about 1 MiB of costs keep the (draws, H, H) temporaries in cache, where
    # elementwise passes over all draws at once would cost as much as the solver
    size = max(1, 2**17 // n_units**2)
    for start in range(0, n, size):
        block = slice(start, start + size)
        dots = flat[block] @ reference.T  # (draws, H units, H slots)
        # minimise ||s f_j - r_k||^2 = |f_j|^2 - 2 s f_j . r_k + |r_k|^2 over s and the
        # assignment; |f_j|^2 is the same for every assignment too, but the slot minima
        # below, and so the solver's speed, depend on keeping it
        cost = np.abs(dots) if with_signs else dots.copy()
        cost *= -2
        cost += (flat[block] ** 2).sum(-1)[..., :, None]
        # Subtracting each slot's minimum lowers every assignment's cost by the same amount,
        # so the optimum is unchanged; scipy's solver starts from zero potentials and runs
        # faster from this column reduction (the Hungarian method's first step).
        cost -= cost.min(axis=-2, keepdims=True)
        # Each unit's cheapest entry, summed over units, is a lower bound on every
        # assignment's cost: where no two units share their cheapest slot, that assignment
        # attains the bound and is optimal without a solve.
        slot_of = cost.argmin(axis=-1)  # (draws, units)
        certain = (np.sort(slot_of, axis=-1) == units).all(axis=-1)
        for i in np.flatnonzero(~certain):
            slot_of[i] = linear_sum_assignment(cost[i])[1]
        perm[block] = np.argsort(slot_of, axis=-1)
        if with_signs:
            chosen = np.take_along_axis(dots, perm[block, None, :], axis=1)[:, 0]
            sign[block] = np.where(chosen >= 0, 1.0, -1.0)
    return perm, sign


def resolve_net(idata: Any, net: MLP | None) -> MLP:
    """Return the MLP-family net of a fit: from its attrs, or ``net`` checked against it."""
    if not isinstance(idata, xr.DataTree):
        raise TypeError(f"idata must be an xarray.DataTree; got {type(idata).__name__}")
    if "posterior" not in idata.children:
        raise ValueError("idata has no posterior group: nothing to relabel")
    net = stored_or_given_net(idata, net, example="canonicalize(idata, net=net)")
    if not isinstance(net, ModelBuilder):  # the typed protocol, not a class
        raise TypeError(
            f"canonicalize relabels MLP-family nets (ModelBuilder); got {type(net).__name__}"
        )
    post = idata["posterior"]
    for name in (n for pair in weight_names(net.n_hidden_layers) for n in pair):
        if name not in post:
            raise ValueError(
                f"the posterior has no {name!r}: it is not from {net!r} "
                f"(variables: {sorted(post.data_vars)})"
            )
    widths = tuple(post[f"W{i}"].shape[-1] for i in range(1, net.n_hidden_layers + 1))
    if widths != net.hidden:
        raise ValueError(f"the posterior's hidden widths {widths} are not net.hidden={net.hidden}")
    return net
