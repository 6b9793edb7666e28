"""Mode-hopping census: which symmetric copy each draw was in, from relabelling's labels.

``canonicalize`` records, per draw, the permutation and signs that map it to the
canonical copy (and, for mixture density networks, the component permutation).
Two draws with the same labels were in the same symmetric copy of the
posterior. From that sequence per chain: how many copies a chain visited, how
often it switched, how long it stayed, and whether chains settled in the same
copy. Near-ties on the relabelling key make labels flip without any real move
between copies, so the census also reports an *ambiguity margin*.
"""

import numpy as np
import pandas as pd
import xarray as xr

from bnncat.identifiability.relabel import resolve_net
from bnncat.identifiability.symmetry import has_sign_flip
from bnncat.models.mlp import MLP
from bnncat.models.ordered_mlp import unit_keys
from bnncat.models.validation import check_positive_float


def copy_ids(canon: xr.DataTree) -> np.ndarray:
    """Give each draw an integer id, (chain, draw): equal ids mean the same symmetric copy."""
    if "relabelling" not in canon.children:
        raise ValueError("canon has no relabelling group: pass the result of canonicalize()")
    labels = canon["relabelling"]
    parts = [
        labels[name].values.reshape(*labels[name].shape[:2], -1)
        for name in sorted(labels.data_vars)
    ]
    stacked = np.concatenate(parts, axis=-1)  # (chain, draw, all labels)
    _, ids = np.unique(stacked.reshape(-1, stacked.shape[-1]), axis=0, return_inverse=True)
    return ids.reshape(stacked.shape[:2])


def mode_hopping(
    canon: xr.DataTree, *, net: MLP | None = None, tol: float = 0.05
) -> tuple[pd.DataFrame, dict]:
    """Per-chain census of symmetric copies visited, and the across-chain summary.

    Parameters
    ----------
    canon : xarray.DataTree
        The result of :func:`bnncat.identifiability.canonicalize` with
        either method.
    net : MLP, optional
        The architecture, if ``canon`` carries no bnncat configuration.
    tol : float
        Two units are *nearly tied* when their relabelling keys (biases, or
        outgoing weights with ``order_by="output"``) differ by less than
        ``tol`` times the median absolute key; a sign is *ambiguous* when
        what fixes it (the key, or with ``sign_by="input"`` the unit's weight
        from the layer's first input) is that close to 0, relative to its own
        median.

    Returns
    -------
    per_chain : pandas.DataFrame
        One row per chain: ``copies_visited``, ``switch_rate`` (share of
        consecutive draws whose labels differ), ``mean_dwell`` (draws per stay),
        ``modal_share`` (share of draws in the chain's most visited copy) and
        ``ambiguous_share`` (share of draws with a near-tie or near-zero key).
    summary : dict
        ``distinct_modal_copies`` across chains, ``chains``, and the overall
        ``switch_rate`` and ``ambiguous_share``.

    Examples
    --------
    >>> from bnncat import identifiability as ident
    >>> per_chain, summary = ident.mode_hopping(ident.canonicalize(idata))  # doctest: +SKIP
    """
    tol = check_positive_float(tol, "tol")
    ids = copy_ids(canon)
    net = resolve_net(canon, net)
    rows = []
    for chain_ids in ids:
        switches = int((chain_ids[1:] != chain_ids[:-1]).sum())
        _, counts = np.unique(chain_ids, return_counts=True)
        rows.append(
            {
                "copies_visited": len(counts),
                "switch_rate": switches / max(len(chain_ids) - 1, 1),
                "mean_dwell": len(chain_ids) / (switches + 1),
                "modal_share": counts.max() / len(chain_ids),
            }
        )
    per_chain = pd.DataFrame(rows).rename_axis("chain")
    ambiguous = _ambiguous_draws(canon, net, tol)
    per_chain["ambiguous_share"] = ambiguous.mean(axis=1)
    modal = [np.bincount(chain_ids).argmax() for chain_ids in ids]
    summary = {
        "chains": ids.shape[0],
        "distinct_modal_copies": len(set(modal)),
        "switch_rate": float((ids[:, 1:] != ids[:, :-1]).mean()) if ids.shape[1] > 1 else 0.0,
        "ambiguous_share": float(ambiguous.mean()),
    }
    return per_chain, summary


def unit_label_changes(canon: xr.DataTree) -> pd.DataFrame:
    """Per canonical unit, how often the original unit behind it changes between draws.

    A whole-net copy changes whenever any unit's label does, so one weakly
    identified unit that flickers makes nearly every draw a new copy. Per unit,
    the strong units that keep their labels stand apart from the weak ones
    that do not.

    Returns
    -------
    pandas.DataFrame
        Index (layer, unit); ``label_change_rate``: share of consecutive draws
        (within chains) whose original unit or sign at this canonical slot differs.
    """
    labels = canon["relabelling"]
    rows = []
    layer = 1
    while f"perm_hidden{layer}" in labels:
        perm = labels[f"perm_hidden{layer}"].values
        sign = labels[f"sign_hidden{layer}"].values
        code = perm * 2 + (sign < 0)  # unit and sign in one integer
        change = (
            (code[:, 1:] != code[:, :-1]).mean(axis=(0, 1)) if code.shape[1] > 1 else 0 * code[0, 0]
        )
        rows += [
            {"layer": layer, "unit": u, "label_change_rate": float(c)} for u, c in enumerate(change)
        ]
        layer += 1
    return pd.DataFrame(rows).set_index(["layer", "unit"])


def _ambiguous_draws(canon: xr.DataTree, net: MLP, tol: float) -> np.ndarray:
    """(chain, draw) booleans: some unit's sort key nearly tied with another, or nearly 0."""
    post = canon["posterior"]
    order_by = canon["relabelling"].attrs.get("order_by", "bias")
    sign_by = canon["relabelling"].attrs.get("sign_by", "bias")
    flips = has_sign_flip(net.activation)
    params = {k: post[k].values for k in post.data_vars}
    out = np.zeros(post["b1"].shape[:2], dtype=bool)
    for layer in range(net.n_hidden_layers):
        key, sign_key = unit_keys(
            params, layer, net.n_hidden_layers, order_by=order_by, sign_by=sign_by
        )
        out |= _near(np.diff(np.sort(key, axis=-1), axis=-1), key, tol)
        if flips:  # the sign of a unit whose sign key is ~0 is a coin toss
            out |= _near(sign_key, sign_key, tol)
    return out


def _near(values: np.ndarray, key: np.ndarray, tol: float) -> np.ndarray:
    """Whether any of ``values`` is within ``tol`` times the median absolute key of 0."""
    scale = float(np.median(np.abs(key))) or 1.0
    return (np.abs(values) < tol * scale).any(axis=-1)
