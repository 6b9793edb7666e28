"""The Laplace approximation: Gaussians at MAP estimates, with the curvature there.

Each restart maximises the log posterior in the unconstrained space (the
transforms' Jacobians included) from a jittered start by L-BFGS, all restarts in
one JAX program on PyMC's log density
(:mod:`~bnncat.models.inference.map_search`), and takes a curvature of the negative log posterior
there (:mod:`~bnncat.models.inference.laplace_curvature`): the exact Hessian, its
generalised Gauss-Newton, its diagonal, or the output layer's block with the hidden
layers kept at the MAP. Negative eigenvalues of the likelihood's curvature (a saddle)
are set to zero and counted, so that every direction keeps at least the prior's
curvature: raising them to a small floor instead gave one restart of a 1x16 net a
variance of 1e9 and its linearised predictive an LPD of -4.5 per row.

Every restart is a chain; the draws carry the log posterior density and the log
density of the equal mixture of the restarts' Gaussians, so that PSIS k-hat says
how far the approximation is from the posterior. With ``marglik=True`` the prior
sds and the noise sd are first chosen by the Laplace evidence
(:mod:`~bnncat.models.inference.laplace_evidence`). pymc-extras' ``fit_laplace``
is not used: its releases pin PyMC below 6.4.
"""

import os
import warnings
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import numpy as np
import pymc as pm
import xarray as xr

from bnncat.models.inference.flat_draws import (
    MAP_ITERATIONS,
    draw_gaussians,
    draws_as_tree,
    initial_flat,
    log_mixture,
)
from bnncat.models.inference.laplace_curvature import (
    HESSIANS,
    FlatModel,
    flat_model,
    positive_definite,
    positive_semidefinite,
    precision_parts,
)
from bnncat.models.inference.laplace_evidence import (
    check_marglik,
    log_evidence,
    tune_by_evidence,
)
from bnncat.models.inference.map_search import find_modes
from bnncat.models.inference.problem import prepare_problem, record_fit
from bnncat.models.inference.registry import register
from bnncat.models.jax_runtime import jax_session
from bnncat.models.validation import check_choice, check_positive_int

_REFUSES = {
    "chains": "its chains are its MAP restarts: set restarts",
    "tune": "a Laplace approximation has no warm-up",
}


