"""Measure how many effective samples per second the catalogue delivers, against its peers.

One command runs every case of the performance issue, each measurement in a
fresh Python process (``perf_cases.py`` says what one measurement does and how
the wall time is split), with the contenders of a case interleaved in every
repeat so that drifts of a shared machine hit them alike:

(i)    NumPyro's BNN example set-up (2x5 tanh, N=100, 3 inputs, 1000 warm-up +
       2000 draws): ``fit`` against the same model written by hand in NumPyro,
       and against PyMC's own NUTS;
(ii)   1x16 tanh on ``mcycle``; (iii) 2x32 tanh on N=2000 synthetic rows;
(iv)   ``OrderedMLP`` and ``MixtureRegressor`` against the plain ``MLP``;
(v)    ADVI: time per iteration against NumPyro SVI with a mean-field normal guide;
(vi)   relabelling throughput (``relabel_speed.py``, run as it is);
scaling: cost per gradient against N and width; ADVI per iteration against N,
       full data and minibatches;
energy, power, naval (only when named): 1x50 on ``energy`` and ``power-plant``, 2x50 on
       ``naval``, at full size on the first protocol split: NUTS, ADVI, minibatch ADVI,
       ensembles, MultiSWAG, DEI-NUTS, MCLMC and SG-MCMC; wall time, ESS of the
       predictions per second, held-out LPD.

Every NUTS contender's cost per gradient in sampling is set against a raw jitted
``value_and_grad`` loop of the same log density, run in the same process with
the chains placed as the sampler places them (the overhead ratio).

The headline is the smallest bulk ESS of the network output at 50 probe inputs
per second of total wall time of the fit (imports excluded). Ratios are the
catalogue's figure over the peer's in the same repeat, median over repeats.

    python benchmarks/performance.py                    # everything, ~45 min on 2 cores
    python benchmarks/performance.py --quick            # smoke run, a few minutes
    python benchmarks/performance.py --cases i,ii,v     # some cases
    python benchmarks/performance.py --cases iii,gpu --device gpu   # on a GPU machine
    python benchmarks/performance.py --cases energy,power,naval     # realistic data, hours

Writes CSV, Markdown (``performance.md``) and PNG plots to ``benchmarks/out/``.
"""

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
ALL_CASES = ("i", "ii", "iii", "iv", "v", "vi", "scaling")
#: UCI data sets at their real size (hours on 2 cores): run when named in --cases
REALISTIC = ("energy", "power", "naval")
TARGETS = {"numpyro": 1.0, "pymc": 10.0, "svi": 1.0, "gradient_overhead": 1.15}

# Scaling sweeps: rows N at width 16 (one hidden layer), widths at N=1000 (two layers)
N_SWEEP = (100, 300, 1000, 3000, 10_000, 30_000, 100_000)
WIDTH_SWEEP = (4, 8, 16, 32, 64, 128, 256)
ADVI_N_SWEEP = (1000, 10_000, 100_000)
ADVI_BATCH = 100


