"""Plots of a fit's predictions: predictive bands, the predictive density and interval coverage."""

import numbers
from collections.abc import Sequence
from typing import Any

import matplotlib.pyplot as plt
import numpy as np
import xarray as xr
from matplotlib.colors import PowerNorm
from matplotlib.figure import Figure

from bnncat.evaluation.density import predictive_density, predictive_quantiles
from bnncat.models import predict, read_net
from bnncat.models.validation import check_positive_int


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
    >>> from bnncat.evaluation.plots import plot_predictive
    >>> plot_predictive(idata).savefig("predictive.png")  # doctest: +SKIP
    """
    net, spec = read_net(idata)
    n_panels = spec.n_outputs if net.lik.task == "regression" else 1
    if ax is not None:
        if n_panels != 1:
            raise ValueError(f"ax= needs a single-output model; this one has {n_panels} outputs")
        fig, axes = ax.figure, [ax]
    else:
        fig, grid_axes = plt.subplots(1, n_panels, figsize=(6.5 * n_panels, 4.2), squeeze=False)
        axes = list(grid_axes[0])
    if spec.n_features == 1 and net.lik.task == "regression":
        _regression_bands(idata, axes, bands, grid_size, random_seed)
    elif spec.n_features == 1:
        _class_bands(idata, axes[0], bands, grid_size)
    else:
        _predicted_against_observed(idata, axes, random_seed)
    axes[0].legend(loc="best", fontsize=8)
    title = f"{net.likelihood} MLP {net.hidden}, {idata.attrs.get('fit_method', '')}"
    if ax is not None:
        ax.set_title(title)
    else:
        fig.suptitle(title)
        fig.tight_layout()
    return fig


def _input_grid(X: np.ndarray, size: int) -> np.ndarray:
    """Return a (size, 1) grid over one input that extends 5% beyond the data."""
    lo, hi = X.min(), X.max()
    pad = 0.05 * (hi - lo if hi > lo else 1.0)
    return np.linspace(lo - pad, hi + pad, size)[:, None]


def _regression_bands(idata, axes, bands, grid_size, random_seed) -> None:
    """Predictive bands of new observations and the 90% band of the mean, per output."""
    _, spec = read_net(idata)
    X, y = idata["constant_data"]["X"].values, idata["observed_data"]["y"].values
    grid = _input_grid(X, grid_size)
    pred = predict(idata, grid, random_seed=random_seed)["predictions"]
    for j, ax in enumerate(axes):
        ydraws, mu = _flat(pred["y"].values[..., j]), _flat(pred["mu"].values[..., j])
        for b, alpha in zip(sorted(bands, reverse=True), (0.2, 0.4, 0.6), strict=False):
            q = np.quantile(ydraws, [(1 - b) / 2, (1 + b) / 2], axis=0)
            label = f"{b:.0%} predictive band"
            ax.fill_between(grid[:, 0], *q, alpha=alpha, color="C0", lw=0, label=label)
        qm = np.quantile(mu, [0.05, 0.95], axis=0)
        ax.fill_between(grid[:, 0], *qm, alpha=0.35, color="C1", lw=0, label="90% band of the mean")
        ax.plot(grid[:, 0], mu.mean(axis=0), color="C1", lw=2, label="posterior mean")
        ax.scatter(X[:, 0], y[:, j], s=10, color="k", alpha=0.7, label="data", zorder=3)
        ax.set_xlabel(spec.feature_names[0])
        ax.set_ylabel(spec.output_names[j])


def _class_bands(idata, ax, bands, grid_size) -> None:
    """Bands of the probability of class 1 over the input, from the likelihood."""
    net, spec = read_net(idata)
    X, y = idata["constant_data"]["X"].values, idata["observed_data"]["y"].values
    grid = _input_grid(X, grid_size)
    post = idata["posterior"]
    params = {k: _flat(post[k].values) for k in post.data_vars}
    obs = net.observation_parameters(params, grid, spec)
    p = np.exp(net.lik.class_log_probs(obs, spec.n_classes))[..., 1]
    for b, alpha in zip(sorted(bands, reverse=True), (0.2, 0.4, 0.6), strict=False):
        q = np.quantile(p, [(1 - b) / 2, (1 + b) / 2], axis=0)
        ax.fill_between(grid[:, 0], *q, alpha=alpha, color="C0", lw=0, label=f"{b:.0%} band")
    ax.plot(grid[:, 0], p.mean(axis=0), color="C1", lw=2, label="posterior mean")
    ax.scatter(X[:, 0], y == 1, s=10, color="k", alpha=0.6, label="data (class 1 = 1)")
    ax.set_xlabel(spec.feature_names[0])
    ax.set_ylabel("P(class 1)")


def _predicted_against_observed(idata, axes, random_seed) -> None:
    """Several inputs: predicted against observed (regression), or p(observed class)."""
    net, spec = read_net(idata)
    X, y = idata["constant_data"]["X"].values, idata["observed_data"]["y"].values
    pred = predict(idata, X, random_seed=random_seed)["predictions"]
    for j, ax in enumerate(axes):
        if net.lik.task != "regression":
            draws = _flat(pred["y"].values)
            probs = np.stack([(draws == c).mean(axis=0) for c in range(spec.n_classes)], axis=-1)
            ax.hist(probs[np.arange(len(y)), y], bins=20, range=(0, 1))
            ax.set_xlabel("predictive probability of the observed class")
            ax.set_ylabel("count")
            continue
        q = np.quantile(_flat(pred["y"].values[..., j]), [0.05, 0.5, 0.95], axis=0)
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


def _flat(a: np.ndarray) -> np.ndarray:
    """Merge the (chain, draw) dims into one sample dim."""
    return a.reshape(-1, *a.shape[2:])


def plot_conditional_density(
    idata: xr.DataTree,
    *,
    n_x: int = 150,
    n_y: int = 200,
    y_range: tuple[float, float] | None = None,
    output: int | str = 0,
    probs: Sequence[float] = (0.05, 0.5, 0.95),
    max_draws: int = 500,
    ax: Any = None,
    random_seed: int = 0,
) -> Figure:
    """Heat map of the posterior predictive density p(y | x, D) of a one-feature regression.

    The density (:func:`bnncat.evaluation.density.predictive_density`, averaged
    over at most ``max_draws`` posterior draws) is evaluated on a grid of
    ``n_x`` inputs, 5% beyond the training range on each side, times ``n_y``
    values of y. Training data are drawn on top as white points and the
    predictive quantiles ``probs`` as dashed lines. Unlike predictive bands,
    the heat map shows several modes at one x, and so what a mixture
    likelihood (``MixtureRegressor``) adds over a Gaussian one.

    Parameters
    ----------
    idata : xarray.DataTree
        A fit of a regression model with one input feature (``MLP`` with a
        normal or Student-t likelihood, ``OrderedMLP``, ``MixtureRegressor``).
    n_x, n_y : int
        Grid size in x and in y (at least 2 each).
    y_range : (float, float), optional
        Lower and upper end of the y grid. By default the range of the
        training targets padded by 10% on each side. Choose a wider range to
        see tails; the quantiles are computed from the density inside it.
    output : int or str
        Which output to show, by index or by name (multi-output models).
    probs : sequence of float
        Levels in (0, 1) of the quantile lines; empty for none.
    max_draws : int
        Average over at most this many posterior draws (a random subset).
    ax : matplotlib.axes.Axes, optional
        Draw into this axes (its figure also gets the colorbar); a new
        figure otherwise.
    random_seed : int
        Seed of the subset of draws.

    Returns
    -------
    matplotlib.figure.Figure
        The figure; its ``QuadMesh`` holds the density, shape (n_y, n_x).

    Raises
    ------
    ValueError
        For a classification likelihood, more than one input feature, an
        output that the model does not have, a bad ``y_range`` or grid size.
    TypeError
        If ``output`` is neither an int nor a str, or ``n_x``, ``n_y`` or
        ``max_draws`` is not an int.

    Notes
    -----
    Colours follow the square root of the density so that weak modes stay
    visible next to sharp ones; the colorbar is labelled in density units.
    Time grows with ``n_x * max_draws * n_y``.

    Examples
    --------
    >>> from bnncat import data
    >>> from bnncat.models import MixtureRegressor
    >>> from bnncat.evaluation.plots import plot_conditional_density
    >>> ds = data.load("inverse_sine", n=200)
    >>> net = MixtureRegressor((8,), n_components=3, form="mdn")
    >>> idata = net.fit(ds.X, ds.y, random_seed=1)  # doctest: +SKIP
    >>> fig = plot_conditional_density(idata)  # doctest: +SKIP
    >>> fig.savefig("density.png")  # doctest: +SKIP
    """
    net, spec = read_net(idata)
    _check_one_feature_regression(net, spec)
    j = _output_index(output, spec.output_names)
    n_x = check_positive_int(n_x, "n_x", minimum=2)
    n_y = check_positive_int(n_y, "n_y", minimum=2)
    X = idata["constant_data"]["X"].values[:, 0]
    y = idata["observed_data"]["y"].values[:, j]
    lo, hi = float(X.min()), float(X.max())
    pad = 0.05 * (hi - lo if hi > lo else 1.0)
    x_grid = np.linspace(lo - pad, hi + pad, n_x)
    y_lo, y_hi = _y_limits(y, y_range)
    y_grid = np.linspace(y_lo, y_hi, n_y)

    dens = predictive_density(
        idata, x_grid[:, None], y_grid, max_draws=max_draws, random_seed=random_seed
    ).isel(output=[j])  # (x, 1, y)

    if ax is None:
        fig, ax = plt.subplots(figsize=(7, 4.5), layout="constrained")
    else:
        fig = ax.figure
    _draw_density_mesh(fig, ax, x_grid, y_grid, dens.values[:, 0, :].T)
    _draw_quantile_lines(ax, x_grid, dens, probs)
    _draw_training_data(ax, X, y)
    ax.set_xlim(x_grid[0], x_grid[-1])
    ax.set_ylim(y_lo, y_hi)
    ax.set_xlabel(spec.feature_names[0])
    ax.set_ylabel(spec.output_names[j])
    ax.set_title(_model_label(net, idata))
    _draw_light_legend(ax)
    return fig


def _check_one_feature_regression(net: Any, spec: Any) -> None:
    """Raise ValueError unless the fit is a regression on exactly one input feature."""
    if net.lik.task != "regression":
        raise ValueError(
            f"plot_conditional_density needs a regression model; this fit has the "
            f"classification likelihood {net.likelihood!r} (use plot_predictive)"
        )
    if spec.n_features != 1:
        raise ValueError(
            f"plot_conditional_density needs exactly one input feature; this fit has "
            f"{spec.n_features} ({', '.join(spec.feature_names)}); use plot_predictive"
        )


def _y_limits(y: np.ndarray, y_range: object) -> tuple[float, float]:
    """Return ``y_range`` checked, or by default the range of ``y`` padded by 10% each side."""
    if y_range is not None:
        return _check_range(y_range)
    y_lo, y_hi = float(y.min()), float(y.max())
    pad = 0.1 * (y_hi - y_lo if y_hi > y_lo else 1.0)
    return y_lo - pad, y_hi + pad


def _draw_density_mesh(
    fig: Figure, ax: Any, x_grid: np.ndarray, y_grid: np.ndarray, values: np.ndarray
) -> None:
    """Draw the density ``values`` (y, x) as a heat map with its colorbar."""
    mesh = ax.pcolormesh(
        x_grid,
        y_grid,
        values,
        shading="nearest",
        cmap="magma",
        norm=PowerNorm(gamma=0.5, vmin=0.0, vmax=float(values.max())),
        rasterized=True,
    )
    fig.colorbar(mesh, ax=ax, label="p(y | x, D)")


def _draw_quantile_lines(
    ax: Any, x_grid: np.ndarray, dens: xr.DataArray, probs: Sequence[float]
) -> None:
    """Draw the predictive quantiles ``probs`` of the density as dashed lines over x."""
    levels = np.atleast_1d(np.asarray(probs, dtype=np.float64))
    if not levels.size:
        return
    q = predictive_quantiles(dens, levels).values[:, 0, :]  # (x, quantile)
    others = [_percent(p) for p in levels if not np.isclose(p, 0.5)]
    other_label = f"{', '.join(others)} predictive quantile{'s' if len(others) > 1 else ''}"
    for k, p in enumerate(levels):
        median = bool(np.isclose(p, 0.5))
        ax.plot(
            x_grid,
            q[:, k],
            ls="--",
            lw=1.6 if median else 1.2,
            color="white" if median else "#7fd3ff",
            label="predictive median" if median else other_label,
        )
        if not median:
            other_label = "_nolegend_"  # one legend entry for the lines of one style


def _draw_training_data(ax: Any, X: np.ndarray, y: np.ndarray) -> None:
    """Draw the training data as white points above the heat map and the lines."""
    ax.scatter(
        X,
        y,
        s=12,
        facecolor="white",
        edgecolor="black",
        linewidth=0.5,
        label="training data",
        zorder=3,
    )


def _draw_light_legend(ax: Any) -> None:
    """Draw the legend in white on grey, legible over the dark heat map."""
    legend = ax.legend(loc="best", fontsize=8, facecolor="0.25", framealpha=0.6)
    for text in legend.get_texts():
        text.set_color("white")


def _output_index(output: object, names: Sequence[str]) -> int:
    """Index of ``output`` (an index or a name) among the model's outputs."""
    if isinstance(output, str):
        if output not in names:
            raise ValueError(f"output={output!r} is not an output of this model; it has {names}")
        return list(names).index(output)
    if isinstance(output, bool) or not isinstance(output, numbers.Integral):
        raise TypeError(f"output must be an int index or an output name; got {output!r}")
    if not 0 <= output < len(names):
        raise ValueError(
            f"output={output} is out of range: this model has {len(names)} output(s), "
            f"indices 0 to {len(names) - 1} ({', '.join(names)})"
        )
    return int(output)