@register("laplace", kind="approximation", refuses=_REFUSES)
def fit_laplace(
    net: Any,
    X: object,
    y: object,
    *,
    draws: int = 1000,
    random_seed: int | None = None,
    restarts: int = 4,
    hessian: str = "full",
    marglik: bool = False,
    maxiter: int = MAP_ITERATIONS,
    temperature: float = 1.0,
    store_mu: bool = False,
    progressbar: bool = True,
) -> xr.DataTree:
    """Fit Gaussians at MAP estimates of ``net`` on ``(X, y)`` and draw from them.

    Parameters
    ----------
    net : ModelBuilder
        The model configuration (``MLP``, ``OrderedMLP``, ``MixtureRegressor``).
    X, y : array-like
        Inputs (n, n_features) and targets, as for :func:`bnncat.models.fit`.
    draws : int
        Draws from each restart's Gaussian.
    random_seed : int, optional
        Seed of the whole fit (jittered starts and draws); drawn when omitted.
    restarts : int
        MAP searches from independent jittered starts; each is a chain. Restarts
        that end in different optima show as disagreeing chains.
    hessian : {"full", "ggn", "diag", "last_layer"}
        The precision of each Gaussian: the exact Hessian of the negative log
        posterior; its generalised Gauss-Newton (the likelihood's curvature in the
        network output, pulled back: positive semi-definite where the likelihood
        is log-concave in it); the exact Hessian's diagonal; or the exact
        Hessian's block of the output layer and the likelihood's parameters, the
        hidden layers kept at the MAP.
    marglik : bool
        Choose the sd of each layer's weight prior, and for a one-output normal
        likelihood the noise sd, by maximising the Laplace approximation of the
        evidence (MacKay 1992), before the restarts. Plain ``MLP`` only (the
        constrained weights of ``OrderedMLP`` and a mixture's components have no
        such closed form). The tuned values are in the attrs and the net.
    maxiter : int
        Largest number of L-BFGS iterations of each MAP search. A search that
        stops short is recorded (``laplace.converged``) and warned about, with
        ``laplace.newton_decrement``: the squared distance from the Gaussian's
        mean to the mode of its quadratic model, in the Gaussian's metric. For
        ``last_layer`` a second search, of the output layer alone, runs to
        convergence: its Gaussian is centred on the output layer's mode given
        the hidden layers, wherever the first stopped.
    temperature : float
        Raise the likelihood to 1 / ``temperature``: below 1 a cold posterior,
        above 1 a warm one; 1 (the default) is the Bayesian posterior itself.
    store_mu : bool
        Keep the network output ``mu`` at the training inputs for every draw.
    progressbar : bool
        Unused (the searches are short); accepted like every method's.

    Returns
    -------
    xarray.DataTree
        ``posterior`` (chain = restart), ``sample_stats`` (``log_p`` and ``log_q`` of
        each draw), ``laplace`` (each restart's MAP log density, flat mean, log
        evidence, clipped eigenvalues, iterations, convergence and Newton
        decrement; with ``marglik``, ``laplace_evidence`` holds the
        hyperparameters and the evidence of every tuning round),
        ``observed_data`` and ``constant_data``; the attrs record the fit (kind
        ``approximation``).

    Examples
    --------
    >>> from bnncat import data
    >>> from bnncat.models import MLP
    >>> from bnncat.models.inference import fit_laplace
    >>> ds = data.load("mcycle")
    >>> idata = fit_laplace(MLP((8,)), ds.X, ds.y, random_seed=1)  # doctest: +SKIP
    """
    restarts = check_positive_int(restarts, "restarts")
    maxiter = check_positive_int(maxiter, "maxiter")
    hessian = check_choice(hessian, HESSIANS, "hessian")
    problem = prepare_problem(
        net, X, y, draws=draws, random_seed=random_seed, store_mu=store_mu, temperature=temperature
    )
    check_marglik(marglik, problem.net)
    seeds = np.random.SeedSequence(problem.random_seed).generate_state(restarts + 1)
    options = {
        "restarts": restarts,
        "hessian": hessian,
        "marglik": marglik,
        "maxiter": maxiter,
        "store_mu": store_mu,
    }
    with jax_session("float64"):
        tuning, start = None, None
        if marglik:
            problem, tuning, start = tune_by_evidence(problem, hessian, int(seeds[0]))
        flat = flat_model(problem.model, problem.temperature)
        modes = _search_modes(problem.model, flat, seeds[:restarts], hessian, start, maxiter)
        draws_flat = draw_gaussians(modes, problem.draws, int(seeds[-1]))
        log_p = flat.log_densities(draws_flat)
    idata = draws_as_tree(problem, flat, draws_flat)
    idata["sample_stats"] = xr.Dataset(
        {
            "log_p": (("chain", "draw"), log_p),
            "log_q": (("chain", "draw"), log_mixture(modes, draws_flat)),
        },
        coords={"chain": np.arange(restarts), "draw": np.arange(problem.draws)},
    )
    idata["laplace"] = _modes_dataset(modes, flat)
    _warn_if_unconverged(modes, maxiter, hessian)
    if tuning is not None:
        idata["laplace_evidence"] = tuning["rounds"]
        options |= tuning["chosen"]
    return record_fit(idata, problem, "laplace", options)


def _search_modes(
    model: pm.Model,
    flat: FlatModel,
    seeds: np.ndarray,
    hessian: str,
    start: np.ndarray | None,
    maxiter: int,
) -> list[dict[str, Any]]:
    """MAP searches from one jittered start per seed (the first from ``start`` if given).

    All searches run in one program (:func:`find_modes`). For ``last_layer`` a
    second search moves the output layer and the likelihood's parameters alone:
    the Gaussian is then centred on the mode of the output layer given the hidden
    layers, which is reached even where the whole network's search stops short.
    """
    starts = initial_flat(model, flat, seeds)
    if start is not None:
        starts[0] = start
    searches = find_modes(flat.log_density, starts, maxiter=maxiter)
    modes = fit_gaussians(flat, searches.x, hessian)
    for mode, done, its in zip(modes, searches.converged, searches.iterations, strict=True):
        mode["converged"] = mode["converged"] and bool(done)
        mode["iterations"] += int(its)
    return modes


def fit_gaussians(flat: FlatModel, found: np.ndarray, hessian: str) -> list[dict[str, Any]]:
    """Return the Laplace Gaussian (``hessian``) of the posterior at each row of ``found``.

    For ``last_layer`` the output layer and the likelihood's parameters are first
    moved to their mode given the hidden layers (``converged`` and ``iterations``
    record that search). The curvatures are computed in parallel threads (JAX
    releases the GIL).
    """
    converged, iterations = np.ones(len(found), dtype=bool), np.zeros(len(found), dtype=int)
    if hessian == "last_layer":
        search = find_modes(flat.log_density, found, coordinates=flat.last_layer_indices())
        found, converged, iterations = search.x, search.converged, search.iterations
    with ThreadPoolExecutor(min(len(found), os.cpu_count() or 1)) as pool:
        modes = list(pool.map(lambda x: _gaussian(flat, x, hessian), found))
    for mode, done, its in zip(modes, converged, iterations, strict=True):
        mode |= {"converged": bool(done), "iterations": int(its)}
    return modes