def parse_args(argv=None) -> argparse.Namespace:
    """Command-line options (see the module docstring)."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--cases",
        default=",".join(ALL_CASES),
        help=f"comma-separated subset of {','.join((*ALL_CASES, *REALISTIC))},gpu "
        "(default: all but gpu and the realistic cases)",
    )
    parser.add_argument("--repeats", type=int, default=3, help="fresh processes per contender")
    parser.add_argument(
        "--quick", action="store_true", help="smoke run: 2 chains x (100 + 100), short sweeps"
    )
    parser.add_argument(
        "--device",
        choices=("cpu", "gpu"),
        default="cpu",
        help="where JAX runs (gpu: the JAX contenders only, PyMC's own NUTS is skipped)",
    )
    parser.add_argument("--out", type=Path, default=HERE / "out")
    parser.add_argument("--timeout", type=int, default=3600, help="seconds per child process")
    args = parser.parse_args(argv)
    cases = [c.strip() for c in args.cases.split(",") if c.strip()]
    unknown = sorted(set(cases) - {*ALL_CASES, *REALISTIC, "gpu"})
    if unknown:
        choices = ", ".join((*ALL_CASES, *REALISTIC, "gpu"))
        parser.error(f"unknown cases {unknown}; choose from {choices}")
    if args.repeats < 1:
        parser.error("--repeats must be >= 1")
    args.cases = cases
    return args


# --------------------------------------------------------------------------- children


class Runner:
    """Start children, collect their JSON, log progress with the load average."""

    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.log_lines: list[str] = []
        self.loads: list[float] = []
        env = {k: v for k, v in os.environ.items() if k != "CI"}
        env["PYTHONPATH"] = os.pathsep.join([str(HERE), env.get("PYTHONPATH", "")]).strip(
            os.pathsep
        )
        # the catalogue's compilation cache: a folder of this run, empty at its start
        self.cache = args.out / "jax-cache"
        shutil.rmtree(self.cache, ignore_errors=True)
        (args.out / "performance_children.jsonl").unlink(missing_ok=True)
        env["BNNCAT_JAX_CACHE"] = str(self.cache)
        if args.device == "gpu":
            env["JAX_PLATFORMS"] = "cuda"
        else:
            env["JAX_PLATFORMS"] = "cpu"
        self.env = env

    def __call__(self, spec: dict, label: str) -> dict | None:
        """Run one child; its JSON result, or None when it failed."""
        load = os.getloadavg()[0]
        self.loads.append(load)
        t0 = time.perf_counter()
        cmd = [sys.executable, str(HERE / "perf_cases.py"), json.dumps(spec)]
        try:
            done = subprocess.run(
                cmd, capture_output=True, text=True, env=self.env, timeout=self.args.timeout
            )
        except subprocess.TimeoutExpired:
            self.log(f"{label}: timed out after {self.args.timeout} s")
            return None
        if done.returncode != 0:
            self.log(f"{label}: failed\n{done.stderr[-3000:]}")
            return None
        result = json.loads(done.stdout.strip().splitlines()[-1])
        self.log(f"{label:48s} {time.perf_counter() - t0:7.1f} s   load {load:.1f}")
        # kept as it comes: a run stopped early (a time limit on a lent GPU) keeps its figures
        with open(self.args.out / "performance_children.jsonl", "a") as f:
            f.write(json.dumps({"label": label, **result}) + "\n")
        return result

    def log(self, line: str) -> None:
        """Print and remember a line for the log file."""
        print(line, flush=True)
        self.log_lines.append(line)


# --------------------------------------------------------------------------- NUTS cases


def run_nuts_cases(runner: Runner, cases: list[str]):
    """Every contender of every NUTS case, interleaved within each repeat."""
    import pandas as pd
    from perf_cases import CACHED, NUTS_CASES

    def contenders(name: str) -> list[str]:
        case = NUTS_CASES[name]
        return [c for c in case.contenders if not (runner.args.device == "gpu" and c == "pymc")]

    def spec(name: str, contender: str, seed: int) -> dict:
        return {
            "kind": "nuts",
            "case_name": name,
            "contender": contender,
            "seed": seed,
            "quick": runner.args.quick,
        }

    # one untimed fit of every cached catalogue contender: the cache then holds its
    # programs, as it does from a user's second fit of the same model and data on
    for name in cases:
        for contender in contenders(name):
            if contender in CACHED:
                runner(spec(name, contender, 0), f"prime the cache: NUTS ({name}) {contender}")
    rows = []
    for repeat in range(runner.args.repeats):
        for name in cases:
            for contender in contenders(name):
                label = f"repeat {repeat}: NUTS ({name}) {contender}"
                row = runner(spec(name, contender, 1 + repeat), label)
                if row is not None:
                    rows.append(row | {"repeat": repeat})
    return pd.DataFrame(rows)


def paired_ratio(raw, column: str, num: str, den: str) -> dict[str, float]:
    """Per case: the median over repeats of num's ``column`` / den's in the same repeat."""
    out = {}
    for case, group in raw.groupby("case", sort=False):
        wide = group.pivot_table(index="repeat", columns="contender", values=column)
        if num in wide and den in wide:
            ratio = (wide[num] / wide[den]).dropna()
            if not ratio.empty:
                out[case] = float(ratio.median())
    return out


def summarise_nuts(raw):
    """Medians per case and contender; ESS/s relative to the case's reference, paired."""
    from perf_cases import NUTS_CASES

    cols = [
        "chains",
        "tune",
        "draws",
        "total_s",
        "setup_s",
        "compile_s",
        "warmup_s",
        "sampling_s",
        "peak_rss_mb",
        "grad_per_s",
        "mean_tree_steps",
        "min_ess_bulk",
        "ess_per_s",
        "max_rhat",
        "divergences",
        "us_per_grad",
        "raw_us_per_grad",
        "gradient_overhead",
    ]
    cols = [c for c in cols if c in raw]  # PyMC's NUTS has no gradient reference
    by = raw.groupby(["case", "contender"], sort=False)
    table = by[cols].median()
    table.insert(0, "precision", by["precision"].first())
    table["repeats"] = by.size()
    relative = []
    for case, contender in table.index:
        ref = NUTS_CASES[case].reference
        r = paired_ratio(raw[raw["case"] == case], "ess_per_s", contender, ref).get(case)
        relative.append(1.0 if contender == ref else r)
    table["ESS/s ÷ reference"] = relative
    return table


