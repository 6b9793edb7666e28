"""Deep ensembles: networks trained from draws of the prior, each a chain.

Each member starts from its own draw from the prior and is trained as a user
trains a network, Adam then L-BFGS, on the log posterior in the unconstrained
space; all members run in one JAX program
(:func:`~bnncat.models.inference.map_search.find_modes`). Two options make the
ensemble an approximate posterior sample rather than a set of optima:
``anchored=True`` (Pearce et al. 2020) regularises every member towards its own
prior draw instead of the prior's mean, and ``bootstrap=True`` (Lakshminarayanan
et al. 2017 discuss it) weights the observations by a bootstrap resample per member.
With ``gaussian="laplace"`` each member carries the Gaussian of a Laplace fit at its
end point and gives ``draws`` draws from it (a multi-mode Laplace).
"""

from typing import Any

import numpy as np
import pymc as pm
import xarray as xr
from pytensor.graph.traversal import ancestors

from bnncat.models.inference.flat_draws import draw_gaussians, draws_as_tree, prior_flat
from bnncat.models.inference.laplace import fit_gaussians
from bnncat.models.inference.laplace_curvature import HESSIANS, FlatModel, flat_model
from bnncat.models.inference.map_search import LEARNING_RATE, Searches, find_modes
from bnncat.models.inference.problem import Problem, prepare_problem, record_fit
from bnncat.models.inference.registry import register
from bnncat.models.jax_runtime import jax_session
from bnncat.models.validation import check_choice, check_positive_float, check_positive_int

GAUSSIANS = ("none", "laplace")
_REFUSES = {
    "chains": "its chains are its members: set members",
    "tune": "an ensemble has no warm-up; set adam_steps and maxiter",
}


@register("ensemble", kind="ensemble", refuses=_REFUSES)
def fit_ensemble(
    net: Any,
    X: object,
    y: object,
    *,
    members: int = 10,
    draws: int = 1,
    random_seed: int | None = None,
    anchored: bool = False,
    bootstrap: bool = False,
    adam_steps: int = 2000,
    learning_rate: float = LEARNING_RATE,
    maxiter: int = 1000,
    gaussian: str = "none",
    hessian: str = "last_layer",
    temperature: float = 1.0,
    store_mu: bool = False,
    progressbar: bool = True,
) -> xr.DataTree:
    """Train ``members`` networks from draws of the prior on ``(X, y)``; each is a chain.

    Parameters
    ----------
    net : ModelBuilder
        The model configuration (``MLP``, ``OrderedMLP``, ``MixtureRegressor``).
    X, y : array-like
        Inputs (n, n_features) and targets, as for :func:`bnncat.models.fit`.
    members : int
        Networks in the ensemble (chains).
    draws : int
        Draws per member: 1 (the trained network itself) unless ``gaussian`` is set.
    random_seed : int, optional
        Seed of the whole fit (prior draws, bootstrap resamples, Gaussian draws).
    anchored : bool
        Regularise each member towards its own draw from the prior (the start)
        instead of the prior's mean (Pearce et al. 2020): the ensemble then
        approximates a posterior sample. Needs Gaussian priors with fixed sds on
        the weights (``prior="lecun"`` or ``"fixed"``).
    bootstrap : bool
        Train each member on its own bootstrap resample of the rows.
    adam_steps : int
        Adam steps of each member before L-BFGS (0: L-BFGS alone).
    learning_rate : float
        Adam's step size in the unconstrained space.
    maxiter : int
        Largest number of L-BFGS iterations after Adam (``ensemble.converged``
        records which members converged).
    gaussian : {"none", "laplace"}
        ``"laplace"``: draw ``draws`` times from each member's Laplace Gaussian
        (curvature ``hessian``) of the posterior at its end point.
    hessian : {"full", "ggn", "diag", "last_layer"}
        The curvature of those Gaussians (see :func:`fit_laplace`).
    temperature : float
        Raise the likelihood to 1 / ``temperature`` (1: the Bayesian posterior).
    store_mu : bool
        Keep the network output ``mu`` at the training inputs for every draw.
    progressbar : bool
        Unused (one compiled program); accepted like every method's.

    Returns
    -------
    xarray.DataTree
        ``posterior`` (chain = member), ``sample_stats`` (``log_p`` of each draw),
        ``ensemble`` (each member's log posterior, L-BFGS iterations and
        convergence), ``observed_data`` and ``constant_data``; the attrs record
        the fit (kind ``ensemble``).

    Examples
    --------
    >>> from bnncat import data
    >>> from bnncat.models import MLP
    >>> from bnncat.models.inference import fit_ensemble
    >>> ds = data.load("mcycle")
    >>> idata = fit_ensemble(MLP((8,)), ds.X, ds.y, members=5, random_seed=1)  # doctest: +SKIP
    """
    options = _check_options(
        members, adam_steps, learning_rate, maxiter, gaussian, hessian, draws, anchored, bootstrap
    )
    problem = prepare_problem(
        net, X, y, draws=draws, random_seed=random_seed, store_mu=store_mu, temperature=temperature
    )
    seeds = np.random.SeedSequence(problem.random_seed).generate_state(3)
    with jax_session("float64"):
        flat = flat_model(problem.model, problem.temperature)
        found = train_members(problem, flat, members, seeds[:2], **_training(options))
        if gaussian == "laplace":
            draws_flat = draw_gaussians(
                fit_gaussians(flat, found.x, hessian), problem.draws, int(seeds[2])
            )
        else:
            draws_flat = found.x[:, None, :]
        log_p = flat.log_densities(draws_flat)
    idata = draws_as_tree(problem, flat, draws_flat)
    coords = {"chain": np.arange(members), "draw": np.arange(problem.draws)}
    idata["sample_stats"] = xr.Dataset({"log_p": (("chain", "draw"), log_p)}, coords=coords)
    idata["ensemble"] = members_group(flat, found)
    return record_fit(idata, problem, "ensemble", options | {"store_mu": store_mu})


