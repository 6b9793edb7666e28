"""Many chains in one program against four NUTS chains: effective samples per second (issue 15).

``curve``
    1x16 tanh on ``mcycle``. The reference: ``fit(method="nuts")`` with the
    catalogue's defaults (4 chains of 1000 + 1000 on numpyro, two host devices
    at a time). Against it, ChEES-HMC (``method="chees"``) with 4 to 1024 chains
    in one vectorised program (warm-up adapted across the chains, 8 superchains,
    ``--draws`` per chain). Each measurement in a fresh Python (imports excluded,
    graph building and compilation included; JAX's compilation cache is warm from
    the second repeat on), the contenders interleaved in every repeat. Figures:
    the smallest bulk ESS of the network output at 50 probe inputs over all
    chains, the wall time of the fit, their ratio, and that ratio over the
    reference's in the same repeat (target at 1024 chains: >= 4); the medians of
    the repeats. The predictive mean of each contender against the reference's
    (in the reference's posterior sds) shows they sample the same posterior.

    python benchmarks/many_chains.py --part curve            # 3 repeats
    python benchmarks/many_chains.py --part curve --quick    # 1 repeat, 4-256 chains

``gpu``
    The same on an accelerator (JAX's default device), 4 to 4096 chains, one
    repeat (``--quick``: up to 1024); the NUTS reference vectorises its 4 chains
    there.

Writes ``out/many_chains_<part>.{csv,md,png}``.
"""

import time

import numpy as np
import pandas as pd
from parts import OUT, in_fresh_process, run_parts

CHAINS = (4, 16, 64, 256, 1024)
GPU_CHAINS = (*CHAINS, 4096)
SUPERCHAINS = 8
DRAWS = 300
TUNE = 200
REPEATS = 3
PROBES = 50


def timed_fit(method: str, chains: int, seed: int) -> dict:
    """Fit 1x16 on mcycle in this (fresh) process; ESS of the predictions and wall time."""
    import arviz as az

    from bnncat import data
    from bnncat.models import MLP, fit, predict

    ds = data.load("mcycle")
    options = {"random_seed": seed, "progressbar": False}
    if method == "chees":
        superchains = min(SUPERCHAINS, chains // 2)
        options |= {"chains": chains, "superchains": superchains, "draws": DRAWS, "tune": TUNE}
    start = time.perf_counter()
    idata = fit(MLP((16,)), ds.X, ds.y, method=method, **options)
    seconds = time.perf_counter() - start
    probes = np.linspace(ds.X.min(), ds.X.max(), PROBES)[:, None]
    mu = predict(idata, probes)["predictions"]["mu"]
    ess = float(az.ess(mu.to_dataset(name="mu"), method="bulk")["mu"].min())
    mean = mu.mean(("chain", "draw")).values.ravel()
    sd = mu.std(("chain", "draw")).values.ravel()
    return {"seconds": seconds, "ess": ess, "mean": mean.tolist(), "sd": sd.tolist()}


def part_curve(quick: bool) -> pd.DataFrame:
    chains_list = CHAINS[:-1] if quick else CHAINS
    table = _curve(chains_list, 1 if quick else REPEATS)
    _plot(table, "curve", "1x16 tanh on mcycle, 2 cores")
    return table


def part_gpu(quick: bool) -> pd.DataFrame:
    import jax

    if jax.default_backend() == "cpu":
        raise SystemExit("--part gpu needs an accelerator (JAX's default backend is the CPU)")
    chains_list = GPU_CHAINS[:-1] if quick else GPU_CHAINS
    table = _curve(chains_list, 1)
    _plot(table, "gpu", f"1x16 tanh on mcycle, {jax.devices()[0].device_kind}")
    return table


def _curve(chains_list: tuple[int, ...], repeats: int) -> pd.DataFrame:
    """Each repeat: the NUTS reference, then ChEES at each number of chains, fresh processes."""
    rows = []
    for repeat in range(repeats):
        reference = in_fresh_process("many_chains", "timed_fit", "nuts", 4, repeat)
        rows.append({"repeat": repeat, "method": "nuts", "chains": 4, **reference})
        print("nuts 4", round(reference["seconds"], 1), round(reference["ess"]), flush=True)
        for chains in chains_list:
            row = in_fresh_process("many_chains", "timed_fit", "chees", chains, repeat)
            rows.append({"repeat": repeat, "method": "chees", "chains": chains, **row})
            print(rows[-1]["chains"], round(row["seconds"], 1), round(row["ess"]), flush=True)
    return _figures(pd.DataFrame(rows))


def _figures(raw: pd.DataFrame) -> pd.DataFrame:
    """ESS/s, its ratio to the same repeat's NUTS, the mean's distance; medians over repeats."""
    raw["ess_per_s"] = raw["ess"] / raw["seconds"]
    ref = raw[raw["method"] == "nuts"].set_index("repeat")
    raw["ratio_to_nuts"] = raw["ess_per_s"] / raw["repeat"].map(ref["ess_per_s"])
    ref_mean, ref_sd = (np.stack(raw["repeat"].map(ref[k])) for k in ("mean", "sd"))
    gap = np.abs(np.stack(raw["mean"]) - ref_mean) / ref_sd
    raw["max_mean_gap_in_sd"] = gap.max(axis=1)
    figures = ["seconds", "ess", "ess_per_s", "ratio_to_nuts", "max_mean_gap_in_sd"]
    table = raw.groupby(["method", "chains"], sort=False)[figures].median().reset_index()
    table["repeats"] = raw.groupby(["method", "chains"], sort=False).size().values
    return table


def _plot(table: pd.DataFrame, part: str, title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    chees = table[table["method"] == "chees"]
    fig, ax = plt.subplots(figsize=(6, 4), layout="constrained")
    ax.plot(chees["chains"], chees["ratio_to_nuts"], "o-", label="ChEES-HMC, one program")
    ax.axhline(1.0, color="grey", ls=":", label="NUTS, 4 chains (reference)")
    ax.axhline(4.0, color="C3", ls="--", label="target at 1024 chains")
    ax.set(xscale="log", xlabel="chains", ylabel="ESS/s of the predictions / NUTS's")
    ax.set_xticks(chees["chains"], [str(c) for c in chees["chains"]])
    ax.set_title(title)
    ax.legend()
    fig.savefig(OUT / f"many_chains_{part}.png", dpi=110)


PARTS = {"curve": part_curve, "gpu": part_gpu}


def main() -> None:
    run_parts(__doc__.split("\n")[0], "many_chains", PARTS)


if __name__ == "__main__":
    main()
