"""SWA-Gaussian (Maddox et al. 2019) and MultiSWAG (Wilson & Izmailov 2020).

Each member starts from its own draw from the prior and is pretrained as a deep
ensemble's member is (Adam then L-BFGS,
:func:`~bnncat.models.inference.ensemble.train_members`). From there SGD with
momentum and a constant step size walks on minibatches; the iterate at the end of
every epoch is collected into its mean (the SWA solution), its diagonal second
moment and the deviations of the last ``rank`` iterates from the mean. Each member
is then the Gaussian with that mean and covariance diag / 2 + D D^T / (2 (K - 1)),
and gives ``draws`` draws: one member is SWAG, several are MultiSWAG, an equal
mixture of the members' Gaussians.

A minibatch is the ensemble's per-row weights set to n / B on its rows and 0
elsewhere, so every step evaluates the likelihood of all n rows: the minibatch
gradient's noise, which sets SWAG's spread, is that of real minibatches, while the
cost per step is that of the whole data. At the sizes of this catalogue that is
cheaper than gathering rows; on large data it is not.
"""

from typing import Any

import numpy as np
import xarray as xr

from bnncat.models.inference.ensemble import (
    check_training,
    member_objective,
    train_members,
)
from bnncat.models.inference.flat_draws import draws_as_tree
from bnncat.models.inference.laplace_curvature import FlatModel, flat_model
from bnncat.models.inference.map_search import LEARNING_RATE
from bnncat.models.inference.problem import prepare_problem, record_fit
from bnncat.models.inference.registry import register
from bnncat.models.jax_runtime import jax_session, over_devices
from bnncat.models.validation import check_positive_float, check_positive_int

#: The largest minibatch when ``batch_size`` is not given (fewer rows: all of them).
BATCH_SIZE = 32
#: SGD's constant step size on the mean loss per row, in the unconstrained space, unless
#: the data's curvature makes it unstable (see :func:`default_learning_rate`).
SWAG_LEARNING_RATE = 1e-3
#: The default step's largest share of SGD's stability bound 2 (1 + momentum) / curvature.
STABILITY_SHARE = 0.1
_REFUSES = {
    "chains": "its chains are its members: set members",
    "tune": "SWAG's warm-up is its pretraining: set adam_steps and maxiter",
}


