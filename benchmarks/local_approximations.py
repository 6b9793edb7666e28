"""Approximations around a mode against NUTS: in the gap, on mcycle, evidence tuning, speed.

Four parts (issue 13's targets), each a table in ``benchmarks/out/`` and the README:

``gap``
    ``sine`` with no inputs in (-1, 1) (n = 80, noise sd 0.1; Foong et al. 2019's
    "in-between" uncertainty), ``MLP((16,))``. Every method (NUTS 4 x (500 + 500);
    ADVI and full-rank ADVI; Laplace with each Hessian, sampled and linearised;
    Laplace ``full`` tuned by the evidence; Pathfinder): held-out log predictive
    density per row on 1000 fresh rows of the whole range, coverage of the central
    90% interval, the mean width of that interval inside the gap against NUTS's,
    and wall time (compilation included). Figure: the bands side by side.
``mcycle``
    The same methods, ``MLP((16,))``, on 5 random 80/20 splits of ``mcycle``.
``marglik``
    Laplace ``full`` with the evidence tuning on ``sine`` (n = 100, noise sd 0.1)
    for 5 seeds: the tuned noise sd against 0.1, and the held-out LPD against NUTS's
    with the standard error of the pointwise difference.
``speed``
    Wall time of NUTS, Laplace and Pathfinder, each fitted in a fresh process
    (compilation included, imports not), on case (iii) of ``performance.py``
    (2x32 tanh, N = 2000; NUTS 4 x (100 + 100) as there, Laplace and Pathfinder 100
    draws per restart or path, with the defaults and with a bounded search) and
    case (ii) (1x16 on mcycle, the defaults). For case (iii), the held-out LPD per
    row on 1000 fresh rows (and Laplace's linearised predictive's) says what each
    time bought.

    python benchmarks/local_approximations.py                  # all four parts
    python benchmarks/local_approximations.py --part gap --quick
"""

import json
import sys
import time
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
from parts import in_fresh_process, run_parts
from scipy import special

from bnncat import data
from bnncat.models import MLP, fit, predict

FIGURES = Path(__file__).resolve().parent / "figures"
GAP = (-1.0, 1.0)


def methods(quick: bool) -> dict[str, tuple[str, dict, list[str]]]:
    """Name -> (method, options, predictives) of every contender."""
    n = 200 if quick else 500
    laplace = {"restarts": 4, "draws": n}
    out = {
        "nuts": ("nuts", {"draws": n, "tune": n, "chains": 4, "progressbar": False}, ["sampled"]),
        "advi": ("advi", {"draws": 4 * n, "progressbar": False}, ["sampled"]),
        "fullrank_advi": ("fullrank_advi", {"draws": 4 * n, "progressbar": False}, ["sampled"]),
        "pathfinder": ("pathfinder", {"draws": n, "paths": 4}, ["sampled"]),
    }
    both = ["sampled", "linearized"]
    for hessian in ("full", "ggn", "diag", "last_layer"):
        out[f"laplace_{hessian}"] = ("laplace", laplace | {"hessian": hessian}, both)
    out["laplace_full_marglik"] = ("laplace", laplace | {"hessian": "full", "marglik": True}, both)
    return out


def pointwise_lpd(idata, X, y, predictive: str, seed: int = 1) -> np.ndarray:
    """Log mean_s p(y_i | theta_s) of every row, through the network or its linearisation."""
    from bnncat.models.attrs import read_net

    net, spec = read_net(idata)
    mu = predict(idata, X, predictive=predictive, random_seed=seed)["predictions"]["mu"].values
    post = idata["posterior"]
    params = {k: post[k].values for k in post.data_vars}
    obs = net.lik.parameters(mu, params)
    logp = net.lik.logp(obs, np.asarray(y).reshape(1, 1, -1, 1))  # (chain, draw, n, 1)
    logp = logp.reshape(-1, logp.shape[2])
    return special.logsumexp(logp, axis=0) - np.log(len(logp))


def interval(idata, X, predictive: str, seed: int = 1) -> tuple[np.ndarray, np.ndarray]:
    """Central 90% predictive interval of y at every row."""
    y = predict(idata, X, predictive=predictive, random_seed=seed)["predictions"]["y"].values
    y = y.reshape(-1, y.shape[2])
    return np.quantile(y, 0.05, axis=0), np.quantile(y, 0.95, axis=0)


