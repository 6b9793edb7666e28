"""Simulation-based calibration of every model builder under every inference method.

For each (model, method): ``--simulations`` data sets of 20 rows at fixed inputs, each
drawn from the model's prior (``bnncat.evaluation.sbc``), each fitted by the method
through the catalogue's executor (``--executor local | processes | ray``). The table
says, per test quantity, whether its PIT-ECDF stays inside the simultaneous band that
holds all of a model's quantities at 99% jointly (and inside its own 99% band), and for
a failure its shape (posterior too narrow or too wide, too high or too low).
Approximations are expected to fail; how they fail is what the table is for.

    python benchmarks/sbc.py                                   # all: hours on 2 cores
    python benchmarks/sbc.py --models mlp-normal --methods nuts,advi --simulations 300
    python benchmarks/sbc.py --executor processes --workers 2
    python benchmarks/sbc.py --summary-only                    # the table from disk

Each (model, method) is written to ``benchmarks/out/sbc/<model>__<method>.csv`` (one
row per quantity) and ``.nc`` (the PIT values) as it finishes, and skipped when the
command is run again; ``sbc.md`` is the summary, ``sbc_<model>__<method>.png`` the plots.
"""

import argparse
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import xarray as xr

from bnncat.evaluation.sbc import SBCResult, plot_sbc, run_sbc
from bnncat.models import MLP, MixtureRegressor, OrderedMLP

OUT = Path(__file__).resolve().parent / "out" / "sbc"
#: The smallest nets of each builder: one input, two hidden units.
MODELS = {
    "mlp-normal": MLP((2,)),
    "mlp-studentt": MLP((2,), likelihood="studentt"),
    "mlp-bernoulli": MLP((2,), likelihood="bernoulli"),
    "mlp-categorical": MLP((2,), likelihood="categorical", n_classes=3),
    "ordered-mlp": OrderedMLP((2,)),
    "mixture-noise": MixtureRegressor((2,), n_components=2),
    "mixture-mdn": MixtureRegressor((2,), n_components=2, form="mdn"),
}
#: Each method's options: enough draws to rank among, the catalogue's defaults otherwise.
METHODS = {
    "nuts": {"draws": 200, "tune": 300, "chains": 2},
    "advi": {"draws": 200},
    "fullrank_advi": {"draws": 200},
    "laplace": {"draws": 200, "restarts": 2},
    "pathfinder": {"draws": 200},
    "ensemble": {"members": 10},
    "swag": {"draws": 100, "members": 2},
    "sgmcmc": {"draws": 200, "chains": 2},
}
X = np.linspace(-2, 2, 20)[:, None]


def run_one(model: str, method: str, args: argparse.Namespace) -> pd.DataFrame:
    """Run (or read back) one model x method; return its table."""
    stem = OUT / f"{model}__{method}"
    if stem.with_suffix(".csv").exists():
        return pd.read_csv(stem.with_suffix(".csv"))  # finished in an earlier run
    start = time.perf_counter()
    result = run_sbc(
        MODELS[model],
        X,
        method=method,
        simulations=args.simulations,
        random_seed=args.seed,
        executor=args.executor,
        workers=args.workers,
        progressbar=False,
        **METHODS[method],
    )
    seconds = time.perf_counter() - start
    table = result.table.assign(
        model=model, method=method, simulations=args.simulations, seconds=seconds
    )
    result.pit.to_netcdf(stem.with_suffix(".nc"), engine="h5netcdf")
    table.to_csv(stem.with_suffix(".csv"), index=False)
    _plot(result.pit, stem)
    print(f"{model} x {method}: {table['pass'].sum()}/{len(table)} pass, {seconds:.0f} s")
    return table


def _plot(pit: xr.Dataset, stem: Path) -> None:
    """Plot the PIT-ECDFs of the symmetry-invariant quantities (the weights: in the table)."""
    import matplotlib

    matplotlib.use("Agg")
    invariant = [q for q in pit.data_vars if not q.startswith(("W", "b"))]
    result = SBCResult(pit, pd.DataFrame(), "", 0)
    plot_sbc(result, var_names=invariant[:8]).savefig(stem.parent / f"sbc_{stem.name}.png", dpi=80)


def summary(tables: list[pd.DataFrame]) -> str:
    """One row per model x method: passes, failures and the shape of each failure."""
    rows = []
    for t in tables:
        failed = t[~t["pass"].astype(bool)]
        rows.append(
            {
                "model": t["model"].iloc[0],
                "method": t["method"].iloc[0],
                "simulations": int(t["simulations"].iloc[0]),
                "quantities": len(t),
                "inside the joint 99% band": int(t["pass"].sum()),
                "inside their own 99% band": int(t["inside_own_band"].sum()),
                "outside the joint band (ArviZ pot_c p; shape)": "; ".join(
                    f"{row.quantity} ({row.p_pot_c:.3f}; {row.shape})"
                    for row in failed.itertuples()
                )
                or "none",
                "minutes": round(float(t["seconds"].iloc[0]) / 60, 1),
            }
        )
    return pd.DataFrame(rows).to_markdown(index=False)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--models", default=",".join(MODELS))
    parser.add_argument("--methods", default=",".join(METHODS))
    parser.add_argument("--simulations", type=int, default=300)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--executor", default="local")
    parser.add_argument("--workers", type=int)
    parser.add_argument("--summary-only", action="store_true")
    args = parser.parse_args()
    models, methods = args.models.split(","), args.methods.split(",")
    unknown = sorted(set(models) - set(MODELS)) + sorted(set(methods) - set(METHODS))
    if unknown:
        print(f"unknown models or methods: {unknown}", file=sys.stderr)
        return 2
    OUT.mkdir(parents=True, exist_ok=True)
    tables = []
    for model in models:
        for method in methods:
            path = OUT / f"{model}__{method}.csv"
            if args.summary_only:
                if path.exists():
                    tables.append(pd.read_csv(path))
                continue
            tables.append(run_one(model, method, args))
    text = summary(tables) if tables else "nothing on disk yet"
    (OUT / "sbc.md").write_text(text + "\n")
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
