"""Independent pieces of work run here, in local processes or on Ray: one result each, in order.

``executor="local"`` runs the pieces one after another in this process;
``"processes"`` in a pool of spawned local processes (no extra dependency);
``"ray"`` as Ray tasks: on the cluster at ``$RAY_ADDRESS`` when it is set, else
on a local Ray started on demand (``pip install "bnn-catalogue[ray]"``). Every
worker has one CPU, one thread and its own PyTensor compile folder
(:mod:`bnncat.workers`). What travels to a worker: the name of the function and
its keyword arguments, pickled (for a fit: the model's configuration, the data
arrays and the options); what comes back: the pickled result. A piece's result
does not depend on where it ran: seeds are fixed before anything is sent.
"""

import contextlib
import multiprocessing
import os
import pickle
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import numpy as np
import xarray as xr

from bnncat.models.inference.dispatch import check_option_names, fit
from bnncat.models.inference.problem import check_seed
from bnncat.models.inference.registry import METHODS
from bnncat.models.validation import check_choice, check_positive_int
from bnncat.workers import ONE_THREAD, prepare_worker, resolve, run_task

EXECUTORS = ("local", "processes", "ray")


def run_independent(
    target: str,
    tasks: Sequence[dict[str, Any]],
    *,
    executor: str = "local",
    workers: int | None = None,
    on_result: Callable[[int, Any], None] | None = None,
) -> list[Any]:
    """Call the function ``target`` (``"module:function"``) once per task's keyword arguments.

    ``workers`` caps the processes (or Ray CPUs of a local Ray started here); by
    default one per task up to the machine's cores. Results come back in task order;
    ``on_result(index, result)``, when given, is called here as each task finishes (in
    the order they finish), so a long run can keep what is done if it is interrupted.
    """
    executor = check_choice(executor, EXECUTORS, "executor")
    if workers is not None:
        workers = check_positive_int(workers, "workers")
    if on_result is not None and not callable(on_result):
        raise TypeError(f"on_result must be callable or None; got {type(on_result).__name__}")
    if not tasks:
        return []
    results: dict[int, Any] = {}
    with contextlib.closing(_finished(target, tasks, executor, workers)) as finished:
        for index, result in finished:  # closed on any error: the workers stop with it
            results[index] = result
            if on_result is not None:
                on_result(index, result)
    return [results[i] for i in range(len(tasks))]


def _finished(
    target: str, tasks: Sequence[dict[str, Any]], executor: str, workers: int | None
) -> Iterator[tuple[int, Any]]:
    """Yield ``(index, result)`` of every task as it finishes."""
    if executor == "local":
        function = resolve(target)
        for index, task in enumerate(tasks):
            yield index, function(**task)
        return
    payloads = [pickle.dumps(task) for task in tasks]
    workers = workers or min(len(tasks), os.cpu_count() or 1)
    if executor == "processes":
        yield from _in_processes(target, payloads, workers)
    else:
        yield from _on_ray(target, payloads, workers)


def fit_each(
    net: Any,
    datasets: Sequence[tuple[object, object]],
    *,
    method: str = "nuts",
    executor: str = "local",
    workers: int | None = None,
    random_seed: int | Sequence[int] | None = None,
    **options: Any,
) -> list[xr.DataTree]:
    """Fit ``net`` by ``method`` to each ``(X, y)`` of ``datasets``, independently.

    For data splits, simulation-based calibration or repeated fits. The method,
    its option names and every data set are checked here, before any work is sent;
    each fit gets its own seed, drawn from ``random_seed`` (an int: one stream for
    all; a sequence: one seed per data set; None: fresh entropy), so the same
    arguments give the same fits whatever ``executor`` runs them.

    Examples
    --------
    >>> from bnncat import data
    >>> from bnncat.models import MLP
    >>> from bnncat.models import fit_each
    >>> splits = data.uci_splits("yacht", n_splits=4)
    >>> ds = data.load("yacht")
    >>> fits = fit_each(MLP((50,)), [(ds.X[tr], ds.y[tr]) for tr, _ in splits],
    ...                 method="advi", executor="processes", random_seed=1)  # doctest: +SKIP
    """
    entry = METHODS[check_choice(method, METHODS, "method")]
    check_option_names(entry, options)
    if not datasets:
        raise ValueError("datasets is empty: give at least one (X, y) pair")
    for i, pair in enumerate(datasets):
        if not isinstance(pair, tuple | list) or len(pair) != 2:
            raise TypeError(f"datasets[{i}] must be an (X, y) pair; got {type(pair).__name__}")
        net.data_spec(*pair)
    seeds = _seeds(random_seed, len(datasets))
    tasks = [
        {"net": net, "X": X, "y": y, "method": method, "options": options | {"random_seed": s}}
        for (X, y), s in zip(datasets, seeds, strict=True)
    ]
    return run_independent(
        "bnncat.models.inference.executors:fit_one", tasks, executor=executor, workers=workers
    )


