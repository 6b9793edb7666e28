"""NUTS on NumPyro as one JAX program per model structure, kept for the next fit of its shapes.

PyMC's ``sample_numpyro_nuts`` translates the log density to JAX with the data
written into it, checks the start points in a program of their own, and moves
the draws back and transforms them in more programs: every fit traces and
compiles afresh, though a second fit of the same model (another data set of the
same shapes: simulation-based calibration, data splits) could run the first one's
program. Here the model's data are inputs of the translated log density (what it
computes from the data alone is computed before, in float64), and one jitted
program takes the seed, start points and data, runs NumPyro's ``MCMC`` and returns
the constrained draws, the sampler's statistics and the log density at the start
points. A model whose graph equals (``equal_computations``: the same operations and
constants, the data aside) one translated before reuses its program.

The seed, start points and kernel are those of PyMC's sampler: the draws are the
ones its NUTS makes of the same log density, up to XLA's rounding.
"""

from dataclasses import dataclass
from datetime import datetime
from functools import partial
from typing import Any

import numpy as np
import pymc as pm
import xarray as xr
from pytensor.compile import SharedVariable
from pytensor.graph.basic import equal_computations
from pytensor.graph.replace import clone_replace
from pytensor.graph.traversal import graph_inputs

from bnncat.models.jax_runtime import keep_compiled_programs
from bnncat.models.pymc_internals import derived_seed, jittered_start_points

#: NumPyro state fields kept for ``sample_stats``, under ArviZ's names where they differ.
STAT_FIELDS = {
    "num_steps": "n_steps",
    "potential_energy": "lp",
    "energy": "energy",
    "adapt_state.step_size": "step_size",
    "accept_prob": "acceptance_rate",
    "diverging": "diverging",
}
#: Model structures whose programs are kept; one more clears them all (and JAX's caches).
KEPT_PROGRAMS = 8
#: New start points PyMC draws for a chain whose log density is not finite at its first.
JITTER_RETRIES = 10
_PROGRAMS: list["NutsProgram"] = []  # the most recently used last


@dataclass(eq=False)  # graphs do not compare by ==: a list of these is searched by identity
class ModelData:
    """A model's graphs with the data replaced by inputs, and the data's values."""

    outputs: list[Any]  # the potential (-log p) and the kept variables, before translation
    inputs: list[Any]  # the value variables, then the data
    names: tuple[str, ...]  # value variables' then kept variables' names
    kept: list[str]
    values: list[np.ndarray]


@dataclass(eq=False)
class NutsProgram:
    """The jitted NUTS run of the model it was translated from (its graphs, with data)."""

    model: ModelData
    run: Any  # jitted (seed, start points, data, static options) -> draws, stats, start potential
    potential: Any  # jitted (values, data) -> -log p


def forget_programs() -> None:
    """Drop the kept programs and JAX's compiled ones: the next fit starts as a new session's."""
    import jax

    _PROGRAMS.clear()
    jax.clear_caches()


def held_programs() -> int:
    """Count the model structures whose programs are kept."""
    return len(_PROGRAMS)


def model_with_data_inputs(model: pm.Model, keep: list[str]) -> ModelData:
    """Replace ``model``'s data (``pm.Data`` and observed values) by inputs of its graphs.

    Dim lengths become constants, as in PyMC's translation; a constant computed from
    the data stays a constant, so such a model reuses programs only for equal values.
    """
    import pytensor.tensor as pt
    from pymc.util import get_default_varnames

    kept = list(
        get_default_varnames(
            [v for v in model.unobserved_value_vars if v.name in keep], include_transformed=False
        )
    )
    potential = -model.logp()
    lengths = [v for v in model.dim_lengths.values() if isinstance(v, SharedVariable)]
    replace: dict[Any, Any] = {}
    inputs: list[Any] = []
    values: list[np.ndarray] = []
    for var in graph_inputs([potential, *kept]):
        if not isinstance(var, SharedVariable):
            continue
        if any(var is length for length in lengths):
            replace[var] = pt.constant(var.get_value(borrow=True))
        else:
            replace[var] = var.type(name=var.name)
            inputs.append(replace[var])
            values.append(np.asarray(var.get_value(borrow=True)))
    for rv in model.observed_RVs:
        observed = model.rvs_to_values[rv]
        if hasattr(observed, "data"):  # a constant: the usual observed data
            replace[observed] = observed.type(name=rv.name)
            inputs.append(replace[observed])
            values.append(np.asarray(observed.data))
    outputs = clone_replace([potential, *kept], replace=replace)
    outputs, inputs, values = _computed_from_data(outputs, model.value_vars, inputs, values)
    names = tuple(v.name for v in model.value_vars) + tuple(v.name for v in kept)
    return ModelData(outputs, [*model.value_vars, *inputs], names, [v.name for v in kept], values)


