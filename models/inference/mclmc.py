"""MILE-style sampling: microcanonical Langevin chains started from ensemble members.

Sommer et al. (ICLR 2025) replace DEI's NUTS by microcanonical Langevin Monte Carlo
(Robnik et al. 2023): a fixed number of gradient evaluations a step and no tree to
build, so every chain moves in lockstep and the chains run vectorised on an
accelerator (a CPU runs them one after another, see ``jax_runtime.chains_one_at_a_time``
for why). BlackJAX's ``mclmc`` runs on the JAX log density of the PyMC model, after
its own tuning of the step size, the momentum decoherence length L and a diagonal
preconditioner. The sampler is unadjusted (no Metropolis correction): its bias is set
by the energy error that the tuning targets.
"""

from typing import Any

import xarray as xr

from bnncat.models.inference.laplace_curvature import FlatModel
from bnncat.models.inference.map_search import LEARNING_RATE
from bnncat.models.inference.member_chains import (
    REFUSES,
    chains_as_tree,
    check_member_chains,
    sample_from_members,
)
from bnncat.models.inference.problem import prepare_problem
from bnncat.models.inference.registry import register
from bnncat.models.jax_runtime import on_accelerator
from bnncat.models.validation import check_positive_int

#: Gradient evaluations per MCLMC step (BlackJAX's default integrator, McLachlan's).
GRADIENTS_PER_STEP = 2


@register("mclmc", kind="mcmc", refuses=REFUSES)
def fit_mclmc(
    net: Any,
    X: object,
    y: object,
    *,
    members: int = 10,
    chains_per_member: int = 1,
    draws: int = 200,
    thin: int = 10,
    tune: int = 2000,
    random_seed: int | None = None,
    adam_steps: int = 2000,
    learning_rate: float = LEARNING_RATE,
    maxiter: int = 1000,
    precision: str = "auto",
    temperature: float = 1.0,
    store_mu: bool = False,
    progressbar: bool = True,
) -> xr.DataTree:
    """Train a deep ensemble on ``(X, y)``, then run microcanonical Langevin from every member.

    Parameters
    ----------
    net : ModelBuilder
        The model configuration (``MLP``, ``OrderedMLP``, ``MixtureRegressor``).
    X, y : array-like
        Inputs (n, n_features) and targets, as for :func:`bnncat.models.fit`.
    members : int
        Networks trained from prior draws, as ``method="ensemble"`` trains them.
    chains_per_member : int
        Chains started from each member (more than one lets the nested R-hat
        judge the chains of one member against each other).
    draws : int
        Draws kept per chain.
    thin : int
        MCLMC steps per kept draw (a step moves little: ``draws * thin`` steps run).
    tune : int
        Steps of BlackJAX's tuning of the step size, L and the preconditioner.
    random_seed : int, optional
        Seed of the whole fit.
    adam_steps, learning_rate, maxiter : int, float, int
        The members' training: Adam steps, then at most ``maxiter`` L-BFGS iterations.
    precision : {"auto", "float32", "float64"}
        Arithmetic of the chains (``"auto"``: float32, as NUTS's default, and
        float64 again, with a warning, where a float32 chain did not move); the
        members are trained in float64 either way, and the draws stored in float64.
    temperature : float
        Raise the likelihood to 1 / ``temperature`` (1: the Bayesian posterior).
    store_mu : bool
        Keep the network output ``mu`` at the training inputs for every draw.
    progressbar : bool
        Unused (one compiled program); accepted like every method's.

    Returns
    -------
    xarray.DataTree
        ``posterior`` (chain, draw), ``sample_stats`` (``log_p``, ``energy_change``,
        ``n_steps``), ``ensemble`` (each member's training; per chain its member,
        tuned step size and L, tuning steps); the attrs record the fit (kind ``mcmc``).

    Examples
    --------
    >>> from bnncat import data
    >>> from bnncat.models import MLP
    >>> from bnncat.models.inference import fit_mclmc
    >>> ds = data.load("mcycle")
    >>> idata = fit_mclmc(MLP((8,)), ds.X, ds.y, members=4, random_seed=1)  # doctest: +SKIP
    """
    options = check_member_chains(
        members, chains_per_member, tune, adam_steps, learning_rate, maxiter, precision
    ) | {"thin": check_positive_int(thin, "thin"), "store_mu": store_mu}
    problem = prepare_problem(
        net, X, y, draws=draws, random_seed=random_seed, store_mu=store_mu, temperature=temperature
    )
    chain = _mclmc_chain(problem.draws, options)
    flat, found, run = sample_from_members(problem, options, chain, vectorise=on_accelerator())
    return chains_as_tree(problem, flat, found, run, "mclmc", options)


def _mclmc_chain(draws: int, options: dict[str, Any]) -> Any:
    """``chain(flat)``: one tuned MCLMC chain of ``draws`` kept draws, as a JAX function."""
    thin, tune = options["thin"], options["tune"]
    steps = draws * thin

    def chain(flat: FlatModel) -> Any:
        import blackjax
        import jax

        def run(x0: Any, key: Any) -> tuple[Any, ...]:
            init_key, tune_key, key = jax.random.split(key, 3)
            state = blackjax.mcmc.mclmc.init(x0, flat.log_density, init_key)
            # BlackJAX's three tuning phases take these fractions of the run's length
            fraction = tune / (3 * steps)
            state, params, tuning_steps = blackjax.mclmc_find_L_and_step_size(
                blackjax.mcmc.mclmc.build_kernel(),
                steps,
                state,
                tune_key,
                logdensity_fn=flat.log_density,
                frac_tune1=fraction,
                frac_tune2=fraction,
                frac_tune3=fraction,
            )
            sampler = blackjax.mclmc(
                flat.log_density,
                L=params.L,
                step_size=params.step_size,
                inverse_mass_matrix=params.inverse_mass_matrix,
            )

            def kept(state: Any, k: Any) -> tuple[Any, tuple[Any, dict[str, Any]]]:
                state, info = jax.lax.scan(
                    lambda s, kk: sampler.step(kk, s), state, jax.random.split(k, thin)
                )
                stats = {
                    "log_p": state.logdensity,
                    "energy_change": info.energy_change[-1],
                    "n_steps": jax.numpy.asarray(thin),
                }
                return state, (state.position, stats)

            _, (positions, stats) = jax.lax.scan(kept, state, jax.random.split(key, draws))
            tuned = {"step_size": params.step_size, "L": params.L}
            return positions, stats, tuned, tuning_steps

        return run

    return chain