def fit_one(net: Any, X: object, y: object, method: str, options: dict[str, Any]) -> xr.DataTree:
    """One fit of :func:`fit_each`, as a worker runs it."""
    return fit(net, X, y, method=method, **options)


def _seeds(random_seed: int | Sequence[int] | None, n: int) -> list[int]:
    """One seed per fit: from one int's stream, as given, or fresh."""
    if isinstance(random_seed, Sequence) and not isinstance(random_seed, str):
        if len(random_seed) != n:
            raise ValueError(f"random_seed has {len(random_seed)} seeds for {n} data sets")
        return [check_seed(s) for s in random_seed]
    root = np.random.SeedSequence(check_seed(random_seed))
    return [int(s.generate_state(1)[0]) for s in root.spawn(n)]


@contextlib.contextmanager
def _environment(values: dict[str, str]) -> Iterator[None]:
    """Set environment variables for processes started inside the block, then restore them."""
    before = {k: os.environ.get(k) for k in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for k, v in before.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


def _in_processes(target: str, payloads: list[bytes], workers: int) -> Iterator[tuple[int, Any]]:
    """Run the tasks in spawned processes (a fresh interpreter each: nothing inherited).

    The pool is terminated however the call ends (an error, Ctrl-C), so no worker
    outlives it.
    """
    context = multiprocessing.get_context("spawn")
    with _environment(ONE_THREAD):  # inherited by the workers as they start
        pool = context.Pool(workers, initializer=prepare_worker)
    try:
        jobs = [(i, target, p) for i, p in enumerate(payloads)]
        for index, result in pool.imap_unordered(_indexed_task, jobs, chunksize=1):
            yield index, pickle.loads(result)
        pool.close()
    finally:
        pool.terminate()
        pool.join()


def _indexed_task(job: tuple[int, str, bytes]) -> tuple[int, bytes]:
    """Run one task of a pool; its result with its index (results come back as they finish)."""
    index, target, payload = job
    return index, run_task(target, payload)


def _on_ray(target: str, payloads: list[bytes], workers: int) -> Iterator[tuple[int, Any]]:
    """Run the tasks as Ray tasks of one CPU each, starting a local Ray if none is running."""
    try:
        import ray
    except ImportError as err:
        raise ImportError("executor='ray' needs Ray: pip install 'bnn-catalogue[ray]'") from err
    if not ray.is_initialized():
        address = os.environ.get("RAY_ADDRESS") or None
        ray.init(
            address=address,
            num_cpus=None if address else workers,
            include_dashboard=False,
            log_to_driver=False,
        )
    remote = ray.remote(num_cpus=1, runtime_env={"env_vars": ONE_THREAD})(run_task)
    index = {remote.remote(target, p): i for i, p in enumerate(payloads)}
    pending = list(index)
    try:
        while pending:
            done, pending = ray.wait(pending, num_returns=1)
            yield index[done[0]], pickle.loads(ray.get(done[0]))
    finally:
        for ref in pending:  # an error or Ctrl-C here: nothing keeps running on the workers
            ray.cancel(ref, force=True)
