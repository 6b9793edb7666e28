"""An MLP whose output layer is integrated out (Müller & Rios Insua 1998).

Given the hidden layers and the noise sd, a Gaussian likelihood and a Gaussian prior
on the output weights and bias make the output layer conjugate. In the standardised
units of y (column k, noise sd ``s_k``), with ``P`` the last hidden layer's activations
scaled by the prior sds and a column for the bias::

    y_k ~ N(0, s_k^2 I + P P^T)

whose log density Woodbury's identity gives at the cost of a Cholesky factor of the
(H+1)x(H+1) matrix ``B_k = I + P^T P / s_k^2``: O(N H^2), not O(N^3). NUTS samples
the hidden layers and sigma only; the output weights are then drawn exactly from
their Gaussian conditional, N(B_k^-1 P^T y_k / s_k^2, B_k^-1) in the prior-whitened
coordinates, so the result is a draw of the plain model's posterior. Gone with the
layer: the funnels between output weights and their prior scale, and the sign
flips of hidden units as separate copies of the output weights.
"""

from typing import Any

import numpy as np
import pymc as pm
import pytensor.tensor as pt
import xarray as xr
from pytensor.compile.builders import OpFromGraph
from pytensor.link.jax.dispatch import jax_funcify

from bnncat.models.data_spec import DataSpec

#: The Potential that carries the marginal likelihood of y.
MARGINAL = "y_marginal"


def add_marginal_likelihood(net: Any, h: Any, fan_in: int, y: np.ndarray, spec: DataSpec) -> None:
    """Add sigma and the likelihood of ``y`` with the output layer integrated out.

    ``h`` is the last hidden layer's activations (obs, fan_in) in the model on the
    context stack; the output layer's prior is the plain model's.
    """
    from bnncat.models.likelihoods import noise_scale
    from bnncat.models.mlp import weight_prior_scale  # mlp builds with this module

    scale = np.asarray(spec.y_scale, dtype=float)
    y_std = (np.asarray(y, dtype=float).reshape(len(y), -1) - np.asarray(spec.y_loc)) / scale
    if net.noise_sd is None:
        sigma = noise_scale(spec)
    else:
        fixed = pt.as_tensor(np.full(spec.n_outputs, net.noise_sd))
        sigma = pm.Deterministic("sigma", fixed, dims="output")
    P = prior_scaled_features(h, weight_prior_scale(net, "W_out", fan_in), net.bias_scale)
    log_lik = marginal_log_likelihood(P, pt.as_tensor(y_std), sigma / scale)
    pm.Potential(MARGINAL, log_lik - len(y_std) * np.log(scale).sum())  # Jacobian to y's units


def prior_scaled_features(h: Any, w_scale: Any, b_scale: float) -> Any:
    """[h * w_scale, b_scale]: the features whose outer product is the prior covariance."""
    return pt.concatenate([h * w_scale, pt.ones((h.shape[0], 1)) * b_scale], axis=1)


def marginal_log_likelihood(P: Any, y: Any, s: Any) -> Any:
    """Sum over columns k of log N(y_k; 0, s_k^2 I + P P^T), by Woodbury (PyTensor).

    One op (:class:`WoodburyMarginal`) whose gradient is given in closed form, in
    PyTensor and in JAX: NUTS on numpyro differentiates the log density in JAX, and
    JAX's derivative through the Cholesky factor (triangular solves with matrix
    right-hand sides) cost 1.3x the closed form's on a 1x50 net.
    """
    P, y, s = (pt.as_tensor(a) for a in (P, y, s))
    inputs = [P.type(), y.type(), s.type()]
    op = WoodburyMarginal(inputs, [_marginal_value(*inputs)], pullback=_marginal_gradients)
    return op(P, y, s)


class WoodburyMarginal(OpFromGraph):
    """The marginal log-likelihood as one op, so that the JAX backend can give its gradient."""


