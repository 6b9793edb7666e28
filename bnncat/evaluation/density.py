"""Posterior predictive density of regression models: on a grid, its quantiles, and LPD.

p(y | x, D) is the average over posterior draws of each draw's observation
model, whose density comes from the net's likelihood (``bnncat.models.likelihoods``).
Everything works from a fit alone (its attrs say which net produced it).
"""

from typing import Any

import numpy as np
import xarray as xr
from scipy import special

from bnncat.models.inference.linearized import linearized_head
from bnncat.models.prediction import PREDICTIVES, net_and_spec
from bnncat.models.predictive_summary import row_blocks
from bnncat.models.validation import check_choice, check_positive_int, check_X


def _draw_parameters(idata, X_new, net, max_draws, random_seed, predictive="sampled"):
    """Return the net, spec, inputs and the likelihood's parameters of (a subset of) the draws.

    ``predictive="linearized"`` passes the draws of a Laplace fit through the network
    linearised at each restart's MAP instead of the network itself.
    """
    net, spec = net_and_spec(idata, net)
    if net.lik.task != "regression":
        raise ValueError(
            f"a predictive density on a y grid needs a regression likelihood, not "
            f"{net.likelihood!r}"
        )
    X = check_X(X_new, "X_new", n_features=spec.n_features)
    post = idata["posterior"]
    params = {k: post[k].values.reshape(-1, *post[k].shape[2:]) for k in post.data_vars}
    predictive = check_choice(predictive, PREDICTIVES, "predictive")
    if predictive == "linearized":
        head, _ = linearized_head(idata, X, net, spec)
        params["_head"] = head.reshape(-1, *head.shape[2:])
    n_draws = next(iter(params.values())).shape[0]
    max_draws = check_positive_int(max_draws, "max_draws")
    if n_draws > max_draws:  # an evenly random thinning keeps the mixture unbiased
        keep = np.random.default_rng(random_seed).choice(n_draws, max_draws, replace=False)
        params = {k: v[np.sort(keep)] for k, v in params.items()}
    if "_head" in params:
        return net, spec, X, net.parameters_of_head(params.pop("_head"), params, spec)
    return net, spec, X, net.observation_parameters(params, X, spec)


def _row_blocks(idata: xr.DataTree, net: Any, n_rows: int, max_draws: int) -> list[slice]:
    """Slices of the rows small enough that each block's activations fit in memory."""
    post = idata["posterior"]
    draws = min(max_draws, post.sizes["chain"] * post.sizes["draw"])
    return row_blocks(draws, max((*getattr(net, "hidden", ()), 1)), n_rows)


def _row(params: dict[str, np.ndarray], i: int) -> dict[str, np.ndarray]:
    """Select row ``i`` of the parameters: axis 1 is the rows (or 1, shared by every row)."""
    return {k: v[:, i : i + 1] if v.shape[1] > 1 else v for k, v in params.items()}


def predictive_density(
    idata: xr.DataTree,
    X_new: object,
    y_grid: object,
    *,
    net: Any = None,
    max_draws: int = 1000,
    random_seed: int = 0,
) -> xr.DataArray:
    """Posterior predictive density p(y | x, D) on a grid of y, for each new input row.

    Parameters
    ----------
    idata : xarray.DataTree
        A fit of a regression model (``MLP`` with a normal or Student-t
        likelihood, ``OrderedMLP``, ``MixtureRegressor``).
    X_new : array-like of shape (m, n_features)
        Inputs.
    y_grid : array-like of shape (G,)
        Values of y (the same grid for every output).
    net : optional
        The model, if ``idata`` carries no configuration.
    max_draws : int
        Average over at most this many posterior draws (a random subset).
    random_seed : int
        Seed of that subset.

    Returns
    -------
    xarray.DataArray
        Density with dims (obs, output, y).

    Examples
    --------
    >>> import numpy as np
    >>> from bnncat.evaluation.density import predictive_density
    >>> dens = predictive_density(idata, [[0.5]], np.linspace(-1, 2, 301))  # doctest: +SKIP
    """
    net, spec, X, params = _draw_parameters(idata, X_new, net, max_draws, random_seed)
    grid = np.asarray(y_grid, dtype=np.float64)
    if grid.ndim != 1 or grid.size < 2 or not np.isfinite(grid).all():
        raise ValueError("y_grid must be a 1-D array of at least 2 finite values")
    out = np.empty((X.shape[0], spec.n_outputs, grid.size))
    y = grid[:, None, None, None]  # (G, draw, row, output)
    for i in range(X.shape[0]):  # one row at a time keeps memory at draws x G
        logp = net.lik.logp(_row(params, i), y)[:, :, 0]  # (G, draw, output)
        out[i] = np.exp(logp).mean(axis=1).T
    return xr.DataArray(
        out,
        dims=("obs", "output", "y"),
        coords={"output": list(spec.output_names), "y": grid},
        name="density",
    )


