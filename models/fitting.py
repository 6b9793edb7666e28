"""Fitting a catalogue model by NUTS or (full-rank) ADVI into an ArviZ DataTree."""

import importlib.util
import time
import warnings
from pathlib import Path
from typing import Any

import arviz as az
import numpy as np
import pymc as pm
import xarray as xr
from pymc.distributions.transforms import Ordered
from scipy import stats

from bnncat.models.attrs import write_attrs
from bnncat.models.jax_runtime import compilation_cache, jax_session
from bnncat.models.pymc_internals import (
    CHECK_PARAMETER_REWRITE,
    approximation_seed,
    check_versions,
    trace_of_draws,
)
from bnncat.models.validation import check_choice, check_positive_float, check_positive_int
from bnncat.thresholds import MIN_ESS_PER_CHAIN, RHAT_MAX

_PACKAGE_DIR = Path(__file__).resolve().parent
METHODS = ("nuts", "advi", "fullrank_advi")
#: What each method's draws are: several Markov chains, or draws from one fitted
#: distribution. Diagnoses read the kind from the attrs, never the method's name.
METHOD_KINDS = {"nuts": "mcmc", "advi": "approximation", "fullrank_advi": "approximation"}
ADVI_INITS = ("map", "pymc")
#: Adam step sizes by method (full-rank ADVI's noisier gradients need a smaller one).
DEFAULT_LEARNING_RATES = {"advi": 0.01, "fullrank_advi": 0.001}
#: Initial sd of every mean-field factor when ADVI starts from the MAP: BNN practice
#: (small initial variances); PyMC's own default of 1 lets the noise swamp the fit.
ADVI_START_SD = 0.05
#: Smallest log-increment of an ordered variable in ADVI's MAP start (see _advi_start).
ORDERED_START_FLOOR = -5.0
NUTS_SAMPLERS = ("numpyro", "nutpie", "pymc", "blackjax")
#: Chosen by ``benchmarks/nuts_backends.py`` (README, "Choice of NUTS backend"):
#: the most effective samples of the predictions per second on 2 cores.
DEFAULT_NUTS_SAMPLER = "numpyro"
_SAMPLER_PACKAGES = {"numpyro": "numpyro", "nutpie": "nutpie", "blackjax": "blackjax"}
_JAX_SAMPLERS = ("numpyro", "blackjax")
PRECISIONS = ("auto", "float32", "float64")
ADVI_ENGINES = ("jax", "pymc")
#: Rows x free parameters from which the MAP start of ADVI runs on JAX (its
#: compilation pays off only when a gradient is much arithmetic).
LARGE_MODEL_WORK = 100_000
#: Optimisation steps per compiled chunk of the JAX ADVI loop (progress, NaN checks).
ADVI_CHUNK = 1000
#: Training rows at most that fit's convergence check evaluates the network at, evenly
#: spaced in the data's order: R-hat and ESS at thousands of rows can take longer than
#: the fit itself (``diagnose`` checks every probe input).
CHECK_ROWS = 200
#: Floats per block of draws when the convergence check evaluates the network (32 MB).
_FORWARD_BLOCK = 2**22


def numpyro_chain_method(chains: int) -> str:
    """How numpyro should run ``chains`` chains on this machine.

    One chain per XLA device when there are enough devices (``bnncat`` asks
    JAX for several CPU host devices at import, see ``bnncat/__init__.py``);
    on a single accelerator the chains are vectorised; otherwise they run one
    after another, which on CPU beats vectorising them (the benchmark in
    ``benchmarks/nuts_backends.py``).
    """
    import jax

    if jax.local_device_count() >= chains:
        return "parallel"
    return "vectorized" if jax.default_backend() != "cpu" else "sequential"


