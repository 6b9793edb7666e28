"""Repeated NUTS fits of one model in one process: the kept program against a fresh one each fit.

A simulation-based calibration run, a cross-validation or a bootstrap fits one model
to many data sets of the same shapes. NUTS on NumPyro keeps one program per model
structure (``bnncat/models/inference/numpyro_program.py``); here each fit follows one
of the same model and runs its program (``kept``), against the same fits with the kept
programs and JAX's in-memory caches dropped before each (``fresh``: translated and
traced again, the compiled sampler loaded from the persistent cache, as before).
Unstandardised ``MLP((2,))`` on 20 rows, 2 chains of 300 + 200 draws (the size of an
SBC run in the test suite), the two modes interleaved fit by fit.

    python benchmarks/repeated_fits.py [--fits 8]
"""

import argparse
import statistics
import time
import warnings

import numpy as np


def one_fit(net, seed: int, fresh: bool) -> float:
    """Time a fit of ``net`` to the data set of ``seed``; drop kept programs first if ``fresh``."""
    from bnncat.models.inference import numpyro_program

    rng = np.random.default_rng(seed)
    X = rng.normal(size=(20, 1))
    y = np.sin(X[:, 0]) + 0.1 * rng.normal(size=20)
    if fresh:
        numpyro_program.forget_programs()
    start = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # too few draws for the convergence check
        net.fit(X, y, draws=200, tune=300, chains=2, random_seed=seed, progressbar=False)
    return time.perf_counter() - start


def main() -> None:
    """Time the fits and print the medians and their ratio."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--fits", type=int, default=8, help="fits per mode")
    args = parser.parse_args()
    from bnncat.models import MLP

    net = MLP((2,), standardize=False)
    times: dict[str, list[float]] = {"kept": [], "fresh": []}
    one_fit(net, 0, fresh=True)  # imports, the persistent cache's entries
    for seed in range(1, args.fits + 1):
        for mode in ("fresh", "kept"):
            times[mode].append(one_fit(net, seed, fresh=mode == "fresh"))
    kept = statistics.median(times["kept"])
    fresh = statistics.median(times["fresh"])
    print("| mode | median s per fit | fits |\n|:--|--:|--:|")
    print(f"| kept program | {kept:.3f} | {len(times['kept'])} |")
    print(f"| fresh each fit (cache on disk) | {fresh:.3f} | {len(times['fresh'])} |")
    print(f"\nkept / fresh: {kept / fresh:.2f}")


if __name__ == "__main__":
    main()
