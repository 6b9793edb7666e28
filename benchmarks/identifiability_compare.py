"""Constrain during sampling or relabel afterwards? One fixed problem, side by side.

``mcycle``, 1x8 tanh MLP, NUTS with ``fit``'s defaults, 4 chains x (1000 warm-up
+ 1000 draws), for each of ``--seeds``:

- the plain ``MLP``, relabelled afterwards by ``canonicalize`` (sort, pivot;
  last hidden layer keyed on outgoing weights or on biases);
- ``OrderedMLP(order_by="output")``: positively ordered outgoing weights;
- ``OrderedMLP()`` (the defaults): positively ordered biases;
- ``OrderedMLP(sign_by="input")``: ordered biases, each unit's weight from the first input
  positive.

Reported per case (medians over seeds; divergences summed): wall time of the
fit (and of relabelling), divergences, R-hat and bulk ESS of the predictions
(network output at the 133 training inputs) and of the canonical weights
(W1, b1, W_out, b_out after ``canonicalize``, which leaves OrderedMLP draws as
they are).

    python benchmarks/identifiability_compare.py     # ~3 minutes on 2 cores

Writes ``benchmarks/out/identifiability_compare.csv`` and ``.md``.
"""

import argparse
import time
import warnings
from pathlib import Path

import arviz as az
import numpy as np
import pandas as pd

from bnncat import data
from bnncat import identifiability as ident
from bnncat.models import MLP, OrderedMLP, read_net
from bnncat.models.inference.convergence_check import prediction_convergence

WEIGHTS = ["W1", "b1", "W_out", "b_out"]


def weight_stats(idata) -> dict[str, float]:
    rhat = az.rhat(idata, var_names=WEIGHTS)
    ess = az.ess(idata, var_names=WEIGHTS, method="bulk")
    r = np.concatenate([rhat[v].values.ravel() for v in WEIGHTS])
    e = np.concatenate([ess[v].values.ravel() for v in WEIGHTS])
    return {"max_rhat_w": r.max(), "share_rhat_w>1.01": (r > 1.01).mean(), "min_ess_w": e.min()}


def run_case(name: str, net, ds, seed: int, methods: tuple[str, ...]) -> list[dict]:
    start = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        idata = net.fit(ds.X, ds.y, random_seed=seed, progressbar=False)
    wall = time.perf_counter() - start
    conv = prediction_convergence(idata, *read_net(idata))
    rows = []
    for method, order_by in methods:
        t0 = time.perf_counter()
        canon = ident.canonicalize(idata, method=method, order_by=order_by)
        rows.append(
            {
                "case": name if type(net) is not MLP else f"{name} + {method} ({order_by} key)",
                "seed": seed,
                "fit_s": wall,
                "relabel_s": time.perf_counter() - t0,
                "divergences": conv["divergences"],
                "max_rhat_pred": conv["max_rhat"],
                "min_ess_pred": conv["min_ess_bulk"],
                "max_rhat_raw_w": weight_stats(idata)["max_rhat_w"],
                **weight_stats(canon),
            }
        )
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[1, 2, 3])
    parser.add_argument("--out", type=Path, default=Path(__file__).parent / "out")
    args = parser.parse_args()
    ds = data.load("mcycle")
    cases = [
        ("MLP", MLP((8,)), [(m, k) for k in ("output", "bias") for m in ("sort", "pivot")]),
        ("OrderedMLP(order_by='output')", OrderedMLP((8,), order_by="output"), [("sort", None)]),
        ("OrderedMLP() (sign_by='bias')", OrderedMLP((8,)), [("sort", None)]),
        ("OrderedMLP(sign_by='input')", OrderedMLP((8,), sign_by="input"), [("sort", None)]),
    ]
    rows = []
    for seed in args.seeds:
        for name, net, methods in cases:
            rows += run_case(name, net, ds, seed, methods)
            print(
                f"seed {seed}: {rows[-1]['case']}: {rows[-1]['fit_s']:.1f} s, "
                f"{rows[-1]['divergences']} divergences",
                flush=True,
            )
    per_seed = pd.DataFrame(rows)
    table = per_seed.groupby("case", sort=False).median(numeric_only=True).drop(columns="seed")
    table["divergences"] = per_seed.groupby("case", sort=False)["divergences"].sum()
    table = table.rename(columns={"divergences": f"divergences (sum of {len(args.seeds)})"})
    args.out.mkdir(parents=True, exist_ok=True)
    per_seed.to_csv(args.out / "identifiability_compare.csv", index=False)
    formats = {
        "fit_s": "{:.1f}",
        "relabel_s": "{:.2f}",
        "max_rhat_pred": "{:.3f}",
        "min_ess_pred": "{:.0f}",
        "max_rhat_raw_w": "{:.2f}",
        "max_rhat_w": "{:.3f}",
        "share_rhat_w>1.01": "{:.0%}",
        "min_ess_w": "{:.0f}",
    }
    shown = table.astype(object)
    for col, fmt in formats.items():
        shown[col] = [fmt.format(v) for v in table[col]]
    md = (
        f"mcycle, 1x8 tanh, 4 chains x (1000 + 1000), seeds {args.seeds}; medians over "
        f"seeds\n\n{shown.to_markdown()}\n"
    )
    (args.out / "identifiability_compare.md").write_text(md)
    print(md)


if __name__ == "__main__":
    main()