def _computed_from_data(
    outputs: list[Any], value_vars: list[Any], data: list[Any], arrays: list[np.ndarray]
) -> tuple[list[Any], list[Any], list[np.ndarray]]:
    """Make the real numbers the graphs compute from the data alone inputs, computed in float64.

    PyMC's translation folds such terms (the inputs standardised, ``(X - loc) / scale``)
    as constants, in float64 before JAX sees them; left in the program they would be
    computed in the sampler's float32, where inputs of a large offset lose their digits.
    Integers (shapes) stay in the graph: JAX needs them static. Returns the graphs, their
    data inputs (those terms, then the data the graphs still read) and the inputs' values.
    """
    import pytensor
    from pytensor.graph.traversal import io_toposort

    of_values = set(value_vars)
    of_data = set(data)
    uses: list[Any] = []
    for node in io_toposort([*value_vars, *data], outputs):
        if any(i in of_values for i in node.inputs):
            uses.extend(i for i in node.inputs if i in of_data)
            of_values.update(node.outputs)
        elif any(i in of_data for i in node.inputs):
            of_data.update(node.outputs)
    uses.extend(o for o in outputs if o in of_data and o not in of_values)
    terms = [v for v in dict.fromkeys(uses) if v.type.dtype.startswith("float")]
    if not terms:
        return outputs, data, arrays
    computed = pytensor.function(data, terms, mode="FAST_COMPILE", on_unused_input="ignore")
    new_inputs = [v.type(name=v.name) for v in terms]
    outputs = clone_replace(outputs, replace=dict(zip(terms, new_inputs, strict=True)))
    still_read = set(graph_inputs(outputs))
    rest = [(d, a) for d, a in zip(data, arrays, strict=True) if d in still_read]
    return (
        outputs,
        [*new_inputs, *(d for d, _ in rest)],
        [*(np.asarray(a) for a in computed(*arrays)), *(a for _, a in rest)],
    )


def program_for(data: ModelData) -> NutsProgram:
    """Return the kept program of a model equal to ``data``'s, or translate a new one."""
    for program in _PROGRAMS:
        first = program.model
        if first.names == data.names and equal_computations(
            data.outputs, first.outputs, in_xs=data.inputs, in_ys=first.inputs
        ):
            _PROGRAMS.remove(program)
            _PROGRAMS.append(program)
            return program
    if len(_PROGRAMS) >= KEPT_PROGRAMS:  # bound the compiled programs a long session holds
        forget_programs()
    _PROGRAMS.append(_translate(data))
    return _PROGRAMS[-1]


def _translate(data: ModelData) -> NutsProgram:
    """Translate the potential and the kept variables to JAX; wrap them in a jitted run."""
    import jax
    from pymc.sampling.jax import get_jaxified_graph

    potential_fn = get_jaxified_graph(data.inputs, [data.outputs[0]])
    kept_fn = get_jaxified_graph(data.inputs, data.outputs[1:])

    def potential(values: Any, arrays: Any) -> Any:
        return potential_fn(*values, *arrays)[0]

    def constrain(values: Any, arrays: Any) -> Any:
        return kept_fn(*values, *arrays)

    run = jax.jit(
        partial(_run, potential, constrain),
        static_argnames=("tune", "draws", "chains", "target_accept", "chain_method", "progress"),
    )
    return NutsProgram(data, run, jax.jit(potential))


def _run(
    potential: Any,
    constrain: Any,
    seed: Any,
    start: Any,
    arrays: Any,
    *,
    tune: int,
    draws: int,
    chains: int,
    target_accept: float,
    chain_method: str,
    progress: bool,
) -> tuple[Any, Any, Any]:
    """Run NumPyro's NUTS as PyMC does, in one program: draws, statistics, start potential."""
    import jax
    from numpyro.infer import MCMC, NUTS

    key = jax.random.PRNGKey(seed)
    if chains > 1:
        key = jax.random.split(key, chains)
    kernel = NUTS(
        potential_fn=partial(potential, arrays=arrays),
        target_accept_prob=target_accept,
        adapt_step_size=True,
        adapt_mass_matrix=True,
        dense_mass=False,
    )
    mcmc = MCMC(
        kernel,
        num_warmup=tune,
        num_samples=draws,
        num_chains=chains,
        postprocess_fn=None,
        chain_method=chain_method,
        progress_bar=progress,
    )
    mcmc.run(key, init_params=start, extra_fields=tuple(STAT_FIELDS))
    raw = mcmc.get_samples(group_by_chain=True)
    kept = jax.vmap(jax.vmap(lambda v: constrain(v, arrays)))(raw)
    stats = mcmc.get_extra_fields(group_by_chain=True)
    at_start = (
        potential(start, arrays) if chains == 1 else jax.vmap(potential, (0, None))(start, arrays)
    )
    return kept, stats, at_start


