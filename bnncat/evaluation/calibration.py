"""Posterior predictive checks and calibration of a fitted catalogue model.

Everything here is invariant to the symmetries of the hidden units (it only
uses the predictive distribution), so it needs no relabelling.

:func:`add_predictive_groups` adds the ``log_likelihood`` and
``posterior_predictive`` groups that ArviZ's LOO functions and PPC plots read,
computed in NumPy from the net's own observation model;
:func:`calibration_table` collects calibration and predictive-accuracy numbers
on PSIS-LOO, in-sample or held-out data; :func:`pit_values` returns the PIT
values behind them for plots.

Layout of the groups (what ArviZ needs: ``observed_data``,
``posterior_predictive`` and ``log_likelihood`` variables of the same name,
``y``, with matching observation dims):

- single-output regression and classification: ``y`` has dims ``(obs,)`` in
  ``observed_data`` and ``(chain, draw, obs)`` in the other two groups (a
  regression fit's ``(obs, output)`` target is squeezed, keeping ``output`` as
  a scalar coordinate), so every ArviZ function works on the tree directly;
- multi-output regression: ``observed_data`` and ``posterior_predictive`` keep
  the ``output`` dim, while ``log_likelihood`` is the joint log-likelihood of
  a row (summed over outputs), dims ``(chain, draw, obs)``. ``az.loo`` works on
  the tree as it is; for ``az.loo_pit``, ``az.loo_score``, ``az.loo_metrics``
  and ``az.plot_loo_pit`` take one output with :func:`select_output` (the
  leave-one-row-out weights then come from the joint likelihood).

Draws from an approximation (ADVI, whose ``sample_stats`` keep each draw's log p
and log q) are scored by ``az.loo_approximate_posterior``, whose weights also
give the LOO-PIT values; ``az.loo_metrics`` and ``az.loo_score`` take no such
correction and weigh those draws as if they were posterior draws.
"""

import math
import warnings
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import arviz as az
import numpy as np
import pandas as pd
import xarray as xr
from scipy import special, stats

from bnncat.evaluation.density import log_predictive_density
from bnncat.models.prediction import MAX_BYTES, net_and_spec, predictive_draws
from bnncat.models.validation import check_labels, check_positive_int, check_regression_y, check_X
from bnncat.thresholds import MIN_LOO_DRAWS, PARETO_K_MAX

#: Values of the ``data`` column of :func:`calibration_table`.
LOO = "training (PSIS-LOO)"
IN_SAMPLE = "training (in-sample)"
HELD_OUT = "held-out"
#: Equal-width confidence bins of the expected calibration error.
ECE_BINS = 10
_PARETO_WARNING = "Estimated shape parameter of Pareto distribution"


@dataclass(frozen=True)
class _Training:
    """A validated fit: its net, spec, posterior and training data."""

    net: Any
    spec: Any
    posterior: xr.Dataset
    X: np.ndarray  # (n, n_features)
    y: np.ndarray  # (n, n_outputs) float for regression, (n,) int labels for classification
    obs: np.ndarray  # coordinate values of the obs dim

    @property
    def regression(self) -> bool:
        return self.net.lik.task == "regression"

    @property
    def n_draws(self) -> int:
        return int(self.posterior.sizes["chain"] * self.posterior.sizes["draw"])


# -- validation ------------------------------------------------------------------------------


def _training(idata: xr.DataTree, net: Any) -> _Training:
    if not isinstance(idata, xr.DataTree):
        raise TypeError(f"idata must be an xarray.DataTree (a fit); got {type(idata).__name__}")
    if "posterior" not in idata.children:
        raise ValueError("idata has no posterior group: fit the model first")
    net, spec = net_and_spec(idata, net)
    if "constant_data" not in idata.children or "X" not in idata["constant_data"]:
        raise ValueError("idata has no constant_data group with X (the training inputs)")
    if "observed_data" not in idata.children or "y" not in idata["observed_data"]:
        raise ValueError("idata has no observed_data group with y (the training targets)")
    X = check_X(idata["constant_data"]["X"].values, "constant_data X", n_features=spec.n_features)
    y_da = idata["observed_data"]["y"]
    if net.lik.task == "regression":
        y = check_regression_y(y_da.values, X.shape[0], "observed_data y")
        if y.shape[1] != spec.n_outputs:
            raise ValueError(
                f"observed_data y has {y.shape[1]} outputs but the model has {spec.n_outputs}"
            )
    else:
        y = check_labels(y_da.values, X.shape[0], spec.n_classes, "observed_data y")
    obs = y_da["obs"].values if "obs" in y_da.coords else np.arange(X.shape[0])
    return _Training(net, spec, idata["posterior"].to_dataset(), X, y, obs)


def _check_seed(random_seed: object) -> int | None:
    if random_seed is None:
        return None
    return check_positive_int(random_seed, "random_seed", minimum=0)


