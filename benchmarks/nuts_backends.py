"""Which NUTS backend should ``fit`` use by default? Measure, on one net and data.

Fits the same 1x8 tanh MLP on the same data (``sine``, N=100) with PyMC's own
NUTS, nutpie, numpyro (vectorised, sequential and parallel chains) and
``MLP.fit`` with its defaults, each in a fresh
Python process so that every figure includes the compilation a user pays on
the first fit of a session. The headline figure is the minimum bulk ESS of the
network output at 50 probe inputs per second of wall time; ratios are against
PyMC's own NUTS measured in the same run.

    python benchmarks/nuts_backends.py            # 4 chains x (1000 + 1000), ~9 min
    python benchmarks/nuts_backends.py --quick    # 2 chains x (200 + 200)

Writes ``benchmarks/out/nuts_backends.csv`` and ``.md`` and prints the table.
"""

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

# name: (nuts_sampler, options, extra environment of the child process)
BACKENDS = {
    "bnncat fit() defaults": (None, {}, {}),
    "pymc": ("pymc", {}, {}),
    "nutpie": ("nutpie", {}, {}),
    "numpyro (vectorized chains)": ("numpyro", {"chain_method": "vectorized"}, {}),
    "numpyro (sequential chains)": ("numpyro", {"chain_method": "sequential"}, {}),
    # one XLA host device per chain (numpyro falls back to sequential with fewer)
    "numpyro (parallel, 4 XLA devices)": (
        "numpyro",
        {"chain_method": "parallel"},
        {"XLA_FLAGS": "--xla_force_host_platform_device_count=4"},
    ),
}


def run_one(backend: str, draws: int, tune: int, chains: int, seed: int) -> dict:
    import arviz as az
    import numpy as np
    import pymc as pm
    import xarray as xr

    from bnncat import data
    from bnncat.models import MLP

    start = time.perf_counter()
    ds = data.load("sine", n=100, seed=seed)
    net = MLP(hidden=(8,), activation="tanh")
    X, y, spec = net.data_spec(ds.X, ds.y)
    model = net.build_validated(X, y, spec)
    sampler, nuts, _ = BACKENDS[backend]
    if sampler is None:  # the package's own path, as a user calls it
        idata = net.fit(
            ds.X, ds.y, draws=draws, tune=tune, chains=chains, random_seed=seed, progressbar=False
        )
    else:
        idata = pm.sample(
            draws,
            tune=tune,
            chains=chains,
            random_seed=seed,
            model=model,
            nuts_sampler=sampler,
            nuts=nuts,
            var_names=[v.name for v in model.free_RVs],
            progressbar=False,
            compute_convergence_checks=False,
        )
    wall = time.perf_counter() - start
    post = idata["posterior"]
    params = {k: post[k].values for k in ("W1", "b1", "W_out", "b_out")}
    probe = np.linspace(ds.X.min(), ds.X.max(), 50)[:, None]
    mu = net.forward(params, probe, spec)
    mu = xr.DataArray(mu, dims=("chain", "draw", "probe", "output"))
    ess = az.ess(xr.Dataset({"mu": mu}), method="bulk")["mu"]
    rhat = az.rhat(xr.Dataset({"mu": mu}))["mu"]
    stats = idata["sample_stats"]
    return {
        "backend": backend,
        "wall_s": wall,
        "min_ess_bulk_mu": float(ess.min()),
        "ess_per_s": float(ess.min()) / wall,
        "max_rhat_mu": float(rhat.max()),
        "divergences": int(stats["diverging"].sum()),
    }


def to_markdown(table) -> str:
    """Format the table with sensible precision per column."""
    formats = {
        "wall_s": "{:.1f}",
        "min_ess_bulk_mu": "{:.0f}",
        "ess_per_s": "{:.0f}",
        "max_rhat_mu": "{:.3f}",
        "divergences": "{:.0f}",
        "speed-up vs pymc (ESS/s)": "{:.2f}",
    }
    shown = table.copy().astype(object)
    for col, fmt in formats.items():
        if col in shown:
            shown[col] = [fmt.format(v) for v in table[col]]
    return shown.to_markdown()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--draws", type=int, default=1000)
    parser.add_argument("--tune", type=int, default=1000)
    parser.add_argument("--chains", type=int, default=4)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument(
        "--repeats",
        type=int,
        default=3,
        help="fresh processes per backend; the table shows medians",
    )
    parser.add_argument("--quick", action="store_true", help="2 chains x (200 + 200)")
    parser.add_argument("--only", choices=list(BACKENDS), action="append")
    parser.add_argument("--out", type=Path, default=Path(__file__).parent / "out")
    parser.add_argument("--one", choices=list(BACKENDS), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.quick:
        args.draws, args.tune, args.chains = 200, 200, 2
    if args.one:  # child process: one backend, result as JSON on the last line
        print(json.dumps(run_one(args.one, args.draws, args.tune, args.chains, args.seed)))
        return

    import pandas as pd

    rows = []
    # Interleave the backends in each repeat, so slow drifts of the machine hit all alike.
    for repeat in range(args.repeats):
        for backend in args.only or BACKENDS:
            cmd = [
                sys.executable,
                __file__,
                "--one",
                backend,
                "--draws",
                str(args.draws),
                "--tune",
                str(args.tune),
                "--chains",
                str(args.chains),
                "--seed",
                str(args.seed),
            ]
            env = {**os.environ, **BACKENDS[backend][2]}
            done = subprocess.run(cmd, capture_output=True, text=True, env=env)
            if done.returncode != 0:
                print(f"{backend}: failed\n{done.stderr[-2000:]}", file=sys.stderr)
                continue
            rows.append(json.loads(done.stdout.strip().splitlines()[-1]))
            print(f"repeat {repeat}: {backend:34s} {rows[-1]['wall_s']:7.1f} s", flush=True)
    table = pd.DataFrame(rows).groupby("backend", sort=False).median()
    if "pymc" in table.index:
        table["speed-up vs pymc (ESS/s)"] = table["ess_per_s"] / table.loc["pymc", "ess_per_s"]
    args.out.mkdir(parents=True, exist_ok=True)
    table.to_csv(args.out / "nuts_backends.csv")
    setting = (
        f"1x8 tanh MLP, sine N=100, {args.chains} chains x ({args.tune} tune + "
        f"{args.draws} draws), seed {args.seed}; medians of {args.repeats} fresh processes"
    )
    md = f"{setting}\n\n{to_markdown(table)}\n"
    (args.out / "nuts_backends.md").write_text(md)
    print(md)


if __name__ == "__main__":
    main()
