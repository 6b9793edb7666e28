"""Multi-path Pathfinder (Zhang et al. 2022) by BlackJAX, with PSIS importance resampling.

Each path runs BlackJAX's single-path Pathfinder (L-BFGS on PyMC's log density in
JAX, keeping the Gaussian of the iterate with the best ELBO) from its own jittered
start, one path after another in one compiled program. The pooled draws of the paths'
Gaussians are then weighted by Pareto-smoothed importance sampling against the
posterior and resampled (Zhang et al., Algorithm 2), which moves weight away from
paths that stopped in poor optima. pymc-extras' ``fit_pathfinder`` is not used: its
releases pin PyMC below 6.4.
"""

import os
import warnings
from typing import Any

import numpy as np
import xarray as xr

from bnncat.models.inference.flat_draws import (
    draw_gaussians,
    draws_as_tree,
    initial_flat,
    log_mixture,
)
from bnncat.models.inference.laplace_curvature import FlatModel, flat_model
from bnncat.models.inference.problem import prepare_problem, record_fit
from bnncat.models.inference.registry import register
from bnncat.models.jax_runtime import jax_session
from bnncat.models.validation import check_choice, check_positive_int
from bnncat.thresholds import PARETO_K_MAX

IMPORTANCE_SAMPLING = ("psis", "none")
_REFUSES = {
    "chains": "its chains are its paths: set paths",
    "tune": "Pathfinder has no warm-up; set maxiter",
}


@register("pathfinder", kind="approximation", refuses=_REFUSES)
def fit_pathfinder(
    net: Any,
    X: object,
    y: object,
    *,
    draws: int = 1000,
    random_seed: int | None = None,
    paths: int = 4,
    maxiter: int = 1000,
    elbo_draws: int = 10,
    importance_sampling: str = "psis",
    temperature: float = 1.0,
    store_mu: bool = False,
    progressbar: bool = True,
) -> xr.DataTree:
    """Fit multi-path Pathfinder to the posterior of ``net`` on ``(X, y)``.

    Parameters
    ----------
    net : ModelBuilder
        The model configuration (``MLP``, ``OrderedMLP``, ``MixtureRegressor``).
    X, y : array-like
        Inputs (n, n_features) and targets, as for :func:`bnncat.models.fit`.
    draws : int
        Draws per path (chain).
    random_seed : int, optional
        Seed of the whole fit (starts, ELBO draws, draws, resampling).
    paths : int
        Independent Pathfinder runs from jittered starts; each is a chain.
    maxiter : int
        Largest number of L-BFGS iterations of each path.
    elbo_draws : int
        Draws that estimate the ELBO of each iterate's Gaussian.
    importance_sampling : {"psis", "none"}
        ``"psis"``: every chain is an importance resample (with replacement) of
        the pooled draws, weighted by PSIS; the proposal's k-hat is kept in
        ``sample_stats.attrs["pareto_k"]``. ``"none"``: every chain holds its
        path's own draws, with ``log_p`` and ``log_q`` (the equal mixture of the
        paths' Gaussians) for PSIS k-hat and LOO, like a Laplace fit.
    temperature : float
        Raise the likelihood to 1 / ``temperature`` (1: the Bayesian posterior).
    store_mu : bool
        Keep the network output ``mu`` at the training inputs for every draw.
    progressbar : bool
        Unused (one compiled program); accepted like every method's.

    Returns
    -------
    xarray.DataTree
        ``posterior`` (chain = path), ``sample_stats``, ``pathfinder`` (each
        path's ELBO, iterations and share of the importance weight),
        ``observed_data`` and ``constant_data``; the attrs record the fit (kind
        ``approximation``).

    Examples
    --------
    >>> from bnncat import data
    >>> from bnncat.models import MLP
    >>> from bnncat.models.inference import fit_pathfinder
    >>> ds = data.load("mcycle")
    >>> idata = fit_pathfinder(MLP((8,)), ds.X, ds.y, random_seed=1)  # doctest: +SKIP
    """
    paths = check_positive_int(paths, "paths")
    maxiter = check_positive_int(maxiter, "maxiter")
    elbo_draws = check_positive_int(elbo_draws, "elbo_draws")
    importance_sampling = check_choice(
        importance_sampling, IMPORTANCE_SAMPLING, "importance_sampling"
    )
    problem = prepare_problem(
        net, X, y, draws=draws, random_seed=random_seed, store_mu=store_mu, temperature=temperature
    )
    seeds = np.random.SeedSequence(problem.random_seed).generate_state(paths + 2)
    with jax_session("float64"):
        flat = flat_model(problem.model, problem.temperature)
        check_memory(flat.size, maxiter)
        starts = initial_flat(problem.model, flat, seeds[:paths])
        gaussians, info = _run_paths(flat, starts, int(seeds[-2]), maxiter, elbo_draws)
        pool = draw_gaussians(gaussians, problem.draws, int(seeds[-1]))
        log_p = flat.log_densities(pool)
    log_q = log_mixture(gaussians, pool)
    draws_flat, stats, share = _importance(pool, log_p, log_q, importance_sampling, int(seeds[-1]))
    if importance_sampling == "psis":
        warn_if_resample_degenerate(stats.attrs["pareto_k"], draws_flat)
    info["weight_share"] = ("chain", share)
    idata = draws_as_tree(problem, flat, draws_flat)
    coords = {"chain": np.arange(paths), "draw": np.arange(problem.draws)}
    idata["sample_stats"] = stats.assign_coords(coords)
    idata["pathfinder"] = xr.Dataset(info, coords={"chain": np.arange(paths)})
    options = {
        "paths": paths,
        "maxiter": maxiter,
        "elbo_draws": elbo_draws,
        "importance_sampling": importance_sampling,
        "store_mu": store_mu,
    }
    return record_fit(idata, problem, "pathfinder", options)


