"""The UCI regression benchmark: every method on the protocol's splits, beside published figures.

Protocol ``hl`` (Hernández-Lobato & Adams 2015): 20 random 90/10 splits
(``bnncat.data.uci_splits``), inputs and target standardised on the training part
(``MLP``'s default), one hidden layer of 50 units (100 on protein), the catalogue's
default prior and activation (tanh); test RMSE and test log-likelihood per row in
the target's original units, mean +- standard error over splits, wall time per split.
Protocol ``wiese`` (Wiese et al. 2023): 80/20 splits, 1x3 and 3x16 tanh, the test log
predictive density per row in standardised units of y, on yacht and energy.

Every (data set, network, method, split) is one task of the catalogue's executor
(``--executor local | processes | ray``); each finished split is written to
``<out>/runs/`` as it arrives and skipped when the command is run again, so an
interrupted run resumes. The summary is written as ``uci_<protocol>.csv`` (one row per
split), ``uci_<protocol>.md`` (the table, with the published figures beside it) and
``uci_<protocol>.png`` (per data set, each method's test log-likelihood with its
standard error, the published figures as lines).

    python benchmarks/uci.py                                   # everything: days on 2 cores
    python benchmarks/uci.py --data yacht,energy --methods nuts,advi --splits 5
    python benchmarks/uci.py --protocol wiese --data yacht --splits 3
    python benchmarks/uci.py --data my_data.csv                # any CSV, target last
    python benchmarks/uci.py --executor ray --workers 64       # a cluster ($RAY_ADDRESS)
    python benchmarks/uci.py --summary-only                    # tables from what is on disk
"""

import argparse
import json
import os
import sys
from pathlib import Path

import numpy as np
import pandas as pd

#: the splits measured so far and their summary, kept in the repository so that a run
#: adds to them and ``--summary-only`` reprints the README's tables
OUT = Path(__file__).resolve().parent / "uci_measured"

