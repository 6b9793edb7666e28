"""The core grid: every model x {NUTS, ADVI, full-rank ADVI} x data, judged the same way.

Models (1x8 tanh hidden layer each): ``MLP``, ``OrderedMLP`` (with either sign rule), the mixture
regressor's noise form (K = 2, 3) and MDN (K = 2, 3). Data: ``mcycle``,
``faithful`` and ``inverse_sine`` (regression; every model) and ``two_moons``
(classification; ``MLP`` and ``OrderedMLP``). Each data set is split at
random 80/20 once per seed; the fit sees the 80%.

Per cell and seed: wall time of the fit; divergences; R-hat and bulk ESS of
the predictions (network output at the training inputs, ``fit``'s own check)
and R-hat of the total log-likelihood per draw (both invariant to relabelling
hidden units and components); mean tree depth; held-out log predictive density
per row with its standard error (regression) or held-out accuracy
(classification). ADVI gives one chain, so R-hat is left empty there.

    python benchmarks/model_grid.py                    # 3 seeds, 4 x (1000 + 1000)
    python benchmarks/model_grid.py --seeds 1 --draws 500 --tune 500
    python benchmarks/model_grid.py --models mdn2 --data inverse_sine --methods nuts

    python benchmarks/model_grid.py --summarise a.csv b.csv   # combine runs split up

Writes ``benchmarks/out/model_grid.csv`` (one row per cell and seed) and
``model_grid.md``: per cell the worst seed's R-hat, bulk ESS and divergences (the
targets hold for every seed or not at all), medians of the rest, and whether NUTS met
the issue's targets.
"""

import argparse
import time
import warnings
from pathlib import Path

import arviz as az
import numpy as np
import pandas as pd
import xarray as xr

from bnncat import data
from bnncat.evaluation.calibration import add_predictive_groups
from bnncat.evaluation.density import log_predictive_density
from bnncat.models import MLP, MixtureRegressor, OrderedMLP, predict, read_net
from bnncat.models.inference.convergence_check import prediction_convergence
from bnncat.thresholds import RHAT_MAX

MODELS = {
    "mlp": lambda lik: MLP((8,), likelihood=lik),
    "ordered": lambda lik: OrderedMLP((8,), likelihood=lik),
    "ordered_input": lambda lik: OrderedMLP((8,), likelihood=lik, sign_by="input"),
    "noise2": lambda lik: MixtureRegressor((8,), n_components=2, form="noise"),
    "noise3": lambda lik: MixtureRegressor((8,), n_components=3, form="noise"),
    "mdn2": lambda lik: MixtureRegressor((8,), n_components=2, form="mdn"),
    "mdn3": lambda lik: MixtureRegressor((8,), n_components=3, form="mdn"),
}
DATA = {
    "mcycle": "normal",
    "faithful": "normal",
    "inverse_sine": "normal",
    "two_moons": "bernoulli",
}
METHODS = ("nuts", "advi", "fullrank_advi")


def split(ds, seed: int) -> tuple:
    """Split the rows at random, 80/20."""
    rng = np.random.default_rng(seed)
    order = rng.permutation(len(ds.y))
    cut = int(0.8 * len(order))
    train, test = order[:cut], order[cut:]
    return ds.X[train], ds.y[train], ds.X[test], ds.y[test]


def loglik_rhat(idata) -> float:
    """R-hat of each draw's total log-likelihood of the training data."""
    if idata["posterior"].sizes["chain"] < 2:
        return float("nan")
    ll = add_predictive_groups(idata)["log_likelihood"]["y"].sum("obs")
    return float(az.rhat(xr.Dataset({"ll": ll}))["ll"])


def held_out(idata, X_test, y_test, classification: bool) -> dict[str, float]:
    if classification:
        logits = predict(idata, X_test)["predictions"]["mu"].values[..., 0]
        prob = (1 / (1 + np.exp(-logits))).mean(axis=(0, 1))
        return {"test_accuracy": float(((prob > 0.5) == y_test).mean())}
    lpd = log_predictive_density(idata, X_test, y_test)
    n = len(lpd["pointwise"])
    return {"test_lpd": lpd["mean"], "test_lpd_se": lpd["se"] / n}