def _woodbury(P: Any, y: Any, s: Any) -> tuple[Any, Any, Any, Any]:
    """Per column k: v_k = s_k^2, B_k's Cholesky factor, a_k = P^T y_k / v_k, x_k = B_k^-1 a_k."""
    var = s**2  # (K,)
    B = pt.eye(P.shape[1])[None] + (P.T @ P)[None] / var[:, None, None]  # (K, H+1, H+1)
    L = pt.linalg.cholesky(B)
    a = (P.T @ y).T / var[:, None]  # (K, H+1)
    z = pt.linalg.solve_triangular(L, a[..., None], lower=True)
    x = pt.linalg.solve_triangular(pt.swapaxes(L, -1, -2), z, lower=False)[..., 0]
    return var, L, a, x


def _marginal_value(P: Any, y: Any, s: Any) -> Any:
    n = y.shape[0]
    var, L, a, x = _woodbury(P, y, s)
    quad = (y**2).sum(axis=0) / var - (a * x).sum(axis=-1)
    log_det = n * pt.log(var) + 2 * pt.log(pt.diagonal(L, axis1=-2, axis2=-1)).sum(axis=-1)
    return -0.5 * (quad + log_det + n * np.log(2 * np.pi)).sum()


def _marginal_gradients(inputs: list, outputs: list, grads: list) -> list:
    """Gradients of the marginal log density, with C_k = v_k I + P P^T and alpha_k = C_k^-1 y_k.

    d/dP = sum_k (alpha_k alpha_k^T - C_k^-1) P, where C_k^-1 P = P B_k^-1 / v_k;
    d/dv_k = (alpha_k^T alpha_k - tr C_k^-1) / 2, with tr C_k^-1 = (n - H - 1 + tr B_k^-1) / v_k;
    d/dy_k = -alpha_k.
    """
    P, y, s = inputs
    (g,) = grads
    n, width = y.shape[0], P.shape[1]
    var, L, _, x = _woodbury(P, y, s)
    alpha = (y - P @ x.T) / var  # (n, K)
    eye = pt.eye(width)[None] * pt.ones_like(var)[:, None, None]
    B_inv = pt.linalg.cho_solve((L, True), eye)  # (K, H+1, H+1)
    d_P = alpha @ (alpha.T @ P) - P @ (B_inv / var[:, None, None]).sum(axis=0)
    trace = (n - width + pt.trace(B_inv, axis1=-2, axis2=-1)) / var
    d_var = 0.5 * ((alpha**2).sum(axis=0) - trace)
    return [g * d_P, -g * alpha, g * d_var * 2 * s]


@jax_funcify.register(WoodburyMarginal)
def _jax_woodbury_marginal(op: WoodburyMarginal, **kwargs: Any) -> Any:
    """Return the JAX form of :func:`_marginal_value`, :func:`_marginal_gradients` its VJP."""
    import jax
    import jax.numpy as jnp

    def forward(P: Any, y: Any, s: Any) -> tuple[Any, tuple]:
        n, width = P.shape
        var = s**2
        B = jnp.eye(width, dtype=P.dtype) + (P.T @ P)[None] / var[:, None, None]
        L = jnp.linalg.cholesky(B)
        a = (P.T @ y).T / var[:, None]
        x = jax.scipy.linalg.cho_solve((L, True), a[..., None])[..., 0]
        quad = (y**2).sum(axis=0) / var - (a * x).sum(axis=-1)
        log_det = n * jnp.log(var) + 2 * jnp.log(jnp.diagonal(L, axis1=-2, axis2=-1)).sum(-1)
        value = -0.5 * (quad + log_det + n * np.log(2 * np.pi)).sum()
        return value, (P, y, s, B, x)

    def backward(residuals: tuple, g: Any) -> tuple:
        P, y, s, B, x = residuals
        n, width = P.shape
        var = s**2
        alpha = (y - P @ x.T) / var
        B_inv = jnp.linalg.inv(B)  # (H+1)^2 numbers: LU beats two triangular solves here
        d_P = alpha @ (alpha.T @ P) - P @ (B_inv / var[:, None, None]).sum(axis=0)
        trace = (n - width + jnp.trace(B_inv, axis1=-2, axis2=-1)) / var
        d_var = 0.5 * ((alpha**2).sum(axis=0) - trace)
        return g * d_P, -g * alpha, g * d_var * 2 * s

    @jax.custom_vjp
    def marginal(P: Any, y: Any, s: Any) -> Any:
        return forward(P, y, s)[0]

    marginal.defvjp(forward, backward)
    return marginal


