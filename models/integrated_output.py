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
    """Sum over columns k of log N(y_k; 0, s_k^2 I + P P^T), by Woodbury (PyTensor)."""
    n, width = y.shape[0], P.shape[1]
    var = s**2  # (K,)
    B = pt.eye(width)[None] + (P.T @ P)[None] / var[:, None, None]  # (K, H+1, H+1)
    L = pt.linalg.cholesky(B)
    Pty = (P.T @ y).T / var[:, None]  # (K, H+1)
    z = pt.linalg.solve_triangular(L, Pty[..., None], lower=True)[..., 0]
    quad = (y**2).sum(axis=0) / var - (z**2).sum(axis=-1)
    log_det = n * pt.log(var) + 2 * pt.log(pt.diagonal(L, axis1=-2, axis2=-1)).sum(axis=-1)
    return -0.5 * (quad + log_det + n * np.log(2 * np.pi)).sum()


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
