"""Stochastic-gradient MCMC on minibatches: SGLD and SGHMC, constant or cyclical step sizes.

Each step estimates the gradient of the log posterior from ``batch_size`` rows
(:mod:`~bnncat.models.inference.minibatch_density`: the prior plus ``n / B`` times
the batch's log-likelihood), so that a step costs the same however many rows the
data have. The samplers are BlackJAX's own ``sgld`` (Welling & Teh 2011) and
``sghmc`` (Chen et al. 2014, with BlackJAX's friction ``alpha`` and a fresh
momentum at every step); the cyclical schedule is Zhang et al. (2020)'s cosine,
restarted ``cycles`` times, with draws kept only in the sampling stage of each
cycle. Every chain draws its minibatch afresh at every step, ``B`` rows with
replacement: the batches are independent, and drawing one costs the same for any n.

Chains start from draws from the prior and all run in one jitted ``lax.scan``,
vectorised over chains. There is no Metropolis correction: the draws are biased
by the step size and by the minibatch noise, the more so the larger both are.
"""

import math
import warnings
from dataclasses import dataclass
from typing import Any

import numpy as np
import xarray as xr

from bnncat.models.inference.convergence_check import prediction_convergence, warn_if_unconverged
from bnncat.models.inference.flat_draws import draws_as_tree, prior_flat
from bnncat.models.inference.laplace_curvature import flat_model
from bnncat.models.inference.minibatch_density import MinibatchDensity, minibatch_density
from bnncat.models.inference.problem import prepare_problem, record_fit
from bnncat.models.inference.registry import register
from bnncat.models.jax_runtime import jax_session
from bnncat.models.validation import check_choice, check_positive_float, check_positive_int

KERNELS = ("sgld", "sghmc")
SCHEDULES = ("constant", "cyclical")
#: Rows a minibatch takes when ``batch_size`` is not given (all of them if fewer).
BATCH_SIZE = 100
#: Default step size times n (SGLD) or its square times n (SGHMC). The log posterior's
#: curvature grows with n (about 500 n at the modes of a 1x3 or 1x32 net on ``sine``),
#: and a step is stable only below 2 / curvature (SGLD).
STEP_PER_ROW = {"sgld": 2e-3, "sghmc": 1e-4}
#: SGHMC's default friction times its step size: the share of the momentum lost per
#: gradient step (0.1, as SGD's momentum 0.9). BlackJAX's SGHMC moves the position with
#: the momentum from before the gradient step (explicit Euler): along a direction of
#: curvature c it gains energy unless friction > step_size * c, and its variance there
#: is about friction / (friction - step_size * c) times too large (SGLD's: 1 / (1 -
#: step_size * c / 2)). With these defaults both are about 2 at a curvature of 500 n.
MOMENTUM_LOSS = 0.1
_REFUSES = {
    "tune": "SG-MCMC adapts nothing while it warms up: set burn_in, the steps discarded first",
    "target_accept": "SG-MCMC has no Metropolis step that accepts or rejects",
}


@dataclass(frozen=True)
class Schedule:
    """The step size, the noise switch and where the draw goes, for every step.

    ``noise`` is 1 where the kernel adds its noise and 0 in the exploration stage
    of a cyclical schedule; ``slot`` is the index of the draw a step's position is
    kept as, or ``draws`` for a step whose position is not kept.
    """

    step_size: np.ndarray
    noise: np.ndarray
    slot: np.ndarray
    draws: int

    @property
    def kept_step_size(self) -> np.ndarray:
        """The step size of every kept draw, in draw order."""
        return self.step_size[self.slot < self.draws]