def run_cell(model: str, dataset: str, method: str, seed: int, args) -> dict:
    ds = data.load(dataset)
    X, y, X_test, y_test = split(ds, seed)
    net = MODELS[model](DATA[dataset])
    options = {"draws": args.draws, "random_seed": seed, "progressbar": False}
    if method == "nuts":
        options["tune"] = args.tune
    start = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        idata = net.fit(X, y, method=method, **options)
    wall = time.perf_counter() - start
    conv = prediction_convergence(idata, *read_net(idata))
    stats = idata["sample_stats"]
    row = {
        "model": model,
        "data": dataset,
        "method": method,
        "seed": seed,
        "wall_s": wall,
        "divergences": conv["divergences"],
        "draws": conv["chains"] * args.draws,
        "rhat_pred": conv["max_rhat"],
        "rhat_loglik": loglik_rhat(idata),
        "ess_bulk_pred": conv["min_ess_bulk"],
        "tree_depth": float(stats["tree_depth"].mean()) if "tree_depth" in stats else np.nan,
    }
    return row | held_out(idata, X_test, y_test, DATA[dataset] == "bernoulli")


def cells(args) -> list[tuple[str, str, str]]:
    out = []
    for dataset in args.data:
        for model in args.models:
            if DATA[dataset] == "bernoulli" and not model.startswith(("mlp", "ordered")):
                continue
            out += [(model, dataset, method) for method in args.methods]
    return out


def summary(frame: pd.DataFrame) -> pd.DataFrame:
    """One row per cell: the worst seed for the convergence targets, medians for the rest."""
    keys = ["model", "data", "method"]
    worst = {
        "rhat_pred": "max",
        "rhat_loglik": "max",
        "ess_bulk_pred": "min",
        "divergences": "max",
        "seed": "count",
    }
    agg = {c: "median" for c in frame.columns if c not in keys + list(worst)} | worst
    table = frame.groupby(keys, sort=False).agg(agg).rename(columns={"seed": "seeds"})
    table["nuts_targets_met"] = [
        meets_targets(row) if method == "nuts" else None for (_, _, method), row in table.iterrows()
    ]
    return table.reset_index()


def meets_targets(row: pd.Series) -> bool:
    """Check the issue's NUTS targets in the worst seed.

    R-hat <= 1.01 for predictions and log-likelihood, bulk ESS >= 400, divergences
    <= 0.5% of draws.
    """
    return bool(
        row["rhat_pred"] <= RHAT_MAX
        and row["rhat_loglik"] <= RHAT_MAX
        and row["ess_bulk_pred"] >= 400
        and row["divergences"] <= 0.005 * row["draws"]
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[1, 2, 3])
    parser.add_argument("--draws", type=int, default=1000)
    parser.add_argument("--tune", type=int, default=1000)
    parser.add_argument("--models", nargs="+", default=list(MODELS), choices=list(MODELS))
    parser.add_argument("--data", nargs="+", default=list(DATA), choices=list(DATA))
    parser.add_argument("--methods", nargs="+", default=list(METHODS), choices=list(METHODS))
    parser.add_argument("--out", type=Path, default=Path(__file__).parent / "out")
    parser.add_argument(
        "--summarise",
        type=Path,
        nargs="+",
        metavar="CSV",
        help="only combine these per-seed CSVs (runs split by seed or cell) into the table",
    )
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    if args.summarise:
        rows = pd.concat([pd.read_csv(path) for path in args.summarise], ignore_index=True)
        rows = rows.drop_duplicates(["model", "data", "method", "seed"], keep="last")
        write_summary(rows, args.out)
        return
    rows = []
    for model, dataset, method in cells(args):
        for seed in args.seeds:
            rows.append(run_cell(model, dataset, method, seed, args))
            print(pd.DataFrame(rows[-1:]).round(3).to_string(header=len(rows) == 1), flush=True)
            pd.DataFrame(rows).to_csv(args.out / "model_grid.csv", index=False)
    write_summary(pd.DataFrame(rows), args.out)


def write_summary(rows: pd.DataFrame, out: Path) -> None:
    table = summary(rows)
    (out / "model_grid.md").write_text(table.round(3).to_markdown(index=False) + "\n")
    print(table.round(3).to_string(index=False))


if __name__ == "__main__":
    main()
