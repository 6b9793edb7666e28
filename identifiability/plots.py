"""Plots of the symmetries of a fit: weight traces, raw against relabelled, mode hopping.

:func:`plot_trace` shows the output layer, noise and scales of a fit.
:func:`plot_raw_vs_relabelled` and :func:`plot_unit_pair` lay out raw draws
in the left column and relabelled draws in the right one (ArviZ's
``plot_trace``, ``plot_rank``), so that the collapse of symmetric modes is
visible side by side; :func:`plot_hopping_timeline`,
:func:`plot_chain_distance` and :func:`plot_rhat_by_space` show mode hopping,
functional modes and convergence in the three spaces.
"""

from typing import Any

import arviz as az
import matplotlib.pyplot as plt
import numpy as np
import xarray as xr
from arviz_plots import PlotCollection
from matplotlib.colors import ListedColormap
from matplotlib.figure import Figure

from bnncat.identifiability.hopping import copy_ids
from bnncat.models import read_net
from bnncat.thresholds import RHAT_MAX


def trace_var_names(idata: xr.DataTree) -> list[str]:
    """Name the parameters a trace plot shows: output layer, noise and layer scales."""
    post = idata["posterior"]
    names = ["W_out", "b_out"] + [n for n in ("sigma", "nu") if n in post]
    return names + sorted(n for n in post.data_vars if n.endswith("_sd"))


def plot_trace(idata: xr.DataTree, *, max_units: int = 4) -> Any:
    """Trace plot (densities and traces per chain) of the output layer, noise and scales.

    Shows the first ``max_units`` units of the last hidden layer.

    Raw weights of an MLP are only identified up to permutations and sign
    flips of the hidden units, so chains may disagree on them while agreeing
    on every prediction; see ``bnncat.identifiability`` for relabelled draws.

    Returns the ArviZ ``PlotCollection``; ``.savefig(path)`` writes it.

    Examples
    --------
    >>> from bnncat.identifiability.plots import plot_trace
    >>> plot_trace(idata).savefig("trace.png")  # doctest: +SKIP
    """
    net, _ = read_net(idata)
    last = f"hidden{net.n_hidden_layers}"
    units = idata["posterior"][last].values[:max_units]
    return az.plot_trace_dist(
        idata, var_names=trace_var_names(idata), coords={last: units}, backend="matplotlib"
    )


def _unit_slices(idata: xr.DataTree, canon: xr.DataTree, max_units: int) -> xr.Dataset:
    """Last hidden layer's biases and outgoing weights, raw and relabelled, on a ``labels`` dim."""
    post = idata["posterior"]
    layer = sum(1 for n in post.data_vars if n[:1] == "W" and n[1:].isdigit())
    hidden = f"hidden{layer}"
    names = [f"b{layer}", "W_out"]

    def pick(ds: xr.Dataset) -> xr.Dataset:
        out = ds[names].isel({hidden: slice(0, max_units)})
        others = [d for d in out.dims if d not in ("chain", "draw", hidden)]
        return out.isel({d: 0 for d in others}, drop=True)

    raw = pick(post.to_dataset())
    rel = pick(canon["posterior"].to_dataset())
    labels = xr.DataArray(["raw", "relabelled"], dims="labels", name="labels")
    return xr.concat([raw, rel], dim=labels)


def plot_raw_vs_relabelled(
    idata: xr.DataTree, canon: xr.DataTree, *, kind: str = "trace", max_units: int = 3
) -> PlotCollection:
    """ArviZ trace or rank plots of the first hidden units, raw (left) vs relabelled (right).

    Shows the biases and outgoing weights (first output) of the first
    ``max_units`` units of the last hidden layer, one colour per chain.

    Parameters
    ----------
    idata, canon : xarray.DataTree
        A fit and its ``canonicalize`` result.
    kind : {"trace", "rank"}
        ``az.plot_trace`` or ``az.plot_rank`` (rank ECDF with envelope).

    Examples
    --------
    >>> from bnncat.identifiability.plots import plot_raw_vs_relabelled
    >>> plot_raw_vs_relabelled(idata, canon, kind="rank").savefig("rank.png")  # doctest: +SKIP
    """
    if kind not in ("trace", "rank"):
        raise ValueError(f"kind must be 'trace' or 'rank'; got {kind!r}")
    both = _unit_slices(idata, canon, max_units)
    hidden = next(d for d in both.dims if d.startswith("hidden"))
    rows = 2 * both.sizes[hidden]
    pc = PlotCollection.grid(
        both,
        cols=["labels"],
        rows=["__variable__", hidden],
        aes={"color": ["chain"]},
        backend="matplotlib",
        figure_kwargs={"figsize": (10, 1.9 * rows), "layout": "constrained"},
    )
    plot = az.plot_trace if kind == "trace" else az.plot_rank
    plot(xr.DataTree.from_dict({"posterior": both}), plot_collection=pc)
    return pc