def headline(raw):
    """Return the ratios the issue sets targets for, one row per comparison."""
    import pandas as pd
    from perf_cases import NUTS_CASES

    names = {"numpyro": "hand-written NumPyro", "pymc": "PyMC's NUTS"}
    rows = []
    for case in raw["case"].unique():
        sub = raw[raw["case"] == case]
        spec = NUTS_CASES[case]
        if spec.reference == "mlp":
            pairs = [("ordered", "mlp", None), ("mixture", "mlp", None)]
        else:
            pairs = [
                (num, den, TARGETS[den])
                for num in ("bnncat", "bnncat-cold")
                for den in ("numpyro", "pymc")
            ]
            pairs += [("bnncat-f64", "numpyro", None)]
        for num, den, target in pairs:
            ess = paired_ratio(sub, "ess_per_s", num, den).get(case)
            grad = paired_ratio(sub, "grad_per_s", num, den).get(case)
            if ess is None and grad is None:
                continue
            note = ""
            if den == "pymc" and spec.pymc_from_gradients:
                # too slow for an ESS: assume the same ESS per gradient (both NUTS with
                # diagonal adaptation, both at the maximal tree depth here)
                ess, note = grad, "estimated from gradient throughput"
            rows.append(
                {
                    "case": f"({case}) {num} vs {names.get(den, den)}",
                    "ESS/s ratio": ess,
                    "target": f">= {target:g}" if target else "",
                    "met": ("yes" if ess >= target else "no") if target and ess else "",
                    "gradients/s ratio": grad,
                    "note": note,
                }
            )
    return pd.DataFrame(rows)


def overhead_table(raw):
    """Per case and contender: wall time per gradient in sampling over the raw loop's."""
    if "gradient_overhead" not in raw:
        return raw.iloc[0:0]
    sub = raw.dropna(subset=["gradient_overhead"])
    by = sub.groupby(["case", "contender"], sort=False)
    table = by[["us_per_grad", "raw_us_per_grad", "gradient_overhead"]].median()
    target = TARGETS["gradient_overhead"]
    table["target"] = f"<= {target:g}"
    table["met"] = ["yes" if r <= target else "no" for r in table["gradient_overhead"]]
    return table.rename(
        columns={
            "us_per_grad": "µs per gradient, sampling",
            "raw_us_per_grad": "µs per gradient, raw loop",
            "gradient_overhead": "overhead ratio",
        }
    )


