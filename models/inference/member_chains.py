"""Markov chains started from the members of a deep ensemble (DEI-MCMC, MILE).

Sommer et al. (ICML 2024, ICLR 2025) train an ensemble, then run a short chain
from each member: the optimiser finds the basins, the sampler explores each one.
This module holds what the ensemble-initialised samplers share (``dei`` runs NUTS
from the members, ``mclmc`` microcanonical Langevin): the options, the members'
training, the spread of the chains over the devices and the result's layout.
Each chain samples the full posterior with the member as its start only.
"""

import warnings
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import xarray as xr

from bnncat.models.inference.convergence_check import prediction_convergence, warn_if_unconverged
from bnncat.models.inference.ensemble import check_training, members_group, train_members
from bnncat.models.inference.flat_draws import draws_as_tree
from bnncat.models.inference.laplace_curvature import FlatModel, flat_model
from bnncat.models.inference.problem import Problem, check_precision, record_fit
from bnncat.models.jax_runtime import jax_session, over_devices
from bnncat.models.validation import check_positive_int

#: Why the options of other methods do not apply to an ensemble-initialised sampler.
REFUSES = {
    "chains": "its chains start from the members: set members (and chains_per_member)",
    "batch_size": "the chains need the full data; minibatches are for ADVI and sgmcmc",
}


@dataclass(frozen=True)
class ChainRun:
    """What every chain gave: positions (chain, draw, size) and statistics by name.

    ``stats`` are per draw (chain, draw); ``tuned`` per chain (the warm-up's result,
    e.g. the step size); ``tuning_steps`` counts each chain's warm-up integration steps.
    """

    positions: np.ndarray
    stats: dict[str, np.ndarray]
    tuned: dict[str, np.ndarray]
    tuning_steps: np.ndarray


def check_member_chains(
    members: object,
    chains_per_member: object,
    tune: object,
    adam_steps: object,
    learning_rate: object,
    maxiter: object,
    precision: object,
) -> dict[str, Any]:
    """Validate the options every ensemble-initialised sampler has; return them as recorded.

    ``precision="auto"`` samples in float32, as NUTS does by default (faster on CPU),
    and again in float64 where a float32 chain did not move; the members are trained
    in float64 either way.
    """
    precision = check_precision(precision, on_jax=True, engine_hint="")
    return check_training(members, adam_steps, learning_rate, maxiter) | {
        "chains_per_member": check_positive_int(chains_per_member, "chains_per_member"),
        "tune": check_positive_int(tune, "tune"),
        "precision": precision,
    }


def sample_from_members(
    problem: Problem,
    options: dict[str, Any],
    chain: Callable[[FlatModel], Callable[[Any, Any], Any]],
    *,
    vectorise: bool,
) -> tuple[FlatModel, Any, ChainRun]:
    """Train the members, then run ``chain(flat)(start, key)`` from each member's end point.

    ``chain(flat)`` returns a JAX function of one start and one PRNG key that gives
    ``(positions, stats, tuned, tuning_steps)`` of one chain. ``chains_per_member``
    chains start from each member, each with its own key.
    """
    import jax

    seeds = np.random.SeedSequence(problem.random_seed).generate_state(3)
    training = {k: options[k] for k in ("adam_steps", "maxiter", "learning_rate")}
    with jax_session("float64"):
        flat = flat_model(problem.model, problem.temperature)
        found = train_members(problem, flat, options["members"], seeds[:2], **training)
    starts = np.repeat(found.x, options["chains_per_member"], axis=0)
    # raw uint32 keys: plain arrays that pmap can split over the devices
    keys = np.asarray(jax.random.split(jax.random.PRNGKey(int(seeds[2])), len(starts)))

    def fresh_run() -> Callable[[Any, Any], Any]:
        # a float64 run after a float32 one needs a model of its own: the shared one keeps
        # traces of the first (its draws then differed from precision="float64"'s by 1e-6)
        with jax_session("float64"):
            return chain(flat_model(problem.model, problem.temperature))

    run, options["precision"] = _run_in_usable_precision(
        (chain(flat), fresh_run),
        (starts, keys),
        problem.usable_precision,
        options["precision"],
        vectorise,
    )
    return flat, found, run


def _run_in_usable_precision(
    runs: tuple[Callable[[Any, Any], Any], Callable[[], Callable[[Any, Any], Any]]],
    inputs: tuple[np.ndarray, np.ndarray],
    usable: Callable[[str], str],
    asked: str,
    vectorise: bool,
) -> tuple[ChainRun, str]:
    """Run the chains in float32 (``auto``) or as asked; under ``auto``, float64 if one froze.

    ``runs``: the chain function, and a maker of a fresh one for the float64 run;
    ``inputs``: the starts and the PRNG keys, one per chain.
    """
    (run, fresh_run), (starts, keys) = runs, inputs
    precision = usable("float32" if asked == "auto" else asked)
    chains = _run_chains(run, starts, keys, precision, vectorise)
    frozen = frozen_chains(chains.positions)
    if not frozen.size or precision != "float32":
        return chains, precision
    fallback = asked == "auto"
    warnings.warn(
        f"chain(s) {frozen.tolist()} did not move in float32 (the tuned step size "
        "collapses where float32 cannot resolve the log density's changes: a sharp "
        "posterior, a large log density)"
        + ("; sampling again in float64" if fallback else "; pass precision='float64'"),
        UserWarning,
        stacklevel=4,
    )
    if not fallback:
        return chains, precision
    return _run_chains(fresh_run(), starts, keys, "float64", vectorise), "float64"


def _run_chains(
    run: Callable[[Any, Any], Any],
    starts: np.ndarray,
    keys: np.ndarray,
    precision: str,
    vectorise: bool,
) -> ChainRun:
    """Run one chain from each start, in ``precision``; the results in float64."""
    import jax

    dtype = np.float32 if precision == "float32" else np.float64
    with jax_session(precision):
        out = over_devices(run, starts.astype(dtype), keys, vectorise=vectorise)
    return ChainRun(*jax.tree.map(_as_float64, out))


def frozen_chains(positions: np.ndarray) -> np.ndarray:
    """Return the chains (of positions (chain, draw, size)) whose draws all equal the first."""
    if positions.shape[1] < 2:
        return np.array([], dtype=int)
    return np.flatnonzero((positions == positions[:, :1]).all(axis=(1, 2)))


def _as_float64(a: np.ndarray) -> np.ndarray:
    """Float32 results of a float32 run, stored in float64 like every other fit."""
    return a.astype(np.float64) if a.dtype == np.float32 else a


def chains_as_tree(
    problem: Problem, flat: FlatModel, found: Any, run: ChainRun, method: str, options: dict
) -> xr.DataTree:
    """Build the fit's DataTree (draws, sampler statistics, members); warn if unconverged."""
    idata = draws_as_tree(problem, flat, run.positions)
    chains, draws = run.positions.shape[:2]
    coords = {"chain": np.arange(chains), "draw": np.arange(draws)}
    stats = {name: (("chain", "draw"), value) for name, value in run.stats.items()}
    idata["sample_stats"] = xr.Dataset(stats, coords=coords)
    members = members_group(flat, found).rename({"chain": "member"})
    members["chain_member"] = ("chain", np.arange(chains) // options["chains_per_member"])
    members["tuning_steps"] = ("chain", run.tuning_steps)
    for name, value in run.tuned.items():
        members[name] = ("chain", value)
    idata["ensemble"] = members.assign_coords(chain=np.arange(chains))
    record_fit(idata, problem, method, options)
    warn_if_unconverged(prediction_convergence(idata, problem.net, problem.spec))
    return idata