def _check_levels(levels: object) -> tuple[float, ...]:
    if isinstance(levels, int | float | np.number) and not isinstance(levels, bool):
        levels = (levels,)
    if not isinstance(levels, Sequence | np.ndarray) or isinstance(levels, str):
        raise TypeError(
            f"levels must be a sequence of probabilities such as (0.5, 0.9); got {levels!r}"
        )
    if len(levels) == 0:
        raise ValueError("levels is empty: give at least one interval probability, e.g. (0.9,)")
    out = []
    for lev in levels:
        if isinstance(lev, bool) or not isinstance(lev, int | float | np.number):
            raise TypeError(f"levels must hold numbers; got {lev!r}")
        if not 0 < lev < 1:
            raise ValueError(f"levels must lie strictly between 0 and 1; got {lev}")
        out.append(float(lev))
    return tuple(dict.fromkeys(out))  # a repeated level would repeat its rows


def _check_test(fit: _Training, X_test: object, y_test: object) -> tuple | None:
    if X_test is None and y_test is None:
        return None
    if X_test is None:
        raise ValueError("y_test was given without X_test: pass the held-out inputs too")
    if y_test is None:
        raise ValueError("X_test was given without y_test: pass the held-out targets too")
    X = check_X(X_test, "X_test", n_features=fit.spec.n_features)
    try:
        n_y = np.shape(y_test)[0] if np.ndim(y_test) > 0 else None
    except ValueError:  # ragged: the check below says so
        n_y = None
    if n_y is not None and n_y != X.shape[0]:
        raise ValueError(f"y_test has {n_y} rows but X_test has {X.shape[0]}")
    if fit.regression:
        y = check_regression_y(y_test, X.shape[0], "y_test")
        if y.shape[1] != fit.spec.n_outputs:
            raise ValueError(
                f"y_test has {y.shape[1]} columns but the model has {fit.spec.n_outputs} "
                f"output(s) {list(fit.spec.output_names)}"
            )
    else:
        y = check_labels(y_test, X.shape[0], fit.spec.n_classes, "y_test")
    _check_test_memory(fit, X.shape[0])
    return X, y


def _check_test_memory(fit: _Training, n_rows: int) -> None:
    """Refuse held-out data whose draws x rows arrays (draws and log-likelihood) would not fit."""
    outputs = fit.spec.n_outputs if fit.regression else 1
    need = 8 * fit.n_draws * n_rows * (outputs + 1)
    if need > MAX_BYTES:
        raise ValueError(
            f"X_test has {n_rows} rows: the held-out checks hold a predictive draw and a "
            f"log-likelihood per posterior draw and row, {need / 2**30:.1f} GiB at "
            f"{fit.n_draws} draws. Give a random subset of the rows (the held-out scores' "
            "standard errors say how many are enough), or score every row with "
            "log_predictive_density and predict_summary, which work in blocks of rows"
        )


def check_test_data(
    idata: xr.DataTree, X_test: object, y_test: object, *, net: Any = None
) -> tuple[np.ndarray, np.ndarray] | None:
    """Validate held-out data against a fit; return the arrays, or None when neither is given.

    Raises ``ValueError``/``TypeError`` naming ``X_test`` or ``y_test`` (width,
    rows, NaN, labels, one given without the other), as :func:`calibration_table`
    does, for callers that must check before any computation.
    """
    return _check_test(_training(idata, net), X_test, y_test)


def pointwise_loglik(
    idata: xr.DataTree, X: np.ndarray, y: np.ndarray, *, net: Any = None
) -> np.ndarray:
    """Log-likelihood (chain, draw, n) of rows ``X``, ``y``, summed over outputs.

    The rows must have passed :func:`check_test_data`.
    """
    fit = _training(idata, net)
    return np.stack([_loglik(fit, params, X, y) for params in _chains(fit.posterior)])


# -- the observation model per draw, in NumPy --------------------------------------------------


def _chains(post: xr.Dataset) -> Iterator[dict[str, np.ndarray]]:
    """Parameters of one chain at a time (draw, ...): bounds memory at draws x rows x units."""
    for c in range(post.sizes["chain"]):
        yield {k: post[k].values[c] for k in post.data_vars}


def _class_probs(fit: _Training, params: dict, X: np.ndarray) -> np.ndarray:
    """Class probabilities (draw, n, n_classes) from the net's likelihood."""
    obs = fit.net.observation_parameters(params, X, fit.spec)
    return np.exp(fit.net.lik.class_log_probs(obs, fit.spec.n_classes))