def _gaussian(flat: FlatModel, found: np.ndarray, hessian: str) -> dict[str, Any]:
    """Return the Gaussian at a MAP estimate ``found``: its covariance and log evidence.

    The mode and curvature are those of the log density in the unconstrained space,
    Jacobians of the transforms included: the density the Gaussian stands for there,
    and whose mode is finite where the constrained one is not (``find_MAP``, which
    leaves the Jacobians out, lets an ordered variable's log-increments run to -inf).
    ``newton_decrement`` is g^T P^-1 g with g the gradient and P the precision: the
    squared distance, in the Gaussian's own metric, from its mean to the mode of
    its quadratic model (0 at a mode; above 1 the mean is off by more than an sd).
    """
    lik, prior = precision_parts(flat, found, hessian)
    # a saddle or flat direction of the likelihood gets no curvature from it, only the
    # prior's: its variance is at most the prior's, never the inverse of a floor
    lik, clipped = positive_semidefinite(lik)
    precision, _ = positive_definite(lik + prior)
    if hessian == "diag":
        precision = np.diag(np.diag(precision))
    index = flat.last_layer_indices() if hessian == "last_layer" else np.arange(flat.size)
    cov = np.linalg.inv(precision)
    logp, grad = flat.value_and_grad(found)
    grad = np.asarray(grad, dtype=np.float64)[index]
    return {
        "mean": found,
        "index": index,
        "cov": (cov + cov.T) / 2,
        "logp": float(logp),
        "log_evidence": log_evidence(float(logp), precision),
        "clipped": clipped,
        "newton_decrement": float(grad @ cov @ grad),
    }


def _warn_if_unconverged(modes: list[dict[str, Any]], maxiter: int, hessian: str) -> None:
    """Warn when a MAP search stopped before it converged, saying what that leaves."""
    stopped = [i for i, m in enumerate(modes) if not m["converged"]]
    if not stopped:
        return
    if hessian == "last_layer":
        meaning = (
            "the hidden layers are not at a mode; each Gaussian is the output layer's "
            "posterior given the features the search reached: raise maxiter"
        )
    else:
        off = ", ".join(f"{modes[i]['newton_decrement']:.3g}" for i in stopped)
        meaning = (
            f"their Gaussians are not centred on a mode (Newton decrements {off}; above 1 "
            "the mean is more than an sd off): raise maxiter or use hessian='last_layer'"
        )
    warnings.warn(
        f"Laplace: the MAP searches of restarts {stopped} stopped before converging "
        f"(maxiter={maxiter}); {meaning}, and read PSIS k-hat in diagnose()",
        UserWarning,
        stacklevel=3,
    )


def _full_cov(mode: dict[str, Any]) -> np.ndarray:
    """Return the covariance over every flat position (zero where the MAP is held)."""
    size = len(mode["mean"])
    cov = np.zeros((size, size))
    cov[np.ix_(mode["index"], mode["index"])] = mode["cov"]
    return cov


def _modes_dataset(modes: list[dict[str, Any]], flat: FlatModel) -> xr.Dataset:
    """Each restart's MAP log density, mean, covariance, log evidence and search record."""
    names = [f"{n}[{i}]" for n, shape in flat.shapes.items() for i in range(int(np.prod(shape)))]
    return xr.Dataset(
        {
            "map_logp": ("chain", [m["logp"] for m in modes]),
            "mean": (("chain", "parameter"), np.stack([m["mean"] for m in modes])),
            "log_evidence": ("chain", [m["log_evidence"] for m in modes]),
            "clipped_eigenvalues": ("chain", [m["clipped"] for m in modes]),
            "converged": ("chain", [m["converged"] for m in modes]),
            "iterations": ("chain", [m["iterations"] for m in modes]),
            "newton_decrement": ("chain", [m["newton_decrement"] for m in modes]),
            "cov": (("chain", "parameter", "parameter_2"), np.stack([_full_cov(m) for m in modes])),
        },
        coords={"chain": np.arange(len(modes)), "parameter": names, "parameter_2": names},
    )