# --------------------------------------------------------------------------- ADVI (v)


def run_advi_case(runner: Runner):
    """Time per iteration of ``fit(method="advi")`` against NumPyro SVI (AutoNormal)."""
    import pandas as pd
    from perf_cases import ADVI_CASES, ADVI_QUICK

    rows = []
    for repeat in range(runner.args.repeats):
        for name, (_, _, _, iterations) in ADVI_CASES.items():
            if runner.args.quick:
                iterations = ADVI_QUICK
            for contender in ("bnncat", "numpyro-svi"):
                spec = {
                    "kind": "advi",
                    "case_name": name,
                    "contender": contender,
                    "iterations": iterations,
                    "seed": 1 + repeat,
                }
                row = runner(spec, f"repeat {repeat}: ADVI ({name}) {contender}")
                if row is not None:
                    rows.append(row | {"repeat": repeat})
    raw = pd.DataFrame(rows)
    if raw.empty:
        return raw, raw
    numeric = ["iterations", "us_per_iteration", "setup_s", "total_s", "peak_rss_mb"]
    table = raw.groupby(["case", "contender"], sort=False)[numeric].median()
    table.insert(
        0, "precision", raw.groupby(["case", "contender"], sort=False)["precision"].first()
    )
    table["repeats"] = raw.groupby(["case", "contender"], sort=False).size()
    ratio = paired_ratio(raw, "us_per_iteration", "bnncat", "numpyro-svi")
    table["bnncat time per iteration ÷ SVI's"] = [
        ratio.get(case) if contender == "bnncat" else 1.0 for case, contender in table.index
    ]
    table["target"] = [
        f"<= {TARGETS['svi']:g}" if contender == "bnncat" else "" for _, contender in table.index
    ]
    return raw, table


# --------------------------------------------------------------------------- realistic data


def run_realistic_cases(runner: Runner, cases: list[str]):
    """Every method on every realistic case, interleaved within each repeat."""
    import pandas as pd
    from perf_cases import REALISTIC_METHODS

    rows = []
    for repeat in range(runner.args.repeats):
        for name in cases:
            for method in REALISTIC_METHODS:
                spec = {
                    "kind": "realistic",
                    "case_name": name,
                    "method": method,
                    "seed": 1 + repeat,
                    "quick": runner.args.quick,
                }
                row = runner(spec, f"repeat {repeat}: {name} {method}")
                if row is not None:
                    rows.append(row | {"repeat": repeat})
    raw = pd.DataFrame(rows)
    if raw.empty:
        return raw, raw
    numeric = [
        c
        for c in ("total_s", "lpd_per_row", "min_ess_bulk", "ess_per_s", "max_rhat", "peak_rss_mb")
        if c in raw
    ]
    by = raw.groupby(["case", "method"], sort=False)
    table = by[["n_train", "hidden", "chains", "draws"]].first().join(by[numeric].median())
    table["repeats"] = by.size()
    return raw, table


# --------------------------------------------------------------------------- scaling


def run_scaling(runner: Runner):
    """Gradient cost against N and width; ADVI time per iteration against N."""
    import pandas as pd

    quick = runner.args.quick
    n_sweep = N_SWEEP[:4] if quick else N_SWEEP
    w_sweep = WIDTH_SWEEP[:4] if quick else WIDTH_SWEEP
    grad_rows = []
    for impl in ("bnncat", "numpyro"):
        for precision in ("float64", "float32"):
            for sweep, points in (
                ("N", [[n, [16]] for n in n_sweep]),
                ("width", [[1000, [w, w]] for w in w_sweep]),
            ):
                spec = {"kind": "grad", "impl": impl, "precision": precision, "points": points}
                out = runner(spec, f"scaling: gradient cost vs {sweep}, {impl} {precision}")
                if out is not None:
                    grad_rows += [r | {"sweep": sweep} for r in out["rows"]]
    advi_rows = []
    iterations = 1000 if quick else 5000
    for n_obs in ADVI_N_SWEEP[:2] if quick else ADVI_N_SWEEP:
        for batch in (None, ADVI_BATCH):
            spec = {
                "kind": "advi_scaling",
                "n_obs": n_obs,
                "batch_size": batch,
                "iterations": iterations,
            }
            label = f"scaling: ADVI N={n_obs} {'minibatch ' + str(batch) if batch else 'full'}"
            out = runner(spec, label)
            if out is not None:
                advi_rows.append(out)
    return pd.DataFrame(grad_rows), pd.DataFrame(advi_rows)