@register("sgmcmc", kind="mcmc", refuses=_REFUSES)
def fit_sgmcmc(
    net: Any,
    X: object,
    y: object,
    *,
    draws: int = 1000,
    chains: int = 4,
    kernel: str = "sgld",
    batch_size: int | None = None,
    step_size: float | None = None,
    schedule: str = "constant",
    cycles: int | None = None,
    exploration: float | None = None,
    burn_in: int | None = None,
    thin: int = 10,
    friction: float | None = None,
    integration_steps: int | None = None,
    random_seed: int | None = None,
    temperature: float = 1.0,
    store_mu: bool = False,
    progressbar: bool = True,
) -> xr.DataTree:
    """Sample the posterior of ``net`` on ``(X, y)`` by stochastic-gradient MCMC on minibatches.

    Parameters
    ----------
    net : ModelBuilder
        The model configuration (``MLP``, ``OrderedMLP``, ``MixtureRegressor``).
    X, y : array-like
        Inputs (n, n_features) and targets, as for :func:`bnncat.models.fit`.
    draws : int
        Draws kept per chain.
    chains : int
        Chains, each from its own draw from the prior.
    kernel : {"sgld", "sghmc"}
        BlackJAX's ``sgld`` (one Langevin step per minibatch) or ``sghmc`` (a fresh
        momentum, then ``integration_steps`` gradient steps on one minibatch).
    batch_size : int, optional
        Rows per minibatch, at most n; default ``min(100, n)``.
    step_size : float, optional
        BlackJAX's step size in the unconstrained space (the peak of a cyclical
        schedule). Default ``2e-3 / n`` for SGLD and ``sqrt(1e-4 / n)`` for SGHMC,
        whose step moves the momentum: the log posterior's curvature grows with n.
        Lower it if chains reach non-finite values (a warning says so).
    schedule : {"constant", "cyclical"}
        ``"cyclical"``: Zhang et al. (2020)'s cosine from ``step_size`` down to 0,
        ``cycles`` times; each cycle explores without the kernel's noise for a
        share ``exploration`` of its steps, then keeps ``draws / cycles`` draws.
    cycles : int, optional
        Cycles of a cyclical schedule (default 4; must divide ``draws``).
    exploration : float, optional
        Share of each cycle spent exploring, in [0, 1) (default 0.8).
    burn_in : int, optional
        Steps run and discarded before the first kept draw (or the first cycle);
        default ``draws * thin`` for a constant schedule, 0 for a cyclical one.
    thin : int
        Steps per kept draw.
    friction : float, optional
        SGHMC's friction ``alpha`` (BlackJAX's parameterisation); default
        ``0.1 / step_size``: a tenth of the momentum lost per gradient step.
    integration_steps : int, optional
        SGHMC's gradient steps per step, between fresh momenta (default 10).
    random_seed : int, optional
        Seed of the whole fit (starts, minibatches, noise).
    temperature : float
        Raise the likelihood to 1 / ``temperature`` (1: the Bayesian posterior).
    store_mu : bool
        Keep the network output ``mu`` at the training inputs for every draw.
    progressbar : bool
        Unused (one compiled program); accepted like every method's.

    Returns
    -------
    xarray.DataTree
        ``posterior`` (chain, draw), ``sample_stats`` (``step_size`` of each draw's
        step and ``log_p``, the full-data log posterior of each draw),
        ``observed_data`` and ``constant_data``; the attrs record the fit (kind ``mcmc``).

    Examples
    --------
    >>> from bnncat import data
    >>> from bnncat.models import MLP
    >>> from bnncat.models.inference import fit_sgmcmc
    >>> ds = data.load("mcycle")
    >>> idata = fit_sgmcmc(MLP((8,)), ds.X, ds.y, random_seed=1)  # doctest: +SKIP
    """
    options = _check_options(
        draws, chains, kernel, batch_size, step_size, schedule, cycles, exploration, burn_in, thin
    ) | _check_sghmc(kernel, friction, integration_steps)
    problem = prepare_problem(
        net, X, y, draws=draws, random_seed=random_seed, store_mu=store_mu, temperature=temperature
    )
    options = _resolve_defaults(options, len(problem.y), problem.draws)
    plan = make_schedule(problem.draws, options)
    seeds = np.random.SeedSequence(problem.random_seed).generate_state(2)
    with jax_session("float64"):
        density = minibatch_density(problem.model, problem.temperature)
        flat = flat_model(problem.model, problem.temperature)
        starts = prior_flat(problem.model, flat, options["chains"], int(seeds[0]))
        draws_flat = run_chains(density, starts, plan, options, int(seeds[1]))
        log_p = flat.log_densities(draws_flat)
    _warn_if_not_finite(draws_flat)
    idata = draws_as_tree(problem, flat, draws_flat)
    stats = {"step_size": np.broadcast_to(plan.kept_step_size, log_p.shape), "log_p": log_p}
    idata["sample_stats"] = xr.Dataset(
        {name: (("chain", "draw"), np.array(value)) for name, value in stats.items()},
        coords={"chain": np.arange(options["chains"]), "draw": np.arange(problem.draws)},
    )
    record_fit(idata, problem, "sgmcmc", options | {"store_mu": store_mu})
    warn_if_unconverged(prediction_convergence(idata, problem.net, problem.spec))
    return idata


