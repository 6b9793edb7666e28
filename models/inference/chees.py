"""Many chains in one program: ChEES-HMC on BlackJAX, its warm-up adapted across chains.

Hoffman, Radul & Sountsov (AISTATS 2021) tune HMC's step size and trajectory length
on an ensemble of chains at once: the trajectory length maximises the Change in the
Estimator of the Expected Square (ChEES) over the chains, and a quasi-random jitter of
the length is shared by all chains, so every chain takes the same number of leapfrog
steps and the ensemble runs as one vectorised program (hundreds or thousands of short
chains where NUTS runs a few long ones; each chain builds its own tree, and a
vectorised NUTS waits for the longest).

The chains start in ``superchains`` groups, each group from one of PyMC's jittered
initial points: nested R-hat (Margossian et al. 2024) then asks whether the groups
agree, which is the convergence question for many short chains. The superchains are
shared out over the XLA devices, at most one per core (bnncat asks for several CPU
host devices), and each device adapts over its own chains.
"""

import os
from typing import Any

import numpy as np
import xarray as xr

from bnncat.models.inference.convergence_check import prediction_convergence, warn_if_unconverged
from bnncat.models.inference.flat_draws import draws_as_tree, initial_flat
from bnncat.models.inference.laplace_curvature import FlatModel, flat_model
from bnncat.models.inference.problem import (
    Problem,
    as_numpy_float64,
    check_precision,
    prepare_problem,
    record_fit,
)
from bnncat.models.inference.registry import register
from bnncat.models.jax_runtime import chains_one_at_a_time, jax_session, step_each_chain
from bnncat.models.validation import check_choice, check_positive_float, check_positive_int

#: BlackJAX's mass matrices for ChEES: one per dimension pooled over the chains, or none.
MASS_MATRICES = ("diagonal", "identity")
#: The initial step size of the warm-up (the adaptation moves it within a few steps).
INITIAL_STEP_SIZE = 0.1


@register(
    "chees",
    kind="mcmc",
    refuses={"batch_size": "ChEES-HMC needs the full data; minibatches are for ADVI and sgmcmc"},
)
def fit_chees(
    net: Any,
    X: object,
    y: object,
    *,
    chains: int = 256,
    superchains: int = 8,
    draws: int = 100,
    tune: int = 200,
    random_seed: int | None = None,
    target_accept: float = 0.651,
    learning_rate: float = 0.025,
    mass_matrix: str = "diagonal",
    max_leapfrog_steps: int = 1000,
    precision: str = "auto",
    temperature: float = 1.0,
    store_mu: bool = False,
    progressbar: bool = True,
) -> xr.DataTree:
    """Sample the posterior of ``net`` on ``(X, y)`` by many ChEES-HMC chains at once.

    Parameters
    ----------
    net : ModelBuilder
        The model configuration (``MLP``, ``OrderedMLP``, ``MixtureRegressor``).
    X, y : array-like
        Inputs (n, n_features) and targets, as for :func:`bnncat.models.fit`.
    chains : int
        Chains in all, run vectorised (hundreds to thousands; at least 2).
    superchains : int
        Groups of chains with a common start; ``chains`` must be a multiple of it.
        With two or more the diagnosis reports nested R-hat over the groups.
    draws, tune : int
        Draws kept per chain after ``tune`` warm-up steps adapted over the chains.
        The warm-up learns from every chain at once, so it can be short (the
        default was chosen by ``benchmarks/many_chains.py``; README, "Many chains").
    random_seed : int, optional
        Seed of the whole fit; drawn and stored in the attrs when omitted.
    target_accept : float
        Acceptance rate the step size targets, in (0, 1) (0.651: optimal for HMC).
    learning_rate : float
        Adam's learning rate for the trajectory length during the warm-up.
    mass_matrix : {"diagonal", "identity"}
        ``"diagonal"`` estimates one scale per dimension from all chains in the
        second half of the warm-up; ``"identity"`` keeps unit scales.
    max_leapfrog_steps : int
        Bound on leapfrog steps per iteration.
    precision : {"auto", "float32", "float64"}
        Precision of the sampler; ``"auto"`` is float32. Stored in float64 either way.
    temperature : float
        Raise the likelihood to 1 / ``temperature`` (1: the Bayesian posterior).
    store_mu : bool
        Keep the network output ``mu`` at the training inputs for every draw.
    progressbar : bool
        Accepted for a uniform interface; the vectorised run shows no progress.

    Returns
    -------
    xarray.DataTree
        ``posterior`` (with a ``superchain`` coordinate along ``chain``),
        ``sample_stats`` (HMC statistics and the tuned step size and trajectory
        length), ``observed_data`` and ``constant_data``; kind ``mcmc``.

    Examples
    --------
    >>> from bnncat import data
    >>> from bnncat.models import MLP, fit
    >>> ds = data.load("mcycle")
    >>> idata = fit(MLP((16,)), ds.X, ds.y, method="chees", chains=1024)  # doctest: +SKIP
    """
    options = _check_options(
        chains, superchains, tune, target_accept, learning_rate, mass_matrix, max_leapfrog_steps
    )
    precision = check_precision(precision, on_jax=True, engine_hint="")
    options["precision"] = "float32" if precision == "auto" else precision
    options["store_mu"] = store_mu
    problem = prepare_problem(
        net, X, y, draws=draws, random_seed=random_seed, store_mu=store_mu, temperature=temperature
    )
    flat, positions, stats = _run(problem, options)
    idata = draws_as_tree(problem, flat, positions)
    groups = np.arange(options["chains"]) // (options["chains"] // options["superchains"])
    idata["posterior"] = idata["posterior"].to_dataset().assign_coords(superchain=("chain", groups))
    idata["sample_stats"] = as_numpy_float64(_stats_dataset(stats))
    record_fit(idata, problem, "chees", options)
    warn_if_unconverged(prediction_convergence(idata, net, problem.spec))
    return idata