#: fit options and predictive per method: the catalogue's defaults unless the protocol says
METHODS = {
    "nuts": ({}, "sampled"),
    "advi": ({}, "sampled"),
    "fullrank_advi": ({}, "sampled"),
    "laplace": ({"hessian": "ggn", "marglik": True}, "linearized"),
    "pathfinder": ({}, "sampled"),
    "ensemble": ({"members": 5}, "sampled"),  # M=5 as in Lakshminarayanan et al. 2017
    "swag": ({"members": 5}, "sampled"),  # MultiSWAG of 5
    "dei": ({}, "sampled"),
    "mclmc": ({}, "sampled"),
    "chees": ({}, "sampled"),
    "sgmcmc": ({}, "sampled"),
}
#: each method's name in the tables
LABELS = {
    "nuts": "NUTS",
    "advi": "ADVI (mean-field)",
    "fullrank_advi": "ADVI (full-rank)",
    "laplace": "Laplace (GGN, evidence-tuned, linearised)",
    "pathfinder": "Pathfinder",
    "ensemble": "deep ensemble, M = 5",
    "swag": "MultiSWAG, 5",
    "dei": "DEI-NUTS (chains from ensemble members)",
    "mclmc": "MCLMC from ensemble members",
    "chees": "ChEES-HMC",
    "sgmcmc": "SG-MCMC (SGLD)",
}
#: --quick: small runs for the notebook and the test suite
QUICK = {
    "nuts": {"chains": 2, "tune": 100, "draws": 100},
    "advi": {"advi_iterations": 3000, "draws": 200},
    "fullrank_advi": {"advi_iterations": 3000, "draws": 200},
    "laplace": {"draws": 100},
    "pathfinder": {"draws": 200},
    "ensemble": {"members": 3},
    "swag": {"members": 2},
    "dei": {"members": 2, "draws": 50, "tune": 50},
    "mclmc": {"members": 2},
    "chees": {"chains": 16, "superchains": 4, "tune": 100, "draws": 50},
    "sgmcmc": {"draws": 200, "chains": 2},
}
UCI_NAMES = (
    "yacht",
    "energy",
    "wine-quality-red",
    "power-plant",
    "naval-propulsion-plant",
    "kin8nm",
    "protein-tertiary-structure",
)
#: Published figures: (RMSE, its SE, LL, its SE) per data set. Yacht and energy as in
#: ../shared/uci/README.md; PBP and deep ensembles on the other five from Lakshminarayanan
#: et al. 2017, Table 1 (its PBP column is Hernández-Lobato & Adams' figures).
PUBLISHED_HL = {
    "PBP": {
        "yacht": (1.02, 0.05, -1.63, 0.02),
        "energy": (1.80, 0.05, -2.04, 0.02),
        "wine-quality-red": (0.64, 0.01, -0.97, 0.01),
        "power-plant": (4.12, 0.03, -2.84, 0.01),
        "naval-propulsion-plant": (0.01, 0.00, 3.73, 0.01),
        "kin8nm": (0.10, 0.00, 0.90, 0.01),
        "protein-tertiary-structure": (4.73, 0.01, -2.97, 0.00),
    },
    "MC dropout (grid-searched)": {
        "yacht": (0.67, 0.05, -1.25, 0.01),
        "energy": (0.54, 0.06, -1.21, 0.01),
    },
    "deep ensembles": {
        "yacht": (1.58, 0.48, -1.18, 0.21),
        "energy": (2.09, 0.29, -1.38, 0.22),
        "wine-quality-red": (0.64, 0.04, -0.94, 0.12),
        "power-plant": (4.11, 0.17, -2.79, 0.04),
        "naval-propulsion-plant": (0.00, 0.00, 5.63, 0.05),
        "kin8nm": (0.09, 0.00, 1.20, 0.02),
        "protein-tertiary-structure": (4.71, 0.06, -2.83, 0.02),
    },
}
#: Wiese et al. 2023, supplement table 3: standardised test LPPD (mean, SE) with NUTS.
PUBLISHED_WIESE = {
    "NUTS, many chains (Wiese)": {
        ("yacht", "1x3"): (1.90, 0.16),
        ("energy", "1x3"): (0.92, 0.04),
        ("yacht", "3x16"): (3.31, 0.21),
        ("energy", "3x16"): (2.07, 0.46),
    },
    "NUTS, one chain (Wiese)": {("yacht", "3x16"): (0.15, 0.09), ("energy", "3x16"): (2.38, 0.11)},
}
PROTOCOLS = {
    "hl": {"test_fraction": 0.1, "data": UCI_NAMES},
    "wiese": {"test_fraction": 0.2, "data": ("yacht", "energy")},
}


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--protocol", choices=list(PROTOCOLS), default="hl")
    parser.add_argument("--data", help="comma-separated UCI names or CSV files (target last)")
    parser.add_argument("--methods", help=f"comma-separated, of: {', '.join(METHODS)}")
    parser.add_argument("--splits", type=int, default=20, help="the first k of the 20 splits")
    parser.add_argument("--seed", type=int, default=0, help="seed of the splits")
    parser.add_argument("--executor", choices=("local", "processes", "ray"), default="local")
    parser.add_argument("--workers", type=int, help="processes or Ray CPUs (default: cores)")
    parser.add_argument("--quick", action="store_true", help="small fits (see QUICK)")
    parser.add_argument(
        "--prior",
        choices=("lecun", "hierarchical", "fixed"),
        default="lecun",
        help="MLP's weight prior (default: the catalogue's, lecun); other priors are other nets",
    )
    parser.add_argument("--out", type=Path, default=OUT)
    parser.add_argument("--summary-only", action="store_true", help="fit nothing")
    args = parser.parse_args(argv)
    args.data = args.data.split(",") if args.data else list(PROTOCOLS[args.protocol]["data"])
    args.methods = args.methods.split(",") if args.methods else list(METHODS)
    unknown = sorted(set(args.methods) - set(METHODS))
    if unknown:
        parser.error(f"--methods: unknown {unknown}; choose from {', '.join(METHODS)}")
    if not 1 <= args.splits <= 20:
        parser.error(f"--splits must be between 1 and 20, got {args.splits}")
    return args


def load_table(name: str) -> tuple[str, np.ndarray, np.ndarray]:
    """Return a data set's label, X and y: a UCI name, or a CSV file whose last column is y."""
    from bnncat import data

    if Path(name).suffix == ".csv":
        frame = pd.read_csv(name)
        if frame.shape[1] < 2:
            raise ValueError(f"--data {name}: needs feature columns and a target column")
        X, y = frame.iloc[:, :-1].to_numpy(float), frame.iloc[:, -1].to_numpy(float)
        return Path(name).stem, X, y
    ds = data.load(data.uci.resolve_uci(name))
    return data.uci.resolve_uci(name), np.asarray(ds.X, float), np.asarray(ds.y, float)