def _check_options(
    draws: object,
    chains: object,
    kernel: object,
    batch_size: object,
    step_size: object,
    schedule: object,
    cycles: object,
    exploration: object,
    burn_in: object,
    thin: object,
) -> dict[str, Any]:
    """Validate the options every kernel takes, before any work; return them as recorded."""
    options = {
        "chains": check_positive_int(chains, "chains"),
        "kernel": check_choice(kernel, KERNELS, "kernel"),
        "batch_size": None if batch_size is None else check_positive_int(batch_size, "batch_size"),
        "step_size": None if step_size is None else check_positive_float(step_size, "step_size"),
        "schedule": check_choice(schedule, SCHEDULES, "schedule"),
        "burn_in": None if burn_in is None else check_positive_int(burn_in, "burn_in", minimum=0),
        "thin": check_positive_int(thin, "thin"),
    }
    return options | _check_cycles(draws, options["schedule"], cycles, exploration)


def _check_cycles(
    draws: object, schedule: str, cycles: object, exploration: object
) -> dict[str, Any]:
    """Validate ``cycles`` and ``exploration``: options of the cyclical schedule alone."""
    if schedule != "cyclical":
        for value, name in ((cycles, "cycles"), (exploration, "exploration")):
            if value is not None:
                raise ValueError(f"{name} is an option of schedule='cyclical', not {schedule!r}")
        return {"cycles": None, "exploration": None}
    cycles = check_positive_int(4 if cycles is None else cycles, "cycles")
    share = 0.8 if exploration is None else exploration
    if isinstance(share, bool) or not isinstance(share, int | float | np.number):
        raise TypeError(f"exploration must be a number in [0, 1); got {share!r}")
    if not 0 <= share < 1:
        raise ValueError(f"exploration must be in [0, 1); got {share}")
    draws = check_positive_int(draws, "draws")
    if draws % cycles:
        raise ValueError(
            f"draws={draws} must be a multiple of cycles={cycles}: each cycle keeps as many draws"
        )
    return {"cycles": cycles, "exploration": float(share)}


def _check_sghmc(kernel: str, friction: object, integration_steps: object) -> dict[str, Any]:
    """Validate SGHMC's own options (refused with SGLD rather than silently ignored)."""
    if kernel != "sghmc":
        for value, name in ((friction, "friction"), (integration_steps, "integration_steps")):
            if value is not None:
                raise ValueError(f"{name} is an option of kernel='sghmc', not {kernel!r}")
        return {"friction": None, "integration_steps": None}
    return {
        "friction": None if friction is None else check_positive_float(friction, "friction"),
        "integration_steps": check_positive_int(
            10 if integration_steps is None else integration_steps, "integration_steps"
        ),
    }


def _resolve_defaults(options: dict[str, Any], n: int, draws: int) -> dict[str, Any]:
    """Fill in the defaults that depend on n or on other options; check ``batch_size``."""
    batch = options["batch_size"] or min(BATCH_SIZE, n)
    if batch > n:
        raise ValueError(f"batch_size={batch} is larger than the data's {n} rows")
    step = options["step_size"]
    if step is None:
        step = STEP_PER_ROW[options["kernel"]] / n
        step = step if options["kernel"] == "sgld" else math.sqrt(step)
    burn_in = options["burn_in"]
    if burn_in is None:
        burn_in = draws * options["thin"] if options["schedule"] == "constant" else 0
    resolved = {"batch_size": batch, "step_size": step, "burn_in": burn_in}
    if options["kernel"] == "sghmc" and options["friction"] is None:
        resolved["friction"] = MOMENTUM_LOSS / step
    return options | resolved