def _check_options(
    chains: object,
    superchains: object,
    tune: object,
    target_accept: object,
    learning_rate: object,
    mass_matrix: object,
    max_leapfrog_steps: object,
) -> dict[str, Any]:
    chains = check_positive_int(chains, "chains", minimum=2)
    superchains = check_positive_int(superchains, "superchains")
    if chains % superchains:
        raise ValueError(
            f"chains must be a multiple of superchains (equal groups); got chains={chains}, "
            f"superchains={superchains}"
        )
    target_accept = check_positive_float(target_accept, "target_accept")
    if not target_accept < 1:
        raise ValueError(f"target_accept must lie in (0, 1); got {target_accept}")
    return {
        "chains": chains,
        "superchains": superchains,
        "tune": check_positive_int(tune, "tune"),
        "target_accept": target_accept,
        "learning_rate": check_positive_float(learning_rate, "learning_rate"),
        "mass_matrix": check_choice(mass_matrix, MASS_MATRICES, "mass_matrix"),
        "max_leapfrog_steps": check_positive_int(max_leapfrog_steps, "max_leapfrog_steps"),
    }


def _run(problem: Problem, options: dict[str, Any]) -> tuple[FlatModel, np.ndarray, dict]:
    """Positions (chain, draw, size) and statistics of every chain, in chain order."""
    import jax

    seeds = np.random.SeedSequence(problem.random_seed).generate_state(options["superchains"] + 1)
    with jax_session("float64"):
        flat = flat_model(problem.model, problem.temperature)
        starts = initial_flat(problem.model, flat, seeds[:-1])
    per_group = options["chains"] // options["superchains"]
    devices = _devices(options["superchains"], min(jax.local_device_count(), os.cpu_count() or 1))
    # (device, chains of that device, size): each device's superchains side by side
    positions = np.repeat(starts, per_group, axis=0).reshape(devices, -1, flat.size)
    keys = np.asarray(jax.random.split(jax.random.PRNGKey(int(seeds[-1])), devices))
    options["precision"] = problem.usable_precision(options["precision"])
    dtype = np.float32 if options["precision"] == "float32" else np.float64
    with jax_session(options["precision"]):
        program = jax.pmap(_ensemble(flat, problem.draws, options))
        out = program(positions.astype(dtype), keys)
    positions, stats = jax.tree.map(lambda a: np.asarray(a).reshape(-1, *a.shape[2:]), out)
    return flat, positions.astype(np.float64), stats


def _devices(superchains: int, available: int) -> int:
    """Return the most XLA devices (at most one per core) that share the superchains equally."""
    return max(d for d in range(1, available + 1) if superchains % d == 0)


def _ensemble(flat: FlatModel, draws: int, options: dict[str, Any]) -> Any:
    """Build the JAX program of one device: warm-up over its chains, then ``draws`` steps."""
    import blackjax
    import jax
    import optax

    log_density = chains_one_at_a_time(flat.log_density)

    def run(positions: Any, key: Any) -> tuple[Any, dict[str, Any]]:
        warm_key, key = jax.random.split(key)
        warmup = blackjax.chees_adaptation(
            log_density,
            positions.shape[0],
            target_acceptance_rate=options["target_accept"],
            max_leapfrog_steps=options["max_leapfrog_steps"],
            mass_matrix_estimation=None if options["mass_matrix"] == "identity" else "diagonal",
            adaptation_info_fn=lambda *_: None,
        )
        (states, params), _ = warmup.run(
            warm_key,
            positions,
            INITIAL_STEP_SIZE,
            optax.adam(options["learning_rate"]),
            options["tune"],
            max_sampling_steps=draws,
        )
        step = step_each_chain(blackjax.dynamic_hmc(log_density, **params).step)

        def one(states: Any, k: Any) -> tuple[Any, tuple[Any, dict[str, Any]]]:
            states, info = step(jax.random.split(k, positions.shape[0]), states)
            stats = {
                "lp": states.logdensity,
                "acceptance_rate": info.acceptance_rate,
                "diverging": info.is_divergent,
                "energy": info.energy,
                "n_steps": info.num_integration_steps,
                "step_size": jax.numpy.broadcast_to(params["step_size"], states.logdensity.shape),
            }
            return states, (states.position, stats)

        _, (drawn, stats) = jax.lax.scan(one, states, jax.random.split(key, draws))
        # (draw, chain, ...) -> (chain, draw, ...)
        return jax.tree.map(lambda a: jax.numpy.swapaxes(a, 0, 1), (drawn, stats))

    return run


def _stats_dataset(stats: dict[str, np.ndarray]) -> xr.Dataset:
    chains, draws = stats["lp"].shape
    coords = {"chain": np.arange(chains), "draw": np.arange(draws)}
    return xr.Dataset({k: (("chain", "draw"), v) for k, v in stats.items()}, coords=coords)
