"""Every private PyMC/PyTensor API the catalogue relies on, in one place.

PyMC has no public way to do these things, so each is used here and nowhere else;
``tests/test_pymc_internals.py`` fails, naming the call, when a PyMC or PyTensor
update removes or moves one. :func:`check_versions` warns once when the installed
PyMC is outside the range these calls were checked against.

- ``pymc.util._get_seeds_per_chain``: the seed ``Approximation.sample`` and PyMC's
  JAX NUTS derive from their ``random_seed`` (the catalogue reproduces their draws).
- ``pymc.backends.ndarray.NDArray`` and ``pymc.backends.base.MultiTrace``: a trace
  of chosen variables, filled from draws of a fitted approximation.
- The rewrite ``local_check_parameter_to_ninf_switch`` of PyTensor's
  ``canonicalize`` database (registered by ``pymc.logprob.utils``): PyMC's own
  compile applies it to turn parameter checks into -inf; the JAX ADVI loop asks
  for it by name.
- ``pymc.sampling.jax._get_batched_jittered_initial_points``: the start points of
  PyMC's JAX samplers and their check, which evaluates the log density op by op (see
  :func:`jitted_start_checks`; NUTS on NumPyro draws them by :func:`jittered_start_points`).
- ``pytensor.compile.mode.JAX``: the mode PyMC's ``get_jaxified_graph`` rewrites a
  model's graph with before translating it to JAX (see :func:`jax_translation`).
"""

import warnings
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from typing import Any

import numpy as np

#: PyMC versions (major, minor) whose private APIs below were checked.
CHECKED_PYMC = ((6, 4), (6, 99))
#: The rewrite PyMC's compile applies to parameter checks, looked up by name.
CHECK_PARAMETER_REWRITE = "local_check_parameter_to_ninf_switch"
#: (module, attribute) of every private object used here, for the test that guards them.
PRIVATE_CALLS = (
    ("pymc.util", "_get_seeds_per_chain"),
    ("pymc.backends.ndarray", "NDArray"),
    ("pymc.backends.base", "MultiTrace"),
    ("pymc.sampling.jax", "_get_batched_jittered_initial_points"),
    ("pytensor.compile.mode", "JAX"),
)
#: PyTensor rewrites left out of the translation to JAX. ``local_dot_to_mul`` turns a
#: one-input layer's (n, 1) @ (1, h) into a broadcast product, whose gradient XLA then
#: computes as a product and a reduction instead of one dot: 12% slower per gradient
#: of 1x16 on mcycle, 1.03x the hand-written NumPyro model's without it.
JAX_SLOW_REWRITES = ("local_dot_to_mul",)
_warned = False


def check_versions() -> None:
    """Warn (once) when PyMC is outside the versions whose private APIs were checked."""
    global _warned
    import pymc

    version = tuple(int(p) for p in pymc.__version__.split(".")[:2])
    low, high = CHECKED_PYMC
    if not low <= version <= high and not _warned:
        _warned = True
        warnings.warn(
            f"PyMC {pymc.__version__} is outside the versions bnncat's use of private PyMC "
            f"APIs was checked against ({low[0]}.{low[1]} to {high[0]}.x); run "
            "tests/test_pymc_internals.py",
            UserWarning,
            stacklevel=2,
        )


def derived_seed(random_seed: int) -> int:
    """Derive the seed ``Approximation.sample`` and PyMC's JAX NUTS derive from ``random_seed``.

    The JAX samplers draw their key and their start points from it.
    """
    from pymc.util import _get_seeds_per_chain

    (seed,) = _get_seeds_per_chain(random_seed, 1)
    return int(seed)


def jittered_start_points(
    model: Any, chains: int, seed: int, logp_fn: Any, retries: int
) -> list[np.ndarray]:
    """Draw the jittered start points of PyMC's JAX samplers: one array per value variable.

    Chains first where ``chains`` > 1. ``logp_fn`` (a list of values -> the log density
    or its negative) is evaluated at each; where it is not finite, the chain's point
    is jittered anew, up to ``retries`` times.
    """
    from pymc.sampling.jax import _get_batched_jittered_initial_points

    return _get_batched_jittered_initial_points(
        model=model,
        chains=chains,
        initvals=None,
        random_seed=seed,
        logp_fn=logp_fn,
        jitter_max_retries=retries,
    )


def trace_of_draws(
    model: Any,
    record: list[Any],
    samples: Mapping[str, np.ndarray] | Sequence[Mapping[str, np.ndarray]],
    draws: int,
) -> Any:
    """Fill a PyMC trace of the ``record`` variables from value draws, one chain per mapping."""
    from pymc.backends.base import MultiTrace
    from pymc.backends.ndarray import NDArray

    chains = [samples] if isinstance(samples, Mapping) else list(samples)
    traces = []
    compiled: dict[str, Any] = {}  # every chain's trace shares the first one's function
    for c, chain in enumerate(chains):
        names = list(chain)
        trace = NDArray(
            model=model,
            vars=record,
            test_point={n: np.asarray(chain[n][0]) for n in names},
            **compiled,
        )
        compiled = {"fn": trace.fn, "var_shapes": trace.var_shapes, "var_dtypes": trace.var_dtypes}
        trace.setup(draws=draws, chain=c)
        for i in range(draws):
            trace.record({n: np.asarray(chain[n][i]) for n in names}, in_warmup=False)
        trace.close()
        traces.append(trace)
    return MultiTrace(traces)


@contextmanager
def more_chains_than_draws() -> Iterator[None]:
    """Convert draws to ArviZ without its warning that chains outnumber draws.

    ArviZ takes that for swapped dimensions; an ensemble (one network a chain,
    one draw each) has it by design.
    """
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", "Found chain dimension to be longer", UserWarning)
        yield


@contextmanager
def jitted_start_checks() -> Iterator[None]:
    """Check the jittered start points of PyMC's JAX samplers with one compiled log density.

    PyMC evaluates the log density at each start point eagerly, which compiles
    every operation of the graph as a program of its own: about 2 s of a small
    net's first fit. Jitted, it is one program. The start points, and so the
    draws, are the same.
    """
    import jax
    import pymc.sampling.jax as pymc_jax

    original = pymc_jax._get_batched_jittered_initial_points

    def with_jitted_logp(*args: Any, logp_fn: Any = None, **kwargs: Any) -> Any:
        logp_fn = None if logp_fn is None else jax.jit(logp_fn)
        return original(*args, logp_fn=logp_fn, **kwargs)

    pymc_jax._get_batched_jittered_initial_points = with_jitted_logp
    try:
        yield
    finally:
        pymc_jax._get_batched_jittered_initial_points = original


@contextmanager
def jax_translation() -> Iterator[None]:
    """Translate models to JAX (PyMC's ``get_jaxified_graph``) without ``JAX_SLOW_REWRITES``.

    PyMC rewrites the graph with ``pytensor.compile.mode.JAX``, looked up at each
    call; it is swapped for the mode without those rewrites, and put back after.
    """
    from pytensor.compile import mode

    original = mode.JAX
    mode.JAX = original.excluding(*JAX_SLOW_REWRITES)
    try:
        yield
    finally:
        mode.JAX = original
