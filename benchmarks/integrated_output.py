"""The output layer integrated out against the plain model: ESS of the predictions per second.

``energy``
    1x50 tanh on ``energy`` (768 rows, 8 inputs), NUTS with the catalogue's
    defaults (4 chains of 1000 + 1000, numpyro), ``MLP(output_layer="sampled")``
    against ``MLP(output_layer="integrated")``; each fit in a fresh Python, the two
    interleaved in every repeat. Figures: wall time of the fit (imports excluded;
    the integrated model's time includes drawing the output layer), the smallest
    bulk ESS of the network output at 50 held-in probe rows, ESS/s and its ratio
    to the plain model's in the same repeat (target >= 2), divergences, and the
    predictive mean's largest gap between the two fits in the plain fit's
    posterior sds; medians over repeats.

    python benchmarks/integrated_output.py --part energy          # 3 repeats
    python benchmarks/integrated_output.py --part energy --quick  # 1 repeat
"""

import time

import numpy as np
import pandas as pd
from parts import in_fresh_process, run_parts

REPEATS = 3
PROBES = 50


def timed_fit(output_layer: str, seed: int) -> dict:
    """Fit 1x50 on energy in this (fresh) process; ESS of the predictions and wall time."""
    import arviz as az

    from bnncat import data
    from bnncat.models import MLP, fit, predict

    ds = data.load("energy")
    net = MLP((50,), output_layer=output_layer)
    start = time.perf_counter()
    idata = fit(net, ds.X, ds.y, random_seed=seed, progressbar=False)
    seconds = time.perf_counter() - start
    probes = ds.X[np.linspace(0, len(ds.X) - 1, PROBES).astype(int)]
    mu = predict(idata, probes)["predictions"]["mu"]
    return {
        "seconds": seconds,
        "ess": float(az.ess(mu.to_dataset(name="mu"), method="bulk")["mu"].min()),
        "divergences": int(idata["sample_stats"]["diverging"].sum()),
        "mean": mu.mean(("chain", "draw")).values.ravel().tolist(),
        "sd": mu.std(("chain", "draw")).values.ravel().tolist(),
    }


def part_energy(quick: bool) -> pd.DataFrame:
    rows = []
    for repeat in range(1 if quick else REPEATS):
        for layer in ("sampled", "integrated"):
            row = in_fresh_process("integrated_output", "timed_fit", layer, repeat)
            rows.append({"repeat": repeat, "output_layer": layer, **row})
            print(layer, round(row["seconds"]), round(row["ess"]), flush=True)
    raw = pd.DataFrame(rows)
    raw["ess_per_s"] = raw["ess"] / raw["seconds"]
    ref = raw[raw["output_layer"] == "sampled"].set_index("repeat")
    raw["ratio_to_plain"] = raw["ess_per_s"] / raw["repeat"].map(ref["ess_per_s"])
    ref_mean, ref_sd = (np.stack(raw["repeat"].map(ref[k])) for k in ("mean", "sd"))
    raw["max_mean_gap_in_sd"] = (np.abs(np.stack(raw["mean"]) - ref_mean) / ref_sd).max(axis=1)
    figures = ["seconds", "ess", "ess_per_s", "ratio_to_plain", "divergences", "max_mean_gap_in_sd"]
    table = raw.groupby("output_layer", sort=False)[figures].median().reset_index()
    table["repeats"] = raw.groupby("output_layer", sort=False).size().values
    return table


PARTS = {"energy": part_energy}


def main() -> None:
    run_parts(__doc__.split("\n")[0], "integrated_output", PARTS)


if __name__ == "__main__":
    main()