def sample_numpyro_program(
    model: pm.Model,
    keep: list[str],
    *,
    draws: int,
    tune: int,
    chains: int,
    random_seed: int,
    target_accept: float,
    chain_method: str,
    progressbar: bool,
) -> xr.DataTree:
    """Sample ``model`` by NumPyro's NUTS, as ``pymc.sampling.jax.sample_numpyro_nuts`` does.

    Call within the fit's :func:`~bnncat.models.jax_runtime.jax_session`. The start
    points are PyMC's jittered ones for ``random_seed``; they are checked inside the
    program, and only where the log density is not finite at one are they drawn
    again with PyMC's check, which jitters such a point anew (``SamplingError`` where
    that does not help). NumPyro's progress bar shows where chains run in parallel;
    elsewhere it would step the chains from Python, outside the program.
    """
    data = model_with_data_inputs(model, keep)
    program = program_for(data)
    seed = derived_seed(random_seed)
    start = jittered_start_points(model, chains, seed, lambda _: 0.0, 0)  # checked in the program
    options = {
        "tune": tune,
        "draws": draws,
        "chains": chains,
        "target_accept": float(target_accept),
        "chain_method": chain_method,
        "progress": progressbar and chains > 1 and chain_method == "parallel",
    }
    keep_compiled_programs()
    began = datetime.now()
    kept, stats, at_start = program.run(seed, start, data.values, **options)
    if not np.all(np.isfinite(np.asarray(at_start))):
        start = _checked_start(model, program, data, chains, seed)
        kept, stats, at_start = program.run(seed, start, data.values, **options)
    elapsed = (datetime.now() - began).total_seconds()
    posterior = dict(zip(data.kept, (np.asarray(k) for k in kept), strict=True))
    return _as_datatree(model, posterior, _sample_stats(stats), tune, elapsed)


def _checked_start(
    model: pm.Model, program: NutsProgram, data: ModelData, chains: int, seed: int
) -> Any:
    """Draw PyMC's start points again, each jittered anew where the log density is not finite.

    Raises ``SamplingError`` where it is still not finite after PyMC's retries: the
    values overflow the sampler's precision (PyMC's own check, in float64, passes them).
    """
    import jax
    import jax.numpy as jnp
    from pymc.exceptions import SamplingError

    def potential(values: list[Any]) -> Any:
        return program.potential([jnp.asarray(v) for v in values], data.values)

    start = jittered_start_points(model, chains, seed, potential, JITTER_RETRIES)
    per_chain = [start] if chains == 1 else [[v[c] for v in start] for c in range(chains)]
    bad = [c for c, values in enumerate(per_chain) if not np.isfinite(potential(values))]
    if bad:
        precision = "float64" if jax.config.jax_enable_x64 else "float32"
        raise SamplingError(
            f"the log density is not finite at the start points of chains {bad} in "
            f"{precision}, after {JITTER_RETRIES} new draws each: the data or the prior "
            "scales overflow it; standardise the data (standardize=True) or fit with "
            "precision='float64'"
        )
    return start


def _sample_stats(stats: dict[str, Any]) -> dict[str, np.ndarray]:
    """NumPyro's fields under ArviZ's names, with the tree depth (as PyMC's sampler gives)."""
    out = {STAT_FIELDS[k]: np.asarray(v) for k, v in stats.items()}
    out["tree_depth"] = np.log2(out["n_steps"]).astype(int) + 1
    return out


def _as_datatree(
    model: pm.Model,
    posterior: dict[str, np.ndarray],
    stats: dict[str, np.ndarray],
    tune: int,
    elapsed: float,
) -> xr.DataTree:
    """Return the draws as PyMC's JAX samplers do: coords, dims, data groups and attrs."""
    import numpyro
    from arviz_base import from_dict, make_attrs
    from pymc.backends.arviz import (
        coords_and_dims_for_inferencedata,
        find_constants,
        find_observations,
    )

    groups: dict[str, Any] = {"posterior": posterior, "sample_stats": stats}
    observed = find_observations(model)
    if observed:
        groups["observed_data"] = observed
    constant = find_constants(model)
    if constant:
        groups["constant_data"] = constant
    coords, dims = coords_and_dims_for_inferencedata(model)
    attrs = {"sampling_time": elapsed, "tuning_steps": tune}
    return from_dict(
        data=groups,
        coords=coords,
        dims=dims,
        sample_dims=["chain", "draw"],
        attrs={"posterior": make_attrs(attrs, inference_library=numpyro)},
    )
