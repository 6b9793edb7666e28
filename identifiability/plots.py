"""Plots of a fit: trace plots of selected weights and posterior predictive bands."""

from typing import Any

import arviz as az
import matplotlib.pyplot as plt
import numpy as np
import xarray as xr
from matplotlib.figure import Figure

from bnncat.models import predict, read_net


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


def plot_predictive(
    idata: xr.DataTree,
    *,
    bands: tuple[float, ...] = (0.5, 0.9),
    grid_size: int = 200,
    random_seed: int | None = 0,
    ax: Any = None,
) -> Figure:
    """Posterior predictive against the training data.

    One input feature: the data, the posterior mean of the network output and
    central predictive bands (``bands``, e.g. 50% and 90%) over a grid that
    extends 5% beyond the data. Regression shows bands of new observations
    (noise included) and the 90% band of the mean function; binary
    classification shows the probability of class 1. Several features:
    predicted against observed with central intervals. Pass ``ax`` to draw
    into an existing matplotlib axes (single-output models only).

    Examples
    --------
    >>> from bnncat.identifiability.plots import plot_predictive
    >>> plot_predictive(idata).savefig("predictive.png")  # doctest: +SKIP
    """
    net, spec = read_net(idata)
    X = idata["constant_data"]["X"].values
    y = idata["observed_data"]["y"].values
    n_panels = spec.n_outputs if net.lik.task == "regression" else 1
    if ax is not None:
        if n_panels != 1:
            raise ValueError(f"ax= needs a single-output model; this one has {n_panels} outputs")
        fig, axes = ax.figure, np.array([[ax]])
    else:
        fig, axes = plt.subplots(1, n_panels, figsize=(6.5 * n_panels, 4.2), squeeze=False)
    if spec.n_features == 1:
        lo, hi = X.min(), X.max()
        pad = 0.05 * (hi - lo if hi > lo else 1.0)
        grid = np.linspace(lo - pad, hi + pad, grid_size)[:, None]
        pred = predict(idata, grid, random_seed=random_seed)["predictions"]
        x = grid[:, 0]
        if net.lik.task == "regression":
            for j, ax in enumerate(axes[0]):
                ydraws = _flat(pred["y"].values[..., j])
                mu = _flat(pred["mu"].values[..., j])
                for b, alpha in zip(sorted(bands, reverse=True), (0.2, 0.4, 0.6), strict=False):
                    q = np.quantile(ydraws, [(1 - b) / 2, (1 + b) / 2], axis=0)
                    ax.fill_between(
                        x, *q, alpha=alpha, color="C0", lw=0, label=f"{b:.0%} predictive band"
                    )
                qm = np.quantile(mu, [0.05, 0.95], axis=0)
                ax.fill_between(x, *qm, alpha=0.35, color="C1", lw=0, label="90% band of the mean")
                ax.plot(x, mu.mean(axis=0), color="C1", lw=2, label="posterior mean")
                ax.scatter(X[:, 0], y[:, j], s=10, color="k", alpha=0.7, label="data", zorder=3)
                ax.set_xlabel(spec.feature_names[0])
                ax.set_ylabel(spec.output_names[j])
        else:
            ax = axes[0, 0]
            logits = _flat(pred["mu"].values)
            if net.lik.binary:
                p = 1 / (1 + np.exp(-logits[..., 0]))
            else:
                z = logits - logits.max(axis=-1, keepdims=True)
                p = (np.exp(z) / np.exp(z).sum(axis=-1, keepdims=True))[..., 1]
            for b, alpha in zip(sorted(bands, reverse=True), (0.2, 0.4, 0.6), strict=False):
                q = np.quantile(p, [(1 - b) / 2, (1 + b) / 2], axis=0)
                ax.fill_between(x, *q, alpha=alpha, color="C0", lw=0, label=f"{b:.0%} band")
            ax.plot(x, p.mean(axis=0), color="C1", lw=2, label="posterior mean")
            ax.scatter(X[:, 0], y == 1, s=10, color="k", alpha=0.6, label="data (class 1 = 1)")
            ax.set_xlabel(spec.feature_names[0])
            ax.set_ylabel("P(class 1)")
    else:
        pred = predict(idata, X, random_seed=random_seed)["predictions"]
        for j, ax in enumerate(axes[0]):
            if net.lik.task == "regression":
                ydraws = _flat(pred["y"].values[..., j])
                q = np.quantile(ydraws, [0.05, 0.5, 0.95], axis=0)
                ax.errorbar(
                    y[:, j],
                    q[1],
                    yerr=[q[1] - q[0], q[2] - q[1]],
                    fmt="o",
                    ms=3,
                    alpha=0.6,
                    label="median and 90% predictive interval",
                )
                lims = [min(y[:, j].min(), q[0].min()), max(y[:, j].max(), q[2].max())]
                ax.plot(lims, lims, "k--", lw=1)
                ax.set_xlabel(f"observed {spec.output_names[j]}")
                ax.set_ylabel(f"predicted {spec.output_names[j]}")
            else:
                draws = _flat(pred["y"].values)
                k = spec.n_classes
                probs = np.stack([(draws == c).mean(axis=0) for c in range(k)], axis=-1)
                ax.hist(probs[np.arange(len(y)), y], bins=20, range=(0, 1))
                ax.set_xlabel("predictive probability of the observed class")
                ax.set_ylabel("count")
    axes[0, 0].legend(loc="best", fontsize=8)
    title = f"{net.likelihood} MLP {net.hidden}, {idata.attrs.get('fit_method', '')}"
    if ax is not None:
        ax.set_title(title)
    else:
        fig.suptitle(title)
        fig.tight_layout()
    return fig


def _flat(a: np.ndarray) -> np.ndarray:
    """Merge the (chain, draw) dims into one sample dim."""
    return a.reshape(-1, *a.shape[2:])
