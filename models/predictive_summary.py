"""Per-row summaries of the posterior predictive at any number of new rows, in bounded memory.

:func:`~bnncat.models.predict` returns every draw at every row: 4000 draws at 10^6 rows
are 32 GB per variable. :func:`predict_summary` passes the draws through the network
one block of rows at a time and keeps only what a user reads per row (means, standard
deviations, quantiles, class probabilities), so that its memory is bounded by
:data:`BLOCK_FLOATS` however many rows there are.
"""

from typing import Any

import numpy as np
import xarray as xr

from bnncat.models.inference.linearized import linearized_head
from bnncat.models.prediction import check_prediction, net_width, predictive_draws

#: Floats one block of rows may hold in its widest array (draws x rows x widest layer):
#: 256 MiB of float64. Every block summarises all draws of its rows, so its Python
#: work is paid per block: fewer, larger blocks than ``predict``'s.
BLOCK_FLOATS = 2**25


def row_blocks(n_draws: int, width: int, n_rows: int) -> list[slice]:
    """Slices of ``n_rows`` rows small enough that draws x rows x width fits :data:`BLOCK_FLOATS`.

    Examples
    --------
    >>> from bnncat.models.predictive_summary import row_blocks
    >>> len(row_blocks(4000, 16, 10**6))
    1909
    """
    rows = max(1, BLOCK_FLOATS // (max(n_draws, 1) * max(width, 1)))
    return [slice(start, start + rows) for start in range(0, n_rows, rows)]


def predict_summary(
    idata: xr.DataTree,
    X_new: object,
    *,
    probs: object = (0.05, 0.5, 0.95),
    net: Any = None,
    random_seed: int | None = None,
    predictive: str = "sampled",
) -> xr.Dataset:
    """Posterior predictive summaries per row, computed a block of rows at a time.

    Every posterior draw is used; only the per-row summaries are kept, so memory
    stays bounded (:data:`BLOCK_FLOATS` per block) for any number of rows. Use it
    where :func:`~bnncat.models.predict` would hold too many draws.

    Parameters
    ----------
    idata : xarray.DataTree
        A fit of a catalogue model (or, with ``net``, a user's own run).
    X_new : array-like of shape (m, n_features)
        New inputs in the original units.
    probs : sequence of float
        Quantile levels of the predictive draws of y (regression), each in (0, 1).
    net : optional
        The model, if ``idata`` carries no configuration.
    random_seed : int, optional
        Seed of the predictive draws of y (the quantiles and ``sd``).
    predictive : {"sampled", "linearized"}
        As in :func:`~bnncat.models.predict`: every draw through the network, or,
        for a Laplace fit, through the network linearised at each restart's MAP.

    Returns
    -------
    xarray.Dataset
        Regression, dims (obs, output): ``mean`` (E[y | x, D]), ``mean_sd`` (the sd
        over draws of E[y | x, theta]: the network's uncertainty), ``sd`` (of the
        predictive draws of y: network and noise) and ``quantiles`` (obs, output,
        quantile). Classification, dims (obs, class): ``p`` (posterior mean class
        probabilities) and ``p_sd``.

    Examples
    --------
    >>> import numpy as np
    >>> from bnncat.models import predict_summary
    >>> s = predict_summary(idata, np.linspace(0, 60, 10**6)[:, None])  # doctest: +SKIP
    >>> s["quantiles"].sel(quantile=0.95)  # doctest: +SKIP
    """
    net, spec, X, random_seed = check_prediction(idata, X_new, net, random_seed, predictive)
    probs = _check_probs(probs)
    post = idata["posterior"]
    params = {  # per-row deterministics of the training data are not needed here
        k: post[k].values.reshape(-1, *post[k].shape[2:])
        for k in post.data_vars
        if "obs" not in post[k].dims
    }
    n_draws = post.sizes["chain"] * post.sizes["draw"]
    blocks = row_blocks(n_draws, net_width(net, spec), X.shape[0])
    rng = np.random.default_rng(random_seed)
    parts = []
    for rows in blocks:
        if predictive == "linearized":
            head = linearized_head(idata, X[rows], net, spec)[0]
            obs = net.parameters_of_head(head.reshape(-1, *head.shape[2:]), params, spec)
        else:
            obs = net.observation_parameters(params, X[rows], spec)
        parts.append(_block_summary(net, spec, obs, probs, rng))
    out = {k: np.concatenate([p[k] for p in parts]) for k in parts[0]}
    return _as_dataset(out, net, spec, probs, n_draws, len(blocks))


def _check_probs(probs: object) -> np.ndarray:
    try:
        arr = np.atleast_1d(np.asarray(probs, dtype=np.float64))
    except (TypeError, ValueError) as err:
        raise TypeError(f"probs must be a sequence of numbers; got {probs!r}") from err
    if arr.ndim != 1 or arr.size == 0 or not ((arr > 0) & (arr < 1)).all():
        raise ValueError(f"probs must be one or more levels in (0, 1); got {arr.tolist()}")
    return arr


def _block_summary(net, spec, obs, probs, rng) -> dict[str, np.ndarray]:
    """Summaries over every draw of one block of rows, from its observation parameters."""
    if net.lik.task != "regression":
        p = np.exp(net.lik.class_log_probs(obs, spec.n_classes))  # (draw, n, class)
        return {"p": p.mean(axis=0), "p_sd": p.std(axis=0)}
    means = obs["mu"]
    if "w" in obs:  # a Gaussian mixture per output: components on the last axis
        means = (obs["w"] * means).sum(axis=-1)
    y = predictive_draws(net, obs, means.shape[1], spec, int(rng.integers(2**31)))
    return {
        "mean": means.mean(axis=0),
        "mean_sd": means.std(axis=0),
        "sd": y.std(axis=0),
        "quantiles": np.moveaxis(np.quantile(y, probs, axis=0), 0, -1),
    }


def _as_dataset(out, net, spec, probs, n_draws, n_blocks) -> xr.Dataset:
    attrs = {"n_draws": n_draws, "row_blocks": n_blocks}
    if net.lik.task != "regression":
        dims = ("obs", "class")
        coords = {"class": np.arange(spec.n_classes)}
        return xr.Dataset({k: (dims, v) for k, v in out.items()}, coords=coords, attrs=attrs)
    dims = ("obs", "output")
    data = {k: (dims, v) for k, v in out.items() if k != "quantiles"}
    data["quantiles"] = ((*dims, "quantile"), out["quantiles"])
    coords = {"output": list(spec.output_names), "quantile": probs}
    return xr.Dataset(data, coords=coords, attrs=attrs)