def _loglik(fit: _Training, params: dict, X: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Log-likelihood of each row (draw, n), summed over outputs."""
    logp = fit.net.lik.logp(fit.net.observation_parameters(params, X, fit.spec), y[None])
    return logp.sum(axis=-1) if fit.regression else logp


def _sample(fit: _Training, params: dict, X: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """One predictive draw of y per posterior draw: (draw, n, output) or (draw, n) labels."""
    obs = fit.net.observation_parameters(params, X, fit.spec)
    return predictive_draws(fit.net, obs, X.shape[0], fit.spec, int(rng.integers(2**31)))


def _predictive_cdf(fit: _Training, X: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Posterior predictive CDF at y (n, output): the average over draws of each draw's CDF."""
    total = np.zeros(y.shape)
    for params in _chains(fit.posterior):
        obs = fit.net.observation_parameters(params, X, fit.spec)
        total += np.exp(fit.net.lik.logcdf(obs, y[None])).sum(axis=0)
    return total / fit.n_draws


def _predictive_mean(fit: _Training, X: np.ndarray) -> np.ndarray:
    """Posterior predictive mean (n, output) for regression, class probabilities (n, K) else."""
    total = 0.0
    for params in _chains(fit.posterior):
        if fit.regression:
            out = fit.net.forward(params, X, fit.spec)
        else:
            out = _class_probs(fit, params, X)
        total = total + out.sum(axis=0)
    return total / fit.n_draws


def _draws_and_loglik(
    fit: _Training, X: np.ndarray, y: np.ndarray, seed: int | None, stream: int
) -> tuple[np.ndarray, np.ndarray]:
    # a separate stream per data set, so held-out draws do not shift the training ones
    rng = np.random.default_rng(None if seed is None else [seed, stream])
    ll, draws = [], []
    for params in _chains(fit.posterior):
        ll.append(_loglik(fit, params, X, y))
        draws.append(_sample(fit, params, X, rng))
    return np.stack(draws), np.stack(ll)


# -- groups ----------------------------------------------------------------------------------


def _groups(idata: xr.DataTree, fit: _Training, seed: int | None) -> xr.DataTree:
    draws, ll = _draws_and_loglik(fit, fit.X, fit.y, seed, 0)
    post = fit.posterior
    coords = {"chain": post["chain"].values, "draw": post["draw"].values, "obs": fit.obs}
    observed = idata["observed_data"].to_dataset()
    y_obs = observed["y"]
    if fit.regression:
        names = list(fit.spec.output_names)
        if "output" in y_obs.dims and y_obs.sizes["output"] == len(names):
            names = list(y_obs["output"].values)
        pp = xr.DataArray(draws, dims=("chain", "draw", "obs", "output"), coords=coords)
        pp = pp.assign_coords(output=names)
        if len(names) == 1:  # ArviZ's LOO functions need matching observation dims
            pp = pp.squeeze("output")
            if "output" in y_obs.dims:
                observed = observed.squeeze("output")
    else:
        pp = xr.DataArray(draws, dims=("chain", "draw", "obs"), coords=coords)
    attrs = {
        "created_by": f"{__name__}.add_predictive_groups",
        "random_seed": -1 if seed is None else seed,
    }
    out = idata.copy()
    out["observed_data"] = observed
    out["log_likelihood"] = xr.Dataset(
        {"y": xr.DataArray(ll, dims=("chain", "draw", "obs"), coords=coords)}, attrs=attrs
    )
    out["posterior_predictive"] = xr.Dataset({"y": pp}, attrs=attrs)
    return out


def add_predictive_groups(
    idata: xr.DataTree, *, net: Any = None, random_seed: int | None = 0
) -> xr.DataTree:
    """Return a copy of a fit with ``log_likelihood`` and ``posterior_predictive`` groups.

    Both come from the net's likelihood (its PyMC distribution's log density
    and draws, ``bnncat.models.likelihoods``) at the training inputs
    (``constant_data["X"]``) and targets (``observed_data["y"]``), with the
    parameters ``net.observation_parameters`` gives for every draw. Groups of
    those names already present are replaced: they are recomputed, never trusted.

    Parameters
    ----------
    idata : xarray.DataTree
        A fit (``net.fit``, ``load``, or your own ``pm.sample`` / ``pm.fit``
        result with ``net`` given) with ``posterior``, ``constant_data`` and
        ``observed_data``. Single-chain fits (ADVI) work.
    net : optional
        The model, if ``idata`` carries no configuration.
    random_seed : int or None
        Seed of the posterior predictive draws.

    Returns
    -------
    xarray.DataTree
        A shallow copy of ``idata`` with

        - ``log_likelihood``: ``y`` (chain, draw, obs), log p(y_i | theta)
          summed over outputs;
        - ``posterior_predictive``: ``y``, one draw from each posterior
          draw's observation model, exact in distribution: (chain, draw, obs)
          for classification and single-output regression, (chain, draw,
          obs, output) for multi-output regression;
        - ``observed_data``: ``y`` with the same observation dims; a
          single-output regression target (obs, output) is squeezed to
          (obs,), keeping ``output`` as a scalar coordinate.

        See the module docstring for how to use multi-output fits with
        ArviZ (:func:`select_output`).

    Examples
    --------
    >>> import arviz as az
    >>> from bnncat.evaluation.calibration import add_predictive_groups
    >>> tree = add_predictive_groups(idata)  # doctest: +SKIP
    >>> az.loo(tree)  # doctest: +SKIP
    >>> az.plot_ppc_dist(tree)  # doctest: +SKIP
    """
    fit = _training(idata, net)
    return _groups(idata, fit, _check_seed(random_seed))


def select_output(tree: xr.DataTree, output: int | str) -> xr.DataTree:
    """One output of a multi-output regression tree, for ArviZ's per-variable LOO functions.

    ``observed_data`` and ``posterior_predictive`` keep only that output;
    ``log_likelihood`` stays the joint one of each row, so PSIS-LOO still
    leaves out whole rows.

    Parameters
    ----------
    tree : xarray.DataTree
        The result of :func:`add_predictive_groups`.
    output : int or str
        Position or name of the output.

    Returns
    -------
    xarray.DataTree
        A shallow copy whose ``y`` has no ``output`` dim (a scalar coordinate
        names it). A tree without an ``output`` dim is returned as it is, for
        ``output`` 0 or its name.

    Examples
    --------
    >>> import arviz as az
    >>> from bnncat.evaluation.calibration import add_predictive_groups, select_output
    >>> tree = add_predictive_groups(idata_two_outputs)  # doctest: +SKIP
    >>> az.loo_pit(select_output(tree, "y1"))  # doctest: +SKIP
    """
    missing = [
        g
        for g in ("observed_data", "posterior_predictive", "log_likelihood")
        if g not in tree.children
    ]
    if missing:
        raise ValueError(f"tree lacks {missing}: pass the result of add_predictive_groups")
    y = tree["observed_data"]["y"]
    if "output" not in y.dims:
        name = y.coords["output"].item() if "output" in y.coords else None
        if output not in (0, name):
            raise ValueError(f"tree has a single output ({name!r}); got output={output!r}")
        return tree
    names = [str(v) for v in y["output"].values]
    if isinstance(output, int | np.integer) and not isinstance(output, bool):
        if not 0 <= output < len(names):
            raise ValueError(f"output={output} is out of range for {len(names)} outputs")
        index = int(output)
    elif isinstance(output, str) and output in names:
        index = names.index(output)
    else:
        raise ValueError(f"output={output!r} is not one of {names} or a position in it")
    out = tree.copy()
    for group in ("observed_data", "posterior_predictive"):
        out[group] = tree[group].to_dataset().isel(output=index)
    return out


# -- metrics ---------------------------------------------------------------------------------


def _level_name(level: float) -> str:
    return f"{100 * level:g}%"


def _in_central(pit: np.ndarray, level: float) -> np.ndarray:
    """Whether y lies in the central ``level`` interval, given its PIT value."""
    return (pit >= (1 - level) / 2) & (pit <= (1 + level) / 2)


def _crps_from_draws(draws: np.ndarray, y: np.ndarray) -> np.ndarray:
    """CRPS per row, E|Y - y| - E|Y - Y'| / 2, from draws (S, n) of Y.

    The V-statistic (pairs of a draw with itself included): it equals the
    integral of (F_S(z) - 1[z >= y])^2 for the empirical CDF F_S of the draws,
    the same estimator ``az.loo_score`` uses with equal weights.
    """
    s = draws.shape[0]
    x = np.sort(draws, axis=0)
    i = np.arange(1, s + 1)[:, None]
    mean_pair_diff = 2.0 * ((2 * i - s - 1) * x).sum(axis=0) / s**2
    return np.abs(draws - y).mean(axis=0) - 0.5 * mean_pair_diff


def _ece(probs: np.ndarray, y: np.ndarray, n_bins: int = ECE_BINS) -> float:
    """Return the expected calibration error of the top-class confidence, bins (a, b]."""
    conf = probs.max(axis=-1)
    correct = probs.argmax(axis=-1) == y
    bins = np.clip(np.ceil(conf * n_bins).astype(int) - 1, 0, n_bins - 1)
    total = 0.0
    for b in np.unique(bins):
        m = bins == b
        total += m.sum() * abs(correct[m].mean() - conf[m].mean())
    return float(total / y.size)


def _metric_order(fit: _Training, levels: tuple[float, ...]) -> list[str]:
    """Metric names in table order; within a metric the direct row comes before the LOO one."""
    order = ["log predictive density", "log predictive density per row"]
    if not fit.regression:
        return [*order, "accuracy", "Brier score", "ECE"]
    names = list(fit.spec.output_names)
    for name in names:
        suffix = f" [{name}]" if len(names) > 1 else ""
        order += [f"coverage {_level_name(lev)}{suffix}" for lev in levels]
        order += [f"{m}{suffix}" for m in ("PIT KS distance", "RMSE", "CRPS")]
    return order


def _row(metric, data, value, se=np.nan, nominal=np.nan, note=""):
    return {
        "metric": metric,
        "data": data,
        "value": float(value),
        "se": float(se),
        "nominal": float(nominal),
        "note": note,
    }


def _lpd_rows(pointwise: np.ndarray, data: str, note: str) -> list[dict]:
    n = pointwise.size
    se = float(np.sqrt(n) * pointwise.std(ddof=1)) if n > 1 else np.nan
    return [
        _row("log predictive density", data, pointwise.sum(), se, note=note),
        _row("log predictive density per row", data, pointwise.mean(), se / n, note=note),
    ]


def lpd_from_loglik(ll: np.ndarray) -> np.ndarray:
    """Return log mean_s p(y_i | theta_s) from a (chain, draw, n) log-likelihood."""
    flat = ll.reshape(-1, ll.shape[-1])
    return special.logsumexp(flat, axis=0) - np.log(flat.shape[0])


def _quiet_arviz(func, *args, **kwargs):
    """Call an ArviZ LOO function; its Pareto-k warning is reported in the table's notes."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=_PARETO_WARNING, category=UserWarning)
        return func(*args, **kwargs)


def _elpd_loo(tree: xr.DataTree) -> tuple[Any, str]:
    """PSIS-LOO of the fit, and the name of the ArviZ function that computed it.

    Draws from an approximation (ADVI: ``sample_stats`` holds each draw's log p and
    log q) are not posterior draws: ``az.loo_approximate_posterior`` corrects the
    importance weights by p/q; plain ``az.loo`` would score q instead.
    """
    stats = tree["sample_stats"] if "sample_stats" in tree.children else None
    if stats is not None and {"log_p", "log_q"} <= set(stats.data_vars):
        elpd = _quiet_arviz(
            az.loo_approximate_posterior, tree, stats["log_p"], stats["log_q"], pointwise=True
        )
        return elpd, "az.loo_approximate_posterior"
    return _quiet_arviz(az.loo, tree, pointwise=True), "az.loo"


def _rmse(mean: np.ndarray, y: np.ndarray) -> Any:
    """RMSE of the predictive mean (n,) against ``y``, with its se, by ``az.metrics``.

    ``az.metrics`` averages the posterior predictive over its samples first; given the
    exact predictive mean (from each draw's conditional mean) as the one sample, it
    scores that mean without the Monte Carlo noise of one predictive draw per draw.
    """
    pred = xr.Dataset({"y": (("chain", "draw", "obs"), mean[None, None])})
    tree = xr.DataTree.from_dict(
        {"observed_data": xr.Dataset({"y": ("obs", y)}), "posterior_predictive": pred}
    )
    return az.metrics(tree, kind="rmse", round_to="none")


def _loo_log_weights(tree: xr.DataTree, elpd: Any) -> xr.DataArray:
    """Smoothed log importance weights (obs, chain, draw) of the LOO that ``elpd`` is.

    ``az.loo`` keeps them. ``az.loo_approximate_posterior`` does not: for draws from
    an approximation they are PSIS of the ratios p(theta | y_-i) / q (ArviZ's
    ``psislw`` on log p - log q - log p(y_i | theta)), as that function computes inside.
    """
    if elpd.log_weights is not None:
        return elpd.log_weights
    stats = tree["sample_stats"]
    ratios = stats["log_p"] - stats["log_q"] - tree["log_likelihood"]["y"]
    log_weights, _ = ratios.azstats.psislw(dim=["chain", "draw"], r_eff=1.0)
    return log_weights


def _loo_pit(view: xr.DataTree, elpd: Any) -> np.ndarray:
    """LOO-PIT values of ``y`` (az.loo_pit) with the LOO's own smoothed weights."""
    weights = {  # by variable, as az.loo_pit takes them
        "log_weights": xr.Dataset({"y": _loo_log_weights(view, elpd)}),
        "pareto_k": xr.Dataset({"y": elpd.pareto_k}),
    }
    return _quiet_arviz(az.loo_pit, view, **weights)["y"].values


def _loo_rows(tree: xr.DataTree, fit: _Training, levels: tuple[float, ...]) -> list[dict]:
    """Rows on the training data by PSIS-LOO, all from ArviZ."""
    elpd, how = _elpd_loo(tree)
    k_note = _pareto_k_note(elpd)
    n = np.asarray(elpd.pareto_k).size
    rows = [
        _row(
            "log predictive density",
            LOO,
            elpd.elpd,
            elpd.se,
            note=f"elpd_loo ({how}), p_loo = {elpd.p:.2f}; {k_note}",
        ),
        _row(
            "log predictive density per row",
            LOO,
            elpd.elpd / n,
            elpd.se / n,
            note=f"elpd_loo / n; {k_note}",
        ),
    ]
    if not fit.regression:
        rows.append(_loo_accuracy_row(tree, fit, elpd, n, k_note))
        return rows
    names = list(fit.spec.output_names)
    for j, name in enumerate(names):
        view = select_output(tree, j) if len(names) > 1 else tree
        suffix = f" [{name}]" if len(names) > 1 else ""
        rows += _loo_output_rows(view, elpd, levels, n, suffix)
    return rows


def _no_loo(fit: _Training) -> list[dict]:
    """Return the LOO row of a fit with too few draws for PSIS (a plain ensemble)."""
    note = f"PSIS-LOO needs at least {MIN_LOO_DRAWS} draws; the fit has {fit.n_draws}"
    return [_row("log predictive density", LOO, np.nan, note=note)]


def _pareto_k_note(elpd: Any) -> str:
    """Count the rows whose Pareto k exceeds our threshold and ArviZ's, for the notes."""
    k = np.asarray(elpd.pareto_k).ravel()
    return (
        f"Pareto k > {PARETO_K_MAX}: {int((k > PARETO_K_MAX).sum())} of {k.size} rows "
        f"(ArviZ's threshold for {elpd.n_samples} draws: {elpd.good_k:.2f}, exceeded by "
        f"{int((k > elpd.good_k).sum())})"
    )


def _loo_accuracy_row(tree: xr.DataTree, fit: _Training, elpd: Any, n: int, k_note: str) -> dict:
    """Return the PSIS-LOO accuracy row of a classifier."""
    # PSIS-LOO class probabilities from az.loo's smoothed weights, for two classes too:
    # az.loo_metrics(kind="acc") thresholds the LOO mean of one predictive draw per
    # posterior draw, whose noise flips rows near p = 0.5 with the seed
    lw = _loo_log_weights(tree, elpd).transpose("chain", "draw", ...).values
    weights = np.exp(lw - special.logsumexp(lw, axis=(0, 1), keepdims=True))
    p_loo = 0.0
    for c, params in enumerate(_chains(fit.posterior)):
        probs = _class_probs(fit, params, fit.X)
        p_loo = p_loo + np.einsum("sn,snk->nk", weights[c], probs)
    correct = p_loo.argmax(axis=-1) == fit.y
    value = correct.mean()
    se = np.sqrt(value * (1 - value) / n)
    note = "argmax of PSIS-LOO class probabilities (az.loo's smoothed weights)"
    return _row("accuracy", LOO, value, se, note=f"{note}; {k_note}")


def _coverage_rows(
    pit: np.ndarray, levels: tuple[float, ...], n: int, data: str, suffix: str, note: str
) -> list[dict]:
    """Return one row per level: the share of PIT values in the central interval."""
    return [
        _row(
            f"coverage {_level_name(lev)}{suffix}",
            data,
            _in_central(pit, lev).mean(),
            math.sqrt(lev * (1 - lev) / n),
            lev,
            note,
        )
        for lev in levels
    ]


def _loo_output_rows(
    view: xr.DataTree, elpd: Any, levels: tuple[float, ...], n: int, suffix: str
) -> list[dict]:
    """Return the PSIS-LOO rows of one regression output: coverage, PIT, RMSE and CRPS."""
    pit = _loo_pit(view, elpd)
    rows = _coverage_rows(
        pit,
        levels,
        n,
        LOO,
        suffix,
        "share of LOO-PIT values (az.loo_pit) in the central interval; "
        "se = sqrt(p(1-p)/n) at the nominal p",
    )
    ks = stats.kstest(pit, "uniform")
    rows.append(
        _row(
            f"PIT KS distance{suffix}",
            LOO,
            ks.statistic,
            note=f"Kolmogorov-Smirnov distance of the LOO-PIT values from Uniform(0, 1); "
            f"p = {ks.pvalue:.3g} (approximate: LOO-PIT values are not independent)",
        )
    )
    rmse = _quiet_arviz(az.loo_metrics, view, kind="rmse", round_to="none")
    rows.append(
        _row(
            f"RMSE{suffix}",
            LOO,
            rmse.mean,
            rmse.se,
            note="az.loo_metrics(kind='rmse'): y against its PSIS-LOO predictive mean",
        )
    )
    crps = _quiet_arviz(az.loo_score, view, kind="crps")
    rows.append(
        _row(
            f"CRPS{suffix}",
            LOO,
            -crps.mean,
            crps.se,
            note="mean per row, as a loss (smaller is better): az.loo_score(kind='crps') "
            "negated back",
        )
    )
    return rows


def _direct_rows(
    fit: _Training,
    X: np.ndarray,
    y: np.ndarray,
    data: str,
    levels: tuple[float, ...],
    draws: np.ndarray,
    ll: np.ndarray,
    idata: xr.DataTree,
) -> list[dict]:
    """Rows computed directly from the posterior draws, in-sample or on held-out data."""
    rows = _direct_lpd_rows(fit, X, y, data, ll, idata)
    mean = _predictive_mean(fit, X)
    if not fit.regression:
        return rows + _direct_class_rows(fit, mean, y, data)
    names = list(fit.spec.output_names)
    pit = _predictive_cdf(fit, X, y)
    flat_draws = draws.reshape(-1, *draws.shape[2:])
    for j, name in enumerate(names):
        suffix = f" [{name}]" if len(names) > 1 else ""
        rows += _direct_output_rows(
            pit[:, j], mean[:, j], y[:, j], flat_draws[:, :, j], data, levels, suffix
        )
    return rows


def _direct_lpd_rows(
    fit: _Training, X: np.ndarray, y: np.ndarray, data: str, ll: np.ndarray, idata: xr.DataTree
) -> list[dict]:
    """Return the log predictive density rows, in-sample or on held-out data."""
    if data == HELD_OUT and fit.regression:
        lpd = log_predictive_density(idata, X, y, net=fit.net, max_draws=fit.n_draws)
        pointwise = lpd["pointwise"]
        lpd_note = "bnncat.evaluation.density.log_predictive_density over all draws"
    else:
        pointwise = lpd_from_loglik(ll)
        lpd_note = "log of the mean over draws of p(y_i | theta)"
    if data == IN_SAMPLE:
        lpd_note += "; in-sample, optimistic: compare the PSIS-LOO row"
    return _lpd_rows(pointwise, data, lpd_note)


def _direct_class_rows(fit: _Training, mean: np.ndarray, y: np.ndarray, data: str) -> list[dict]:
    """Return a classifier's accuracy, Brier score and ECE rows from its mean probabilities."""
    n = y.shape[0]
    acc = (mean.argmax(axis=-1) == y).mean()
    return [
        _row(
            "accuracy",
            data,
            acc,
            math.sqrt(acc * (1 - acc) / n),
            note="predicted class: argmax of the posterior mean class probabilities",
        ),
        _brier_row(fit, mean, y, data),
        _row(
            "ECE",
            data,
            _ece(mean, y),
            note=f"expected calibration error: {ECE_BINS} equal-width bins of the "
            "confidence (largest posterior mean class probability), "
            "|accuracy - confidence| weighted by the share of rows per bin",
        ),
    ]


def _brier_row(fit: _Training, mean: np.ndarray, y: np.ndarray, data: str) -> dict:
    """Return the Brier score row of the posterior mean class probabilities."""
    n = y.shape[0]
    if fit.net.lik.binary:
        per_row = (mean[:, 1] - y) ** 2
        brier_note = "mean of (p(class 1) - y)^2"
    else:
        per_row = ((mean - np.eye(mean.shape[-1])[y]) ** 2).sum(axis=-1)
        brier_note = "mean over rows of the sum over classes of (p_k - 1[y = k])^2"
    return _row(
        "Brier score",
        data,
        per_row.mean(),
        per_row.std(ddof=1) / math.sqrt(n) if n > 1 else np.nan,
        note=f"{brier_note}, posterior mean probabilities",
    )


def _direct_output_rows(
    pit: np.ndarray,
    mean: np.ndarray,
    y: np.ndarray,
    draws: np.ndarray,
    data: str,
    levels: tuple[float, ...],
    suffix: str,
) -> list[dict]:
    """Return the rows of one regression output: coverage, PIT (held-out), RMSE and CRPS."""
    n = y.shape[0]
    rows = _coverage_rows(
        pit,
        levels,
        n,
        data,
        suffix,
        "share of rows in the central interval of the posterior predictive "
        "(its exact CDF, all draws); se = sqrt(p(1-p)/n) at the nominal p",
    )
    if data == HELD_OUT:
        ks = stats.kstest(pit, "uniform")
        rows.append(
            _row(
                f"PIT KS distance{suffix}",
                data,
                ks.statistic,
                note=f"Kolmogorov-Smirnov distance of the PIT values (predictive CDF at "
                f"y_test) from Uniform(0, 1); p = {ks.pvalue:.3g}",
            )
        )
    rmse = _rmse(mean, y)
    rows.append(
        _row(
            f"RMSE{suffix}",
            data,
            rmse.mean,
            rmse.se if n > 1 else np.nan,
            note="az.metrics(kind='rmse'): y against the posterior predictive mean",
        )
    )
    crps = _crps_from_draws(draws, y)
    rows.append(
        _row(
            f"CRPS{suffix}",
            data,
            crps.mean(),
            crps.std(ddof=0) / math.sqrt(n),
            note="mean per row, as a loss (smaller is better): E|Y - y| - E|Y - Y'|/2 "
            "over the posterior predictive draws (one per posterior draw)",
        )
    )
    return rows


def calibration_table(
    idata: xr.DataTree,
    *,
    X_test: object = None,
    y_test: object = None,
    net: Any = None,
    levels: Sequence[float] = (0.5, 0.9, 0.95),
    random_seed: int | None = 0,
    groups: xr.DataTree | None = None,
) -> pd.DataFrame:
    """Calibration and predictive accuracy of a fit, on PSIS-LOO and held-out or in-sample data.

    Parameters
    ----------
    idata : xarray.DataTree
        A fit with ``posterior``, ``constant_data`` and ``observed_data``
        (``log_likelihood`` / ``posterior_predictive`` groups, if present,
        are recomputed, see :func:`add_predictive_groups`). Single-chain fits
        (ADVI) work.
    X_test, y_test : array-like, optional
        Held-out inputs (m, n_features) and targets; both or neither. Without
        them the direct rows are computed in-sample on the training data.
    net : optional
        The model, if ``idata`` carries no configuration.
    levels : sequence of float
        Probabilities of the central predictive intervals whose coverage is
        reported (regression), each in (0, 1).
    random_seed : int or None
        Seed of the posterior predictive draws (LOO-PIT, LOO CRPS and RMSE,
        held-out CRPS).
    groups : xarray.DataTree, optional
        The fit's predictive groups from :func:`add_predictive_groups` with the
        same seed, when the caller has them already (``diagnose`` computes them
        once for every check).

    Returns
    -------
    pandas.DataFrame
        One row per metric and data set, columns ``metric``, ``data``,
        ``value``, ``se``, ``nominal`` (NaN where there is none) and ``note``.
        ``data`` is ``"held-out"`` (with test data) or ``"training
        (in-sample)"`` (without) for the direct rows, and ``"training
        (PSIS-LOO)"`` for the leave-one-out rows computed by ArviZ.

        Regression, per output (metric names get a `` [output]`` suffix when
        there are several):

        - ``coverage 50%`` etc.: share of rows whose y lies in the central
          interval of the posterior predictive; ``nominal`` is the level and
          ``se`` = sqrt(p(1-p)/n) at the nominal p. Direct rows use the exact
          predictive CDF (average over draws of each draw's mixture CDF);
          LOO rows use ``az.loo_pit``.
        - ``PIT KS distance``: Kolmogorov-Smirnov distance of the PIT values
          from uniform, with its p-value in the note (LOO and held-out only).
        - ``RMSE``: against the posterior predictive mean (LOO:
          ``az.loo_metrics(kind="rmse")``).
        - ``CRPS``: continuous ranked probability score, mean per row, as a
          positive loss (smaller is better): held-out / in-sample from the
          predictive draws, E|Y - y| - E|Y - Y'|/2; LOO: ``az.loo_score``,
          which reports it negated, negated back.

        Classification (direct rows): ``accuracy`` (argmax of the posterior
        mean class probabilities), ``Brier score`` (binary: mean of (p - y)^2;
        categorical: mean over rows of the sum over classes), ``ECE``
        (10 equal-width confidence bins); LOO: ``accuracy``
        (``az.loo_metrics(kind="acc")`` for binary, PSIS-weighted class
        probabilities for categorical).

        Both: ``log predictive density`` (total, with se = sqrt(n) sd of the
        pointwise values) and ``log predictive density per row``; for LOO
        this is elpd_loo from ``az.loo``, with p_loo and the number of Pareto
        k > 0.7 in the note. Held-out regression uses
        :func:`bnncat.evaluation.density.log_predictive_density`. Multi-output
        regression: the log predictive density is that of whole rows.

    Examples
    --------
    >>> from bnncat.evaluation.calibration import calibration_table
    >>> table = calibration_table(idata, X_test=X_test, y_test=y_test)  # doctest: +SKIP
    >>> table.query("metric == 'coverage 90%'")  # doctest: +SKIP
    """
    fit = _training(idata, net)
    levels = _check_levels(levels)
    seed = _check_seed(random_seed)
    test = _check_test(fit, X_test, y_test)
    tree = groups if groups is not None else _groups(idata, fit, seed)
    if test is None:
        draws = tree["posterior_predictive"]["y"].values
        ll = tree["log_likelihood"]["y"].values
        if fit.regression and draws.ndim == 3:
            draws = draws[..., None]
        direct = _direct_rows(fit, fit.X, fit.y, IN_SAMPLE, levels, draws, ll, idata)
    else:
        X, y = test
        draws, ll = _draws_and_loglik(fit, X, y, seed, 1)
        direct = _direct_rows(fit, X, y, HELD_OUT, levels, draws, ll, idata)
    try:
        loo = _loo_rows(tree, fit, levels) if fit.n_draws >= MIN_LOO_DRAWS else _no_loo(fit)
    except ValueError as err:  # e.g. a stuck chain: report it, keep the direct rows
        warnings.warn(f"PSIS-LOO failed on this fit: {err}", UserWarning, stacklevel=2)
        loo = [_row("log predictive density", LOO, np.nan, note=f"az.loo failed: {err}")]
    rows = [r for m in _metric_order(fit, levels) for r in direct + loo if r["metric"] == m]
    return pd.DataFrame(rows, columns=["metric", "data", "value", "se", "nominal", "note"])


def pit_values(
    idata: xr.DataTree,
    *,
    X_test: object = None,
    y_test: object = None,
    net: Any = None,
    random_seed: int | None = 0,
) -> xr.Dataset:
    """PIT values of a regression fit: LOO-PIT on the training data, and on held-out data.

    Parameters
    ----------
    idata : xarray.DataTree
        A fit of a regression model.
    X_test, y_test : array-like, optional
        Held-out inputs and targets (both or neither).
    net : optional
        The model, if ``idata`` carries no configuration.
    random_seed : int or None
        Seed of the posterior predictive draws behind the LOO-PIT values.

    Returns
    -------
    xarray.Dataset
        ``loo_pit`` (obs, output): ``az.loo_pit`` on the training data, the
        PSIS-LOO probability that a new draw falls at or below y_i;
        ``heldout_pit`` (test_obs, output), with test data: the posterior
        predictive CDF at ``y_test``, computed exactly as the average over
        draws of each draw's CDF (the expectation of the share of predictive
        draws <= y_test, without its Monte Carlo noise). Both are
        Uniform(0, 1) for a calibrated model.

    Examples
    --------
    >>> from bnncat.evaluation.calibration import pit_values
    >>> pit = pit_values(idata, X_test=X_test, y_test=y_test)  # doctest: +SKIP
    >>> pit["heldout_pit"].plot.hist()  # doctest: +SKIP
    """
    fit = _training(idata, net)
    seed = _check_seed(random_seed)
    test = _check_test(fit, X_test, y_test)
    if not fit.regression:
        raise ValueError(
            f"PIT values need a continuous target; this fit has the classification likelihood "
            f"{fit.net.likelihood!r} (see calibration_table for accuracy, Brier score and ECE)"
        )
    tree = _groups(idata, fit, seed)
    names = list(fit.spec.output_names)
    elpd, _ = _elpd_loo(tree)
    loo = np.stack(
        [
            _loo_pit(select_output(tree, j) if len(names) > 1 else tree, elpd)
            for j in range(len(names))
        ],
        axis=-1,
    )
    out = xr.Dataset(
        {"loo_pit": (("obs", "output"), loo)}, coords={"obs": fit.obs, "output": names}
    )
    if test is not None:
        out["heldout_pit"] = (("test_obs", "output"), _predictive_cdf(fit, *test))
        out = out.assign_coords(test_obs=np.arange(test[0].shape[0]))
    return out
