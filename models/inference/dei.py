"""DEI-NUTS: short NUTS chains started from the members of a deep ensemble (Sommer et al. 2024).

Many short chains rather than a few long ones: the ensemble's optimisers find the
basins, and each chain, after a short warm-up from its member (which keeps it in
that basin), samples around it. BlackJAX's NUTS with its window adaptation runs on
the JAX log density of the PyMC model, every chain in one compiled program.
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
from bnncat.models.validation import check_positive_float, check_positive_int


@register("dei", kind="mcmc", refuses=REFUSES)
def fit_dei(
    net: Any,
    X: object,
    y: object,
    *,
    members: int = 10,
    chains_per_member: int = 1,
    draws: int = 100,
    tune: int = 100,
    random_seed: int | None = None,
    adam_steps: int = 2000,
    learning_rate: float = LEARNING_RATE,
    maxiter: int = 1000,
    target_accept: float = 0.8,
    max_treedepth: int = 10,
    precision: str = "auto",
    temperature: float = 1.0,
    store_mu: bool = False,
    progressbar: bool = True,
) -> xr.DataTree:
    """Train a deep ensemble on ``(X, y)``, then run NUTS from every member.

    Parameters
    ----------
    net : ModelBuilder
        The model configuration (``MLP``, ``OrderedMLP``, ``MixtureRegressor``).
    X, y : array-like
        Inputs (n, n_features) and targets, as for :func:`bnncat.models.fit`.
    members : int
        Networks trained from prior draws, as ``method="ensemble"`` trains them.
    chains_per_member : int
        NUTS chains started from each member (more than one lets the nested
        R-hat judge the chains of one member against each other).
    draws, tune : int
        Draws and warm-up iterations (step size and diagonal mass matrix) per chain.
    random_seed : int, optional
        Seed of the whole fit.
    adam_steps, learning_rate, maxiter : int, float, int
        The members' training: Adam steps, then at most ``maxiter`` L-BFGS iterations.
    target_accept : float
        NUTS's target acceptance rate in (0, 1).
    max_treedepth : int
        Largest tree depth of NUTS (at most 2**max_treedepth leapfrog steps a draw).
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
        ``posterior`` (chain, draw), ``sample_stats`` (NUTS statistics, ``log_p``),
        ``ensemble`` (each member's training; per chain its member, step size and
        warm-up steps); the attrs record the fit (kind ``mcmc``).

    Examples
    --------
    >>> from bnncat import data
    >>> from bnncat.models import MLP
    >>> from bnncat.models.inference import fit_dei
    >>> ds = data.load("mcycle")
    >>> idata = fit_dei(MLP((8,)), ds.X, ds.y, members=4, random_seed=1)  # doctest: +SKIP
    """
    options = (
        check_member_chains(
            members, chains_per_member, tune, adam_steps, learning_rate, maxiter, precision
        )
        | _check_nuts(target_accept, max_treedepth)
        | {"store_mu": store_mu}
    )
    problem = prepare_problem(
        net, X, y, draws=draws, random_seed=random_seed, store_mu=store_mu, temperature=temperature
    )
    chain = _nuts_chain(problem.draws, options)
    flat, found, run = sample_from_members(problem, options, chain, vectorise=False)
    return chains_as_tree(problem, flat, found, run, "dei", options)


def _check_nuts(target_accept: object, max_treedepth: object) -> dict[str, Any]:
    target_accept = check_positive_float(target_accept, "target_accept")
    if not target_accept < 1:
        raise ValueError(f"target_accept must lie in (0, 1); got {target_accept}")
    return {
        "target_accept": target_accept,
        "max_treedepth": check_positive_int(max_treedepth, "max_treedepth"),
    }


def _nuts_chain(draws: int, options: dict[str, Any]) -> Any:
    """``chain(flat)``: one NUTS chain of ``draws`` after the warm-up, as a JAX function."""

    def chain(flat: FlatModel) -> Any:
        import blackjax
        import jax
        from blackjax.adaptation.base import get_filter_adapt_info_fn

        depth = options["max_treedepth"]

        def run(x0: Any, key: Any) -> tuple[Any, ...]:
            warm_key, key = jax.random.split(key)
            warmup = blackjax.window_adaptation(
                blackjax.nuts,
                flat.log_density,
                target_acceptance_rate=options["target_accept"],
                adaptation_info_fn=get_filter_adapt_info_fn(info_keys={"num_integration_steps"}),
                max_num_doublings=depth,
            )
            (state, params), warm = warmup.run(warm_key, x0, num_steps=options["tune"])
            step = blackjax.nuts(flat.log_density, **params).step

            def one(state: Any, k: Any) -> tuple[Any, tuple[Any, dict[str, Any]]]:
                state, info = step(k, state)
                return state, (state.position, _stats(state, info, depth))

            _, (positions, stats) = jax.lax.scan(one, state, jax.random.split(key, draws))
            tuned = {"step_size": params["step_size"]}
            return positions, stats, tuned, warm.info.num_integration_steps.sum()

        return run

    return chain


def _stats(state: Any, info: Any, depth: int) -> dict[str, Any]:
    """NUTS statistics of one draw, named as PyMC's samplers name them."""
    return {
        "log_p": state.logdensity,
        "diverging": info.is_divergent,
        "acceptance_rate": info.acceptance_rate,
        "energy": info.energy,
        "n_steps": info.num_integration_steps,
        "tree_depth": info.num_trajectory_expansions,
        "reached_max_treedepth": info.num_trajectory_expansions >= depth,
    }