def fitted_slope(x, y, x_min: float = 0.0) -> float:
    """Slope of log y against log x over the points with x >= x_min."""
    import numpy as np

    x, y = np.asarray(x, float), np.asarray(y, float)
    keep = (x >= x_min) & np.isfinite(y) & (y > 0)
    if keep.sum() < 2:
        return float("nan")
    return float(np.polyfit(np.log(x[keep]), np.log(y[keep]), 1)[0])


def scaling_tables(grad, advi):
    """Slopes of the scaling sweeps (log-log), as a table."""
    import pandas as pd

    rows = []
    if not grad.empty:
        for (sweep, impl, precision), g in grad.groupby(["sweep", "impl", "precision"]):
            x = g["n_obs"] if sweep == "N" else g["width"]
            rows.append(
                {
                    "cost per gradient against": sweep,
                    "model": f"{impl} {precision}",
                    "slope (all points)": fitted_slope(x, g["us_per_grad"]),
                    "slope (N >= 3000 / width >= 32)": fitted_slope(
                        x, g["us_per_grad"], 3000 if sweep == "N" else 32
                    ),
                }
            )
    if not advi.empty:
        for batch, g in advi.groupby("batch_size"):
            rows.append(
                {
                    "cost per gradient against": "N (ADVI time per iteration)",
                    "model": f"bnncat ADVI, {'minibatch ' + str(batch) if batch else 'full data'}",
                    "slope (all points)": fitted_slope(g["n_obs"], g["us_per_iteration"]),
                    "slope (N >= 3000 / width >= 32)": fitted_slope(
                        g["n_obs"], g["us_per_iteration"], 3000
                    ),
                }
            )
    return pd.DataFrame(rows)


# --------------------------------------------------------------------------- plots


