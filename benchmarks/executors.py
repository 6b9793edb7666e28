"""Independent fits on one worker and on two: local processes and a local Ray (issue 15's target).

``scaling``
    8 independent NUTS fits (1x16 tanh, one chain of 300 + 300 draws) on 8 random
    90/10 splits of ``yacht``, run by ``fit_each`` with ``executor="processes"``
    and ``executor="ray"``, on 1 worker and on 2; each configuration in a fresh
    Python (a Ray started there ends with it), after one warm-up fit per worker
    in it (worker start, Ray start and the workers' first compilation are
    reported apart). The ratio of the 2-worker wall time to the 1-worker one
    (target for Ray: <= 0.6), and the draws of each fit against the in-process
    fits' (they must be identical).

    python benchmarks/executors.py --part scaling
"""

import hashlib
import time

import pandas as pd
from parts import in_fresh_process, run_parts

FITS = 8
OPTIONS = {"method": "nuts", "draws": 300, "tune": 300, "chains": 1, "progressbar": False}


def _datasets(n: int):
    from bnncat import data

    ds = data.load("yacht")
    return [(ds.X[train], ds.y[train]) for train, _ in data.uci_splits("yacht", n_splits=n)]


def _digest(fits) -> str:
    """One hash of every fit's draws, to compare the executors' results exactly."""
    digest = hashlib.sha256()
    for fit in fits:
        for name in sorted(fit["posterior"].data_vars):
            digest.update(fit["posterior"][name].values.tobytes())
    return digest.hexdigest()[:16]


def timed_fits(executor: str, workers: int, fits: int) -> dict:
    """Warm up one fit per worker, then time ``fits`` fits; in this (fresh) process."""
    from bnncat.models import MLP
    from bnncat.models.inference.executors import fit_each

    net, sets = MLP((16,)), _datasets(fits)
    start = time.perf_counter()
    fit_each(net, sets[:workers], executor=executor, workers=workers, random_seed=2, **OPTIONS)
    warm_up = time.perf_counter() - start
    start = time.perf_counter()
    results = fit_each(net, sets, executor=executor, workers=workers, random_seed=1, **OPTIONS)
    return {"warm_up": warm_up, "seconds": time.perf_counter() - start, "digest": _digest(results)}


def part_scaling(quick: bool) -> pd.DataFrame:
    fits = 4 if quick else FITS
    reference = in_fresh_process("executors", "timed_fits", "local", 1, fits)
    rows = [{"executor": "local (this process)", "workers": 1, **reference}]
    for executor in ("processes", "ray"):
        for workers in (1, 2):
            row = in_fresh_process("executors", "timed_fits", executor, workers, fits)
            rows.append({"executor": executor, "workers": workers, **row})
    table = pd.DataFrame(rows)
    one = table.groupby("executor")["seconds"].transform(lambda s: s.iloc[0])
    table["2 workers / 1"] = (table["seconds"] / one).where(table["workers"] == 2)
    table["same draws as local"] = table["digest"] == reference["digest"]
    return table.drop(columns="digest")


PARTS = {"scaling": part_scaling}


def main() -> None:
    run_parts(__doc__.split("\n")[0], "executors", PARTS)


if __name__ == "__main__":
    main()
