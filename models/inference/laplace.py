"""The Laplace approximation: Gaussians at MAP estimates, with the Hessian there.

Each restart maximises the log posterior in the unconstrained space (the
transforms' Jacobians included) from a jittered start by SciPy's L-BFGS, on PyMC's
log density translated to JAX, and takes JAX's exact Hessian there. Its inverse
is the covariance of that restart's Gaussian (``hessian="full"``), or the inverse
of its diagonal (``"diag"``);
eigenvalues that are not clearly positive (a saddle, a flat direction) are raised
to a floor and counted. Every restart is a chain; the draws carry the log posterior
density and the log density of the equal mixture of the restarts' Gaussians, so
that PSIS k-hat says how far the approximation is from the posterior.
pymc-extras' ``fit_laplace`` is not used: its releases pin PyMC below 6.4.
"""

from typing import Any

import numpy as np
import pymc as pm
import xarray as xr
from pymc.initial_point import make_initial_point_fn
from scipy import optimize, special, stats

from bnncat.models.inference.problem import Problem, prepare_problem, record_fit
from bnncat.models.inference.registry import register
from bnncat.models.jax_runtime import jax_session
from bnncat.models.pymc_internals import trace_of_draws
from bnncat.models.validation import check_choice, check_positive_int

HESSIANS = ("full", "diag")
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
    hessian : {"full", "diag"}
        The covariance: the inverse of the full Hessian, or of its diagonal.
    store_mu : bool
        Keep the network output ``mu`` at the training inputs for every draw.
    progressbar : bool
        Unused (the searches are short); accepted like every method's.

    Returns
    -------
    xarray.DataTree
        ``posterior`` (chain = restart), ``sample_stats`` (``log_p`` and ``log_q`` of
        each draw), ``laplace`` (each restart's MAP log density and mean),
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
    hessian = check_choice(hessian, HESSIANS, "hessian")
    problem = prepare_problem(net, X, y, draws=draws, random_seed=random_seed, store_mu=store_mu)
    seeds = np.random.SeedSequence(problem.random_seed).generate_state(restarts + 1)
    with jax_session("float64"):
        objective = _jax_objective(problem.model)
        modes = [_mode(problem.model, int(s), hessian, objective) for s in seeds[:restarts]]
    rng = np.random.default_rng(int(seeds[-1]))
    flat = np.stack([rng.multivariate_normal(m["mean"], m["cov"], problem.draws) for m in modes])
    idata = _draws_as_tree(problem, flat)
    idata["sample_stats"] = xr.Dataset(
        {
            "log_p": (("chain", "draw"), _log_posterior(problem.model, flat)),
            "log_q": (("chain", "draw"), _log_mixture(modes, flat)),
        },
        coords={"chain": np.arange(restarts), "draw": np.arange(problem.draws)},
    )
    idata["laplace"] = xr.Dataset(
        {
            "map_logp": ("chain", [m["logp"] for m in modes]),
            "mean": (("chain", "parameter"), np.stack([m["mean"] for m in modes])),
            "clipped_eigenvalues": ("chain", [m["clipped"] for m in modes]),
        },
        coords={"chain": np.arange(restarts)},
    )
    options = {"restarts": restarts, "hessian": hessian, "store_mu": store_mu}
    return record_fit(idata, problem, "laplace", options)


def _mode(model: pm.Model, seed: int, hessian: str, objective: Any = None) -> dict[str, Any]:
    """One MAP search from a jittered start: its mean, covariance and log density.

    The mode and Hessian are those of the log density in the unconstrained space,
    Jacobians of the transforms included: the density the Gaussian stands for there,
    and whose mode is finite where the constrained one is not (``find_MAP``, which
    leaves the Jacobians out, lets an ordered variable's log-increments run to -inf).
    """
    shapes = _value_shapes(model)
    value_and_grad, hess = objective or _jax_objective(model)
    start = make_initial_point_fn(model=model, jitter_rvs=set(model.free_RVs))(seed)
    x0 = np.concatenate([np.ravel(start[name]) for name in shapes])

    def loss(x: np.ndarray) -> tuple[float, np.ndarray]:
        value, grad = value_and_grad(x)
        return -float(value), -np.asarray(grad, dtype=np.float64)

    found = optimize.minimize(loss, x0, jac=True, method="L-BFGS-B")
    precision, clipped = _positive_definite(-np.asarray(hess(found.x), dtype=np.float64))
    cov = np.linalg.inv(precision)
    if hessian == "diag":
        cov = np.diag(1.0 / np.diag(precision))
    return {
        "mean": found.x,
        "cov": (cov + cov.T) / 2,
        "logp": -float(found.fun),
        "clipped": clipped,
    }


def _jax_objective(model: pm.Model) -> tuple[Any, Any]:
    """Compiled log posterior with its gradient, and its Hessian, of the flat values, by JAX.

    PyTensor's own Hessian graph (``model.compile_d2logp``) took 13 s to compile for a
    1x3 mixture regressor; JAX differentiates PyMC's JAX translation of the same log
    density in about a second.
    """
    import jax
    from jax.flatten_util import ravel_pytree
    from pymc.sampling.jax import get_jaxified_logp

    jax_logp = get_jaxified_logp(model, negative_logp=False)
    start = model.initial_point()
    values = [np.asarray(start[v.name], dtype=np.float64) for v in model.value_vars]
    x0, unravel = ravel_pytree(values)
    # the sign of get_jaxified_logp's output has changed between PyMC versions: fix it by value
    sign = 1.0 if np.isclose(jax_logp(values), model.compile_logp(jacobian=True)(start)) else -1.0

    def logp(x: Any) -> Any:
        return sign * jax_logp(unravel(x))

    return jax.jit(jax.value_and_grad(logp)), jax.jit(jax.hessian(logp))


def _positive_definite(precision: np.ndarray) -> tuple[np.ndarray, int]:
    """Raise eigenvalues that are not clearly positive (a saddle, a flat direction) to a floor.

    The floor is the relative tolerance of ``np.linalg.matrix_rank``; returns the
    matrix and how many eigenvalues were raised.
    """
    eigval, eigvec = np.linalg.eigh((precision + precision.T) / 2)
    floor = max(np.abs(eigval).max() * len(eigval) * np.finfo(np.float64).eps, 1e-12)
    clipped = int((eigval < floor).sum())
    return (eigvec * np.maximum(eigval, floor)) @ eigvec.T, clipped


def _value_shapes(model: pm.Model) -> dict[str, tuple[int, ...]]:
    """Shapes of the value variables, in the order of the flat vector."""
    point = model.initial_point()
    return {v.name: np.shape(point[v.name]) for v in model.value_vars}


def _unflatten(flat: np.ndarray, shapes: dict[str, tuple[int, ...]]) -> dict[str, np.ndarray]:
    """Split (draw, n) flat values into {value name: (draw, *shape)}."""
    out, start = {}, 0
    for name, shape in shapes.items():
        size = int(np.prod(shape))
        out[name] = flat[:, start : start + size].reshape(len(flat), *shape)
        start += size
    return out


def _draws_as_tree(problem: Problem, flat: np.ndarray) -> xr.DataTree:
    """Turn the draws of every restart into a DataTree of the model, with its data groups."""
    model = problem.model
    shapes = _value_shapes(model)
    wanted = set(problem.keep) | set(shapes)
    record = [v for v in model.unobserved_value_vars if v.name in wanted]
    samples = [_unflatten(chain, shapes) for chain in flat]
    trace = trace_of_draws(model, record, samples, problem.draws)
    idata = pm.to_inference_data(trace, model=model, log_likelihood=False)
    idata["posterior"] = idata["posterior"].to_dataset()[problem.keep]
    return idata


def _log_posterior(model: pm.Model, flat: np.ndarray) -> np.ndarray:
    """Unnormalised log posterior (with the Jacobians) of every (chain, draw)."""
    logp = model.compile_logp(jacobian=True)
    shapes = _value_shapes(model)
    return np.array(
        [
            [
                logp({k: v[i] for k, v in _unflatten(chain, shapes).items()})
                for i in range(len(chain))
            ]
            for chain in flat
        ]
    )


def _log_mixture(modes: list[dict[str, Any]], flat: np.ndarray) -> np.ndarray:
    """Log density of the equal mixture of the restarts' Gaussians, which the draws pool."""
    per_mode = np.stack(
        [
            stats.multivariate_normal(m["mean"], m["cov"], allow_singular=True).logpdf(flat)
            for m in modes
        ]
    )
    per_mode = per_mode.reshape(len(modes), *flat.shape[:2])
    return special.logsumexp(per_mode, axis=0) - np.log(len(modes))
