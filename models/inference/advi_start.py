"""Where ADVI starts: a MAP estimate with small sds, and PyMC's inference objects set there."""

import warnings
from typing import Any

import numpy as np
import pymc as pm
from pymc.distributions.transforms import Ordered

#: Initial sd of every mean-field factor when ADVI starts from the MAP: BNN practice
#: (small initial variances); PyMC's own default of 1 lets the noise swamp the fit.
ADVI_START_SD = 0.05
#: Smallest log-increment of an ordered variable in the MAP start (see map_start).
ORDERED_START_FLOOR = -5.0


def map_start(
    model: pm.Model, method: str, random_seed: int, large: bool = False
) -> dict[str, Any]:
    """Start ADVI at a MAP estimate, with small sds for mean-field ADVI.

    For a ``large`` problem the log density and its gradient are evaluated by JAX
    on a copy of the model with its data frozen into constants (JAX needs static
    shapes), which beat PyTensor's C backend on such problems.
    """
    search, backend = model, None
    if large:
        from pymc.model.transform.optimization import freeze_dims_and_data

        search, backend = freeze_dims_and_data(model), "jax"
    with warnings.catch_warnings():
        # only a starting point: ADVI goes on from wherever L-BFGS stopped
        warnings.filterwarnings("ignore", "The optimizer did not converge", UserWarning)
        found = pm.find_MAP(
            model=search,
            backend=backend,
            jitter=True,
            random_seed=random_seed,
            progressbar=False,
            return_inferencedata=True,
            idata_kwargs={"include_transformed": True},
        )["posterior"]
    values = [model.rvs_to_values[rv].name for rv in model.free_RVs]
    point = {name: found[name].values[0, 0] for name in values}  # the one (chain, draw)
    # find_MAP maximises the density without the transforms' Jacobians, so an ordered
    # variable's log-increments may run towards -inf (two units merged at the boundary);
    # ADVI, which works with the Jacobian, could not leave such a start. Keep each
    # increment at least exp(ORDERED_START_FLOOR) = 0.007 (standardised units).
    for rv in model.free_RVs:
        transform = model.rvs_to_transforms.get(rv)
        if isinstance(transform, Ordered):
            name = model.rvs_to_values[rv].name
            point[name] = _floor_log_increments(point[name], transform.positive)
    start: dict[str, Any] = {"start": point}
    if method == "advi":  # full-rank ADVI takes no start_sigma (see make_inference)
        start["start_sigma"] = {
            name: np.full(np.size(v), ADVI_START_SD) for name, v in point.items()
        }
    return start


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


def _floor_log_increments(value: np.ndarray, positive: bool) -> np.ndarray:
    """Raise an ordered variable's log-increments (and log first entry, if positive) to the floor.

    The first entry of an unsigned ordered variable is a location, left as it is.
    """
    out = np.array(value, dtype=np.float64, copy=True)
    first = 0 if positive else 1
    out[..., first:] = np.maximum(out[..., first:], ORDERED_START_FLOOR)
    return out
