"""The K-component Gaussian mixture likelihood, as a PyMC distribution safe to differentiate in JAX.

``pm.NormalMixture`` sums its components with PyTensor's ``logsumexp``, which
PyTensor lowers to ``max(x) + log(sum(exp(x - max(x))))``. JAX differentiates
that ``max`` by dividing by the number of entries equal to it, and XLA may
recompute the entries in another fusion with different rounding, so the count
can be 0: inside numpyro's compiled NUTS loop the gradient became NaN after a
few steps, and every transition of a mixture fit diverged (JAX PR #2260 describes
the same trap; ``tests/test_normal_mixture.py`` reproduces it). Folding the
components with the elementwise ``logaddexp`` has no such division, so this
module defines the same distribution with that log density.
"""

from collections.abc import Sequence
from dataclasses import dataclass
from functools import partial
from typing import Any, ClassVar

import numpy as np
import pymc as pm
import pytensor.tensor as pt

from bnncat.models.likelihoods import Likelihood


def normal_mixture_logp(value: Any, w: Any, mu: Any, sigma: Any, *, n_components: int) -> Any:
    """Log density of ``value`` under Σ_k w_k N(mu_k, sigma_k); components on the last axis."""
    per_component = pt.log(w) + pm.logp(pm.Normal.dist(mu, sigma), value[..., None])
    out = per_component[..., 0]
    for k in range(1, n_components):
        out = pt.logaddexp(out, per_component[..., k])
    return out


def normal_mixture_draws(
    w: np.ndarray,
    mu: np.ndarray,
    sigma: np.ndarray,
    rng: np.random.Generator | None = None,
    size: Sequence[int] | None = None,
) -> np.ndarray:
    """Draw from the mixture: a component by its weight, then that component's normal."""
    rng = np.random.default_rng() if rng is None else rng
    w, mu, sigma = np.broadcast_arrays(w, mu, sigma)
    if size is not None:
        shape = tuple(np.atleast_1d(size)) + w.shape[-1:]
        w, mu, sigma = (np.broadcast_to(a, shape) for a in (w, mu, sigma))
    u = rng.random(w.shape[:-1] + (1,))
    k = np.minimum((np.cumsum(w, axis=-1) < u).sum(axis=-1, keepdims=True), w.shape[-1] - 1)
    pick = np.take_along_axis
    return rng.normal(pick(mu, k, axis=-1)[..., 0], pick(sigma, k, axis=-1)[..., 0])


def normal_mixture_logcdf(value: Any, w: Any, mu: Any, sigma: Any) -> Any:
    """Log CDF of ``value`` under the mixture: the weighted sum of the components' CDFs."""
    per_component = pt.log(w) + pm.logcdf(pm.Normal.dist(mu, sigma), value[..., None])
    return pt.logsumexp(per_component, axis=-1)


@dataclass(frozen=True, eq=False)
class NormalMixture(Likelihood):
    """The likelihood Σ_k w_k N(mu_k, sigma_k), components on the last axis of each argument."""

    n_components: int
    name: ClassVar[str] = "normal_mixture"

    def dist(self, w: Any, mu: Any, sigma: Any) -> Any:
        """Return the mixture as an unregistered ``pm.CustomDist``."""
        return pm.CustomDist.dist(
            w,
            mu,
            sigma,
            logp=partial(normal_mixture_logp, n_components=self.n_components),
            logcdf=normal_mixture_logcdf,
            random=normal_mixture_draws,
            signature="(k),(k),(k)->()",
        )


def normal_mixture(
    name: str,
    w: Any,
    mu: Any,
    sigma: Any,
    *,
    n_components: int,
    observed: np.ndarray | None,
    dims: tuple[str, ...],
) -> Any:
    """Add ``name`` ~ Σ_k w_k N(mu_k, sigma_k) to the model on the context stack.

    ``w``, ``mu`` and ``sigma`` broadcast against each other and carry the
    ``n_components`` components on their last axis; the variable has their
    other axes.

    Examples
    --------
    >>> import numpy as np, pymc as pm
    >>> from bnncat.models.normal_mixture import normal_mixture
    >>> with pm.Model(coords={"obs": range(3)}) as model:
    ...     y = normal_mixture("y", np.array([0.3, 0.7]), np.array([-1.0, 1.0]),
    ...                        np.array([0.5, 0.5]), n_components=2,
    ...                        observed=np.zeros(3), dims=("obs",))
    >>> float(model.compile_logp()({})) < 0
    True
    """
    return NormalMixture(n_components).observe(
        {"w": w, "mu": mu, "sigma": sigma}, observed, dims, name=name
    )