def _check_range(y_range: object) -> tuple[float, float]:
    """Validate a (low, high) pair of finite numbers with low < high."""
    try:
        lo, hi = (float(v) for v in y_range)  # type: ignore[union-attr]
    except (TypeError, ValueError) as err:
        raise ValueError(f"y_range must be a (low, high) pair of numbers; got {y_range!r}") from err
    if not (np.isfinite(lo) and np.isfinite(hi) and lo < hi):
        raise ValueError(f"y_range must be finite with low < high; got {y_range!r}")
    return lo, hi


def _percent(p: float) -> str:
    """0.05 -> '5%', 0.025 -> '2.5%'."""
    return f"{100 * p:g}%"


def _model_label(net: Any, idata: xr.DataTree) -> str:
    """Short description of a fit for a title: model, head, layers and method."""
    name, head = type(net).__name__, net.head_label()
    method = idata.attrs.get("fit_method", "")
    return f"{name} ({head}) {tuple(net.hidden)}" + (f", {method}" if method else "")


def plot_coverage(calibration: Any, *, ax: Any = None) -> Figure:
    """Central interval coverage against nominal, with ±3 standard errors."""
    if ax is None:
        fig, ax = plt.subplots(figsize=(4.5, 4), layout="constrained")
    else:
        fig = ax.figure
    rows = calibration[calibration["metric"].str.startswith("coverage")]
    if rows.empty:
        ax.text(0.5, 0.5, "no interval coverage\n(classification)", ha="center", va="center")
        ax.set_axis_off()
        return fig
    nominal = rows["nominal"].to_numpy(dtype=float)
    ax.errorbar(
        nominal,
        rows["value"].to_numpy(dtype=float),
        yerr=3 * rows["se"].to_numpy(dtype=float),
        fmt="o",
        capsize=3,
        label=f"observed ±3 SE ({rows['data'].iloc[0]})",
    )
    lims = [min(0.3, nominal.min() - 0.1), 1.0]
    ax.plot(lims, lims, "k--", lw=1, label="nominal")
    ax.set_xlabel("nominal coverage")
    ax.set_ylabel("observed coverage")
    ax.set_title("central predictive intervals")
    ax.legend(fontsize=8, loc="upper left")
    return fig
