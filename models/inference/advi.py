"""ADVI: draws from a mean-field or full-rank Gaussian fitted to the posterior by PyMC.

Two engines run the same PyMC objective: ``"jax"`` compiles the whole
optimisation loop (``advi_jax``), ``"pymc"`` is ``pm.fit``. Either way the draws
carry their log target and log approximation densities (``sample_stats``:
``log_p``, ``log_q``), from which ``diagnose`` and the LOO of the calibration
table correct for the approximation.
"""

import time
import warnings
from typing import Any

import numpy as np
import pymc as pm
import xarray as xr
from scipy import stats

from bnncat.models.inference.advi_jax import fit_advi_jax
from bnncat.models.inference.advi_start import make_inference, map_start, model_log_density
from bnncat.models.inference.problem import (
    Problem,
    build_model,
    check_precision,
    prepare_problem,
    record_fit,
)
from bnncat.models.inference.registry import register
from bnncat.models.jax_runtime import jax_session
from bnncat.models.pymc_internals import derived_seed, trace_of_draws
from bnncat.models.validation import check_choice, check_positive_float, check_positive_int
from bnncat.thresholds import ADVI_LOSS_DROP

ADVI_INITS = ("map", "pymc")
ADVI_ENGINES = ("jax", "pymc")
#: Adam's step size: at 0.01 full-rank ADVI's loss rose over the run (faithful, 1x8 MLP
#: and MDN; README, "The model grid"), and mean-field ADVI's stalled far above what 0.001
#: reaches on the UCI benchmark's 1x50 nets (README, "UCI regression benchmark").
DEFAULT_LEARNING_RATE = 0.001
#: Draws whose log posterior is computed together (each holds its activations at every row).
DRAWS_AT_ONCE = 64
_REFUSES = {
    "chains": "ADVI fits one distribution: its draws form one chain",
    "tune": "ADVI has no warm-up; set advi_iterations",
}


@register("advi", kind="approximation", refuses=_REFUSES)
def fit_advi(
    net: Any,
    X: object,
    y: object,
    *,
    draws: int = 1000,
    random_seed: int | None = None,
    advi_iterations: int = 30_000,
    learning_rate: float = DEFAULT_LEARNING_RATE,
    advi_init: str = "map",
    advi_engine: str = "jax",
    batch_size: int | None = None,
    precision: str = "auto",
    temperature: float = 1.0,
    store_mu: bool = False,
    progressbar: bool = True,
) -> xr.DataTree:
    """Fit a mean-field Gaussian to the posterior of ``net`` on ``(X, y)`` and draw from it.

    Parameters
    ----------
    net : ModelBuilder
        The model configuration (``MLP``, ``OrderedMLP``, ``MixtureRegressor``).
    X, y : array-like
        Inputs (n, n_features) and targets, as for :func:`bnncat.models.fit`.
    draws : int
        Draws from the fitted approximation (one chain).
    random_seed : int, optional
        Seed of the whole fit; drawn and stored in the attrs when omitted.
    advi_iterations : int
        Optimisation steps.
    learning_rate : float
        Adam's step size.
    advi_init : {"map", "pymc"}
        ``"map"``: means at a MAP estimate found by L-BFGS from a jittered
        initial point, every sd 0.05. ``"pymc"``: PyMC's default (means at the
        initial point, where all weights are zero, sd 1), which on BNNs tends to
        stop in a poor optimum that prunes hidden units and overestimates the
        noise (README, "What is in it").
    advi_engine : {"jax", "pymc"}
        ``"jax"``: BlackJAX's Gaussian VI on PyMC's JAX log density with Optax's
        Adam (on minibatches, PyMC's objective graph), the whole loop compiled
        into one JAX program (README, "Performance"). ``"pymc"``: ``pm.fit``.
    batch_size : int, optional
        Optimise on random minibatches of this many rows, the likelihood scaled
        by ``n / batch_size`` (``pm.Minibatch`` and ``total_size``). The stored fit
        holds the full data; the MAP start still uses the full data once.
    precision : {"auto", "float32", "float64"}
        Precision of the JAX engine: ``"auto"`` is float32 there and float64 with
        ``batch_size`` (minibatch rows are 64-bit indices) or ``advi_engine="pymc"``.
        The posterior is stored in float64 either way.
    temperature : float
        Raise the likelihood to 1 / ``temperature``: below 1 a cold posterior,
        above 1 a warm one; 1 (the default) is the Bayesian posterior itself.
    store_mu : bool
        Keep the network output ``mu`` at the training inputs for every draw.
    progressbar : bool
        Show the optimisation's progress.

    Returns
    -------
    xarray.DataTree
        ``posterior`` (one chain), ``sample_stats`` (``log_p`` and ``log_q`` of each
        draw), ``fit_history`` (the loss per iteration, compile and loop times),
        ``observed_data`` and ``constant_data``; the attrs record the fit (kind
        ``approximation``).

    Examples
    --------
    >>> from bnncat import data
    >>> from bnncat.models import MLP
    >>> from bnncat.models.inference import fit_advi
    >>> ds = data.load("mcycle")
    >>> idata = fit_advi(MLP((8,)), ds.X, ds.y, random_seed=1)  # doctest: +SKIP
    """
    return _fit_gaussian("advi", net, X, y, **_options(locals()))


