"""Pointwise log density, log CDF and draws of a likelihood: PyMC compiled once, or SciPy.

Issue 12 asks for one definition per likelihood, from which prediction, LOO,
calibration, density and plots take what they need, derived either from PyMC
(``pm.logp``, ``pm.logcdf``, draws; compiled once) or from a table of SciPy
distributions. This times both on 4000 draws x 1000 rows (normal and Student-t
with its location and scale per draw and row), checks that they agree, and prints
the times as ratios PyMC / SciPy, measured in the same run (best of 5).

    python benchmarks/likelihood_backends.py
"""

import time

import numpy as np
import pymc as pm
import pytensor
import pytensor.tensor as pt
from scipy import stats

DRAWS, ROWS, REPEATS = 4000, 1000, 5


def best_of(func, *args) -> float:
    times = []
    for _ in range(REPEATS):
        start = time.perf_counter()
        func(*args)
        times.append(time.perf_counter() - start)
    return min(times)


def main() -> None:
    rng = np.random.default_rng(0)
    mu = rng.normal(size=(DRAWS, ROWS))
    sigma = np.repeat(rng.uniform(0.5, 2.0, size=(DRAWS, 1)), ROWS, axis=1)
    y = rng.normal(size=ROWS)
    m, s, obs = pt.matrix("mu"), pt.matrix("sigma"), pt.vector("y")
    cases = {
        "normal": (pm.Normal.dist(mu=m, sigma=s), stats.norm(loc=mu, scale=sigma)),
        "studentt": (pm.StudentT.dist(nu=4.0, mu=m, sigma=s), stats.t(4.0, loc=mu, scale=sigma)),
    }
    print(f"{DRAWS} draws x {ROWS} rows; seconds, best of {REPEATS}; ratio PyMC / SciPy")
    for name, (dist, frozen) in cases.items():
        logp = pytensor.function([m, s, obs], pm.logp(dist, obs))
        logcdf = pytensor.function([m, s, obs], pm.logcdf(dist, obs))
        np.testing.assert_allclose(logp(mu, sigma, y), frozen.logpdf(y), rtol=1e-8)
        np.testing.assert_allclose(logcdf(mu, sigma, y), frozen.logcdf(y), rtol=1e-6, atol=1e-12)
        for what, ours, theirs in (
            ("log density", logp, frozen.logpdf),
            ("log CDF", logcdf, frozen.logcdf),
        ):
            a, b = best_of(ours, mu, sigma, y), best_of(theirs, y)
            print(f"{name:9s} {what:12s} PyMC {a:.3f}  SciPy {b:.3f}  ratio {a / b:.2f}")
    draw = pytensor.function([m, s], pm.Normal.dist(mu=m, sigma=s))
    a, b = best_of(draw, mu, sigma), best_of(rng.normal, mu, sigma)
    print(f"{'normal':9s} {'draws':12s} PyMC {a:.3f}  NumPy {b:.3f}  ratio {a / b:.2f}")


if __name__ == "__main__":
    main()