def score(name, method, options, predictives, train, test, gap_X=None, seed=1):
    """Fit once; one row per predictive with time, LPD, coverage and gap width."""
    start = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        idata = fit(MLP((16,)), train.X, train.y, method=method, random_seed=seed, **options)
    seconds = time.perf_counter() - start
    rows = []
    for predictive in predictives:
        lpd = pointwise_lpd(idata, test.X, test.y, predictive)
        lo, hi = interval(idata, test.X, predictive)
        y = np.asarray(test.y)
        row = {
            "method": name if predictive == "sampled" else f"{name} (linearised)",
            "seconds": seconds,
            "lpd_per_row": lpd.mean(),
            "lpd_se": lpd.std(ddof=1) / np.sqrt(len(lpd)),
            "coverage_90": float(np.mean((y >= lo) & (y <= hi))),
        }
        if gap_X is not None:
            glo, ghi = interval(idata, gap_X, predictive)
            row["gap_width_90"] = float(np.mean(ghi - glo))
        rows.append(row)
    return idata, rows


def part_gap(quick: bool) -> pd.DataFrame:
    train = data.load("sine", n=80, noise=0.1, gap=GAP, seed=1)
    test = data.load("sine", n=1000, noise=0.1, seed=99)
    gap_X = np.linspace(GAP[0], GAP[1], 41)[:, None]
    rows, fits = [], {}
    for name, (method, options, predictives) in methods(quick).items():
        fits[name], new = score(name, method, options, predictives, train, test, gap_X)
        rows += new
        print(pd.DataFrame(new).round(3).to_string(index=False, header=False), flush=True)
    table = pd.DataFrame(rows)
    nuts = table.loc[table["method"] == "nuts", "gap_width_90"].item()
    table["gap_width_vs_nuts"] = table["gap_width_90"] / nuts
    plot_gap(fits, train)
    return table


def plot_gap(fits: dict, train) -> None:
    import matplotlib.pyplot as plt

    grid = np.linspace(-3.2, 3.2, 161)[:, None]
    panels = [
        ("nuts", "sampled"),
        ("advi", "sampled"),
        ("fullrank_advi", "sampled"),
        ("pathfinder", "sampled"),
        ("laplace_full", "sampled"),
        ("laplace_full", "linearized"),
        ("laplace_ggn", "linearized"),
        ("laplace_diag", "sampled"),
        ("laplace_last_layer", "sampled"),
        ("laplace_full_marglik", "linearized"),
    ]
    fig, axes = plt.subplots(2, 5, figsize=(17, 6.4), sharex=True, sharey=True)
    for ax, (name, predictive) in zip(axes.ravel(), panels, strict=True):
        lo, hi = interval(fits[name], grid, predictive)
        mu = predict(fits[name], grid, predictive=predictive, random_seed=1)["predictions"]["mu"]
        ax.fill_between(grid[:, 0], lo, hi, alpha=0.3, label="90% predictive")
        ax.plot(grid[:, 0], mu.mean(("chain", "draw")).values[:, 0], lw=1.5)
        ax.plot(grid[:, 0], np.sin(grid[:, 0]), "k--", lw=0.8)
        ax.scatter(train.X[:, 0], train.y, s=6, c="k")
        ax.axvspan(*GAP, color="0.9", zorder=-1)
        ax.set_title(name.replace("_", " ") + (" (linearised)" if predictive != "sampled" else ""))
        ax.set_ylim(-2.5, 2.5)
    fig.suptitle("sine with a gap in (-1, 1): 90% predictive bands, MLP((16,))")
    fig.tight_layout()
    FIGURES.mkdir(exist_ok=True)
    fig.savefig(FIGURES / "local_approximations_gap.png", dpi=80)


def part_mcycle(quick: bool) -> pd.DataFrame:
    ds = data.load("mcycle")
    X, y = np.asarray(ds.X), np.asarray(ds.y)
    rows = []
    for split in range(2 if quick else 5):
        order = np.random.default_rng(split).permutation(len(X))
        cut = int(0.8 * len(X))
        tr = _Split(X[order[:cut]], y[order[:cut]])
        te = _Split(X[order[cut:]], y[order[cut:]])
        for name, (method, options, predictives) in methods(quick).items():
            _, new = score(name, method, options, predictives, tr, te, seed=split + 1)
            rows += [r | {"split": split} for r in new]
    table = pd.DataFrame(rows)
    return (
        table.groupby("method", sort=False)
        .agg(
            seconds=("seconds", "mean"),
            lpd_per_row=("lpd_per_row", "mean"),
            lpd_se=(
                "lpd_per_row",
                lambda v: v.std(ddof=1) / np.sqrt(len(v)) if len(v) > 1 else np.nan,
            ),
            coverage_90=("coverage_90", "mean"),
            splits=("split", "nunique"),
        )
        .reset_index()
    )