@register("swag", kind="ensemble", refuses=_REFUSES)
def fit_swag(
    net: Any,
    X: object,
    y: object,
    *,
    members: int = 1,
    draws: int = 100,
    random_seed: int | None = None,
    adam_steps: int = 2000,
    maxiter: int = 1000,
    learning_rate: float = LEARNING_RATE,
    swag_learning_rate: float | None = None,
    momentum: float = 0.9,
    swag_epochs: int = 100,
    batch_size: int | None = None,
    rank: int = 20,
    temperature: float = 1.0,
    store_mu: bool = False,
    progressbar: bool = True,
) -> xr.DataTree:
    """Fit SWAG (``members=1``) or MultiSWAG (``members > 1``) to ``(X, y)``; a member is a chain.

    Parameters
    ----------
    net : ModelBuilder
        The model configuration (``MLP``, ``OrderedMLP``, ``MixtureRegressor``).
    X, y : array-like
        Inputs (n, n_features) and targets, as for :func:`bnncat.models.fit`.
    members : int
        SWAG Gaussians, each from its own prior draw (chains); 1 is SWAG. With the
        same seed and pretraining options the members start where
        :func:`fit_ensemble`'s end, so that the two compare member for member.
    draws : int
        Draws from each member's Gaussian.
    random_seed : int, optional
        Seed of the whole fit (prior draws, minibatches, Gaussian draws).
    adam_steps, maxiter, learning_rate : int, int, float
        Pretraining of each member as in :func:`fit_ensemble`: Adam steps of size
        ``learning_rate``, then at most ``maxiter`` L-BFGS iterations.
    swag_learning_rate : float, optional
        SGD's constant step size on the mean loss per row (-log posterior / n):
        larger steps spread the iterates, and so the Gaussian, wider. By default
        1e-3, or a tenth of SGD's stability bound 2 (1 + momentum) / the largest
        curvature of the mean loss at the pretrained members where that is smaller
        (data with little noise); the step taken is recorded with the options.
    momentum : float
        SGD's momentum, in [0, 1).
    swag_epochs : int
        Epochs of SGD after pretraining; the iterate at the end of each is collected.
    batch_size : int, optional
        Rows per minibatch (the last of an epoch may be smaller); by default
        ``min(32, n)``. Must not exceed n.
    rank : int
        Deviations kept, K: the covariance's low-rank part has rank K - 1 at most.
        At least 2 and at most ``swag_epochs``.
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
        ``swag`` (each member's log posterior at its SWA mean and after
        pretraining, the mean sd of its Gaussian and of the iterates, the rank,
        the pretraining's L-BFGS iterations and convergence, and the largest
        curvature of the mean loss at the pretrained point),
        ``observed_data`` and ``constant_data``; the attrs record the fit (kind
        ``ensemble``).

    Examples
    --------
    >>> from bnncat import data
    >>> from bnncat.models import MLP
    >>> from bnncat.models.inference import fit_swag
    >>> ds = data.load("mcycle")
    >>> idata = fit_swag(MLP((8,)), ds.X, ds.y, members=4, random_seed=1)  # doctest: +SKIP
    """
    options = check_training(members, adam_steps, learning_rate, maxiter) | _check_swag(
        swag_learning_rate, momentum, swag_epochs, batch_size, rank
    )
    problem = prepare_problem(
        net, X, y, draws=draws, random_seed=random_seed, store_mu=store_mu, temperature=temperature
    )
    options["batch_size"] = _batch_size(batch_size, len(problem.y))
    seeds = np.random.SeedSequence(problem.random_seed).generate_state(4)
    training = {k: options[k] for k in ("adam_steps", "maxiter", "learning_rate")}
    with jax_session("float64"):
        flat = flat_model(problem.model, problem.temperature)
        found = train_members(problem, flat, options["members"], seeds[:2], **training)
        curvature = largest_curvatures(flat, found.x, len(problem.y))
        if options["swag_learning_rate"] is None:
            options["swag_learning_rate"] = default_learning_rate(curvature, options["momentum"])
        moments = run_swag(flat, found.x, len(problem.y), int(seeds[2]), options)
        draws_flat = draw_swag(*moments, problem.draws, int(seeds[3]))
        log_p = flat.log_densities(draws_flat)
        group = _swag_group(flat, found, moments, curvature)
    idata = draws_as_tree(problem, flat, draws_flat)
    coords = {"chain": np.arange(options["members"]), "draw": np.arange(problem.draws)}
    idata["sample_stats"] = xr.Dataset({"log_p": (("chain", "draw"), log_p)}, coords=coords)
    idata["swag"] = group
    return record_fit(idata, problem, "swag", options | {"store_mu": store_mu})


def _check_swag(
    swag_learning_rate: object,
    momentum: object,
    swag_epochs: object,
    batch_size: object,
    rank: object,
) -> dict[str, Any]:
    """Validate SWAG's own options (``batch_size`` against n later); return them as recorded."""
    if isinstance(momentum, bool) or not isinstance(momentum, int | float | np.number):
        raise TypeError(f"momentum must be a number; got {momentum!r}")
    if not 0 <= momentum < 1:  # NaN fails too
        raise ValueError(f"momentum must be in [0, 1); got {momentum}")
    if batch_size is not None:
        check_positive_int(batch_size, "batch_size")
    epochs = check_positive_int(swag_epochs, "swag_epochs")
    rank = check_positive_int(rank, "rank", minimum=2)  # K - 1 divides the low-rank part
    if rank > epochs:
        raise ValueError(
            f"rank={rank} exceeds swag_epochs={epochs}: SWAG keeps the deviations of the "
            "last `rank` epochs' iterates; lower rank or raise swag_epochs"
        )
    if swag_learning_rate is not None:
        swag_learning_rate = check_positive_float(swag_learning_rate, "swag_learning_rate")
    return {
        "swag_learning_rate": swag_learning_rate,
        "momentum": float(momentum),
        "swag_epochs": epochs,
        "rank": rank,
    }


def _batch_size(batch_size: int | None, n: int) -> int:
    """Return the rows per minibatch: ``batch_size`` if at most ``n``, by default min(32, n)."""
    if batch_size is None:
        return min(BATCH_SIZE, n)
    if batch_size > n:
        raise ValueError(f"batch_size={batch_size} exceeds the {n} rows of the data")
    return int(batch_size)