def networks(protocol: str, label: str, prior: str = "lecun") -> dict[str, tuple[int, ...]]:
    """Return the networks a protocol fits to a data set, by label.

    A prior other than the catalogue's default is named in the label ("1x50-hierarchical"):
    its splits are kept and summarised apart.
    """
    if protocol == "wiese":
        nets = {"1x3": (3,), "3x16": (16, 16, 16)}
    elif label == "protein-tertiary-structure":
        nets = {"1x100": (100,)}
    else:
        nets = {"1x50": (50,)}
    suffix = "" if prior == "lecun" else f"-{prior}"
    return {f"{name}{suffix}": hidden for name, hidden in nets.items()}


def run_file(out: Path, key: dict) -> Path:
    """Return where one finished split is kept (quick runs apart: they are other fits)."""
    folder = runs_folder(out, key["protocol"], key["quick"])
    return folder / key["data"] / key["net"] / key["method"] / f"split-{key['split']:02d}.json"


def runs_folder(out: Path, protocol: str, quick: bool) -> Path:
    """Return the folder of a protocol's finished splits."""
    return out / "runs" / (f"{protocol}-quick" if quick else protocol)


def pending_tasks(args: argparse.Namespace) -> tuple[list[dict], list[dict]]:
    """Return the tasks not on disk yet, with their keys (what names each result)."""
    from bnncat.data import random_splits
    from bnncat.models import MLP

    keys, tasks = [], []
    fraction = PROTOCOLS[args.protocol]["test_fraction"]
    for name in args.data:
        label, X, y = load_table(name)
        splits = random_splits(len(y), n_splits=args.splits, test_fraction=fraction, seed=args.seed)
        for net_label, hidden in networks(args.protocol, label, args.prior).items():
            for method in args.methods:
                options, predictive = METHODS[method]
                options = options | (QUICK[method] if args.quick else {})
                for k, (train, test) in enumerate(splits):
                    key = {
                        "protocol": args.protocol,
                        "data": label,
                        "net": net_label,
                        "method": method,
                        "split": k,
                        "quick": args.quick,
                    }
                    if run_file(args.out, key).exists():
                        continue
                    keys.append(key)
                    tasks.append(
                        {
                            "net": MLP(hidden, activation="tanh", prior=args.prior),
                            "X_train": X[train],
                            "y_train": y[train],
                            "X_test": X[test],
                            "y_test": y[test],
                            "method": method,
                            "predictive": predictive,
                            "options": options | {"random_seed": 1000 + k, "progressbar": False},
                        }
                    )
    return keys, tasks


def write_atomically(path: Path, text: str) -> None:
    """Write ``path`` whole or not at all: a temporary file renamed over it."""
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_suffix(".partial")
    partial.write_text(text)
    os.replace(partial, path)


def run(args: argparse.Namespace) -> None:
    """Fit every pending split, keeping each result on disk as it arrives."""
    from bnncat.models.inference.executors import run_independent

    keys, tasks = pending_tasks(args)
    print(f"{len(tasks)} splits to fit ({args.executor})", flush=True)

    def keep(index: int, result: dict) -> None:
        key = keys[index]
        write_atomically(run_file(args.out, key), json.dumps(key | result, indent=1))
        print(
            f"{key['data']} {key['net']} {key['method']} split {key['split']}: "
            f"RMSE {result['rmse']:.3f}, LL {result['lpd_per_row']:.3f}, "
            f"{result['seconds']:.0f} s",
            flush=True,
        )

    run_independent(
        "bnncat.evaluation.holdout:fit_and_score",
        tasks,
        executor=args.executor,
        workers=args.workers,
        on_result=keep,
    )


def collect(out: Path, protocol: str, quick: bool) -> pd.DataFrame:
    """Every finished split of a protocol on disk, one row each."""
    files = sorted(runs_folder(out, protocol, quick).rglob("*.json"))
    raw = pd.DataFrame([json.loads(p.read_text()) for p in files])
    if raw.empty:
        return raw
    raw["lpd_standardised"] = raw["lpd_per_row"] + raw["log_sd_y_train"]
    raw["warned"] = raw["warnings"].map(bool)
    # the protocol's order of data sets and the registry's of methods (others after)
    order = {name: i for i, name in enumerate((*UCI_NAMES, *METHODS))}
    raw = raw.sort_values(
        ["data", "net", "method", "split"],
        key=lambda c: c.map(order).fillna(len(order)) if c.name in ("data", "method") else c,
        kind="stable",
    )
    return raw.reset_index(drop=True)