def train_members(
    problem: Problem,
    flat: FlatModel,
    members: int,
    seeds: np.ndarray,
    *,
    anchored: bool = False,
    bootstrap: bool = False,
    adam_steps: int = 2000,
    maxiter: int = 1000,
    learning_rate: float = LEARNING_RATE,
) -> Searches:
    """Train ``members`` networks from prior draws, in one JAX program (two ``seeds``)."""
    starts = prior_flat(problem.model, flat, members, int(seeds[0]))
    args = _member_terms(problem, flat, starts, anchored, bootstrap, int(seeds[1]))
    return find_modes(
        member_objective(flat),
        starts,
        args=args,
        adam_steps=adam_steps,
        maxiter=maxiter,
        learning_rate=learning_rate,
    )


def members_group(flat: FlatModel, found: Searches) -> xr.Dataset:
    """Each member's log posterior, L-BFGS iterations and convergence, by chain."""
    return xr.Dataset(
        {
            "log_posterior": ("chain", flat.log_densities(found.x)),
            "iterations": ("chain", found.iterations),
            "converged": ("chain", found.converged),
        },
        coords={"chain": np.arange(len(found.x))},
    )


def check_training(
    members: object, adam_steps: object, learning_rate: object, maxiter: object
) -> dict[str, Any]:
    """Validate how the members are trained, before any work; return the options as recorded."""
    return {
        "members": check_positive_int(members, "members"),
        "adam_steps": check_positive_int(adam_steps, "adam_steps", minimum=0),
        "learning_rate": check_positive_float(learning_rate, "learning_rate"),
        "maxiter": check_positive_int(maxiter, "maxiter"),
    }


def _training(options: dict[str, Any]) -> dict[str, Any]:
    """Pick the options of :func:`train_members` from a fit's recorded options."""
    names = ("anchored", "bootstrap", "adam_steps", "maxiter", "learning_rate")
    return {name: options[name] for name in names if name in options}


