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

``chains``
    Ensemble-initialised chains against NUTS on case (iii): DEI-NUTS (10 members, one
    NUTS chain of 100 + 100 from each, or of 100 + 20) and MCLMC (10 members, 200 draws a chain
    thinned 10, 5000 tuning steps) against NUTS 4 x (100 + 100), each in a fresh
    process. The smallest bulk ESS of the network output at 50 held-out inputs per
    second of wall time (training, warm-up and compilation included) against NUTS's,
    the ESS per 1000 gradient evaluations (of the sampling phase, and of the whole
    fit: members' Adam and L-BFGS steps, warm-up), and held-out LPD with its gap to
    NUTS's.

    python benchmarks/many_modes.py --part chains
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
CHAINS = {
    "nuts": {"method": "nuts", **NUTS_III},
    "dei": {"method": "dei", "members": 10, "draws": 100, "tune": 100},
    "dei, 20 draws": {"method": "dei", "members": 10, "draws": 20, "tune": 100},
    "mclmc": {"method": "mclmc", "members": 10, "draws": 200, "thin": 10, "tune": 5000},
}
#: Held-out inputs at which the ESS of the network output is measured.
PROBES = 50
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


def one_chain_fit(contender: str) -> dict:
    """Fit one sampler on case (iii) in this (fresh) process: time, ESS, gradients, LPD."""
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from perf_cases import _probe_metrics

    from bnncat.evaluation import log_predictive_density
    from bnncat.models import fit

    (X, y), (X_test, y_test), net = _case("iii", 0)
    start = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        idata = fit(net, X, y, random_seed=1, progressbar=False, **CHAINS[contender])
    seconds = time.perf_counter() - start
    post = idata["posterior"]
    params = {k: post[k].values for k in post.data_vars}
    spec = net.data_spec(X, y)[2]
    probe = _probe_metrics(net, spec, params, X_test[:PROBES])
    pointwise = log_predictive_density(idata, X_test, y_test)["pointwise"]
    return {
        "seconds": seconds,
        **probe,
        **_gradients(idata, contender),
        "pointwise": [float(v) for v in pointwise],
    }


def _gradients(idata, contender: str) -> dict:
    """Gradient evaluations of the sampling phase and of the whole fit (approximate).

    NUTS: one a leapfrog step (its warm-up's are not stored: the same count as its
    sampling is assumed). Members: one an Adam step and an L-BFGS iteration (its
    line search may take a few more). MCLMC: two a step (McLachlan's integrator).
    """
    steps = float(idata["sample_stats"]["n_steps"].sum())
    if contender == "nuts":
        return {"sampling_gradients": steps, "total_gradients": 2 * steps}
    per_step = 2 if contender.startswith("mclmc") else 1
    members = idata["ensemble"]
    adam = CHAINS[contender].get("adam_steps", 2000)
    training = float(members.sizes["member"] * adam + members["iterations"].sum())
    warmup = per_step * float(members["tuning_steps"].sum())
    sampling = per_step * steps
    return {"sampling_gradients": sampling, "total_gradients": training + warmup + sampling}


def part_chains(quick: bool) -> pd.DataFrame:
    runs = {c: in_fresh_process("many_modes", "one_chain_fit", c) for c in CHAINS}
    nuts = runs["nuts"]
    rows = []
    for contender, run in runs.items():
        lpd = np.asarray(run["pointwise"])
        gap = lpd - np.asarray(nuts["pointwise"])
        ess_per_s = run["min_ess_bulk"] / run["seconds"]
        rows.append(
            {
                "contender": contender,
                "seconds": run["seconds"],
                "min_ess_bulk": run["min_ess_bulk"],
                "max_rhat": run["max_rhat"],
                "ess_per_s_over_nuts": ess_per_s / (nuts["min_ess_bulk"] / nuts["seconds"]),
                "ess_per_1k_sampling_grads": 1e3 * run["min_ess_bulk"] / run["sampling_gradients"],
                "ess_per_1k_grads": 1e3 * run["min_ess_bulk"] / run["total_gradients"],
                "lpd_per_row": lpd.mean(),
                "gap_to_nuts": gap.mean(),
                "gap_se": gap.std(ddof=1) / np.sqrt(len(gap)),
            }
        )
        print(rows[-1], flush=True)
    return pd.DataFrame(rows)


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


PARTS = {"ensemble": part_ensemble, "chains": part_chains}


def main() -> None:
    run_parts(__doc__.split("\n")[0], "many_modes", PARTS)


if __name__ == "__main__":
    main()