def plot_scaling(grad, advi, out: Path) -> list[Path]:
    """Log-log plots of the sweeps with their fitted slopes."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    written = []
    styles = {
        ("bnncat", "float64"): ("C0", "-", "o"),
        ("bnncat", "float32"): ("C0", "--", "s"),
        ("numpyro", "float64"): ("C1", "-", "o"),
        ("numpyro", "float32"): ("C1", "--", "s"),
    }
    if not grad.empty:
        fig, axes = plt.subplots(1, 3 if not advi.empty else 2, figsize=(13, 3.8))
        for ax, sweep, xcol, xlabel, x_min in (
            (axes[0], "N", "n_obs", "rows N (1x16 tanh)", 3000),
            (axes[1], "width", "width", "width H (2xH tanh, N=1000)", 32),
        ):
            sub = grad[grad["sweep"] == sweep]
            for (impl, precision), g in sub.groupby(["impl", "precision"]):
                g = g.sort_values(xcol)
                color, ls, marker = styles[(impl, precision)]
                slope = fitted_slope(g[xcol], g["us_per_grad"], x_min)
                ax.plot(
                    g[xcol],
                    g["us_per_grad"],
                    color=color,
                    ls=ls,
                    marker=marker,
                    ms=4,
                    label=f"{impl} {precision} (slope {slope:.2f})",
                )
            ax.set_xscale("log")
            ax.set_yscale("log")
            ax.set_xlabel(xlabel)
            ax.set_ylabel("µs per gradient")
            ax.legend(fontsize=7)
            ax.grid(alpha=0.3, which="both")
        axes[0].set_title("cost per gradient vs N", fontsize=9)
        axes[1].set_title("cost per gradient vs width", fontsize=9)
        if not advi.empty:
            ax = axes[2]
            for batch, g in advi.groupby("batch_size"):
                g = g.sort_values("n_obs")
                slope = fitted_slope(g["n_obs"], g["us_per_iteration"])
                label = f"minibatch {batch}" if batch else "full data"
                ax.plot(
                    g["n_obs"],
                    g["us_per_iteration"],
                    marker="o",
                    ms=4,
                    label=f"{label} (slope {slope:.2f})",
                )
            ax.set_xscale("log")
            ax.set_yscale("log")
            ax.set_xlabel("rows N (1x16 tanh)")
            ax.set_ylabel("µs per ADVI iteration")
            ax.set_title("catalogue ADVI: time per iteration vs N", fontsize=9)
            ax.legend(fontsize=7)
            ax.grid(alpha=0.3, which="both")
        fig.tight_layout()
        path = out / "scaling.png"
        fig.savefig(path, dpi=90)
        plt.close(fig)
        written.append(path)
    return written


def plot_nuts(table, out: Path) -> list[Path]:
    """Bars of the wall time split (shares, total in seconds), and ESS per second."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    if table.empty:
        return []
    labels = [f"({c}) {k}" for c, k in table.index]
    y = np.arange(len(labels))
    fig, axes = plt.subplots(1, 2, figsize=(12, 0.35 * len(labels) + 1.5), sharey=True)
    parts = ("setup_s", "warmup_s", "sampling_s")
    total = table[list(parts)].fillna(0).sum(axis=1).to_numpy()
    left = np.zeros(len(labels))
    for col, color in zip(parts, ("C7", "C1", "C0"), strict=True):
        share = 100 * table[col].fillna(0).to_numpy() / total
        axes[0].barh(y, share, left=left, color=color, label=col.removesuffix("_s"))
        left += share
    for yi, seconds in zip(y, table["total_s"], strict=True):
        axes[0].text(101, yi, f"{seconds:.3g} s", va="center", fontsize=7)
    axes[0].set_xlim(0, 118)
    axes[0].set_xlabel("share of the wall time (%), medians; total on the right")
    axes[0].legend(fontsize=7, loc="lower center", bbox_to_anchor=(0.5, 1.0), ncol=3, frameon=False)
    axes[1].barh(y, table["ess_per_s"], color="C2")
    axes[1].set_xscale("log")
    axes[1].set_xlabel("min bulk ESS of the predictions per second of wall time")
    axes[0].set_yticks(y, labels, fontsize=8)
    axes[0].invert_yaxis()
    for ax in axes:
        ax.grid(alpha=0.3, axis="x", which="both")
    fig.tight_layout()
    path = out / "nuts_cases.png"
    fig.savefig(path, dpi=90)
    plt.close(fig)
    return [path]


# --------------------------------------------------------------------------- report


def to_markdown(table, floatfmt: str = ".3g") -> str:
    """Format a DataFrame as a Markdown table (three significant digits)."""
    return table.to_markdown(floatfmt=floatfmt)