@register("fullrank_advi", kind="approximation", refuses=_REFUSES)
def fit_fullrank_advi(
    net: Any,
    X: object,
    y: object,
    *,
    draws: int = 1000,
    random_seed: int | None = None,
    advi_iterations: int = 30_000,
    learning_rate: float = DEFAULT_LEARNING_RATE,
    advi_init: str = "map",
    advi_engine: str = "jax",
    batch_size: int | None = None,
    precision: str = "auto",
    temperature: float = 1.0,
    store_mu: bool = False,
    progressbar: bool = True,
) -> xr.DataTree:
    """Fit a full-rank Gaussian to the posterior and draw from it; options as :func:`fit_advi`.

    From a MAP start the Cholesky factor starts at sd 0.05 on its diagonal:
    PyMC's own start swamped the MAP with noise (README, "The model grid").

    Examples
    --------
    >>> from bnncat import data
    >>> from bnncat.models import MLP
    >>> from bnncat.models.inference import fit_fullrank_advi
    >>> ds = data.load("mcycle")
    >>> idata = fit_fullrank_advi(MLP((8,)), ds.X, ds.y, random_seed=1)  # doctest: +SKIP
    """
    return _fit_gaussian("fullrank_advi", net, X, y, **_options(locals()))


def _options(scope: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in scope.items() if k not in ("net", "X", "y")}


def _check_options(options: dict[str, Any]) -> dict[str, Any]:
    """Validate the ADVI options; resolve the precision default."""
    opts = dict(options)
    opts["advi_iterations"] = check_positive_int(opts["advi_iterations"], "advi_iterations")
    opts["learning_rate"] = check_positive_float(opts["learning_rate"], "learning_rate")
    opts["advi_init"] = check_choice(opts["advi_init"], ADVI_INITS, "advi_init")
    opts["advi_engine"] = check_choice(opts["advi_engine"], ADVI_ENGINES, "advi_engine")
    on_jax = opts["advi_engine"] == "jax"
    precision = check_precision(opts["precision"], on_jax=on_jax, engine_hint="advi_engine='jax'")
    if opts["batch_size"] is not None:
        opts["batch_size"] = check_positive_int(opts["batch_size"], "batch_size")
        if precision == "float32":
            raise ValueError(
                "precision='float32' does not work with batch_size: PyTensor's JAX backend "
                "draws the minibatch rows as 64-bit integers"
            )
    if precision == "auto":  # float32 wherever JAX computes, but minibatch rows are 64-bit
        precision = "float32" if on_jax and opts["batch_size"] is None else "float64"
    opts["precision"] = precision
    return opts