def draw_output_layer(
    idata: xr.DataTree, net: Any, X: np.ndarray, y: np.ndarray, spec: DataSpec, seed: int
) -> xr.DataTree:
    """Add exact conditional draws of ``W_out`` and ``b_out`` (and ``observed_data``) to a fit.

    One draw per posterior draw of the hidden layers and sigma, from the Gaussian
    conditional of the output layer given them and the data.
    """
    from bnncat.models.mlp import hidden_activations

    post = idata["posterior"].to_dataset()
    params = {k: post[k].values for k in post.data_vars}
    h = hidden_activations(params, X, activation=net.activation, spec=spec)[-1]
    w_scale = _output_prior_scale(net, post, h.shape[-1])
    P = np.concatenate([h * w_scale, np.full((*h.shape[:-1], 1), net.bias_scale)], axis=-1)
    scale = np.asarray(spec.y_scale, dtype=float)
    y_std = (np.asarray(y, dtype=float).reshape(len(y), -1) - np.asarray(spec.y_loc)) / scale
    s = post["sigma"].values / scale  # (chain, draw, K)
    v = _conditional_draws(P, y_std, s, np.random.default_rng(seed))  # (chain, draw, H+1, K)
    W = v[..., :-1, :] * w_scale
    b = v[..., -1, :] * net.bias_scale
    hidden_dim = f"hidden{net.n_hidden_layers}"
    post["W_out"] = (("chain", "draw", hidden_dim, "output"), W)
    post["b_out"] = (("chain", "draw", "output"), b)
    post = post.assign_coords(output=list(spec.output_names))
    idata["posterior"] = post
    obs = idata["constant_data"]["obs"].values
    idata["observed_data"] = xr.Dataset(
        {"y": (("obs", "output"), np.asarray(y, dtype=float).reshape(len(y), -1))},
        coords={"obs": obs, "output": list(spec.output_names)},
    )
    return idata


def _output_prior_scale(net: Any, post: xr.Dataset, fan_in: int) -> np.ndarray:
    """Return the output weights' prior sd: per draw (chain, draw, 1, 1) where it is learned."""
    from bnncat.models.mlp import weight_prior_scale

    if "W_out_sd" in post:  # hierarchical: the draws' own sd
        return post["W_out_sd"].values[..., None, None]
    return np.asarray(weight_prior_scale(net, "W_out", fan_in), dtype=float)


def _conditional_draws(P: np.ndarray, y: np.ndarray, s: np.ndarray, rng: Any) -> np.ndarray:
    """Draws of the whitened output layer v ~ N(B^-1 P^T y / s^2, B^-1), per draw and column."""
    var = s**2  # (chain, draw, K)
    PtP = np.einsum("cdni,cdnj->cdij", P, P)
    Pty = np.einsum("cdni,nk->cdki", P, y)  # (chain, draw, K, H+1)
    B = np.eye(P.shape[-1]) + PtP[:, :, None] / var[..., None, None]  # (c, d, K, H+1, H+1)
    L = np.linalg.cholesky(B)
    mean = np.linalg.solve(B, (Pty / var[..., None])[..., None])[..., 0]
    z = rng.standard_normal(mean.shape)
    # B = L L^T, so L^-T z has covariance B^-1
    noise = np.linalg.solve(np.swapaxes(L, -1, -2), z[..., None])[..., 0]
    return np.swapaxes(mean + noise, -1, -2)  # (chain, draw, H+1, K)