def main(argv=None) -> None:
    """Run the selected cases and write the report."""
    import pandas as pd

    args = parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    runner = Runner(args)
    start = time.perf_counter()
    sections = [
        "# Performance benchmark",
        "",
        f"Command: `python benchmarks/performance.py {' '.join(sys.argv[1:])}`".rstrip(),
        "",
    ]
    nuts_cases = [c for c in ("i", "ii", "iii", "iv", "gpu") if c in args.cases]
    if nuts_cases:
        raw = run_nuts_cases(runner, nuts_cases)
        raw.to_csv(args.out / "performance_nuts_raw.csv", index=False)
        if not raw.empty:
            table = summarise_nuts(raw)
            table.to_csv(args.out / "performance_nuts.csv")
            ratios = headline(raw)
            ratios.to_csv(args.out / "performance_ratios.csv", index=False)
            plot_nuts(table, args.out)
            overhead = overhead_table(raw)
            sections += [
                "## Ratios (catalogue over peer, paired by repeat, medians)",
                "",
                to_markdown(ratios.set_index("case"), ".2f"),
                "",
                "## Cost per gradient against the raw jitted value_and_grad loop (medians)",
                "",
                "The loop runs the same log density, chains placed as the sampler places "
                "them; the ratio is what the sampler adds to each gradient.",
                "",
                to_markdown(overhead, ".3g"),
                "",
                "## NUTS cases (medians per contender)",
                "",
                to_markdown(table),
                "",
            ]
    realistic = [c for c in REALISTIC if c in args.cases]
    if realistic:
        real_raw, real = run_realistic_cases(runner, realistic)
        real_raw.to_csv(args.out / "performance_realistic_raw.csv", index=False)
        if not real.empty:
            real.to_csv(args.out / "performance_realistic.csv")
            sections += [
                "## Realistic data: UCI sets at full size, first protocol split (medians)",
                "",
                "ESS: the smallest bulk ESS of the network output at 50 held-out rows, per "
                "second of the fit's wall time (not given for one draw per member); LPD: "
                "held-out log predictive density per row.",
                "",
                to_markdown(real),
                "",
            ]
    if "v" in args.cases:
        advi_raw, advi = run_advi_case(runner)
        advi_raw.to_csv(args.out / "performance_advi_raw.csv", index=False)
        if not advi.empty:
            advi.to_csv(args.out / "performance_advi.csv")
            sections += ["## ADVI time per iteration (v)", "", to_markdown(advi), ""]
    if "scaling" in args.cases:
        grad, advi_n = run_scaling(runner)
        grad.to_csv(args.out / "performance_scaling_grad.csv", index=False)
        advi_n.to_csv(args.out / "performance_scaling_advi.csv", index=False)
        slopes = scaling_tables(grad, advi_n)
        plot_scaling(grad, advi_n, args.out)
        if not slopes.empty:
            sections += ["## Scaling slopes (log-log)", "", to_markdown(slopes, ".2f"), ""]
    if "vi" in args.cases:
        script = HERE / "relabel_speed.py"
        if script.exists():
            cmd = [sys.executable, str(script), "--out", str(args.out)]
            cmd += ["--repeats", str(1 if args.quick else args.repeats)]
            if args.quick:
                cmd += ["--hidden", "16,16"]
            runner.log("(vi) relabelling: " + " ".join(cmd[1:]))
            done = subprocess.run(cmd, capture_output=True, text=True, env=runner.env)
            md = args.out / "relabel_speed.md"
            if done.returncode == 0 and md.exists():
                sections += ["## Relabelling throughput (vi)", "", md.read_text(), ""]
            else:
                runner.log(f"(vi) failed:\n{done.stderr[-2000:]}")
        else:
            runner.log("(vi) benchmarks/relabel_speed.py not found: skipped")
    loads = pd.Series(runner.loads)
    sections += [
        "## Conditions",
        "",
        f"- harness wall time: {(time.perf_counter() - start) / 60:.1f} min; "
        f"{len(runner.loads)} child processes",
        f"- 1-minute load average at child start: median {loads.median():.1f}, "
        f"min {loads.min():.1f}, max {loads.max():.1f} on {os.cpu_count()} cores"
        if not loads.empty
        else "- no child ran",
        f"- device: {args.device}; repeats: {args.repeats}; quick: {args.quick}",
        "- `bnncat`: defaults, compilation cache primed by one untimed fit per contender; "
        "`bnncat-cold`: cache off (a model's first fit on a machine); PyMC's C cache "
        "(`~/.pytensor`) was warm for `pymc`, as it is after its first run",
        "",
    ]
    report = "\n".join(sections)
    (args.out / "performance.md").write_text(report)
    (args.out / "performance.log").write_text("\n".join(runner.log_lines) + "\n")
    print("\n" + report)


if __name__ == "__main__":
    main()