class _Split:
    def __init__(self, X, y):
        self.X, self.y = X, y


def part_marglik(quick: bool) -> pd.DataFrame:
    test = data.load("sine", n=1000, noise=0.1, seed=99)
    rows = []
    for seed in range(1, 3 if quick else 6):
        train = data.load("sine", n=100, noise=0.1, seed=seed)
        options = methods(quick)
        idata, lap = score(
            "laplace",
            "laplace",
            options["laplace_full_marglik"][1],
            ["sampled", "linearized"],
            train,
            test,
            seed=seed,
        )
        nuts_fit, nuts = score("nuts", *options["nuts"][:2], ["sampled"], train, test, seed=seed)
        tuned = json.loads(idata.attrs["bnncat_fit"])
        nuts_lpd = pointwise_lpd(nuts_fit, test.X, test.y, "sampled")
        for row in lap:
            predictive = "linearized" if "linearised" in row["method"] else "sampled"
            diff = pointwise_lpd(idata, test.X, test.y, predictive) - nuts_lpd
            rows.append(
                {
                    "seed": seed,
                    "predictive": predictive,
                    "noise_sd": tuned["tuned_noise_sd"],
                    "noise_sd_error": tuned["tuned_noise_sd"] / 0.1 - 1,
                    "prior_scales": tuned["tuned_layer_prior_scales"],
                    "lpd_laplace": row["lpd_per_row"],
                    "lpd_nuts": nuts[0]["lpd_per_row"],
                    "lpd_gap": diff.mean(),
                    "lpd_gap_se": diff.std(ddof=1) / np.sqrt(len(diff)),
                }
            )
        print(pd.DataFrame(rows[-2:]).round(3).to_string(index=False), flush=True)
    return pd.DataFrame(rows)


SPEED_CASES = {
    "iii: 2x32 tanh, N=2000": {
        "nuts": {"draws": 100, "tune": 100, "chains": 4},
        "laplace": {"draws": 100},
        "laplace_last_layer": {"draws": 100, "hessian": "last_layer", "maxiter": 1000},
        "pathfinder": {"draws": 100, "maxiter": 400},  # BlackJAX: d x d memory per iteration
        "pathfinder_short": {"draws": 100, "maxiter": 100},
    },
    "ii: 1x16 on mcycle": {"nuts": {}, "laplace": {}, "pathfinder": {}},
}


def one_timing(case: str, contender: str) -> dict[str, float]:
    """Wall time of one fit in this (fresh) process, compilation included; held-out LPD.

    The LPD per row (case iii only: 1000 fresh rows of the same function) says
    what the time bought.
    """
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from perf_cases import NUTS_CASES, catalogue_net, load_problem, synthetic_data

    from bnncat.evaluation import log_predictive_density

    key = "iii" if case.startswith("iii") else "ii"
    problem = load_problem(NUTS_CASES[key])
    net = catalogue_net(NUTS_CASES[key])
    options = dict(SPEED_CASES[case][contender])
    method = contender.split("_")[0]
    options |= {"progressbar": False} if method != "laplace" else {}
    start = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        idata = fit(net, problem.X, problem.y, method=method, random_seed=1, **options)
    seconds = time.perf_counter() - start
    if key != "iii":
        return {"seconds": seconds}
    test = synthetic_data(1000, seed=1)
    lpd = {"lpd_per_row": float(log_predictive_density(idata, test.X, test.y)["mean"])}
    if method == "laplace":
        linear = log_predictive_density(idata, test.X, test.y, predictive="linearized")
        lpd["lpd_per_row_linearized"] = float(linear["mean"])
    return {"seconds": seconds, **lpd}


def part_speed(quick: bool) -> pd.DataFrame:
    rows = []
    for case, contenders in SPEED_CASES.items():
        for contender in contenders:
            try:
                result = in_fresh_process("local_approximations", "one_timing", case, contender)
            except RuntimeError as failed:
                print(failed)
                result = {"seconds": np.nan}
            rows.append({"case": case, "contender": contender, **result})
            print(rows[-1], flush=True)
    table = pd.DataFrame(rows)
    nuts = table[table["contender"] == "nuts"].set_index("case")["seconds"]
    table["speed_up_vs_nuts"] = table["case"].map(nuts) / table["seconds"]
    return table


PARTS = {"gap": part_gap, "mcycle": part_mcycle, "marglik": part_marglik, "speed": part_speed}


def main() -> None:
    run_parts(__doc__.split("\n")[0], "local_approximations", PARTS)


if __name__ == "__main__":
    main()