def predictive_quantiles(density: xr.DataArray, probs: object = (0.05, 0.5, 0.95)) -> xr.DataArray:
    """Quantiles of a density on a grid (from its normalised cumulative integral).

    Examples
    --------
    >>> import numpy as np, xarray as xr
    >>> from scipy import stats
    >>> from bnncat.evaluation.density import predictive_quantiles
    >>> y = np.linspace(-6, 6, 2001)
    >>> d = xr.DataArray(stats.norm.pdf(y)[None, None], dims=("obs", "output", "y"),
    ...                  coords={"y": y})
    >>> round(float(predictive_quantiles(d, [0.975]).squeeze()), 2)
    1.96
    """
    probs = np.atleast_1d(np.asarray(probs, dtype=np.float64))
    if ((probs <= 0) | (probs >= 1)).any():
        raise ValueError(f"probs must lie in (0, 1); got {probs.tolist()}")
    y = density["y"].values
    dens = density.values
    cdf = np.concatenate(
        [
            np.zeros((*dens.shape[:-1], 1)),
            np.cumsum((dens[..., 1:] + dens[..., :-1]) / 2 * np.diff(y), axis=-1),
        ],
        axis=-1,
    )
    cdf /= cdf[..., -1:]
    flat = cdf.reshape(-1, y.size)
    q = np.stack([np.interp(probs, c, y) for c in flat]).reshape(*dens.shape[:-1], probs.size)
    dims = (*density.dims[:-1], "quantile")
    coords = {k: v for k, v in density.coords.items() if k != "y"} | {"quantile": probs}
    return xr.DataArray(q, dims=dims, coords=coords, name="quantile")


def log_predictive_density(
    idata: xr.DataTree,
    X: object,
    y: object,
    *,
    net: Any = None,
    max_draws: int = 4000,
    random_seed: int = 0,
    predictive: str = "sampled",
) -> dict[str, Any]:
    """Log predictive density of (held-out) data: per row, total and its standard error.

    ``log p(y_i | x_i, D)`` is the log of the average over draws of each draw's
    density at ``y_i`` (summed over outputs). The standard error of the total
    is ``sqrt(n) * sd(pointwise)``, as for ELPD comparisons. ``predictive`` as in
    :func:`bnncat.models.predict` (``"linearized"`` for a Laplace fit's GLM predictive).

    Returns
    -------
    dict
        ``pointwise`` (n,), ``total``, ``se`` and ``mean`` (per row).

    Examples
    --------
    >>> from bnncat.evaluation.density import log_predictive_density
    >>> lpd = log_predictive_density(idata, X_test, y_test)  # doctest: +SKIP
    """
    net, spec = net_and_spec(idata, net)
    Xv = check_X(X, "X", n_features=spec.n_features)
    y_arr = np.asarray(y, dtype=np.float64)
    y_arr = y_arr[:, None] if y_arr.ndim == 1 else y_arr
    if y_arr.shape != (Xv.shape[0], spec.n_outputs) or not np.isfinite(y_arr).all():
        raise ValueError(
            f"y must be finite with shape ({Xv.shape[0]}, {spec.n_outputs}) or "
            f"({Xv.shape[0]},); got {np.shape(y)}"
        )
    pointwise = np.concatenate(
        [
            _pointwise_lpd(idata, Xv[rows], y_arr[rows], net, max_draws, random_seed, predictive)
            for rows in _row_blocks(idata, net, len(Xv), max_draws)
        ]
    )
    n = pointwise.size
    return {
        "pointwise": pointwise,
        "total": float(pointwise.sum()),
        "se": float(np.sqrt(n) * pointwise.std(ddof=1)) if n > 1 else float("nan"),
        "mean": float(pointwise.mean()),
    }


def _pointwise_lpd(idata, X, y, net, max_draws, random_seed, predictive) -> np.ndarray:
    """Log predictive density of each row of one block (the same draws for every block)."""
    net, _, _, params = _draw_parameters(idata, X, net, max_draws, random_seed, predictive)
    per_draw = net.lik.logp(params, y[None]).sum(axis=-1)  # (draws, rows)
    return special.logsumexp(per_draw, axis=0) - np.log(per_draw.shape[0])


def predictive_mean(
    idata: xr.DataTree,
    X: object,
    *,
    net: Any = None,
    max_draws: int = 4000,
    random_seed: int = 0,
    predictive: str = "sampled",
) -> np.ndarray:
    """Posterior predictive mean E[y | x, D] (m, n_outputs) of a regression fit, in y units.

    The average over draws of each draw's mean (a mixture's: its weighted means);
    ``max_draws``, ``random_seed`` and ``predictive`` as in :func:`log_predictive_density`.

    Examples
    --------
    >>> from bnncat.evaluation.density import predictive_mean
    >>> mean = predictive_mean(idata, X_test)  # doctest: +SKIP
    >>> rmse = ((mean[:, 0] - y_test) ** 2).mean() ** 0.5  # doctest: +SKIP
    """
    net, spec = net_and_spec(idata, net)
    Xv = check_X(X, "X", n_features=spec.n_features)
    blocks = []
    for rows in _row_blocks(idata, net, len(Xv), max_draws):
        _, _, _, params = _draw_parameters(idata, Xv[rows], net, max_draws, random_seed, predictive)
        means = params["mu"]
        if "w" in params:  # a Gaussian mixture per output: components on the last axis
            means = (params["w"] * means).sum(axis=-1)
        blocks.append(means.mean(axis=0))
    return np.concatenate(blocks)
