"""Where ADVI starts: a MAP estimate with small sds, and PyMC's inference objects set there."""

import weakref
from collections.abc import Callable
from typing import Any

import numpy as np
import pymc as pm
from pymc.initial_point import make_initial_point_fn

from bnncat.models.inference.flat_draws import find_map
from bnncat.models.inference.laplace_curvature import unflatten_values
from bnncat.models.jax_runtime import jax_session

#: Initial sd of every mean-field factor when ADVI starts from the MAP: BNN practice
#: (small initial variances); PyMC's own default of 1 lets the noise swamp the fit.
ADVI_START_SD = 0.05
#: Most L-BFGS iterations of the MAP search ADVI starts from.
START_ITERATIONS = 1000
#: Each model's JAX log density (see model_log_density), for as long as the model lives.
_LOG_DENSITIES: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def map_start(model: pm.Model, method: str, random_seed: int) -> dict[str, Any]:
    """Start ADVI at a MAP estimate, with small sds for mean-field ADVI.

    SciPy's L-BFGS on JAX's log density and gradient (in float64) from PyMC's jittered
    initial point, at most ``START_ITERATIONS`` iterations: only a starting point,
    ADVI goes on from wherever the search stopped. The density is the one ADVI fits,
    in the unconstrained space with the transforms' Jacobians. (``pm.find_MAP``
    compiled PyTensor's C functions for it: most of a small fit's wall time, and
    minutes of search on a large one.)
    """
    import jax

    log_density = model_log_density(model)
    initial = make_initial_point_fn(model=model, jitter_rvs=set(model.free_RVs))(random_seed)
    shapes = {v.name: np.shape(initial[v.name]) for v in model.value_vars}

    def of_flat(x: Any) -> Any:
        return log_density(list(unflatten_values(x, shapes).values()))

    with jax_session("float64"):
        x0 = np.concatenate([np.ravel(initial[name]) for name in shapes])
        found = find_map(jax.jit(jax.value_and_grad(of_flat)), x0, maxiter=START_ITERATIONS)
    point = unflatten_values(found.x, shapes)
    start: dict[str, Any] = {"start": point}
    if method == "advi":  # full-rank ADVI takes no start_sigma (see make_inference)
        start["start_sigma"] = {
            name: np.full(np.size(v), ADVI_START_SD) for name, v in point.items()
        }
    return start


def model_log_density(model: pm.Model) -> Callable:
    """PyMC's JAX log density of ``model`` (a list of value arrays), translated once per model.

    The MAP start and the JAX engine's objective share one translation (PyTensor's
    rewrites of the log density take seconds on a mixture).
    """
    if model not in _LOG_DENSITIES:
        from pymc.sampling.jax import get_jaxified_logp

        from bnncat.models.pymc_internals import jax_translation

        with jax_translation():  # called outside a jax_session too (the MAP start)
            _LOG_DENSITIES[model] = get_jaxified_logp(model)  # PyMC's name: log p, not -log p
    return _LOG_DENSITIES[model]


def make_inference(model: pm.Model, method: str, random_seed: int, start: dict) -> Any:
    """PyMC's mean-field or full-rank ADVI, started at ``start``.

    From a MAP start, full-rank ADVI's Cholesky factor starts at ``ADVI_START_SD``
    on its diagonal like the mean-field sds: PyMC's own start (softplus(1) = 1.3)
    swamped the MAP with noise, and the loss rose from its first iterations and ended
    above where it began (README, "The model grid").
    """
    inference_class = pm.ADVI if method == "advi" else pm.FullRankADVI
    inference = inference_class(model=model, random_seed=random_seed, **start)
    if method == "fullrank_advi" and "start" in start:
        (group,) = inference.approx.groups
        packed = group.params_dict["L_tril"]  # rows of the lower triangle, diagonal pre-softplus
        value = packed.get_value()
        n = len(group.params_dict["mu"].get_value())
        value[packed_diagonal(n)] = np.log(np.expm1(ADVI_START_SD))
        packed.set_value(value)
    return inference


def packed_diagonal(n: int) -> np.ndarray:
    """Positions of the diagonal in PyMC's full-rank ``L_tril`` (the lower triangle's rows)."""
    return np.cumsum(np.arange(1, n + 1)) - 1