def make_schedule(draws: int, options: dict[str, Any]) -> Schedule:
    """Lay out every step: ``burn_in`` steps, then the draws (constant or in cycles).

    A constant schedule keeps every ``thin``-th step after the burn-in. A cyclical
    one (Zhang et al. 2020) splits the rest into ``cycles`` cycles of equal length
    whose step size falls as ``step_size / 2 (cos(pi j / length) + 1)`` at the
    cycle's step ``j``; the first share ``exploration`` of a cycle runs without
    noise, and the sampling stage after it keeps ``draws / cycles`` draws.
    """
    peak, thin, burn_in = options["step_size"], options["thin"], options["burn_in"]
    if options["schedule"] == "constant":
        sizes = np.full(burn_in + draws * thin, peak)
        noise = np.ones_like(sizes)
        kept = burn_in + thin * np.arange(1, draws + 1) - 1
    else:
        sampling = draws // options["cycles"] * thin
        # rounded first: 1 - 0.8 is a little below 0.2, and the ceiling would add a step
        length = math.ceil(round(sampling / (1 - options["exploration"]), 9))
        j = np.arange(length)
        cycle = peak / 2 * (np.cos(np.pi * j / length) + 1)
        sizes = np.concatenate([np.full(burn_in, peak), np.tile(cycle, options["cycles"])])
        sampling_stage = np.tile(j >= length - sampling, options["cycles"])
        noise = np.concatenate([np.ones(burn_in), sampling_stage])
        in_cycle = length - sampling + thin * np.arange(1, sampling // thin + 1) - 1
        kept = (burn_in + length * np.arange(options["cycles"])[:, None] + in_cycle).ravel()
    slot = np.full(len(sizes), draws)
    slot[kept] = np.arange(draws)
    return Schedule(sizes, noise.astype(np.float64), slot, draws)


def run_chains(
    density: MinibatchDensity,
    starts: np.ndarray,
    plan: Schedule,
    options: dict[str, Any],
    seed: int,
) -> np.ndarray:
    """Run a chain from each start (chains, size) through ``plan``: draws (chain, draw, size)."""
    import jax

    program = chain_program(density, options, plan.draws)
    keys = jax.random.split(jax.random.PRNGKey(seed), 2 * len(starts)).reshape(2, len(starts), -1)
    out = program(starts, density.X, density.y, plan_inputs(plan), keys)
    return np.swapaxes(np.asarray(out), 0, 1)


def plan_inputs(plan: Schedule) -> tuple[np.ndarray, ...]:
    """Return the per-step inputs of the scan: step number, step size, noise switch, slot."""
    steps = np.arange(len(plan.step_size))
    return steps, plan.step_size, plan.noise, plan.slot


def chain_program(density: MinibatchDensity, options: dict[str, Any], draws: int) -> Any:
    """Return the jitted scan over steps, vectorised over chains: ``(starts, X, y, inputs, keys)``.

    It returns the kept draws (draw, chain, size).

    ``keys`` (2, chains, ...) holds each chain's key of its kernel's noise and of its
    minibatches. The data are arguments rather than constants of the program, so
    compiling it does not take longer with more rows.
    """
    import jax

    sampler = _sampler(density, options)
    batch, n = options["batch_size"], density.n
    move = jax.vmap(sampler.step, (0, 0, 0, None, None))

    def program(starts: Any, X: Any, y: Any, inputs: Any, keys: Any) -> Any:
        noise_keys, batch_keys = keys

        def step(carry: Any, inp: Any) -> tuple[Any, None]:
            positions, out = carry
            k, eps, noise, slot = inp
            # rows drawn with replacement, afresh at every step: O(B), whatever n
            # (a shuffle per epoch would cost O(n log n) every n / B steps)
            rows = jax.vmap(
                lambda key: jax.random.randint(jax.random.fold_in(key, k), (batch,), 0, n)
            )(batch_keys)
            step_keys = jax.vmap(jax.random.fold_in, (0, None))(noise_keys, k)
            positions = move(step_keys, positions, (X[rows], y[rows]), eps, noise)
            return (positions, out.at[slot].set(positions, mode="drop")), None

        out = jax.numpy.zeros((draws, *starts.shape), dtype=starts.dtype)
        (_, out), _ = jax.lax.scan(step, (starts, out), inputs)
        return out

    return jax.jit(program)


def _sampler(density: MinibatchDensity, options: dict[str, Any]) -> Any:
    """BlackJAX's SGLD or SGHMC with BlackJAX's minibatch gradient estimator of ``density``."""
    import blackjax
    from blackjax.sgmcmc.gradients import grad_estimator

    def row(x: Any, data: tuple[Any, Any]) -> Any:
        # BlackJAX's estimator maps this over the rows of a batch: a batch of one row
        X_row, y_row = data
        return density.log_likelihood_rows(x, X_row[None], y_row[None]).sum()

    grad = grad_estimator(density.log_prior, row, density.n)
    if options["kernel"] == "sgld":
        return blackjax.sgld(grad)
    return blackjax.sghmc(
        grad, num_integration_steps=options["integration_steps"], alpha=options["friction"]
    )


def _warn_if_not_finite(draws: np.ndarray) -> None:
    """Warn when a chain left the finite values (a step size too large for the curvature)."""
    bad = np.flatnonzero(~np.isfinite(draws).all(axis=(1, 2)))
    if len(bad):
        warnings.warn(
            f"chain(s) {bad.tolist()} of sgmcmc reached non-finite values: the step size is "
            "too large for the posterior's curvature; lower step_size",
            RuntimeWarning,
            stacklevel=3,
        )
