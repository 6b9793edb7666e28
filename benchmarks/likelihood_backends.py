"""A likelihood's log density, log CDF and draws as the catalogue computes them, against SciPy.

Issue 12 asks for one definition per likelihood, from which prediction, LOO,
calibration, density and plots take what they need, derived either from PyMC
(``pm.logp``, ``pm.logcdf``, draws; compiled once) or from a table of SciPy
distributions. ``bnncat.models.likelihoods`` derives them from PyMC; this times
its ``logp``, ``logcdf`` and ``draw`` on 4000 draws x 1000 rows (normal, Student-t,
a 3-component normal mixture) against SciPy / NumPy on the same arrays, checks
that they agree (and prints the largest differences), and prints the times as
ratios catalogue / SciPy, measured in the same run (best of 5).

    python benchmarks/likelihood_backends.py
"""

import time

import numpy as np
from scipy import special, stats

from bnncat.models.likelihoods import LIKELIHOODS
from bnncat.models.normal_mixture import NormalMixture

DRAWS, ROWS, REPEATS = 4000, 1000, 5


def best_of(func, *args) -> float:
    times = []
    for _ in range(REPEATS):
        start = time.perf_counter()
        func(*args)
        times.append(time.perf_counter() - start)
    return min(times)


def mixture_scipy(w, mu, sigma):
    """SciPy's side of the mixture: the weighted components (log-sum-exp over the last axis)."""

    def logpdf(y):
        return special.logsumexp(np.log(w) + stats.norm.logpdf(y[..., None], mu, sigma), axis=-1)

    def logcdf(y):
        return np.log((w * stats.norm.cdf(y[..., None], mu, sigma)).sum(axis=-1))

    return logpdf, logcdf


def cases(rng):
    """(name, likelihood, its parameters, SciPy's log density and log CDF) per case."""
    mu = rng.normal(size=(DRAWS, ROWS))
    sigma = rng.uniform(0.5, 2.0, size=(DRAWS, 1))
    nu = rng.uniform(2.0, 10.0, size=(DRAWS, 1))
    normal, t = stats.norm(mu, sigma), stats.t(nu, mu, sigma)
    yield "normal", LIKELIHOODS["normal"], {"mu": mu, "sigma": sigma}, normal.logpdf, normal.logcdf
    params = {"mu": mu, "sigma": sigma, "nu": nu}
    yield "studentt", LIKELIHOODS["studentt"], params, t.logpdf, t.logcdf
    w = rng.dirichlet(np.ones(3), size=(DRAWS, 1))
    mix = {
        "w": w,
        "mu": mu[..., None] + np.array([-1.0, 0.0, 1.0]),
        "sigma": np.broadcast_to(sigma[..., None], (DRAWS, 1, 3)),
    }
    yield "mixture", NormalMixture(3), mix, *mixture_scipy(mix["w"], mix["mu"], mix["sigma"])


def main() -> None:
    rng = np.random.default_rng(0)
    y = rng.normal(size=ROWS)
    print(f"{DRAWS} draws x {ROWS} rows; seconds, best of {REPEATS}; ratio catalogue / SciPy")
    for name, lik, params, logpdf, logcdf in cases(rng):
        for what, ours, theirs in (
            ("log density", lik.logp, logpdf),
            ("log CDF", lik.logcdf, logcdf),
        ):
            diff = np.abs(np.exp(ours(params, y)) - np.exp(theirs(y))).max()
            a, b = best_of(ours, params, y), best_of(theirs, y)
            print(
                f"{name:9s} {what:12s} catalogue {a:.3f}  SciPy {b:.3f}  ratio {a / b:.2f}  "
                f"max |difference| {diff:.1e}"
            )
    mu, sigma = rng.normal(size=(DRAWS, ROWS)), rng.uniform(0.5, 2.0, size=(DRAWS, 1))
    a = best_of(LIKELIHOODS["normal"].draw, {"mu": mu, "sigma": sigma}, 1)
    b = best_of(rng.normal, mu, sigma)
    print(f"{'normal':9s} {'draws':12s} catalogue {a:.3f}  NumPy {b:.3f}  ratio {a / b:.2f}")


if __name__ == "__main__":
    main()