def _check_options(
    members: object,
    adam_steps: object,
    learning_rate: object,
    maxiter: object,
    gaussian: object,
    hessian: object,
    draws: object,
    anchored: object,
    bootstrap: object,
) -> dict[str, Any]:
    """Validate the ensemble's own options before any work; return them as recorded."""
    for value, name in ((anchored, "anchored"), (bootstrap, "bootstrap")):
        if not isinstance(value, bool):
            raise TypeError(f"{name} must be True or False; got {value!r}")
    options = check_training(members, adam_steps, learning_rate, maxiter) | {
        "gaussian": check_choice(gaussian, GAUSSIANS, "gaussian"),
        "hessian": check_choice(hessian, HESSIANS, "hessian"),
        "anchored": anchored,
        "bootstrap": bootstrap,
    }
    if options["gaussian"] == "none" and draws != 1:
        raise ValueError(
            f"draws={draws!r}: an ensemble member is one network (draws=1) unless "
            "gaussian='laplace' gives it a Gaussian to draw from"
        )
    return options


def member_objective(flat: FlatModel) -> Any:
    """Log posterior of one member: bootstrap-weighted likelihood, prior, anchor's tilt."""
    import jax.numpy as jnp

    def objective(x: Any, terms: tuple[Any, Any]) -> Any:
        weights, tilt = terms
        rows = flat.log_likelihood_rows(x)
        rows = jnp.reshape(rows, (rows.shape[0], -1)).sum(axis=1)
        return flat.log_prior(x) + weights @ rows + x @ tilt

    return objective


def _member_terms(
    problem: Any, flat: FlatModel, anchors: np.ndarray, anchored: bool, bootstrap: bool, seed: int
) -> tuple[np.ndarray, np.ndarray]:
    """Each member's weights of the observations and the tilt of its anchor, (members, ...).

    Anchoring replaces a Normal(mu, s) prior on a coordinate by Normal(anchor, s):
    the log density changes by x (anchor - mu) / s^2 plus a constant, a linear tilt.
    """
    members, n = len(anchors), len(problem.y)
    weights = np.ones((members, n))
    if bootstrap:
        rng = np.random.default_rng(seed)
        weights = np.stack([np.bincount(rng.integers(0, n, n), minlength=n) for _ in anchors])
    tilts = np.zeros_like(anchors)
    if anchored:
        mean, precision = _fixed_gaussian_prior(problem.model, flat)
        tilts = (anchors - mean) * precision
    return weights.astype(np.float64), tilts


def _fixed_gaussian_prior(model: pm.Model, flat: FlatModel) -> tuple[np.ndarray, np.ndarray]:
    """Prior mean and precision of every flat coordinate with a fixed Normal prior (else 0).

    Refuses a model whose weights have no such prior (a learned sd, a transform).
    """
    means, precisions = {}, {}
    free = set(model.free_RVs)
    for rv in model.free_RVs:
        name = model.rvs_to_values[rv].name
        shape = flat.shapes[name]
        fixed = (
            rv.owner.op.name == "normal"
            and model.rvs_to_transforms[rv] is None
            and not free & set(ancestors(rv.owner.op.dist_params(rv.owner)))
        )
        if not fixed:
            if name.startswith("W"):
                raise ValueError(
                    f"anchored=True needs a Normal prior with a fixed sd on every weight; "
                    f"{name}'s prior is {rv.owner.op.name} with a learned scale or a "
                    "transform: use a plain MLP with prior='lecun' or 'fixed'"
                )
            means[name], precisions[name] = np.zeros(shape), np.zeros(shape)
            continue
        mu, sd = (np.broadcast_to(p.eval(), shape) for p in rv.owner.op.dist_params(rv.owner))
        means[name], precisions[name] = mu, 1 / sd**2
    return flat.flatten(means), flat.flatten(precisions)
