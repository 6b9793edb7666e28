"""ADVI with its whole optimisation loop compiled by JAX (``advi_engine="jax"``).

The objective, its gradient and the Adam updates are PyMC's own graph, the one
``pm.fit`` compiles into a step function; instead of calling that step from
Python once per iteration, its JAX translation runs inside ``lax.fori_loop``
for ``ADVI_CHUNK`` iterations at a time.
"""

import time
from typing import Any

import numpy as np
import pymc as pm

from bnncat.models.inference.advi_start import make_inference
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
    """Run PyMC's (full-rank) ADVI with the optimisation loop compiled by JAX.

    Random draws of the objective (and of ``pm.Minibatch``) come from JAX's
    generator, seeded from ``random_seed``. Returns the fitted approximation
    (its parameters set to the final values), the loss per iteration and the
    wall times of compiling and of running the loop.
    """
    inference = make_inference(model, method, random_seed, start)
    graph, state_vars = _step_graph(inference, learning_rate)
    with jax_session(precision):
        state, hist, timing = _optimise(graph, state_vars, iterations, precision, progressbar)
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


def _optimise(
    graph: Any, state_vars: list[Any], iterations: int, precision: str, progressbar: bool
) -> tuple[tuple, np.ndarray, dict[str, float]]:
    """Run the compiled loop in chunks; stop with a clear error at a NaN loss."""
    import jax
    import jax.numpy as jnp
    from pytensor.link.jax.dispatch import jax_funcify, jax_typify

    # inside the session: the graph's constants (the data) become arrays of this precision
    step = jax_funcify(graph)
    dtype = jnp.float32 if precision == "float32" else jnp.float64

    def as_jax(value: Any) -> Any:
        value = jax_typify(value)
        if isinstance(value, np.ndarray) and value.dtype.kind == "f":
            return jnp.asarray(value, dtype=dtype)
        return value

    def run(state: tuple, n: Any) -> tuple:
        def body(i: Any, carry: tuple) -> tuple:
            state, losses = carry
            out = step(*state)
            return tuple(out[1:]), losses.at[i].set(out[0].astype(losses.dtype))

        losses = jnp.full(ADVI_CHUNK, jnp.nan, dtype=dtype)
        return jax.lax.fori_loop(0, n, body, (state, losses))

    state = tuple(as_jax(v.get_value(borrow=True)) for v in state_vars)
    t_start = time.perf_counter()
    # one program for every chunk: the number of steps is an argument
    run = jax.jit(run).lower(state, np.int32(ADVI_CHUNK)).compile()
    t_loop = time.perf_counter()
    hist: list[np.ndarray] = []
    with Progress(iterations, "ADVI", show=progressbar) as progress:
        try:
            while (done := sum(map(len, hist))) < iterations:
                n = min(ADVI_CHUNK, iterations - done)
                new_state, losses = run(state, np.int32(n))
                losses = np.asarray(losses[:n], dtype=np.float64)
                _check_finite(losses, done)
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
