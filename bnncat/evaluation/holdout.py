"""A fit on the training part of a split, scored on its held-out part.

This is the unit of work a benchmark protocol repeats per split and per method
(``benchmarks/uci.py``): it runs in an executor's worker, so it takes and returns
plain picklable values.
"""

import time
import warnings
from typing import Any

import numpy as np
import xarray as xr

from bnncat.evaluation.density import log_predictive_density, predictive_mean
from bnncat.models.inference.dispatch import fit


def heldout_scores(
    idata: xr.DataTree,
    X_test: object,
    y_test: object,
    *,
    predictive: str = "sampled",
    max_draws: int = 4000,
) -> dict[str, float]:
    """Test RMSE of the predictive mean and log predictive density per row, in y units.

    Returns
    -------
    dict
        ``rmse``; ``lpd_per_row`` (the mean over test rows of log p(y_i | x_i, D))
        and ``lpd_per_row_se`` (its standard error over rows); ``n_test``.
    """
    lpd = log_predictive_density(idata, X_test, y_test, max_draws=max_draws, predictive=predictive)
    y = np.asarray(y_test, dtype=np.float64).reshape(lpd["pointwise"].size, -1)
    mean = predictive_mean(idata, X_test, max_draws=max_draws, predictive=predictive)
    n = y.shape[0]
    return {
        "rmse": float(np.sqrt(((mean - y) ** 2).mean())),
        "lpd_per_row": lpd["mean"],
        "lpd_per_row_se": float(lpd["pointwise"].std(ddof=1) / np.sqrt(n)) if n > 1 else np.nan,
        "n_test": n,
    }


def fit_and_score(
    net: Any,
    X_train: object,
    y_train: object,
    X_test: object,
    y_test: object,
    *,
    method: str = "nuts",
    predictive: str = "sampled",
    options: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Fit ``net`` by ``method`` on the training part and score it on the held-out part.

    Returns the :func:`heldout_scores` with ``seconds`` (wall time of the fit,
    compilation included), ``n_train``, ``log_sd_y_train`` (add it to
    ``lpd_per_row`` for the log density in standardised units of y, as Wiese et
    al. 2023 report it), ``divergences`` (NUTS-type fits, else 0) and the
    ``warnings`` the fit raised (its convergence advice), as text.
    """
    start = time.perf_counter()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        idata = fit(net, X_train, y_train, method=method, **(options or {}))
    seconds = time.perf_counter() - start
    y = np.asarray(y_train, dtype=np.float64)
    stats = idata.children.get("sample_stats")
    diverging = stats["diverging"] if stats is not None and "diverging" in stats else None
    return {
        **heldout_scores(idata, X_test, y_test, predictive=predictive),
        "seconds": seconds,
        "n_train": int(y.shape[0]),
        "log_sd_y_train": float(np.log(y.std(axis=0)).sum()),
        "divergences": int(diverging.sum()) if diverging is not None else 0,
        "warnings": sorted({str(w.message) for w in caught if w.category is UserWarning}),
    }