def _importance(
    pool: np.ndarray, log_p: np.ndarray, log_q: np.ndarray, how: str, seed: int
) -> tuple[np.ndarray, xr.Dataset, np.ndarray]:
    """Return the stored draws, their ``sample_stats`` and each path's PSIS weight share.

    ``how="psis"``: every chain an importance resample of the pooled (path, draw)
    draws, the proposal's k-hat in the attrs; ``"none"``: the pool itself, with log p
    and log q of every draw.
    """
    log_weights, pareto_k = _psis(log_p - log_q)
    share = np.exp(log_weights).sum(axis=1)
    if how == "none":
        stats = {"log_p": (("chain", "draw"), log_p), "log_q": (("chain", "draw"), log_q)}
        return pool, xr.Dataset(stats), share
    chains, draws, size = pool.shape
    rng = np.random.default_rng(seed + 1)
    chosen = rng.choice(chains * draws, size=(chains, draws), p=np.exp(log_weights).ravel())
    stats = {"source_path": (("chain", "draw"), chosen // draws)}
    return pool.reshape(-1, size)[chosen], xr.Dataset(stats, attrs={"pareto_k": pareto_k}), share


def warn_if_resample_degenerate(pareto_k: float, draws_flat: np.ndarray) -> None:
    """Warn when PSIS cannot vouch for the resample: its draws understate the uncertainty.

    With k-hat above :data:`PARETO_K_MAX` the importance weights sit on a few pooled draws,
    and the resample repeats them (on 20 rows of a 1x2 net: k-hat 12, 1 distinct draw of 800).
    """
    if not pareto_k > PARETO_K_MAX:
        return
    distinct = len(np.unique(draws_flat, axis=0))
    warnings.warn(
        f"Pathfinder's importance weights are unreliable (PSIS k-hat {pareto_k:.2f} > "
        f"{PARETO_K_MAX}): the resample holds {distinct} distinct draws of {len(draws_flat)}, "
        "far too narrow a posterior; importance_sampling='none' keeps the paths' own "
        "Gaussian draws, and NUTS samples the posterior itself",
        UserWarning,
        stacklevel=3,
    )


def _run_paths(
    flat: FlatModel, starts: np.ndarray, seed: int, maxiter: int, elbo_draws: int
) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """Run single-path Pathfinder from every start; return each path's Gaussian.

    The paths run one after another, in one compiled program: a path's work is
    mostly d x d linear algebra that XLA already spreads over the cores (side by
    side, on one device per path or vectorised, 4 paths of a 2x32 net took
    1.4x and 1.7x as long on 2 cores).
    """
    import jax
    from blackjax.vi import pathfinder

    def one(key: Any, start: Any) -> Any:
        state, _ = pathfinder.approximate(
            key, flat.log_density, start, num_samples=elbo_draws, maxiter=maxiter
        )
        return state

    keys = jax.random.split(jax.random.key(seed), len(starts))
    single = jax.jit(one)
    state = [jax.tree.map(np.asarray, single(k, x)) for k, x in zip(keys, starts, strict=True)]
    gaussians = [_gaussian(path) for path in state]
    state = jax.tree.map(lambda *parts: np.stack(parts), *state)
    info = {"elbo": ("chain", np.asarray(state.elbo, dtype=np.float64))}
    return gaussians, info


def _path_bytes(size: int, maxiter: int) -> int:
    """Memory of one BlackJAX path: it holds a size x size matrix for every iteration."""
    return (maxiter + 1) * size**2 * 8


def memory_budget() -> int:
    """Return a quarter of the machine's memory: what one Pathfinder program may take."""
    return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") // 4


def check_memory(size: int, maxiter: int) -> None:
    """Refuse, before any work, a path too large for the memory budget, saying what to change."""
    need = _path_bytes(size, maxiter)
    if need > memory_budget():
        fits = memory_budget() // (size**2 * 8) - 1
        raise ValueError(
            f"Pathfinder (BlackJAX) keeps a {size} x {size} matrix per iteration: maxiter="
            f"{maxiter} needs {need / 2**30:.1f} GiB for each path, more than a quarter of "
            f"this machine's memory; set maxiter <= {fits}, or use method='laplace'"
        )


def _gaussian(state: Any) -> dict[str, Any]:
    """Mean and covariance of one path's Gaussian: Sigma = diag(alpha) + beta gamma beta^T."""
    alpha, beta, gamma = (
        np.asarray(v, dtype=np.float64) for v in (state.alpha, state.beta, state.gamma)
    )
    cov = np.diag(alpha) + beta @ gamma @ beta.T
    mean = np.asarray(state.position) + cov @ np.asarray(state.grad_position)
    return {"mean": mean, "index": np.arange(len(mean)), "cov": (cov + cov.T) / 2}


def _psis(log_ratio: np.ndarray) -> tuple[np.ndarray, float]:
    """Normalised PSIS log weights of the pooled draws (ArviZ) and the k-hat of their tail."""
    ratios = xr.DataArray(log_ratio, dims=("chain", "draw"))
    log_weights, khat = ratios.azstats.psislw(dim=["chain", "draw"], r_eff=1.0)
    log_weights = log_weights.values - np.logaddexp.reduce(log_weights.values, axis=None)
    return log_weights, float(khat)
