"""Gaussians in a PyMC model's flat unconstrained space: starts, MAP, draws and their density.

What the approximations around a mode share (Laplace, Pathfinder): PyMC's jittered
initial point, an L-BFGS search of the log posterior, draws from Gaussians turned
into a DataTree of the model, and the log density of an equal mixture of Gaussians
at the draws.
"""

from typing import Any

import numpy as np
import pymc as pm
import pytensor
import pytensor.tensor as pt
import xarray as xr
from pymc.initial_point import make_initial_point_fn
from scipy import optimize, special, stats

from bnncat.models.inference.laplace_curvature import FlatModel
from bnncat.models.inference.problem import Problem
from bnncat.models.pymc_internals import more_chains_than_draws, trace_of_draws


def initial_flat(model: pm.Model, flat: FlatModel, seeds: Any) -> np.ndarray:
    """PyMC's jittered initial points of ``model``, flat: one row per seed (compiled once)."""
    point = make_initial_point_fn(model=model, jitter_rvs=set(model.free_RVs))
    return np.stack([flat.flatten(point(int(seed))) for seed in seeds])


#: SciPy's default bound on L-BFGS iterations.
MAP_ITERATIONS = 15_000


def find_map(
    value_and_grad: Any, start: np.ndarray, maxiter: int = MAP_ITERATIONS
) -> optimize.OptimizeResult:
    """Maximise a flat log density from ``start`` by SciPy's L-BFGS with JAX's gradient.

    ``value_and_grad(x)`` gives the log density and its gradient (a FlatModel's).
    Returns SciPy's result: ``x``, ``success`` (converged within ``maxiter``), ``nit``.
    """

    def loss(x: np.ndarray) -> tuple[float, np.ndarray]:
        value, grad = value_and_grad(x)
        return -float(value), -np.asarray(grad, dtype=np.float64)

    bounds = {"maxiter": maxiter, "maxfun": max(maxiter, MAP_ITERATIONS)}
    return optimize.minimize(loss, start, jac=True, method="L-BFGS-B", options=bounds)


def draws_as_tree(problem: Problem, flat: FlatModel, draws: np.ndarray) -> xr.DataTree:
    """Turn the flat draws of every restart into a DataTree of the model, with its data groups."""
    model = problem.model
    wanted = set(problem.keep) | set(flat.shapes)
    record = [v for v in model.unobserved_value_vars if v.name in wanted]
    samples = [flat.unflatten(chain) for chain in draws]
    trace = trace_of_draws(model, record, samples, problem.draws)
    with more_chains_than_draws():
        idata = pm.to_inference_data(trace, model=model, log_likelihood=False)
    idata["posterior"] = idata["posterior"].to_dataset()[problem.keep]
    return idata


def _gaussian(mode: dict[str, Any]) -> Any:
    """SciPy's Gaussian of ``mode``'s covered positions, by the Cholesky factor of its cov.

    A Cholesky factor costs a sixth of the eigendecomposition SciPy takes otherwise
    (a second per restart at 1200 parameters); the covariances here are positive
    definite by construction.
    """
    cholesky = stats.Covariance.from_cholesky(np.linalg.cholesky(mode["cov"]))
    return stats.multivariate_normal(mode["mean"][mode["index"]], cholesky)


def draw_gaussians(modes: list[dict[str, Any]], draws: int, seed: int) -> np.ndarray:
    """Draws (mode, draw, size) from each Gaussian; positions it does not cover stay at its mean."""
    rng = np.random.default_rng(seed)
    out = np.stack([np.tile(m["mean"], (draws, 1)) for m in modes])
    for chain, m in zip(out, modes, strict=True):
        chain[:, m["index"]] = _gaussian(m).rvs(draws, random_state=rng).reshape(draws, -1)
    return out


def log_mixture(modes: list[dict[str, Any]], draws: np.ndarray) -> np.ndarray:
    """Log density of the equal mixture of Gaussians (one per chain) that the draws pool.

    Each Gaussian is a dict with ``mean`` (flat), ``index`` (the positions it
    covers) and ``cov``. One on part of the parameters (Laplace's ``last_layer``)
    holds the rest at its mean: it gives no density to draws whose other parts differ.
    """
    per_mode = []
    for m in modes:
        rest = np.setdiff1d(np.arange(draws.shape[-1]), m["index"])
        logq = _gaussian(m).logpdf(draws[..., m["index"]]).reshape(draws.shape[:2])
        off = np.any(draws[..., rest] != m["mean"][rest], axis=-1)
        per_mode.append(np.where(off, -np.inf, logq))
    return special.logsumexp(np.stack(per_mode), axis=0) - np.log(len(modes))


def flat_posterior(model: pm.Model, post: xr.DataTree) -> tuple[list[str], np.ndarray]:
    """Return the posterior draws in the model's unconstrained flat layout, (chain, draw, size)."""
    parts, names = [], []
    for value in model.value_vars:
        rv = model.values_to_rvs[value]
        if rv.name not in post:
            continue  # the predicted y
        draws = _unconstrained(model, rv, post[rv.name].values)
        parts.append(draws.reshape(*draws.shape[:2], -1))
        names.append(value.name)
    return names, np.concatenate(parts, axis=-1)


def prior_flat(model: pm.Model, flat: FlatModel, n: int, seed: int) -> np.ndarray:
    """Return ``n`` draws from ``model``'s prior in its flat unconstrained layout, (n, size).

    PyMC's forward sampling ignores transforms: a variable whose draws have no
    finite unconstrained value (an ordered vector drawn unordered) starts from
    PyMC's jittered initial point instead.
    """
    free = model.free_RVs
    # a few draws: compiling for speed would take longer than drawing (0.6 s against 0.04)
    values = pm.draw(free, draws=n, random_seed=seed, mode="FAST_COMPILE")
    point = {}
    for rv, draws in zip(free, values, strict=True):
        name = model.rvs_to_values[rv].name
        point[name] = _unconstrained(model, rv, np.asarray(draws, dtype=np.float64))
    if not all(np.isfinite(v).all() for v in point.values()):
        jittered = initial_flat(model, flat, np.random.SeedSequence(seed).generate_state(n))
        for name, start in flat.unflatten(jittered).items():
            if not np.isfinite(point[name]).all():
                point[name] = start
    return np.concatenate([point[name].reshape(n, -1) for name in flat.shapes], axis=1)


def _unconstrained(model: pm.Model, rv: Any, draws: np.ndarray) -> np.ndarray:
    """Map draws of ``rv`` to its value variable's unconstrained space."""
    transform = model.rvs_to_transforms[rv]
    if transform is None:
        return draws
    x = pt.tensor(dtype="float64", shape=(None,) * draws.ndim)
    forward = pytensor.function([x], transform.forward(x, *rv.owner.inputs), mode="FAST_COMPILE")
    with np.errstate(invalid="ignore", divide="ignore"):
        return forward(draws)
