"""The linearised (GLM) predictive of a Laplace fit (Immer, Korzepa & Bauer 2021).

The network output is replaced by its first-order expansion at each restart's
MAP, f(x, theta*) + J(x) (theta - theta*), and the Laplace draws of theta pass
through that instead of the network. The predictive is then what the Gaussian
approximates well: a model linear in the parameters, whose posterior the Laplace
Gaussian is for a Gaussian likelihood. Sampling weights through the nonlinear
network instead mixes the approximation's error with the network's curvature,
which is what makes sampled Laplace underfit (Lawrence 2001; Immer et al. 2021).
"""

from typing import Any

import numpy as np
import pymc as pm
import xarray as xr
from pymc.sampling.jax import get_jaxified_graph
from pytensor.graph.traversal import ancestors

from bnncat.models.inference.flat_draws import flat_posterior
from bnncat.models.jax_runtime import jax_session
from bnncat.models.mlp import NET_OUT


def check_linearizable(idata: xr.DataTree) -> None:
    """Refuse a fit that is not a Laplace fit, or whose draws were relabelled."""
    if "laplace" not in idata.children:
        raise ValueError(
            "predictive='linearized' needs a Laplace fit (method='laplace'): "
            "idata has no laplace group with the MAP to linearise at"
        )
    if "relabelling" in idata.children:
        raise ValueError(
            "predictive='linearized' needs the draws as fitted: these were relabelled, and the "
            "MAP they expand around was not; predict with the fit before canonicalize"
        )


def linearized_draws(
    idata: xr.DataTree, X: np.ndarray, net: Any, spec: Any, model: pm.Model, random_seed: Any
) -> tuple[np.ndarray, np.ndarray]:
    """Network output ``mu`` and one draw of ``y`` per draw at ``X``, under the linearised network.

    ``model`` is the prediction model of ``X`` (``net.build_validated(X, None, spec)``).
    """
    head, params = linearized_head(idata, X, net, spec, model)
    obs = net.parameters_of_head(head, params, spec)
    seed = np.random.SeedSequence(random_seed).generate_state(1)[0]
    return net.mean_of_head(head, params, spec), net.lik.draw(obs, int(seed))


def linearized_head(
    idata: xr.DataTree, X: np.ndarray, net: Any, spec: Any, model: pm.Model | None = None
) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """Return the linearised network's raw output (chain, draw, n, head) at ``X``, and the draws."""
    check_linearizable(idata)
    model = model or net.build_validated(X, None, spec)
    post = idata["posterior"]
    names, draws = flat_posterior(model, post)
    means = idata["laplace"]["mean"].values  # (chain, size), the same flat layout
    with jax_session("float64"):
        head = _linearized_head(model, names, means, draws)
    return head, {k: post[k].values for k in post.data_vars}


def _linearized_head(
    model: pm.Model, names: list[str], means: np.ndarray, draws: np.ndarray
) -> np.ndarray:
    """f(X, m_c) + J(X, m_c) (theta - m_c) for every draw theta of every chain c."""
    import jax

    values = [v for v in model.value_vars if v.name in names]
    [net_out] = [v for v in ancestors([model["mu"]]) if v.name == NET_OUT]
    [net_out] = model.replace_rvs_by_values([net_out])
    graph = get_jaxified_graph(values, [net_out])
    point = model.initial_point()
    shapes = [np.shape(point[v.name]) for v in values]
    sizes = [int(np.prod(s)) for s in shapes]
    cuts = np.cumsum(sizes)[:-1]

    def head(x: Any) -> Any:
        parts = [p.reshape(s) for p, s in zip(jax.numpy.split(x, cuts), shapes, strict=True)]
        return graph(*parts)[0]

    @jax.jit
    def chain(mean: Any, thetas: Any) -> Any:
        f0, push = jax.linearize(head, mean)
        return f0 + jax.vmap(push)(thetas - mean)

    return np.stack([np.asarray(chain(m, d)) for m, d in zip(means, draws, strict=True)])