def summarise(raw: pd.DataFrame) -> pd.DataFrame:
    """Mean and standard error over splits per data set, network and method."""

    def se(x: pd.Series) -> float:
        return float(x.std(ddof=1) / np.sqrt(len(x))) if len(x) > 1 else np.nan

    by = raw.groupby(["data", "net", "method"], sort=False)
    table = pd.DataFrame({"splits": by.size()})
    for column in ("rmse", "lpd_per_row", "lpd_standardised"):
        table[column] = by[column].mean()
        table[f"{column}_se"] = by[column].agg(se)
    table["seconds"] = by["seconds"].mean()
    table["divergences"] = by["divergences"].mean()
    table["splits_warned"] = by["warned"].sum()
    return table.reset_index()


def method_label(method: str, net: str) -> str:
    """Return a method's name in the tables, with the prior where it is not the default."""
    _, _, prior = net.partition("-")
    return LABELS.get(method, method) + (f", {prior} prior" if prior else "")


def plus_minus(mean: float, se: float, digits: int | None = None) -> str:
    """Write a mean and its standard error as `m ± se` (just `m` without one).

    By default two decimals, more for a small mean (naval's RMSE is of order 1e-3).
    """
    if digits is None:
        digits = max(2, 1 - int(np.floor(np.log10(abs(mean))))) if mean else 2
    return f"{mean:.{digits}f}" if np.isnan(se) else f"{mean:.{digits}f} ± {se:.{digits}f}"


def versus_published(table: pd.DataFrame) -> pd.DataFrame:
    """Per data set: the catalogue's best test LL and the best published one, and which wins.

    "beats" is True where the catalogue's best mean is above the best published mean.
    """
    rows = []
    for data, group in table.groupby("data", sort=False):
        published = {s: f[data] for s, f in PUBLISHED_HL.items() if data in f}
        if not published:
            continue
        best = group.loc[group["lpd_per_row"].idxmax()]
        source, figures = max(published.items(), key=lambda item: item[1][2])
        rows.append(
            {
                "data": data,
                "method": best["method"],
                "net": best["net"],
                "splits": int(best["splits"]),
                "lpd_per_row": best["lpd_per_row"],
                "lpd_per_row_se": best["lpd_per_row_se"],
                "published": source,
                "published_lpd": figures[2],
                "published_lpd_se": figures[3],
                "beats": bool(best["lpd_per_row"] > figures[2]),
            }
        )
    return pd.DataFrame(rows)


def markdown_versus(versus: pd.DataFrame) -> str:
    """Write the catalogue's best test LL per data set beside the best published one."""
    lines = [
        "| data | best here (splits) | test LL | best published | test LL | difference | "
        "better here |",
        "|:--|:--|--:|:--|--:|--:|:--:|",
    ]
    for r in versus.itertuples():
        # the SE of the difference: both SEs combined (a single split has none)
        se = float(np.hypot(r.lpd_per_row_se, r.published_lpd_se))
        lines.append(
            f"| {r.data} | {method_label(r.method, r.net)} ({r.splits}) | "
            f"{plus_minus(r.lpd_per_row, r.lpd_per_row_se)} | {r.published} | "
            f"{plus_minus(r.published_lpd, r.published_lpd_se)} | "
            f"{plus_minus(r.lpd_per_row - r.published_lpd, se, 2)} | "
            f"{'yes' if r.beats else 'no'} |"
        )
    if versus.empty:  # no published figures for these data sets
        return "\n".join(lines) + "\n"
    margin = versus["lpd_per_row"] - versus["published_lpd"]
    se = np.hypot(versus["lpd_per_row_se"], versus["published_lpd_se"])
    won, clear = int((margin > 0).sum()), int((margin > 2 * se).sum())
    lines.append(
        f"\nBetter than the best published test LL on {won} of {len(versus)} data sets; "
        f"by more than two standard errors of the difference on {clear}."
    )
    return "\n".join(lines) + "\n"


def markdown_hl(table: pd.DataFrame) -> str:
    """Per data set: the catalogue's methods, then the published figures, side by side."""
    lines = [
        "| data | method | splits | test RMSE | test LL | s / split | splits with warnings |",
        "|:--|:--|--:|--:|--:|--:|--:|",
    ]
    for data, rows in table.groupby("data", sort=False):
        for r in rows.itertuples():
            lines.append(
                f"| {data} | {method_label(r.method, r.net)} | {r.splits} | "
                f"{plus_minus(r.rmse, r.rmse_se)} | "
                f"{plus_minus(r.lpd_per_row, r.lpd_per_row_se)} | {r.seconds:.0f} | "
                f"{r.splits_warned} |"
            )
        for source, figures in PUBLISHED_HL.items():
            if data in figures:
                rmse, rmse_se, ll, ll_se = figures[data]
                lines.append(
                    f"| {data} | *{source}, published* | 20 | {plus_minus(rmse, rmse_se)} | "
                    f"{plus_minus(ll, ll_se)} | | |"
                )
    return "\n".join(lines) + "\n"


