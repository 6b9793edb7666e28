"""How a fit runs its JAX computations: precision, compilation cache and devices.

The context managers change JAX's global settings for the duration of one fit
and put them back afterwards, so that a user's own JAX code in the same session
runs as it would without the catalogue; :func:`over_devices` spreads independent
searches or chains over the host's XLA devices, and :func:`step_each_chain` and
:func:`chains_one_at_a_time` keep a many-chain sampler's work per chain on a CPU.
"""

import glob
import os
import re
import sys
import warnings
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import Any

import numpy as np
from threadpoolctl import threadpool_limits

#: Environment variable naming the folder of the persistent compilation cache, or
#: ``off`` to compile afresh in every fit.
CACHE_ENV = "BNNCAT_JAX_CACHE"
#: Size at which JAX starts to evict the least recently used programs from our cache.
CACHE_MAX_BYTES = 2**30
_OFF = ("off", "0", "false", "no", "none")


def cache_dir() -> Path | None:
    """Folder of the persistent compilation cache: ``$BNNCAT_JAX_CACHE`` or the user's cache.

    ``$XDG_CACHE_HOME/bnncat/jax`` (``~/.cache/bnncat/jax``) by default; ``None``
    when ``BNNCAT_JAX_CACHE`` is ``off``. The folder holds compiled programs that
    JAX loads and runs: like PyTensor's ``~/.pytensor``, it must not be writable
    by anyone you would not let run code as you.
    """
    value = os.environ.get(CACHE_ENV, "").strip()
    if value.lower() in _OFF:
        return None
    if value:
        return Path(value).expanduser()
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "bnncat" / "jax"


def _writable(path: Path) -> bool:
    """Create the cache folder if need be; False where it cannot be written (no cache then)."""
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError:
        return False
    return os.access(path, os.W_OK | os.X_OK)


@contextmanager
def compilation_cache() -> Iterator[None]:
    """Keep the programs XLA compiles in a fit on disk, and load them in later fits.

    A NUTS fit of a small net spends about half its time compiling numpyro's
    sampler and the log density; a later fit of the same model and data (any
    seed, draws unchanged), in this session or a new one, loads them instead
    (README, "Performance", has the figures). PyMC's C
    backend does the same with ``~/.pytensor``. The programs are the ones XLA
    would compile, so the draws are identical with and without the cache.

    A cache folder the user gave JAX (``JAX_COMPILATION_CACHE_DIR``) is used as it
    is; ours is set only inside the fit, and skipped where it cannot be written
    (a read-only home): the fit then compiles as without a cache. Every program
    is cached, however fast it compiled (JAX's default skips quickly compiled
    ones, which are all of ours).
    """
    import jax
    from jax.experimental.compilation_cache import compilation_cache as jax_cache

    path = cache_dir()
    ours = jax.config.jax_compilation_cache_dir is None
    if (
        path is None
        or not jax.config.jax_enable_compilation_cache
        or (ours and not _writable(path))
    ):
        yield
        return
    settings: dict[str, Any] = {
        "jax_persistent_cache_min_compile_time_secs": 0.0,
        "jax_persistent_cache_min_entry_size_bytes": -1,
    }
    if ours:
        settings["jax_compilation_cache_dir"] = str(path)
        if jax.config.jax_compilation_cache_max_size == -1:
            settings["jax_compilation_cache_max_size"] = CACHE_MAX_BYTES
    before = {name: getattr(jax.config, name) for name in settings}
    for name, value in settings.items():
        jax.config.update(name, value)
    try:
        with warnings.catch_warnings(record=True) as caught:
            yield
    finally:
        for name, value in before.items():
            jax.config.update(name, value)
        if ours:  # JAX opens its cache once: let a folder set later by the user take effect
            jax_cache.reset_cache()
        _remove_damaged_entries(caught, Path(jax.config.jax_compilation_cache_dir or path))


#: JAX's warning when a cache entry cannot be read (it then compiles the program afresh).
_DAMAGED = re.compile(r"Error reading persistent compilation cache entry for '([^']+)'")


def _remove_damaged_entries(caught: list[warnings.WarningMessage], folder: Path) -> None:
    """Pass the fit's warnings on; remove the cache entries JAX could not read, and say so.

    JAX recompiles a damaged entry but leaves it in place, so every later fit would
    warn and compile again; without it, the next fit writes a good one.
    """
    damaged = set()
    for w in caught:
        match = _DAMAGED.search(str(w.message))
        if match:
            damaged.add(match.group(1))
        else:
            warnings.warn_explicit(w.message, w.category, w.filename, w.lineno, source=w.source)
    for name in sorted(damaged):
        for entry in folder.glob(f"{glob.escape(name)}-*"):
            entry.unlink(missing_ok=True)
    if damaged:
        warnings.warn(
            f"{len(damaged)} damaged entries of the JAX compilation cache in {folder} were "
            f"compiled afresh and removed ({', '.join(sorted(damaged))})",
            RuntimeWarning,
            stacklevel=3,
        )


_keep_programs = False


def keep_compiled_programs() -> None:
    """Let the fit that is running keep its compiled programs for the next fit of its model.

    NUTS on NumPyro runs one program per model structure and data shapes
    (``inference/numpyro_program.py``): a repeated fit of the model (simulation-based
    calibration, data splits) runs it again, and adds no programs of its own.
    """
    global _keep_programs
    _keep_programs = True


