"""ADVI with its whole optimisation loop compiled by JAX (``advi_engine="jax"``).

On the full data, the objective is BlackJAX's mean-field or full-rank Gaussian VI
(the KL estimate of one draw per step, as PyMC's ADVI) on PyMC's JAX log density,
with Optax's Adam; JAX differentiates the log density itself, so an iteration
costs what NumPyro's SVI pays (PyTensor's gradient graph of the objective moved
a third more memory). On minibatches (``pm.Minibatch``, whose rows PyMC's graph
draws) it is PyMC's own objective and Adam graph, translated to JAX. Either way
the loop runs inside ``lax.fori_loop``, ``ADVI_CHUNK`` iterations at a time, and
the result is PyMC's approximation with its parameters set to where it ended.
"""

import time
from collections.abc import Callable
from typing import Any

import numpy as np
import pymc as pm

from bnncat.models.inference.advi_start import make_inference, model_log_density, packed_diagonal
from bnncat.models.inference.progress import Progress
from bnncat.models.jax_runtime import jax_session
from bnncat.models.pymc_internals import CHECK_PARAMETER_REWRITE

#: Optimisation steps per compiled chunk of the loop (progress, NaN checks).
ADVI_CHUNK = 1000


def fit_advi_jax(
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
    """Run (full-rank) ADVI with the optimisation loop compiled by JAX.

    Random draws of the objective (and of ``pm.Minibatch``) come from JAX's
    generator, seeded from ``random_seed``. Returns PyMC's approximation (its
    parameters set to the final values), the loss per iteration and the wall
    times of compiling and of running the loop.
    """
    inference = make_inference(model, method, random_seed, start)
    if _uses_minibatches(model):
        return _fit_pytensor_objective(inference, iterations, learning_rate, precision, progressbar)
    (group,) = inference.approx.groups
    with jax_session(precision):
        step, state = _blackjax_vi(model, group, method, learning_rate, random_seed)
        state, hist, timing = _optimise(step, state, iterations, progressbar)
        _set_params(group, method, state)
    return inference.approx, hist, timing


def _uses_minibatches(model: pm.Model) -> bool:
    """Whether the observed data of ``model`` are ``pm.Minibatch`` draws."""
    from pymc.variational.minibatch_rv import MinibatchRandomVariable

    return any(isinstance(rv.owner.op, MinibatchRandomVariable) for rv in model.observed_RVs)


def _blackjax_vi(
    model: pm.Model, group: Any, method: str, learning_rate: float, random_seed: int
) -> tuple[Callable, Any]:
    """BlackJAX's VI step on the flat log density of ``model``, from PyMC's start ``group``.

    The flat vector is laid out as PyMC's approximation lays it out (``group.ordering``).
    Returns ``step(state, i) -> (state, loss)`` and the initial state.
    """
    import jax
    import jax.numpy as jnp
    import optax
    from blackjax.vi import fullrank_vi, meanfield_vi

    log_density = flat_log_density(model, group)
    optimizer = optax.adam(learning_rate)  # pm.adam's defaults: b1 0.9, b2 0.999, eps 1e-8
    vi, state_type = (
        (meanfield_vi, meanfield_vi.MFVIState)
        if method == "advi"
        else (fullrank_vi, fullrank_vi.FRVIState)
    )
    mu, spread = (jnp.asarray(p) for p in _start_params(group, method))
    state = state_type(mu, spread, optimizer.init((mu, spread)))
    key = jax.random.key(random_seed)

    def step(state: Any, i: Any) -> tuple[Any, Any]:
        # one draw per step, the score term kept: the objective of PyMC's ADVI and NumPyro's SVI
        new, info = vi.step(
            jax.random.fold_in(key, i), state, log_density, optimizer, 1, stl_estimator=False
        )
        return new, info.elbo

    return step, state


def flat_log_density(model: pm.Model, group: Any) -> Callable:
    """JAX log density of ``model`` (with the transforms' Jacobians) on ``group``'s flat layout."""
    logp = model_log_density(model)
    layout = [group.ordering[v.name] for v in model.value_vars]

    def log_density(z: Any) -> Any:
        return logp([z[slc].reshape(shape) for _, slc, shape, _ in layout])

    return log_density


def _start_params(group: Any, method: str) -> tuple[np.ndarray, np.ndarray]:
    """PyMC's start (softplus-scaled sds) as BlackJAX's (log sds on the diagonal)."""
    params = {k: v.get_value() for k, v in group.params_dict.items()}
    mu = params["mu"].astype(np.float64)
    if method == "advi":
        return mu, np.log(_softplus(params["rho"]))
    chol = _pymc_cholesky(params["L_tril"], mu.size)
    lower = np.tril_indices(mu.size, k=-1)
    return mu, np.concatenate([np.log(np.diag(chol)), chol[lower]])


def _set_params(group: Any, method: str, state: Any) -> None:
    """Write BlackJAX's final parameters into PyMC's approximation, in PyMC's parametrisation."""
    params = group.params_dict
    mu = np.asarray(state.mu, dtype=np.float64)
    params["mu"].set_value(mu.astype(params["mu"].dtype))
    if method == "advi":
        rho = _inverse_softplus(np.exp(np.asarray(state.rho, dtype=np.float64)))
        params["rho"].set_value(rho.astype(params["rho"].dtype))
        return
    n = mu.size
    spread = np.asarray(state.chol_params, dtype=np.float64)
    chol = np.diag(np.exp(spread[:n]))
    chol[np.tril_indices(n, k=-1)] = spread[n:]
    packed = chol[np.tril_indices(n)]
    packed[packed_diagonal(n)] = _inverse_softplus(np.diag(chol))  # PyMC's: pre-softplus
    params["L_tril"].set_value(packed.astype(params["L_tril"].dtype))


def _pymc_cholesky(packed: np.ndarray, n: int) -> np.ndarray:
    """PyMC's full-rank Cholesky factor from its packed rows (diagonal through softplus)."""
    chol = np.zeros((n, n))
    chol[np.tril_indices(n)] = packed
    chol[np.diag_indices(n)] = _softplus(np.diag(chol))
    return chol


def _softplus(x: np.ndarray) -> np.ndarray:
    return np.logaddexp(0.0, np.asarray(x, dtype=np.float64))


def _inverse_softplus(y: np.ndarray) -> np.ndarray:
    return y + np.log(-np.expm1(-y))


def _fit_pytensor_objective(
    inference: Any, iterations: int, learning_rate: float, precision: str, progressbar: bool
) -> tuple[Any, np.ndarray, dict[str, float]]:
    """PyMC's objective and Adam graph (minibatches drawn in it), translated to JAX."""
    graph, state_vars = _step_graph(inference, learning_rate)
    with jax_session(precision):
        step, state = _pytensor_step(graph, state_vars, precision)
        state, hist, timing = _optimise(step, state, iterations, progressbar)
    params = {id(p) for p in inference.approx.params}
    for var, value in zip(state_vars, state, strict=True):
        if id(var) in params:
            var.set_value(np.asarray(value, dtype=var.dtype))
    return inference.approx, hist, timing


def _step_graph(inference: Any, learning_rate: float) -> tuple[Any, list[Any]]:
    """Build the graph of one optimisation step as a function of the loop's state.

    The state is the approximation's parameters, the optimiser's state and the
    generators; everything else (the data) becomes a constant of the program.
    """
    import pytensor.tensor as pt
    from pymc.pytensorf import collect_default_updates, reseed_rngs
    from pytensor.compile import SharedVariable
    from pytensor.compile.mode import JAX as JAX_MODE
    from pytensor.compile.mode import Mode
    from pytensor.graph.fg import FunctionGraph
    from pytensor.graph.replace import clone_replace
    from pytensor.graph.traversal import graph_inputs

    # the graph pm.fit's step function evaluates (Inference.fit -> step_function)
    objective = inference.objective.updates(obj_optimizer=pm.adam(learning_rate=learning_rate))
    updates = dict(objective)
    rng_updates = collect_default_updates(inputs=[], outputs=[objective.loss, *updates.values()])
    reseed_rngs(list(rng_updates), int(inference.approx.rng.randint(2**30, dtype=np.int64)))
    updates |= rng_updates
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
    return graph, state_vars


def _pytensor_step(graph: Any, state_vars: list[Any], precision: str) -> tuple[Callable, tuple]:
    """``step(state, i) -> (state, loss)`` of the translated graph, and its initial state."""
    import jax.numpy as jnp
    from pytensor.link.jax.dispatch import jax_funcify, jax_typify

    # inside the session: the graph's constants (the data) become arrays of this precision
    graph_step = jax_funcify(graph)
    dtype = jnp.float32 if precision == "float32" else jnp.float64

    def as_jax(value: Any) -> Any:
        value = jax_typify(value)
        if isinstance(value, np.ndarray) and value.dtype.kind == "f":
            return jnp.asarray(value, dtype=dtype)
        return value

    def step(state: tuple, i: Any) -> tuple[tuple, Any]:
        out = graph_step(*state)
        return tuple(out[1:]), out[0]

    return step, tuple(as_jax(v.get_value(borrow=True)) for v in state_vars)


def _optimise(
    step: Callable, state: Any, iterations: int, progressbar: bool
) -> tuple[Any, np.ndarray, dict[str, float]]:
    """Run ``step`` in compiled chunks; stop with a clear error at a NaN loss.

    Each chunk is queued before the previous one's losses are checked, so the device
    never waits on the check; after a NaN the queued chunk is dropped.
    """
    import jax
    import jax.numpy as jnp

    def run(state: Any, n: Any, done: Any) -> tuple:
        def body(i: Any, carry: tuple) -> tuple:
            state, losses = carry
            state, loss = step(state, done + i)
            return state, losses.at[i].set(loss.astype(losses.dtype))

        losses = jnp.full(ADVI_CHUNK, jnp.nan, dtype=jnp.result_type(float))
        return jax.lax.fori_loop(0, n, body, (state, losses))

    t_start = time.perf_counter()
    # one program for every chunk: the number of steps and the steps done are arguments
    run = jax.jit(run).lower(state, np.int32(ADVI_CHUNK), np.int32(0)).compile()
    t_loop = time.perf_counter()
    sizes = [min(ADVI_CHUNK, iterations - d) for d in range(0, iterations, ADVI_CHUNK)]
    starts = np.cumsum([0, *sizes[:-1]])
    hist: list[np.ndarray] = []
    with Progress(iterations, "ADVI", show=progressbar) as progress:
        try:
            pending = run(state, np.int32(sizes[0]), np.int32(0)) if sizes else None
            for k, (n, done) in enumerate(zip(sizes, starts, strict=True)):
                new_state, losses = pending
                if k + 1 < len(sizes):  # queued before this chunk's check waits for it
                    pending = run(new_state, np.int32(sizes[k + 1]), np.int32(done + n))
                losses = np.asarray(losses, dtype=np.float64)[:n]  # NumPy's slice: no compile
                _check_finite(losses, int(done))
                state = new_state
                hist.append(losses)
                progress.update(n, f"loss = {_finite_mean(losses[-min(n, 100) :]):,.5g}")
        except KeyboardInterrupt:  # pragma: no cover - keep what was optimised so far
            pass
    timing = {"compile_seconds": t_loop - t_start, "loop_seconds": time.perf_counter() - t_loop}
    return state, np.concatenate(hist) if hist else np.zeros(0), timing


def _check_finite(losses: np.ndarray, done: int) -> None:
    """Raise at a NaN loss; as in ``pm.fit``, an infinite loss is tolerated."""
    if np.isnan(losses).any():
        first = done + 1 + int(np.argmax(np.isnan(losses)))
        raise FloatingPointError(
            f"NaN ADVI loss at iteration {first}: lower learning_rate, or start "
            "from advi_init='map'"
        )


def _finite_mean(values: np.ndarray) -> float:
    finite = values[np.isfinite(values)]
    return float(finite.mean()) if finite.size else float("inf")