def largest_curvatures(flat: FlatModel, points: np.ndarray, n: int) -> np.ndarray:
    """Return the largest eigenvalue of the mean loss's Hessian (-log posterior / n) at each point.

    SciPy's Lanczos (``eigsh``) on Hessian-vector products: no Hessian is formed.
    """
    import jax
    import jax.numpy as jnp
    from scipy.sparse.linalg import LinearOperator, eigsh

    objective = member_objective(flat)
    terms = (jnp.ones(n), jnp.zeros(flat.size))
    gradient = jax.grad(lambda v: -objective(v, terms) / n)
    hvp = jax.jit(lambda x, v: jax.jvp(gradient, (x,), (v,))[1])

    def largest(x: np.ndarray) -> float:
        x = jnp.asarray(x)
        hessian = LinearOperator(
            (flat.size, flat.size), matvec=lambda v: np.asarray(hvp(x, jnp.asarray(v.ravel())))
        )
        # a fixed start vector: the same fit gives the same step
        start = np.ones(flat.size)
        return float(eigsh(hessian, k=1, which="LA", tol=1e-3, v0=start)[0][0])

    return np.array([largest(x) for x in points])


def default_learning_rate(curvature: np.ndarray, momentum: float) -> float:
    """SWAG's step: 1e-3, or a tenth of SGD's stability bound where that is smaller.

    Heavy-ball SGD on a quadratic diverges for steps above 2 (1 + momentum) / the
    largest curvature; minibatch noise lowers the bound further. The defaults were
    set where 1e-3 is well inside it (a twentieth of it on ``sine``); on data with
    little noise the curvature grows as 1 / sigma^2 (``energy``: the bound is 1.5e-4).
    """
    largest = float(np.max(curvature[np.isfinite(curvature)], initial=0.0))
    if largest <= 0:  # no positive finite curvature: nothing bounds the step
        return SWAG_LEARNING_RATE
    return float(min(SWAG_LEARNING_RATE, STABILITY_SHARE * 2 * (1 + momentum) / largest))