def release_compiled_programs() -> None:
    """Drop the programs JAX keeps compiled in memory, if JAX is in use.

    JAX caches every program it compiles for the life of the process, and a fit's
    programs are specific to its model and data: a small NUTS fit leaves about 200
    memory maps behind, and a process that fits a few hundred times (simulation-based
    calibration, many data sets) dies at Linux's limit of 65530 maps with "LLVM
    compilation error: Cannot allocate memory". The persistent compilation cache on
    disk still serves the next fit of the same model. A fit that called
    :func:`keep_compiled_programs` keeps them: its next fits add none.
    """
    global _keep_programs
    if _keep_programs:
        _keep_programs = False
        return
    if "jax" in sys.modules:
        sys.modules["jax"].clear_caches()


@contextmanager
def jax_precision(precision: str) -> Iterator[None]:
    """Run JAX in float32 (``jax_enable_x64`` off) or leave it as it is (float64)."""
    if precision != "float32":
        yield
        return
    import jax
    import pymc.sampling.jax  # noqa: F401  (PyTensor's JAX backend turns x64 on at import)

    # the global flag, not the thread-local jax.enable_x64 context: numpyro's progress
    # bar calls back into Python from XLA's threads, which must see float32 too
    before = bool(jax.config.jax_enable_x64)
    jax.config.update("jax_enable_x64", False)
    try:
        with warnings.catch_warnings():
            # PyTensor's JAX graphs ask for float64 constants; under float32 JAX gives float32
            warnings.filterwarnings("ignore", "Explicitly requested dtype", UserWarning)
            warnings.filterwarnings("ignore", "scatter inputs have incompatible", FutureWarning)
            yield
    finally:
        jax.config.update("jax_enable_x64", before)


@contextmanager
def jax_session(precision: str) -> Iterator[None]:
    """Everything a fit's JAX computations run under.

    The compilation cache, the precision, PyTensor's translation to JAX without the
    rewrites that slow JAX's gradients (``pymc_internals.jax_translation``), and one
    BLAS thread: XLA's LAPACK calls on a CPU (Cholesky factors, triangular solves)
    run in SciPy's OpenBLAS, whose own threads fight XLA's for the cores (with two
    chains sampling at once, a gradient of the 1x50 integrated-output model on
    ``energy`` took 7-35x as long as with one BLAS thread).
    """
    from bnncat.models.pymc_internals import jax_translation

    with ExitStack() as stack:
        stack.enter_context(compilation_cache())
        stack.enter_context(jax_precision(precision))
        stack.enter_context(jax_translation())
        stack.enter_context(threadpool_limits(1, user_api="blas"))
        yield


def over_devices(run: Any, rows: np.ndarray, args: Any, *, vectorise: bool = True) -> Any:
    """Apply ``run(row, arg)`` to every row of ``rows``: an equal share of rows per XLA device.

    Rows are spread over the host devices (``pmap``) in equal shares, using the
    fewest devices that keep them equal; within a share they run vectorised
    (``vmap``: optimisers, fixed-length samplers) or, with ``vectorise=False``,
    one after another (``lax.map``: NUTS, whose vectorised trees would all take
    the longest one's steps). ``args`` is a pytree with one leading row per row.
    """
    import jax

    n = len(rows)
    share = -(-n // jax.local_device_count())
    devices = -(-n // share)
    pad = devices * share - n

    def split(a: Any) -> Any:
        a = np.concatenate([a, np.repeat(a[-1:], pad, axis=0)]) if pad else np.asarray(a)
        return a.reshape(devices, share, *a.shape[1:])

    within = jax.vmap(run) if vectorise else (lambda r, a: jax.lax.map(lambda ra: run(*ra), (r, a)))
    out = jax.pmap(within)(split(rows), jax.tree.map(split, args))
    return jax.tree.map(lambda a: np.asarray(a).reshape(devices * share, *a.shape[2:])[:n], out)


def on_accelerator() -> bool:
    """Whether JAX computes on an accelerator (a GPU), not on the CPU."""
    import jax

    return jax.default_backend() != "cpu"


def chains_one_at_a_time(log_density: Any) -> Any:
    """``log_density`` whose batched gradient, on a CPU, takes one chain after another.

    Vectorised over hundreds of chains on a CPU, XLA's program for a small net's
    gradient moves (chains, rows, units) arrays through transposes and copies that
    fall out of the cache, where one chain's arrays stay in it (README, "Many chains
    in one program"). Under ``vmap`` this function's value and gradient are computed by
    ``lax.map`` instead, and everything else the sampler does stays vectorised. On
    an accelerator, where the vectorised program is what pays, it is returned as is.
    Reverse-mode differentiable once (what HMC needs); not forward-mode.
    """
    import jax

    if on_accelerator():
        return log_density
    value_and_grad = jax.value_and_grad(log_density)

    @jax.custom_batching.custom_vmap
    def value_and_gradient(x: Any) -> Any:
        return value_and_grad(x)

    @value_and_gradient.def_vmap
    def _one_by_one(axis_size: int, in_batched: list[bool], xs: Any) -> Any:
        if not in_batched[0]:
            return value_and_grad(xs), (False, False)
        return jax.lax.map(value_and_grad, xs), (True, True)

    @jax.custom_vjp
    def density(x: Any) -> Any:
        return value_and_gradient(x)[0]

    def _forward(x: Any) -> Any:
        return value_and_gradient(x)

    def _backward(gradient: Any, cotangent: Any) -> Any:
        return (cotangent * gradient,)

    density.defvjp(_forward, _backward)
    return density


def step_each_chain(step: Any) -> Any:
    """``step(keys, states)`` of every chain: vectorised on an accelerator, one by one on a CPU.

    On a CPU a chain's whole trajectory then runs in the cache, without the
    vectorised program's copies (see :func:`chains_one_at_a_time`).
    """
    import jax

    if on_accelerator():
        return jax.vmap(step)
    return lambda keys, states: jax.lax.map(lambda pair: step(*pair), (keys, states))
