"""What a worker process does before anything heavy is imported, and how it runs one task.

A worker of :mod:`bnncat.models.inference.executors` (a local process or a Ray
worker) uses one thread for its linear algebra and XLA, because the executor runs
one worker per core, and its own PyTensor compile directory, because PyTensor's
compilation is not safe to share (pymc#7819). Both must be set before NumPy, JAX
or PyTensor are imported, so this module imports none of them, and tasks arrive
as the name of a function and pickled bytes that are unpickled only afterwards.
"""

import importlib
import os
import pickle
import sys
import tempfile
from pathlib import Path
from typing import Any

#: Environment of a worker: one thread for BLAS, OpenMP and XLA's CPU backend.
ONE_THREAD = {
    "OMP_NUM_THREADS": "1",
    "OPENBLAS_NUM_THREADS": "1",
    "MKL_NUM_THREADS": "1",
    "XLA_FLAGS": "--xla_cpu_multi_thread_eigen=false intra_op_parallelism_threads=1",
}
#: Environment variable naming the folder under which each worker gets a compile folder.
COMPILE_ROOT = "BNNCAT_WORKER_COMPILEDIR"

_slot_lock: Any = None  # held for the life of the worker: its compile folder is its own


def compile_root() -> Path:
    """Folder of the workers' PyTensor compile folders (``$BNNCAT_WORKER_COMPILEDIR``)."""
    given = os.environ.get(COMPILE_ROOT)
    return Path(given) if given else Path(tempfile.gettempdir()) / "bnncat-workers"


def prepare_worker() -> None:
    """Give this process one thread and a compile folder of its own, if nothing is loaded yet.

    The compile folder is the first free slot ``worker-<k>`` under :func:`compile_root`,
    claimed by a lock held while the process lives, so a later worker reuses the compiled
    code of an earlier one without two running at once in one folder.
    """
    global _slot_lock
    for name, value in ONE_THREAD.items():
        os.environ.setdefault(name, value)
    _end_with_parent()
    if _slot_lock is not None or "pytensor" in sys.modules:
        return
    from filelock import FileLock, Timeout

    root = compile_root()
    root.mkdir(parents=True, exist_ok=True)
    for slot in range(4096):
        lock = FileLock(root / f"worker-{slot}.lock")
        try:
            lock.acquire(timeout=0)
        except Timeout:
            continue
        _slot_lock = lock
        flags = os.environ.get("PYTENSOR_FLAGS", "")
        folder = root / f"worker-{slot}"
        os.environ["PYTENSOR_FLAGS"] = ",".join(
            f for f in (flags, f"base_compiledir={folder}") if f
        )
        return


def _end_with_parent() -> None:
    """Ask Linux to end this worker when the process that started it ends.

    A pool is terminated when its call ends, but a parent killed outright (SIGKILL,
    or SIGTERM with no handler) runs no cleanup: without this its workers would run on.
    """
    if not sys.platform.startswith("linux"):
        return
    import ctypes
    import signal

    pr_set_pdeathsig = 1
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(pr_set_pdeathsig, signal.SIGTERM, 0, 0, 0)


def run_task(target: str, payload: bytes) -> bytes:
    """Run ``target`` (``"module:function"``) on pickled keyword arguments; pickle its result."""
    prepare_worker()
    return pickle.dumps(resolve(target)(**pickle.loads(payload)))


def resolve(target: str) -> Any:
    """Import the function ``"module:function"``."""
    module, name = target.split(":")
    return getattr(importlib.import_module(module), name)