def _fit_gaussian(method: str, net: Any, X: object, y: object, **options: Any) -> xr.DataTree:
    """Fit mean-field or full-rank ADVI, draw, and record the fit."""
    opts = _check_options(options)
    problem = prepare_problem(
        net,
        X,
        y,
        draws=opts["draws"],
        random_seed=opts["random_seed"],
        store_mu=opts["store_mu"],
        temperature=opts["temperature"],
    )
    batch_size = opts["batch_size"]
    if batch_size is not None and batch_size > problem.X.shape[0]:
        raise ValueError(
            f"batch_size={batch_size} is larger than the data ({problem.X.shape[0]} rows)"
        )
    start = {}
    if opts["advi_init"] == "map":
        start = map_start(problem.model, method, problem.random_seed)
    # a minibatch copy of the model to optimise on; the draws are of the full model
    train = problem.model
    if batch_size is not None:
        train = build_model(
            net, problem.X, problem.y, problem.spec, problem.temperature, batch_size=batch_size
        )
    opts["precision"] = problem.usable_precision(opts["precision"])
    engine = fit_advi_jax if opts["advi_engine"] == "jax" else _fit_pm
    approx, hist, timing = engine(
        train,
        method,
        opts["advi_iterations"],
        learning_rate=opts["learning_rate"],
        random_seed=problem.random_seed,
        start=start,
        precision=opts["precision"],
        progressbar=opts["progressbar"],
    )
    idata = _draws_of(approx, problem, hist, timing)
    warn_if_loss_falling(np.asarray(hist, dtype=np.float64))
    shared = ("draws", "random_seed", "temperature", "progressbar")
    recorded = {k: v for k, v in opts.items() if k not in shared}
    return record_fit(idata, problem, method, recorded)


def _fit_pm(
    model: pm.Model,
    method: str,
    iterations: int,
    *,
    learning_rate: float,
    random_seed: int,
    start: dict[str, Any],
    precision: str,
    progressbar: bool,
) -> tuple[Any, np.ndarray, dict[str, float]]:
    """``pm.fit``: PyMC calls its compiled step once per iteration (always float64)."""
    first_step: list[float] = []
    t_start = time.perf_counter()
    with model:
        approx = make_inference(model, method, random_seed, start).fit(
            iterations,
            progressbar=progressbar,
            obj_optimizer=pm.adam(learning_rate=learning_rate),
            callbacks=[lambda *_: first_step or first_step.append(time.perf_counter())],
        )
    hist = approx.hist
    # from the end of the first iteration: the compilation and one iteration before
    t_loop = first_step[0] if first_step else t_start
    timing = {
        "compile_seconds": t_loop - t_start,
        "loop_seconds": (time.perf_counter() - t_loop) * len(hist) / max(len(hist) - 1, 1),
    }
    return approx, hist, timing


def warn_if_loss_falling(loss: np.ndarray) -> None:
    """Warn when ADVI's loss still fell over the last tenth of its iterations.

    The mean loss of the last tenth is compared with that of the tenth before; a drop
    of more than :data:`ADVI_LOSS_DROP` nats and three standard errors (the loss is a
    one-draw estimate, noisy from step to step) means the optimiser had not converged.
    """
    tenth = len(loss) // 10
    last, before = loss[-tenth:], loss[-2 * tenth : -tenth]
    last, before = last[np.isfinite(last)], before[np.isfinite(before)]
    if min(len(last), len(before)) < 10:
        return
    drop = before.mean() - last.mean()
    se = np.sqrt(last.var() / len(last) + before.var() / len(before))
    if drop > max(ADVI_LOSS_DROP, 3 * se):
        warnings.warn(
            f"ADVI's loss (the negative ELBO) was still falling: by {drop:.3g} nats from the "
            f"second-last to the last tenth of its {len(loss)} iterations; raise "
            "advi_iterations",
            UserWarning,
            stacklevel=4,
        )