def markdown_wiese(table: pd.DataFrame) -> str:
    """Standardised test LPPD per data set and network, Wiese et al.'s figures beside it."""
    lines = [
        "| data | net | method | splits | standardised test LPPD | s / split |",
        "|:--|:--|:--|--:|--:|--:|",
    ]
    for (data, net), rows in table.groupby(["data", "net"], sort=False):
        for r in rows.itertuples():
            lines.append(
                f"| {data} | {net} | {method_label(r.method, r.net)} | {r.splits} | "
                f"{plus_minus(r.lpd_standardised, r.lpd_standardised_se)} | {r.seconds:.0f} |"
            )
        for source, figures in PUBLISHED_WIESE.items():
            if (data, net) in figures:
                mean, se = figures[(data, net)]
                lines.append(f"| {data} | {net} | *{source}* | | {plus_minus(mean, se)} | |")
    return "\n".join(lines) + "\n"


def plot(table: pd.DataFrame, protocol: str, path: Path) -> None:
    """One panel per data set (and network): each method's figure with its SE bar."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    column = "lpd_per_row" if protocol == "hl" else "lpd_standardised"
    panels = list(table.groupby(["data", "net"], sort=False))
    columns = min(4, len(panels))
    lines = -(-len(panels) // columns)
    fig, axes = plt.subplots(
        lines,
        columns,
        figsize=(4.2 * columns, (0.45 * table["method"].nunique() + 1.6) * lines),
        squeeze=False,
    )
    for ax in axes.flat[len(panels) :]:
        ax.set_visible(False)
    for ax, ((data, net), rows) in zip(axes.flat, panels, strict=False):
        y = np.arange(len(rows))
        ax.errorbar(rows[column], y, xerr=rows[f"{column}_se"], fmt="o", color="C0", capsize=3)
        labels = [f"{m} ({k})" for m, k in zip(rows["method"], rows["splits"], strict=True)]
        ax.set_yticks(y, labels)
        for colour, source, value in _published_lines(protocol, data, net):
            ax.axvline(value, color=colour, linestyle="--", label=source)
        ax.set_title(f"{data}, {net}", fontsize=10)
        ax.set_xlabel("test log-likelihood per row" if protocol == "hl" else "standardised LPPD")
        ax.invert_yaxis()
    handles = {}
    for ax in axes.flat:
        found, labels = ax.get_legend_handles_labels()
        handles |= dict(zip(labels, found, strict=True))
    if handles:  # one legend under the panels: inside them it hides points
        fig.legend(handles.values(), handles.keys(), loc="lower center", ncol=3, fontsize=8)
    fig.tight_layout(rect=(0, (0.12 / lines) if handles else 0, 1, 1))
    fig.savefig(path, dpi=120)
    plt.close(fig)


def _published_lines(protocol: str, data: str, net: str) -> list[tuple[str, str, float]]:
    """(colour, source, figure) of each published figure for a panel: one colour a source."""
    if protocol == "hl":
        sources, key, column = PUBLISHED_HL, data, 2
    else:
        sources, key, column = PUBLISHED_WIESE, (data, net), 0
    return [
        (f"C{i + 1}", source, figures[key][column])
        for i, (source, figures) in enumerate(sources.items())
        if key in figures
    ]


def write_summary(args: argparse.Namespace) -> pd.DataFrame:
    """Collect what is on disk; write the CSV, the Markdown table and the plot."""
    raw = collect(args.out, args.protocol, args.quick)
    if raw.empty:
        print("nothing finished yet", flush=True)
        return raw
    suffix = "_quick" if args.quick else ""
    stem = args.out / f"uci_{args.protocol}{suffix}"
    raw.drop(columns=["warnings"]).to_csv(f"{stem}.csv", index=False)
    table = summarise(raw)
    if args.protocol == "hl":
        markdown = markdown_hl(table) + "\n" + markdown_versus(versus_published(table))
    else:
        markdown = markdown_wiese(table)
    Path(f"{stem}.md").write_text(markdown)
    plot(table, args.protocol, Path(f"{stem}.png"))
    print(f"\n{markdown}\nwritten: {stem}.csv, .md, .png", flush=True)
    return table


def main(argv=None) -> None:
    args = parse_args(argv)
    if not args.summary_only:
        run(args)
    write_summary(args)


if __name__ == "__main__":
    sys.exit(main())