def run_swag(
    flat: FlatModel, starts: np.ndarray, n: int, seed: int, options: dict[str, Any]
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """SGD from every row of ``starts``, all in one JAX program; return each one's moments.

    Returns the SWA means (members, size), the iterates' variances (members, size)
    and the deviations of the last ``rank`` iterates from the mean (members, rank, size).
    """
    keys = np.random.SeedSequence(seed).generate_state(2 * len(starts)).reshape(len(starts), 2)
    moments = over_devices(_member_walk(flat, n, options), starts, keys)
    finite = np.all([np.isfinite(m).reshape(len(starts), -1).all(axis=1) for m in moments], axis=0)
    if not finite.all():
        raise FloatingPointError(
            f"SGD diverged for member(s) {np.flatnonzero(~finite).tolist()} at "
            f"swag_learning_rate={options['swag_learning_rate']}: lower it (SGD is stable "
            "below 2 (1 + momentum) / the largest curvature of the mean loss per row)"
        )
    return moments


def _member_walk(flat: FlatModel, n: int, options: dict[str, Any]) -> Any:
    """One member's walk: ``swag_epochs`` epochs of SGD, an iterate collected after each."""
    import jax
    import jax.numpy as jnp
    import optax

    objective = member_objective(flat)
    sgd = optax.sgd(options["swag_learning_rate"], options["momentum"])
    no_tilt = jnp.zeros(flat.size)

    def step(carry: tuple[Any, Any], weights: Any) -> tuple[tuple[Any, Any], None]:
        x, state = carry
        # the mean loss per row, as networks are trained: the step size does not scale with n
        grad = jax.grad(lambda v: -objective(v, (weights, no_tilt)) / n)(x)
        updates, state = sgd.update(grad, state, x)
        return (optax.apply_updates(x, updates), state), None

    def epoch(carry: tuple[Any, ...], key: Any) -> tuple[tuple[Any, ...], None]:
        x, state, moments = carry
        (x, state), _ = jax.lax.scan(step, (x, state), epoch_weights(key, n, options["batch_size"]))
        return (x, state, collect(moments, x)), None

    def walk(x0: Any, key_data: Any) -> tuple[Any, Any, Any]:
        keys = jax.random.split(jax.random.wrap_key_data(key_data), options["swag_epochs"])
        init = (x0, sgd.init(x0), start_moments(x0, options["rank"]))
        (_, _, moments), _ = jax.lax.scan(epoch, init, keys)
        return finish_moments(moments)

    return walk


def epoch_weights(key: Any, n: int, batch_size: int) -> Any:
    """Return the row weights of one epoch's minibatches, (batches, n): n / |batch| on its rows.

    The rows are shuffled and cut into batches of ``batch_size`` (the last one the
    remainder); each row is in one batch, and every batch's weighted likelihood is
    an unbiased estimate of the whole data's.
    """
    import jax
    import jax.numpy as jnp

    batches = -(-n // batch_size)
    sizes = np.minimum(batch_size, n - batch_size * np.arange(batches))
    position = jnp.argsort(jax.random.permutation(key, n))  # where each row lands
    member = (position // batch_size)[None, :] == jnp.arange(batches)[:, None]
    return member * jnp.asarray(n / sizes)[:, None]


def start_moments(x: Any, rank: int) -> tuple[Any, Any, Any, Any]:
    """Empty running moments: count, sum, sum of squares and a ring of ``rank`` iterates."""
    import jax.numpy as jnp

    return jnp.array(0), jnp.zeros_like(x), jnp.zeros_like(x), jnp.zeros((rank, x.shape[0]))


def collect(moments: tuple[Any, ...], x: Any) -> tuple[Any, Any, Any, Any]:
    """Add the iterate ``x`` to the running moments; it replaces the oldest in the ring."""
    count, total, squares, ring = moments
    return count + 1, total + x, squares + x**2, ring.at[count % ring.shape[0]].set(x)


def finish_moments(moments: tuple[Any, ...]) -> tuple[Any, Any, Any]:
    """Return the SWA mean, the iterates' variance (>= 0) and the deviations from the mean.

    The paper subtracts the running mean at collection to stream; the ring holds the
    iterates themselves, so the deviations are taken from the final mean: with K equal
    to the epochs, D D^T / (K - 1) is the iterates' sample covariance.
    """
    import jax.numpy as jnp

    count, total, squares, ring = moments
    mean = total / count
    variance = jnp.maximum(squares / count - mean**2, 0.0)  # rounding can make it negative
    return mean, variance, ring - mean


def draw_swag(
    mean: np.ndarray, variance: np.ndarray, deviations: np.ndarray, draws: int, seed: int
) -> np.ndarray:
    """Draws (members, draws, size) from each member's Gaussian.

    theta = mean + sqrt(variance / 2) z1 + D z2 / sqrt(2 (K - 1)), z1 and z2 standard
    normal: covariance variance / 2 + D D^T / (2 (K - 1)) (Maddox et al. 2019, eq. 1).
    """
    rng = np.random.default_rng(seed)
    members, rank, size = deviations.shape
    z1 = rng.standard_normal((members, draws, size))
    z2 = rng.standard_normal((members, draws, rank))
    low_rank = np.einsum("mdk,mks->mds", z2, deviations) / np.sqrt(2 * (rank - 1))
    return mean[:, None] + np.sqrt(variance / 2)[:, None] * z1 + low_rank


def _swag_group(
    flat: FlatModel, found: Any, moments: tuple[np.ndarray, ...], curvature: np.ndarray
) -> xr.Dataset:
    """Each member's SWA mean's log posterior, spread, rank, pretraining and curvature."""
    mean, variance, deviations = moments
    rank = deviations.shape[1]
    marginal = variance / 2 + (deviations**2).sum(axis=1) / (2 * (rank - 1))
    return xr.Dataset(
        {
            "log_posterior": ("chain", flat.log_densities(mean)),
            "pretrained_log_posterior": ("chain", flat.log_densities(found.x)),
            "mean_sd": ("chain", np.sqrt(marginal).mean(axis=1)),
            "iterate_mean_sd": ("chain", np.sqrt(variance).mean(axis=1)),
            "rank": ("chain", np.full(len(mean), rank)),
            "iterations": ("chain", found.iterations),
            "converged": ("chain", found.converged),
            "largest_curvature": ("chain", curvature),
        },
        coords={"chain": np.arange(len(mean))},
    )
