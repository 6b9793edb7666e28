"""Many modes, many chains: ensembles against NUTS (issue 14's targets, as methods land).

``ensemble``
    Deep ensembles of M = 10 members (plain, anchored, and with each member's
    output-layer Laplace Gaussian, 100 draws a member) against NUTS, each fit in
    a fresh process (compilation included, imports not), on case (iii) of
    ``performance.py`` (2x32 tanh, N = 2000 synthetic rows; NUTS 4 x (100 + 100) as
    there; held-out rows: 1000 fresh ones) and on ``mcycle`` (1x16 tanh; NUTS with
    the defaults; 5 random 80/20 splits). Held-out LPD per row, and the paired
    standard error of its difference to NUTS's (over rows for case iii, over splits
    for ``mcycle``), and wall time against NUTS's.

    python benchmarks/many_modes.py --part ensemble
"""

import sys
import time
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
from parts import in_fresh_process, run_parts

CONTENDERS = {
    "nuts": {"method": "nuts"},
    "ensemble": {"method": "ensemble", "members": 10},
    "anchored ensemble": {"method": "ensemble", "members": 10, "anchored": True},
    "ensemble + laplace": {
        "method": "ensemble",
        "members": 10,
        "gaussian": "laplace",
        "draws": 100,
    },
}
NUTS_III = {"draws": 100, "tune": 100, "chains": 4}
MCYCLE_SPLITS = 5


def _case(case: str, split: int):
    """Training and held-out data and the net of ``case`` (``iii`` or ``mcycle``)."""
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from perf_cases import NUTS_CASES, catalogue_net, load_problem, synthetic_data

    if case == "iii":
        train, test = load_problem(NUTS_CASES["iii"]), synthetic_data(1000, seed=1)
        return (train.X, train.y), (test.X, test.y), catalogue_net(NUTS_CASES["iii"])
    from bnncat import data

    ds = data.load("mcycle")
    X, y = np.asarray(ds.X), np.asarray(ds.y)
    order = np.random.default_rng(split).permutation(len(X))
    cut = int(0.8 * len(X))
    train, test = order[:cut], order[cut:]
    return (X[train], y[train]), (X[test], y[test]), catalogue_net(NUTS_CASES["ii"])


def one_fit(case: str, contender: str, split: int = 0) -> dict:
    """Fit one contender in this (fresh) process; wall time and pointwise held-out LPD."""
    from bnncat.evaluation import log_predictive_density
    from bnncat.models import fit

    (X, y), (X_test, y_test), net = _case(case, split)
    options = dict(CONTENDERS[contender])
    if contender == "nuts" and case == "iii":
        options |= NUTS_III
    start = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        idata = fit(net, X, y, random_seed=split + 1, progressbar=False, **options)
    seconds = time.perf_counter() - start
    pointwise = log_predictive_density(idata, X_test, y_test)["pointwise"]
    return {"seconds": seconds, "pointwise": [float(v) for v in pointwise]}


def part_ensemble(quick: bool) -> pd.DataFrame:
    rows = []
    for case, splits in (("iii", 1), ("mcycle", 2 if quick else MCYCLE_SPLITS)):
        for split in range(splits):
            runs = {
                c: in_fresh_process("many_modes", "one_fit", case, c, split) for c in CONTENDERS
            }
            nuts = np.asarray(runs["nuts"]["pointwise"])
            for contender, run in runs.items():
                lpd = np.asarray(run["pointwise"])
                rows.append(
                    {
                        "case": case,
                        "split": split,
                        "contender": contender,
                        "seconds": run["seconds"],
                        "nuts_seconds": runs["nuts"]["seconds"],
                        "lpd_per_row": lpd.mean(),
                        "gap_to_nuts": (lpd - nuts).mean(),
                        "gap_se_rows": (lpd - nuts).std(ddof=1) / np.sqrt(len(lpd)),
                    }
                )
                print(rows[-1], flush=True)
    return _summary(pd.DataFrame(rows))


def _summary(table: pd.DataFrame) -> pd.DataFrame:
    """Per case and contender: time against NUTS's, LPD and its gap to NUTS with an SE.

    One data set (case iii): the SE of the paired difference over held-out rows;
    several splits (mcycle): the SE of the per-split gaps over splits.
    """
    out = []
    for (case, contender), part in table.groupby(["case", "contender"], sort=False):
        many = len(part) > 1
        se = (
            part["gap_to_nuts"].std(ddof=1) / np.sqrt(len(part))
            if many
            else float(part["gap_se_rows"].iloc[0])
        )
        out.append(
            {
                "case": case,
                "contender": contender,
                "splits": len(part),
                "seconds": part["seconds"].mean(),
                "nuts_time_over_this": part["nuts_seconds"].sum() / part["seconds"].sum(),
                "lpd_per_row": part["lpd_per_row"].mean(),
                "gap_to_nuts": part["gap_to_nuts"].mean(),
                "gap_se": se,
            }
        )
    return pd.DataFrame(out)


PARTS = {"ensemble": part_ensemble}


def main() -> None:
    run_parts(__doc__.split("\n")[0], "many_modes", PARTS)


if __name__ == "__main__":
    main()