def fit(
    net: Any,
    X: object,
    y: object,
    *,
    method: str = "nuts",
    draws: int = 1000,
    tune: int = 1000,
    chains: int = 4,
    random_seed: int | None = None,
    nuts_sampler: str = DEFAULT_NUTS_SAMPLER,
    target_accept: float = 0.8,
    advi_iterations: int = 30_000,
    learning_rate: float | None = None,
    advi_init: str = "map",
    store_mu: bool = False,
    progressbar: bool = True,
    batch_size: int | None = None,
    precision: str = "auto",
    advi_engine: str = "jax",
) -> xr.DataTree:
    """Fit ``net`` to ``(X, y)`` and return the posterior as an ArviZ DataTree.

    Parameters
    ----------
    net : MLP
        The model configuration.
    X : array-like of shape (n, n_features)
        Inputs.
    y : array-like
        Targets: real values (n,) or (n, n_outputs) for regression, integer
        labels (n,) for classification.
    method : {"nuts", "advi", "fullrank_advi"}
        NUTS, or draws from a mean-field / full-rank Gaussian approximation.
    draws : int
        Draws per chain (NUTS) or from the approximation (ADVI).
    tune : int
        NUTS warm-up iterations per chain.
    chains : int
        NUTS chains. ADVI always gives one chain.
    random_seed : int, optional
        Seed of the whole fit. When omitted one is drawn and stored in the
        attrs, so every fit can be repeated.
    nuts_sampler : {"numpyro", "nutpie", "pymc", "blackjax"}
        NUTS implementation; the default is the fastest measured here.
    target_accept : float
        NUTS target acceptance rate in (0, 1); raise it when there are
        divergences.
    advi_iterations : int
        Optimisation steps for ADVI.
    learning_rate : float, optional
        Adam step size for ADVI: 0.01 for mean-field and 0.001 for full-rank ADVI by
        default. At 0.01 full-rank ADVI's loss rose over the run (faithful, 1x8 MLP
        and MDN; README, "The model grid"), at 0.001 it falls.
    advi_init : {"map", "pymc"}
        Where ADVI starts. ``"map"``: means at a MAP estimate found by
        L-BFGS from a jittered initial point, every sd 0.05. ``"pymc"``:
        PyMC's default (means at the initial point, where all weights are
        zero, sd 1), which on BNNs tends to stop in a poor optimum that prunes
        hidden units and overestimates the noise (README, "What is in it").
    store_mu : bool
        Keep the network output ``mu`` at the training inputs for every draw
        in the posterior (memory: draws x chains x n x outputs). ``predict``
        computes it on demand either way.
    progressbar : bool
        Show progress bars.
    batch_size : int, optional
        ADVI only: optimise on random minibatches of this many rows, the
        likelihood scaled by ``n / batch_size`` (PyMC's ``pm.Minibatch`` and
        ``total_size``), so that the cost of an iteration does not grow with
        ``n``. The stored fit (``constant_data``, ``observed_data``) holds the
        full data, so ``predict`` and the other tools work unchanged. The MAP
        start (``advi_init="map"``) still uses the full data once.
    precision : {"auto", "float32", "float64"}
        Floating point precision of the JAX computations (NUTS on numpyro or
        blackjax, ``advi_engine="jax"``); PyMC's own NUTS, nutpie and
        ``advi_engine="pymc"`` always use float64. ``"auto"``: float32 on
        JAX (NumPyro's own default, and faster: README, "Performance"), float64
        with ``batch_size`` (minibatch rows are 64-bit indices). The posterior is stored in float64
        either way; the draws differ, their distribution does not.
    advi_engine : {"jax", "pymc"}
        ``"jax"``: PyMC's ADVI objective and Adam updates, compiled with the
        whole optimisation loop into one JAX program (faster per iteration
        than ``"pymc"``, the more so the larger the net: README, "Performance").
        ``"pymc"``: ``pm.fit``, which calls a compiled step once per iteration
        from Python.

    Returns
    -------
    xarray.DataTree
        Groups ``posterior``, ``sample_stats`` (NUTS statistics; for ADVI ``log_p`` and
        ``log_q`` of each draw, see ``_vi_log_densities``), ``observed_data``,
        ``constant_data`` and, for ADVI, ``fit_history`` (the loss per
        iteration). The root attrs hold the builder options, the data spec,
        the fit options, the seed and library versions.

    Examples
    --------
    >>> from bnncat import data
    >>> from bnncat.models import MLP
    >>> ds = data.load("mcycle")
    >>> net = MLP(hidden=(8,))
    >>> idata = net.fit(ds.X, ds.y, draws=500, chains=4, random_seed=1)  # doctest: +SKIP
    """
    check_versions()
    method = check_choice(method, METHODS, "method")
    advi_init = check_choice(advi_init, ADVI_INITS, "advi_init")
    nuts_sampler = check_choice(nuts_sampler, NUTS_SAMPLERS, "nuts_sampler")
    draws = check_positive_int(draws, "draws")
    tune = check_positive_int(tune, "tune", minimum=0)
    chains = check_positive_int(chains, "chains")
    advi_iterations = check_positive_int(advi_iterations, "advi_iterations")
    if learning_rate is None:
        learning_rate = DEFAULT_LEARNING_RATES.get(method, DEFAULT_LEARNING_RATES["advi"])
    learning_rate = check_positive_float(learning_rate, "learning_rate")
    target_accept = check_positive_float(target_accept, "target_accept")
    if not target_accept < 1:
        raise ValueError(f"target_accept must lie in (0, 1); got {target_accept}")
    precision = check_choice(precision, PRECISIONS, "precision")
    advi_engine = check_choice(advi_engine, ADVI_ENGINES, "advi_engine")
    on_jax = nuts_sampler in _JAX_SAMPLERS if method == "nuts" else advi_engine == "jax"
    if precision == "float32" and not on_jax:
        raise ValueError(
            "precision='float32' needs a JAX computation (nuts_sampler='numpyro' or "
            "'blackjax', advi_engine='jax'); PyMC's C backend and nutpie run in float64"
        )
    if random_seed is None:
        random_seed = int(np.random.SeedSequence().generate_state(1)[0])
    random_seed = check_positive_int(random_seed, "random_seed", minimum=0)
    package = _SAMPLER_PACKAGES.get(nuts_sampler)
    if method == "nuts" and package and importlib.util.find_spec(package) is None:
        raise ValueError(
            f"nuts_sampler={nuts_sampler!r} needs the {package!r} package, which is not "
            f"installed (pip install {package})"
        )
    if batch_size is not None:
        if method == "nuts":
            raise ValueError(
                "batch_size is for method='advi' or 'fullrank_advi': NUTS needs the full data"
            )
        batch_size = check_positive_int(batch_size, "batch_size")
    X_arr, y_arr, spec = net.data_spec(X, y)
    if batch_size is not None and batch_size > X_arr.shape[0]:
        raise ValueError(f"batch_size={batch_size} is larger than the data ({X_arr.shape[0]} rows)")
    model = net.build_validated(X_arr, y_arr, spec)
    keep = [v.name for v in model.free_RVs + model.deterministics if store_mu or v.name != "mu"]
    if precision == "float32" and batch_size is not None:
        raise ValueError(
            "precision='float32' does not work with batch_size: PyTensor's JAX backend draws "
            "the minibatch rows as 64-bit integers"
        )
    large = X_arr.shape[0] * _n_free_parameters(model) >= LARGE_MODEL_WORK
    if precision == "auto":
        # float32 wherever JAX computes (faster for NUTS and ADVI: README, "Performance"),
        # but minibatch rows are 64-bit indices
        precision = "float32" if on_jax and batch_size is None else "float64"

    if method == "nuts":
        nuts: dict[str, Any] = {"target_accept": target_accept}
        if nuts_sampler == "numpyro":
            nuts["chain_method"] = numpyro_chain_method(chains)
        with jax_session(precision, sampler=True):
            idata = pm.sample(
                draws,
                tune=tune,
                chains=chains,
                random_seed=random_seed,
                model=model,
                nuts_sampler=nuts_sampler,
                nuts=nuts,
                var_names=keep,
                progressbar=progressbar,
                # PyMC's own checks judge raw weights, whose R-hat the symmetries of hidden
                # units inflate even when the chains agree; see warn_if_unconverged.
                compute_convergence_checks=False,
            )
        if precision == "float32":  # stored in float64 like every other fit
            for group in ("posterior", "sample_stats"):
                idata[group] = _as_float64(idata[group].to_dataset())
    else:
        start = {}
        if advi_init == "map":
            with compilation_cache():  # the JAX search of a large problem
                start = _advi_start(model, method, random_seed, large)
        # a minibatch copy of the model to optimise on; the draws are of the full model
        train = model
        if batch_size is not None:
            train = net.build_validated(X_arr, y_arr, spec, batch_size=batch_size)
        if advi_engine == "jax":
            approx, hist, timing = _fit_advi_jax(
                train,
                method,
                advi_iterations,
                learning_rate=learning_rate,
                random_seed=random_seed,
                start=start,
                precision=precision,
                progressbar=progressbar,
            )
        else:
            first_step: list[float] = []
            t_start = time.perf_counter()
            with train:
                approx = _make_inference(train, method, random_seed, start).fit(
                    advi_iterations,
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
        idata = _sample_approximation(approx, model, keep, draws, random_seed)
        log_p, log_q = _vi_log_densities(approx, model, idata["posterior"].to_dataset())
        # the log densities of every draw give PSIS k-hat of the approximation (diagnose)
        idata["sample_stats"] = xr.Dataset(
            {"log_p": (("chain", "draw"), log_p[None]), "log_q": (("chain", "draw"), log_q[None])},
            coords={"chain": [0], "draw": np.arange(draws)},
        )
        idata["posterior"] = idata["posterior"].to_dataset()[keep]
        idata["fit_history"] = xr.Dataset(
            {"loss": ("iteration", np.asarray(hist, dtype=np.float64))},
            # wall times of compiling the optimisation step and of running the iterations
            attrs={k: float(v) for k, v in timing.items()},
        )
    fit_options = {
        "method": method,
        "kind": METHOD_KINDS[method],
        "draws": draws,
        "tune": tune,
        "chains": chains,
        "random_seed": random_seed,
        "nuts_sampler": nuts_sampler if method == "nuts" else None,
        "target_accept": target_accept,
        "advi_iterations": advi_iterations,
        "learning_rate": learning_rate,
        "advi_init": advi_init if method != "nuts" else None,
        "store_mu": store_mu,
        "batch_size": batch_size,
        "precision": precision,
        "advi_engine": advi_engine if method != "nuts" else None,
    }
    write_attrs(idata, net, spec, fit_options)
    if method == "nuts":
        warn_if_unconverged(prediction_convergence(idata, net, spec))
    return idata


def _advi_start(
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
    if method == "advi":  # full-rank ADVI takes no start_sigma (see _make_inference)
        start["start_sigma"] = {
            name: np.full(np.size(v), ADVI_START_SD) for name, v in point.items()
        }
    return start


def _make_inference(model: pm.Model, method: str, random_seed: int, start: dict) -> Any:
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
        value[np.cumsum(np.arange(1, n + 1)) - 1] = np.log(np.expm1(ADVI_START_SD))
        packed.set_value(value)
    return inference


def _floor_log_increments(value: np.ndarray, positive: bool) -> np.ndarray:
    """Raise an ordered variable's log-increments (and log first entry, if positive) to the floor.

    The first entry of an unsigned ordered variable is a location, left as it is.
    """
    out = np.array(value, dtype=np.float64, copy=True)
    first = 0 if positive else 1
    out[..., first:] = np.maximum(out[..., first:], ORDERED_START_FLOOR)
    return out


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
    logp = model.compile_logp(jacobian=True)
    log_p = np.array([logp({n: posterior[n].values[0, i] for n in names}) for i in range(draws)])
    return log_p, np.atleast_1d(log_q)


def _n_free_parameters(model: pm.Model) -> int:
    """Count the scalars the sampler moves (the free variables' values)."""
    return int(sum(np.prod(shape, dtype=int) for shape in model.eval_rv_shapes().values()))


def _as_float64(ds: xr.Dataset) -> xr.Dataset:
    """Cast the float32 variables of a group to float64 (exactly)."""
    return ds.map(lambda da: da.astype(np.float64) if da.dtype == np.float32 else da)


def _fit_advi_jax(
    model: pm.Model,
    method: str,
    iterations: int,
    *,
    learning_rate: float,
    random_seed: int,
    start: dict[str, Any],
    precision: str,
    progressbar: bool,
) -> tuple[Any, np.ndarray]:
    """Run PyMC's (full-rank) ADVI with the optimisation loop compiled by JAX.

    The objective, its gradient and the Adam updates are PyMC's own graph, the
    one ``pm.fit`` compiles into a step function; instead of calling that step
    from Python once per iteration, its JAX translation runs inside
    ``lax.fori_loop`` for ``ADVI_CHUNK`` iterations at a time. Random draws of
    the objective (and of ``pm.Minibatch``) come from JAX's generator, seeded
    from ``random_seed``. Returns the fitted approximation (its parameters set
    to the final values) and the loss per iteration.
    """
    import jax
    import jax.numpy as jnp
    import pytensor.tensor as pt
    from pymc.pytensorf import collect_default_updates, reseed_rngs
    from pytensor.compile import SharedVariable
    from pytensor.compile.mode import JAX as JAX_MODE
    from pytensor.compile.mode import Mode
    from pytensor.graph.fg import FunctionGraph
    from pytensor.graph.replace import clone_replace
    from pytensor.graph.traversal import graph_inputs
    from pytensor.link.jax.dispatch import jax_funcify, jax_typify

    inference = _make_inference(model, method, random_seed, start)
    # the graph pm.fit's step function evaluates (Inference.fit -> step_function)
    objective = inference.objective.updates(obj_optimizer=pm.adam(learning_rate=learning_rate))
    updates = dict(objective)
    rng_updates = collect_default_updates(inputs=[], outputs=[objective.loss, *updates.values()])
    reseed_rngs(list(rng_updates), int(inference.approx.rng.randint(2**30, dtype=np.int64)))
    updates |= rng_updates
    # the state of the loop: parameters, optimiser state, generators; everything else
    # (the data) becomes a constant of the compiled program
    state_vars = list(updates)
    inputs = [v.type() for v in state_vars]
    outputs = clone_replace(
        [objective.loss, *(updates[v] for v in state_vars)],
        replace=dict(zip(state_vars, inputs, strict=True)),
    )
    shared = [v for v in graph_inputs(outputs) if isinstance(v, SharedVariable)]
    outputs = clone_replace(
        outputs, replace={v: pt.constant(v.get_value(borrow=True)) for v in shared}
    )
    graph = FunctionGraph(inputs=inputs, outputs=outputs, clone=True)
    # PyMC's compile turns parameter checks into -inf by this rewrite
    rewrites = JAX_MODE.provided_optimizer.including(CHECK_PARAMETER_REWRITE)
    Mode(linker=JAX_MODE.linker, optimizer=rewrites).optimizer.rewrite(graph)
    params = {id(p) for p in inference.approx.params}

    hist: list[np.ndarray] = []
    with jax_session(precision):
        # inside: the graph's constants (the data) become arrays of this precision
        step = jax_funcify(graph)
        dtype = jnp.float32 if precision == "float32" else jnp.float64

        def as_jax(value: Any) -> Any:
            value = jax_typify(value)
            if isinstance(value, np.ndarray) and value.dtype.kind == "f":
                return jnp.asarray(value, dtype=dtype)
            return value

        state = tuple(as_jax(v.get_value(borrow=True)) for v in state_vars)

        def run(state: tuple, n: Any) -> tuple:
            def body(i: Any, carry: tuple) -> tuple:
                state, losses = carry
                out = step(*state)
                return tuple(out[1:]), losses.at[i].set(out[0].astype(losses.dtype))

            losses = jnp.full(ADVI_CHUNK, jnp.nan, dtype=dtype)
            return jax.lax.fori_loop(0, n, body, (state, losses))

        t_start = time.perf_counter()
        # one program for every chunk: the number of steps is an argument
        run = jax.jit(run).lower(state, np.int32(ADVI_CHUNK)).compile()
        t_loop = time.perf_counter()
        bar = _progress(iterations, progressbar)
        done = 0
        try:
            while done < iterations:
                n = min(ADVI_CHUNK, iterations - done)
                new_state, losses = run(state, np.int32(n))
                losses = np.asarray(losses[:n], dtype=np.float64)
                if np.isnan(losses).any():  # as pm.fit: an infinite loss is tolerated
                    first = done + 1 + int(np.argmax(np.isnan(losses)))
                    raise FloatingPointError(
                        f"NaN ADVI loss at iteration {first}: lower learning_rate, or start "
                        "from advi_init='map'"
                    )
                state = new_state
                hist.append(losses)
                done += n
                bar.update(n, _finite_mean(losses[-min(n, 100) :]))
        except KeyboardInterrupt:  # pragma: no cover - keep what was optimised so far
            pass
        finally:
            bar.close()
    timing = {"compile_seconds": t_loop - t_start, "loop_seconds": time.perf_counter() - t_loop}
    for var, value in zip(state_vars, state, strict=True):
        if id(var) in params:
            var.set_value(np.asarray(value, dtype=var.dtype))
    return inference.approx, np.concatenate(hist) if hist else np.zeros(0), timing


def _finite_mean(values: np.ndarray) -> float:
    finite = values[np.isfinite(values)]
    return float(finite.mean()) if finite.size else float("inf")


class _progress:
    """A tqdm bar over ADVI iterations with the running loss, or nothing."""

    def __init__(self, total: int, show: bool) -> None:
        self.bar = None
        if show:
            from tqdm.auto import tqdm

            self.bar = tqdm(total=total, desc="ADVI")

    def update(self, n: int, loss: float) -> None:
        if self.bar is not None:
            self.bar.set_postfix_str(f"loss = {loss:,.5g}", refresh=False)
            self.bar.update(n)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()


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
    samples = approx.sample_dict_fn(draws, random_seed=approximation_seed(random_seed))
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


def prediction_convergence(idata: xr.DataTree, net: Any, spec: Any) -> dict[str, float]:
    """R-hat and ESS of the network output at the training inputs, and divergences.

    At most ``CHECK_ROWS`` training inputs, evenly spaced in the data's order.

    The network output is invariant to permuting or sign-flipping hidden
    units, so, unlike raw weights, its R-hat says whether the chains agree on
    the function.

    Returns
    -------
    dict
        ``max_rhat``, ``min_ess_bulk``, ``min_ess_tail`` over those inputs and
        all outputs, ``divergences`` and ``chains``.
    """
    post = idata["posterior"]
    X = idata["constant_data"]["X"].values
    X = X[np.unique(np.linspace(0, len(X) - 1, min(len(X), CHECK_ROWS)).round().astype(int))]
    params = {k: post[k].values for k in post.data_vars}
    # in blocks of draws: the hidden activations of all draws at all rows at once would
    # take chains x draws x n x width floats (2 GB for 4 x 1000 draws, N=2000, width 32)
    width = max(*net.hidden, net.head_size(spec))
    block = max(1, _FORWARD_BLOCK // (post.sizes["chain"] * X.shape[0] * width))
    mu = np.concatenate(
        [
            net.forward({k: v[:, i : i + block] for k, v in params.items()}, X, spec)
            for i in range(0, post.sizes["draw"], block)
        ],
        axis=1,
    )
    mu = xr.Dataset({"mu": (("chain", "draw", "obs", "output"), mu)})
    stats = idata["sample_stats"] if "sample_stats" in idata.children else None
    diverging = stats["diverging"] if stats is not None and "diverging" in stats else None
    return {
        "max_rhat": float(az.rhat(mu)["mu"].max()) if post.sizes["chain"] > 1 else float("nan"),
        "min_ess_bulk": float(az.ess(mu, method="bulk")["mu"].min()),
        "min_ess_tail": float(az.ess(mu, method="tail")["mu"].min()),
        "divergences": int(diverging.sum()) if diverging is not None else 0,  # none for ADVI
        "chains": int(post.sizes["chain"]),
    }


def warn_if_unconverged(conv: dict[str, float]) -> None:
    """Warn in plain words when the chains disagree on predictions or diverged."""
    problems = []
    if conv["max_rhat"] > RHAT_MAX:
        problems.append(
            f"R-hat of the predictions at the training inputs is {conv['max_rhat']:.3f} "
            f"(> {RHAT_MAX}): the chains disagree on the fitted function; run longer (tune, draws) "
            "or compare chains"
        )
    if conv["min_ess_bulk"] < MIN_ESS_PER_CHAIN * conv["chains"]:
        problems.append(
            f"the smallest bulk ESS of the predictions is {conv['min_ess_bulk']:.0f}, "
            f"fewer than {MIN_ESS_PER_CHAIN} per chain ({MIN_ESS_PER_CHAIN * conv['chains']} "
            f"for {conv['chains']} chains): "
            "draw more"
        )
    if conv["divergences"]:
        problems.append(
            f"{conv['divergences']} divergent transitions: raise target_accept (e.g. 0.95) "
            "or simplify the prior"
        )
    if problems:
        # point at the user's call, not at a frame inside bnncat.models
        warnings.warn(
            "; ".join(problems) + ".", UserWarning, skip_file_prefixes=(str(_PACKAGE_DIR),)
        )
