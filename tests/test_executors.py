"""Independent fits here, in local processes and on a local Ray: the same fits wherever they run."""

import os
import subprocess
import sys

import numpy as np
import pytest

from bnncat import data
from bnncat.data import uci_splits
from bnncat.models import MLP
from bnncat.models.attrs import read_fit_options
from bnncat.models.inference.executors import fit_each, run_independent

# tiny fits: the convergence warnings are expected
pytestmark = pytest.mark.filterwarnings("ignore:the smallest bulk ESS:UserWarning")
SMALL = {"method": "nuts", "draws": 30, "tune": 30, "chains": 1, "progressbar": False}


@pytest.fixture(scope="module")
def datasets():
    ds = data.load("yacht")
    return [(ds.X[train], ds.y[train]) for train, _ in data.uci_splits("yacht", n_splits=3)]


@pytest.fixture(scope="module")
def local_fits(datasets):
    return fit_each(MLP((4,)), datasets, executor="local", random_seed=7, **SMALL)


def _weights(fits):
    return [f["posterior"]["W1"].values for f in fits]


def test_processes_give_the_same_fits_as_this_process(datasets, local_fits):
    fits = fit_each(MLP((4,)), datasets, executor="processes", workers=2, random_seed=7, **SMALL)
    for here, there in zip(_weights(local_fits), _weights(fits), strict=True):
        np.testing.assert_array_equal(here, there)
    seeds = [read_fit_options(f)["random_seed"] for f in fits]
    assert len(set(seeds)) == len(seeds)  # one seed each, drawn from random_seed=7
    assert not np.array_equal(_weights(fits)[0], _weights(fits)[1])


def test_ray_on_two_local_workers_gives_the_same_fits(datasets, local_fits):
    pytest.importorskip("ray")
    code = (
        "import pickle, sys\n"
        "from bnncat import data\n"
        "from bnncat.models import MLP\n"
        "from bnncat.models.inference.executors import fit_each\n"
        "ds = data.load('yacht')\n"
        "sets = [(ds.X[t], ds.y[t]) for t, _ in data.uci_splits('yacht', n_splits=3)]\n"
        f"fits = fit_each(MLP((4,)), sets, executor='ray', workers=2, random_seed=7, **{SMALL!r})\n"
        "sys.stdout.buffer.write(pickle.dumps([f['posterior']['W1'].values for f in fits]))\n"
    )
    # its own interpreter: the local Ray it starts ends with it
    env = {k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"}
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, env=env, check=True)
    import pickle

    for here, there in zip(_weights(local_fits), pickle.loads(done.stdout), strict=True):
        np.testing.assert_array_equal(here, there)


def test_a_task_that_fails_in_a_worker_raises_here_and_leaves_no_worker():
    import multiprocessing

    with pytest.raises(ValueError, match="'boom' is not a UCI data set"):
        run_independent(
            "bnncat.data.uci:uci_splits", [{"name": "boom"}], executor="processes", workers=1
        )
    assert multiprocessing.active_children() == []


@pytest.mark.parametrize(
    "kwargs, error, match",
    [
        ({"executor": "threads"}, ValueError, "executor"),
        ({"workers": 0}, ValueError, "workers"),
        ({"method": "nope"}, ValueError, "method"),
        ({"maxiter": 3}, ValueError, "takes no option 'maxiter'"),
        ({"random_seed": [1, 2]}, ValueError, "2 seeds for 3 data sets"),
    ],
)
def test_bad_arguments_fail_before_any_work(kwargs, error, match, datasets):
    options = {"method": "nuts", "draws": 10} | kwargs
    with pytest.raises(error, match=match):
        fit_each(MLP((4,)), datasets, **options)


def test_bad_data_sets_fail_before_any_work(datasets):
    with pytest.raises(ValueError, match="datasets is empty"):
        fit_each(MLP((4,)), [])
    with pytest.raises(TypeError, match=r"datasets\[1\] must be an \(X, y\) pair"):
        fit_each(MLP((4,)), [datasets[0], datasets[0][0]])
    X, y = datasets[0]
    with pytest.raises(ValueError, match="NaN|finite"):
        fit_each(MLP((4,)), [(X, np.where(np.arange(len(y)) == 0, np.nan, y))])


def test_on_result_sees_every_task_once_as_it_finishes():
    tasks = [{"name": "yacht", "n_splits": 1, "seed": s} for s in range(3)]
    seen = {}
    results = run_independent(
        "bnncat.data.uci:uci_splits",
        tasks,
        executor="processes",
        workers=2,
        on_result=lambda i, r: seen.setdefault(i, r),
    )
    assert sorted(seen) == [0, 1, 2]
    for i, result in enumerate(results):
        np.testing.assert_array_equal(seen[i][0][1], result[0][1])
        np.testing.assert_array_equal(result[0][1], uci_splits("yacht", n_splits=1, seed=i)[0][1])


def test_an_error_in_on_result_stops_the_workers():
    import multiprocessing

    def fail(index, result):
        raise RuntimeError("disk full")

    tasks = [{"name": "yacht", "n_splits": 1, "seed": s} for s in range(4)]
    with pytest.raises(RuntimeError, match="disk full"):
        run_independent(
            "bnncat.data.uci:uci_splits", tasks, executor="processes", workers=2, on_result=fail
        )
    assert multiprocessing.active_children() == []
