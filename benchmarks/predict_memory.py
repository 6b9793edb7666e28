"""Peak memory of predictions at many rows: ``predict_summary`` against ``predict``.

A 1x16 tanh net fitted by ADVI with 4000 draws; predictions at ``--rows`` new rows
(10^6 by default). Each measurement runs in its own process, whose peak resident
memory (``ru_maxrss``) is read when it ends; the reference is a process that only
loads the fit and the inputs, so the difference is what the prediction itself costs.

    python benchmarks/predict_memory.py                  # 10^6 rows, 4000 draws
    python benchmarks/predict_memory.py --rows 100000

Prints a table and writes ``benchmarks/out/predict_memory.md``.
"""

import argparse
import multiprocessing as mp
import resource
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd

from bnncat import data
from bnncat.models import MLP, load, predict, predict_summary, save

OUT = Path(__file__).parent / "out"


def _measure(task: str, path: str, rows: int, queue: mp.Queue) -> None:
    idata = load(path)
    X_new = np.linspace(-3, 3, rows)[:, None]
    start = time.perf_counter()
    note = ""
    if task == "predict_summary":
        s = predict_summary(idata, X_new, random_seed=0)
        note = f"{s.attrs['row_blocks']} blocks of rows"
    elif task == "predict":
        try:
            pred = predict(idata, X_new, random_seed=0)
            note = f"{pred['predictions']['y'].nbytes / 2**30:.2f} GiB of y draws"
        except ValueError as err:
            note = f"refused: {str(err)[:90]}..."
    seconds = time.perf_counter() - start
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20  # KiB -> GiB
    queue.put({"task": task, "rows": rows, "seconds": seconds, "peak_GiB": peak, "note": note})


def measure(task: str, path: str, rows: int) -> dict:
    """Run one task in a fresh process and return its figures."""
    ctx = mp.get_context("spawn")
    queue = ctx.Queue()
    proc = ctx.Process(target=_measure, args=(task, path, rows, queue))
    proc.start()
    result = queue.get()
    proc.join()
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rows", type=int, default=10**6)
    parser.add_argument("--draws", type=int, default=4000)
    args = parser.parse_args()
    ds = data.load("sine", n=300, noise=0.2, seed=0)
    idata = MLP((16,)).fit(ds.X, ds.y, method="advi", draws=args.draws, random_seed=0)
    with tempfile.TemporaryDirectory() as tmp:
        path = str(save(idata, Path(tmp) / "fit.nc"))
        rows = [measure(t, path, args.rows) for t in ("load only", "predict_summary", "predict")]
    table = pd.DataFrame(rows)
    ref = table.loc[table["task"] == "load only", "peak_GiB"].item()
    table["above_reference_GiB"] = table["peak_GiB"] - ref
    text = table.to_markdown(index=False, floatfmt=".3g")
    print(text)
    OUT.mkdir(exist_ok=True)
    (OUT / "predict_memory.md").write_text(text + "\n")


if __name__ == "__main__":
    main()