def _draws_of(
    approx: Any, problem: Problem, hist: np.ndarray, timing: dict[str, float]
) -> xr.DataTree:
    """Draw from the approximation; add the log densities of the draws and the loss history."""
    model, draws = problem.model, problem.draws
    idata = _sample_approximation(approx, model, problem.keep, draws, problem.random_seed)
    log_p, log_q = _vi_log_densities(approx, model, idata["posterior"].to_dataset())
    # the log densities of every draw give PSIS k-hat of the approximation (diagnose)
    idata["sample_stats"] = xr.Dataset(
        {"log_p": (("chain", "draw"), log_p[None]), "log_q": (("chain", "draw"), log_q[None])},
        coords={"chain": [0], "draw": np.arange(draws)},
    )
    idata["posterior"] = idata["posterior"].to_dataset()[problem.keep]
    idata["fit_history"] = xr.Dataset(
        {"loss": ("iteration", np.asarray(hist, dtype=np.float64))},
        # wall times of compiling the optimisation step and of running the iterations
        attrs={k: float(v) for k, v in timing.items()},
    )
    return idata


def _vi_log_densities(
    approx: Any, model: pm.Model, posterior: xr.Dataset
) -> tuple[np.ndarray, np.ndarray]:
    """Log target and log approximation density of each ADVI draw, in the unconstrained space.

    ``log_p`` is the model's unnormalised log posterior with the Jacobians of the
    transforms (the density the approximation was fitted to), ``log_q`` the
    Gaussian approximation's density; their difference gives the importance
    ratios whose Pareto k-hat says how far q is from the posterior (Yao et al. 2018).
    """
    (group,) = approx.groups  # pm.fit approximates all free variables jointly
    draws = posterior.sizes["draw"]
    names = sorted(group.ordering, key=lambda n: group.ordering[n][1].start)
    flat = np.concatenate([posterior[n].values[0].reshape(draws, -1) for n in names], axis=1)
    mean = group.mean.eval()
    if hasattr(group, "L"):  # full rank; from the Cholesky factor, since L Lᵀ of a nearly
        # flat direction fails SciPy's positive-definiteness check (full-rank ADVI, mixtures)
        cov = stats.Covariance.from_cholesky(np.asarray(group.L.eval(), dtype=np.float64))
        log_q = stats.multivariate_normal(mean, cov).logpdf(flat)
    else:
        log_q = stats.norm.logpdf(flat, mean, group.std.eval()).sum(axis=1)
    return _log_posterior_of_draws(model, posterior), np.atleast_1d(log_q)


def _log_posterior_of_draws(model: pm.Model, posterior: xr.Dataset) -> np.ndarray:
    """Return the log posterior (with the Jacobians) of each draw of one chain (JAX, float64)."""
    import jax

    log_density = model_log_density(model)
    values = [posterior[v.name].values[0] for v in model.value_vars]
    with jax_session("float64"):
        # a bounded number of draws at a time: all 1000 at once held every draw's hidden
        # activations at every row (7 GB on power-plant's 8611 rows at 1x50)
        each = jax.jit(
            lambda vs: jax.lax.map(lambda v: log_density(list(v)), vs, batch_size=DRAWS_AT_ONCE)
        )
        log_p = each(values)
    return np.asarray(log_p, dtype=np.float64)


def _sample_approximation(
    approx: Any, model: pm.Model, keep: list[str], draws: int, random_seed: int
) -> xr.DataTree:
    """Draws from a fitted approximation as a DataTree of ``model`` (its full data).

    What ``approx.sample(draws, random_seed, include_transformed=True)`` gives
    (the same draws), except that ``approx`` may belong to a minibatch copy of
    ``model`` with the same free variables, and that only the ``keep``
    variables and the unconstrained values are computed per draw (not ``mu``
    at every training row unless asked for). ``observed_data`` and
    ``constant_data`` come from ``model``.
    """
    samples = approx.sample_dict_fn(draws, random_seed=derived_seed(random_seed))
    names = [model.rvs_to_values[rv].name for rv in model.free_RVs]
    missing = set(names) - set(samples)
    if missing:  # pragma: no cover - the minibatch copy has the same free variables
        raise RuntimeError(f"the approximation has no values for {sorted(missing)}")
    # the kept variables as functions of the values, and the unconstrained values
    # themselves (for the log densities of each draw)
    wanted = set(keep) | set(names)
    record = [v for v in model.unobserved_value_vars if v.name in wanted]
    trace = trace_of_draws(model, record, {name: samples[name] for name in names}, draws)
    return pm.to_inference_data(trace, model=model, log_likelihood=False, include_transformed=True)