def plot_unit_pair(
    idata: xr.DataTree,
    canon: xr.DataTree,
    *,
    var: str = "W_out",
    units: tuple[int, int] = (0, 1),
    max_points: int = 2000,
) -> Figure:
    """Scatter of two hidden units' values of ``var``, raw (left) and relabelled (right).

    In raw draws the symmetric copies show as mirror images (swapped units: a
    reflection in the diagonal; a sign flip: in an axis); relabelling folds
    them onto one.
    """
    post = idata["posterior"]
    if var not in post:
        raise ValueError(f"var={var!r} is not in the posterior: {sorted(post.data_vars)}")
    hidden = next(d for d in post[var].dims if d.startswith("hidden"))
    if max(units) >= post.sizes[hidden]:
        raise ValueError(f"units={units}: the layer has {post.sizes[hidden]} units")
    fig, axes = plt.subplots(1, 2, figsize=(9, 4.2), layout="constrained", sharex=True, sharey=True)
    rng = np.random.default_rng(0)
    for ax, (title, tree) in zip(axes, (("raw", idata), ("relabelled", canon)), strict=True):
        da = tree["posterior"][var]
        da = da.isel({d: 0 for d in da.dims if d not in ("chain", "draw", hidden)})
        for c in range(da.sizes["chain"]):
            xy = da.isel(chain=c).values[:, list(units)]
            take = rng.permutation(len(xy))[: max_points // da.sizes["chain"]]
            ax.scatter(*xy[take].T, s=4, alpha=0.4, color=f"C{c}", label=f"chain {c}")
        ax.set_title(title)
        ax.set_xlabel(f"{var}[unit {units[0]}]")
        ax.axhline(0, color="0.7", lw=0.5)
        ax.axvline(0, color="0.7", lw=0.5)
    axes[0].set_ylabel(f"{var}[unit {units[1]}]")
    axes[1].legend(markerscale=3, fontsize=8, loc="best")
    return fig


#: Chains up to which the hopping timeline labels each row (and grows with them).
_LABELLED_ROWS = 16


def plot_hopping_timeline(canon: xr.DataTree, *, ax: Any = None, max_copies: int = 9) -> Figure:
    """Which symmetric copy each draw was in, one row per chain (copies by frequency).

    The ``max_copies`` most visited copies get their own colours, the rest
    share grey. A chain that stays in one copy is a single colour; real hops
    are long runs of different colours; flicker is relabelling at near-ties.
    """
    ids = copy_ids(canon)
    values, counts = np.unique(ids, return_counts=True)
    rank = np.empty(values.max() + 1, dtype=int)
    rank[values[np.argsort(-counts, kind="stable")]] = np.arange(values.size)
    shown = np.minimum(rank[ids], max_copies)
    colours = [plt.get_cmap("tab10")(i) for i in range(max_copies)] + [(0.8, 0.8, 0.8, 1.0)]
    if ax is None:
        rows = min(ids.shape[0], _LABELLED_ROWS)
        fig, ax = plt.subplots(
            figsize=(9, 0.5 + 0.45 * rows + 1.5 * (rows < ids.shape[0])), layout="constrained"
        )
    else:
        fig = ax.figure
    ax.imshow(
        shown,
        aspect="auto",
        interpolation="nearest",
        cmap=ListedColormap(colours),
        vmin=0,
        vmax=max_copies,
    )
    if ids.shape[0] <= _LABELLED_ROWS:
        ax.set_yticks(range(ids.shape[0]), [f"chain {c}" for c in range(ids.shape[0])])
    else:  # many chains: one pixel row each, numbered by the axis
        ax.set_ylabel("chain")
    ax.set_xlabel("draw")
    switch = float((ids[:, 1:] != ids[:, :-1]).mean()) if ids.shape[1] > 1 else 0.0
    ax.set_title(
        f"copy per draw: {values.size} distinct, switch rate {switch:.0%} "
        f"({max_copies} most visited in colour)"
    )
    return fig


def plot_chain_distance(
    distance: np.ndarray, modes: Any, *, ax: Any = None, unit: str = "posterior sds"
) -> Figure:
    """Heat map of chain-to-chain prediction distances, with each chain's functional mode."""
    if ax is None:
        fig, ax = plt.subplots(figsize=(4.5, 4), layout="constrained")
    else:
        fig = ax.figure
    mesh = ax.imshow(distance, cmap="viridis", vmin=0, vmax=max(2.0, float(distance.max())))
    fig.colorbar(mesh, ax=ax, label=f"distance ({unit})")
    labels = [f"{c} (mode {m})" for c, m in enumerate(modes)]
    ax.set_xticks(range(len(labels)), [str(c) for c in range(len(labels))])
    ax.set_yticks(range(len(labels)), labels)
    ax.set_xlabel("chain")
    ax.set_title("functional modes: chain distances")
    return fig


def plot_rhat_by_space(convergence: Any, *, threshold: float = RHAT_MAX, ax: Any = None) -> Figure:
    """Bar chart of the max R-hat of each space against the threshold."""
    if ax is None:
        fig, ax = plt.subplots(figsize=(5, 3.5), layout="constrained")
    else:
        fig = ax.figure
    rhat = convergence["max_rhat"].to_numpy(dtype=float)
    shown = np.nan_to_num(rhat, nan=1.0)
    colours = ["C3" if r > threshold else "C2" for r in shown]
    names = list(convergence.index)
    ax.barh(names, shown - 1, left=1, color=colours)
    top = max(threshold + (threshold - 1), float(shown.max()))
    for i, r in enumerate(rhat):
        # NaN: one chain, or one draw a chain (an ensemble's members)
        text = "undefined (one chain or one draw)" if np.isnan(r) else f"{r:.3f}"
        ax.text(
            1.0 if np.isnan(r) else min(max(r, 1.0), top), i, f" {text}", va="center", fontsize=9
        )
    ax.axvline(threshold, color="k", ls="--", lw=1, label=f"R-hat {threshold:g}")
    ax.set_xlim(1, 1 + (top - 1) * 1.35)
    ax.invert_yaxis()
    ax.set_xlabel("max R-hat")
    ax.set_title("convergence by space")
    ax.legend(fontsize=8, loc="lower right")
    return fig


def plot_member_pairs(pairs: Any, modes: Any, *, ax: Any = None) -> Figure:
    """Every pair of members: weight distance before (x) and after relabelling (y).

    Symmetric copies of one network drop to the floor (relabelling removes their
    distance); pairs in different functional modes (``modes``, one per member) stay
    near the diagonal, because no symmetry maps one function onto another.
    """
    if ax is None:
        fig, ax = plt.subplots(figsize=(5, 4), layout="constrained")
    else:
        fig = ax.figure
    modes = np.asarray(modes)
    same = modes[pairs["member_a"].to_numpy()] == modes[pairs["member_b"].to_numpy()]
    copy = same & pairs["copies"].to_numpy()
    kinds = (
        (copy, "C0", "symmetric copies (one function)"),
        (same & ~copy, "C1", "one function, not copies"),
        (~same, "C3", "different functions"),
    )
    for mask, colour, label in kinds:
        if mask.any():
            ax.scatter(
                pairs["raw_distance"][mask],
                pairs["relabelled_distance"][mask],
                s=25,
                color=colour,
                label=f"{label}: {int(mask.sum())}",
            )
    top = float(pairs["raw_distance"].max()) * 1.05 if len(pairs) else 1.0
    ax.plot([0, top], [0, top], color="grey", lw=0.8, ls="--")
    ax.set_xlabel("weight distance, raw (RMS)")
    ax.set_ylabel("weight distance, relabelled (RMS)")
    ax.set_title("pairs of members: what relabelling removes")
    ax.legend(fontsize=8, loc="upper left")
    return fig
