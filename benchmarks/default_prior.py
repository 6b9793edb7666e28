"""Which weight-prior scale serves every method? NUTS, ADVI and full-rank ADVI side by side.

The weight prior is N(0, s²/fan_in) (``prior="lecun"``, ``prior_scale=s``). For each s:

- make_moons as in PyMC's BNN example: ``two_moons(n=1000, noise=0.2)``, a random 50/50
  split, 2x5 tanh, Bernoulli; test accuracy of the posterior mean probability;
- ``mcycle``: a random 80/20 split, 1x8 tanh, Gaussian; held-out log predictive density.

NUTS runs 4 chains x (500 + 500); ADVI and full-rank ADVI use ``fit``'s defaults.

    python benchmarks/default_prior.py                       # s = 1, 2; seeds 1-3
    python benchmarks/default_prior.py --scales 1 2 4 --seeds 1

Writes ``benchmarks/out/default_prior.csv`` and ``.md`` (one row per run).
"""

import argparse
import time
import warnings
from pathlib import Path

import numpy as np
import pandas as pd

from bnncat import data
from bnncat.evaluation.density import log_predictive_density
from bnncat.models import MLP, predict

METHODS = ("nuts", "advi", "fullrank_advi")


def problems() -> dict[str, tuple]:
    """Train/test arrays, hidden widths and likelihood of each problem."""
    moons = data.load("two_moons", n=1000, noise=0.2, seed=0)
    rows = np.random.default_rng(0).permutation(1000)
    cycle = data.load("mcycle")
    cut = int(0.8 * len(cycle.y))
    crows = np.random.default_rng(0).permutation(len(cycle.y))
    return {
        "make_moons": (moons, rows[:500], rows[500:], (5, 5), "bernoulli"),
        "mcycle": (cycle, crows[:cut], crows[cut:], (8,), "normal"),
    }


def score(idata, ds, test, likelihood: str) -> dict[str, float]:
    X, y = ds.X[test], ds.y[test]
    if likelihood == "bernoulli":
        logits = predict(idata, X)["predictions"]["mu"].values[..., 0]
        prob = (1 / (1 + np.exp(-logits))).mean(axis=(0, 1))
        return {"test_accuracy": float(((prob > 0.5) == y).mean())}
    lpd = log_predictive_density(idata, X, y)
    return {"test_lpd": lpd["total"], "test_lpd_se": lpd["se"]}


def run(problem: str, scale: float, method: str, seed: int) -> dict:
    ds, train, test, hidden, likelihood = problems()[problem]
    net = MLP(hidden, likelihood=likelihood, prior="lecun", prior_scale=scale)
    options = {"draws": 500, "tune": 500} if method == "nuts" else {}
    start = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        idata = net.fit(
            ds.X[train], ds.y[train], method=method, random_seed=seed, progressbar=False, **options
        )
    row = {"problem": problem, "prior_scale": scale, "method": method, "seed": seed}
    row["wall_s"] = time.perf_counter() - start
    return row | score(idata, ds, test, likelihood)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scales", type=float, nargs="+", default=[1.0, 2.0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[1, 2, 3])
    parser.add_argument("--out", type=Path, default=Path(__file__).parent / "out")
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    rows = []
    for problem in problems():
        for scale in args.scales:
            for method in METHODS:
                for seed in args.seeds:
                    rows.append(run(problem, scale, method, seed))
                    print(pd.DataFrame(rows[-1:]).round(3).to_string(header=len(rows) == 1))
    frame = pd.DataFrame(rows)
    frame.to_csv(args.out / "default_prior.csv", index=False)
    (args.out / "default_prior.md").write_text(frame.round(3).to_markdown(index=False) + "\n")


if __name__ == "__main__":
    main()
