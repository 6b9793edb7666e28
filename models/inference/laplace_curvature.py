"""The log posterior of a PyMC model as JAX functions of its flat unconstrained vector.

Laplace needs more than one log density: the whole log posterior (its mode and
exact Hessian), its likelihood and prior apart (the generalised Gauss-Newton and
the evidence), and the network output (the GGN's Jacobian and the linearised
predictive). All come from PyMC's own graphs, translated to JAX by
``get_jaxified_graph``; the network output is the builders' node named
:data:`~bnncat.models.mlp.NET_OUT`.
"""

import functools
import re
from dataclasses import dataclass
from typing import Any

import numpy as np
import pymc as pm
from pymc.sampling.jax import get_jaxified_graph
from pytensor.graph.replace import graph_replace
from pytensor.graph.traversal import ancestors

from bnncat.models.mlp import NET_OUT

#: Curvatures of the negative log posterior a Laplace fit can use.
HESSIANS = ("full", "ggn", "diag", "last_layer")
#: Value variables of hidden layers (``W1``, ``b2``, ``W1_lead``, ``W1_sd_log__``...).
_HIDDEN_LAYER = re.compile(r"^[Wb]\d+(_|$)")
#: Columns of a Hessian, and rows of draws, computed in one vectorised JAX call (memory).
_CHUNK = 64
_ROWS = 64


@dataclass(frozen=True)
class FlatModel:
    """JAX functions of the flat unconstrained values ``x`` of one PyMC model.

    ``log_density(x)``: log density with the transforms' Jacobians of one vector
    (to trace into other programs), ``log_posterior(xs)`` that of each row of ``xs``,
    and ``value_and_grad(x)`` of one vector with its gradient;
    ``log_prior(x)``: all but the likelihood (the prior, or the Gaussian an
    ``update`` put in its place); ``log_likelihood(x, head)``: the
    observed part, with the network output replaced by ``head``;
    ``log_likelihood_rows(x)``: its terms, one per observation (and output);
    ``head(x)``: the
    network output (obs, head). ``blocks`` holds the jitted Hessian-vector
    products by curvature (see :func:`precision_parts`).
    """

    shapes: dict[str, tuple[int, ...]]
    log_density: Any
    log_posterior: Any
    value_and_grad: Any
    log_prior: Any
    log_likelihood: Any
    log_likelihood_rows: Any
    head: Any
    blocks: dict[str, Any]

    @property
    def size(self) -> int:
        """Length of the flat vector."""
        return int(sum(np.prod(s) for s in self.shapes.values()))

    def flatten(self, point: dict[str, np.ndarray]) -> np.ndarray:
        """Concatenate a point {value name: array} into the flat vector."""
        return np.concatenate([np.ravel(point[name]) for name in self.shapes])

    def unflatten(self, flat: Any) -> dict[str, Any]:
        """Split (..., n) flat values into {value name: (..., *shape)}."""
        return unflatten_values(flat, self.shapes)

    def log_densities(self, xs: np.ndarray) -> np.ndarray:
        """Log posterior of every row of ``xs`` (..., size), a bounded number of rows at a time."""
        rows = np.asarray(xs).reshape(-1, self.size)
        done = [
            np.asarray(self.log_posterior(rows[i : i + _ROWS])) for i in range(0, len(rows), _ROWS)
        ]
        return np.concatenate(done).reshape(np.shape(xs)[:-1])

    def last_layer_indices(self) -> np.ndarray:
        """Flat positions of everything but the hidden layers' weights and biases."""
        keep, start = [], 0
        for name, shape in self.shapes.items():
            size = int(np.prod(shape))
            if not _HIDDEN_LAYER.match(name):
                keep.extend(range(start, start + size))
            start += size
        return np.asarray(keep, dtype=int)


def unflatten_values(flat: Any, shapes: dict[str, tuple[int, ...]]) -> dict[str, Any]:
    """Split (..., n) flat values into {value name: (..., *shape)} for the given shapes."""
    out, start = {}, 0
    for name, shape in shapes.items():
        size = int(np.prod(shape))
        out[name] = flat[..., start : start + size].reshape((*flat.shape[:-1], *shape))
        start += size
    return out


def flat_model(model: pm.Model, temperature: float = 1.0) -> FlatModel:
    """Translate ``model``'s log densities and network output to JAX (call in a float64 session).

    ``temperature`` divides the log-likelihood, as the Potential of a tempered model
    does inside ``model.logp()``.
    """
    import jax

    values = model.value_vars
    point = model.initial_point()
    shapes = {v.name: np.shape(point[v.name]) for v in values}
    [observed] = model.observed_RVs
    net_out = _network_output(observed)
    head = net_out.type()
    # the head enters the observed variable's graph, before PyMC's log-density rewrites
    [observed_of_head] = graph_replace([observed], {net_out: head}, strict=False)
    log_lik = pm.logp(observed_of_head, model.rvs_to_values[observed]).sum() / temperature
    log_lik_of_head, net_out = model.replace_rvs_by_values([log_lik, net_out])
    log_lik_plain = model.logp(vars=model.observed_RVs) / temperature
    graphs = {
        "posterior": (values, [model.logp()]),
        # everything but the (tempered) likelihood: the prior, or what replaced it (update)
        "prior": (values, [model.logp() - log_lik_plain]),
        "likelihood": ([*values, head], [log_lik_of_head]),
        "head": (values, [net_out]),
        # the likelihood of each observation (an ensemble member's bootstrap weights them)
        "rows": (values, [model.logp(vars=model.observed_RVs, sum=False)[0] / temperature]),
    }

    @functools.cache
    def jaxified(name: str) -> Any:
        """Translate a graph when first used (PyTensor's rewrites take ~0.2 s a graph).

        That may be inside a JAX trace: its constants must be concrete arrays, not tracers.
        """
        with jax.ensure_compile_time_eval():
            return get_jaxified_graph(*graphs[name])

    def of(name: str) -> Any:
        return lambda x, *more: jaxified(name)(*unflatten_values(x, shapes).values(), *more)[0]

    log_lik_fn, head_fn, prior_fn = of("likelihood"), of("head"), of("prior")
    blocks = {
        "likelihood": _hessian_block(lambda x: log_lik_fn(x, head_fn(x))),
        "ggn": _ggn_block(log_lik_fn, head_fn),
        "prior": _hessian_block(prior_fn),
    }
    return FlatModel(
        shapes,
        log_density=of("posterior"),
        log_posterior=jax.jit(jax.vmap(of("posterior"))),
        value_and_grad=jax.jit(jax.value_and_grad(of("posterior"))),
        log_prior=jax.jit(prior_fn),
        log_likelihood=jax.jit(log_lik_fn),
        log_likelihood_rows=of("rows"),
        head=jax.jit(head_fn),
        blocks=blocks,
    )


def _network_output(observed: Any) -> Any:
    """Find the node named NET_OUT among the observed variable's ancestors (builders name it)."""
    found = [v for v in ancestors([observed]) if v.name == NET_OUT]
    if not found:
        raise ValueError(
            f"the model has no network output named {NET_OUT!r}: build it with a catalogue builder"
        )
    return found[0]


def precision_parts(flat: FlatModel, x: np.ndarray, hessian: str) -> tuple[np.ndarray, np.ndarray]:
    """Return the likelihood's and the prior's parts of the curvature of -log p at ``x``.

    ``full`` and ``diag`` take the exact Hessian of the likelihood; ``ggn`` its
    generalised Gauss-Newton: J^T (-d^2 log p(y | out)) J with ``out`` the network
    output and the likelihood's own parameters, and J their Jacobian in ``x``. It
    drops the network's second derivatives, which is exact for a network linear in
    its weights. ``last_layer`` gives the rows and columns of the output layer and
    the likelihood's parameters, from the exact Hessian.
    """
    columns = flat.last_layer_indices() if hessian == "last_layer" else np.arange(flat.size)
    lik = _columns(flat.blocks["ggn" if hessian == "ggn" else "likelihood"], x, columns)
    prior = _columns(flat.blocks["prior"], x, columns)
    return -lik[:, columns], -prior[:, columns]


def _hessian_block(fn: Any) -> Any:
    """Jitted Hessian-vector products of ``fn`` at ``x`` with the rows of ``vs``."""
    import jax

    grad = jax.grad(fn)
    return jax.jit(lambda x, vs: jax.vmap(lambda v: jax.jvp(grad, (x,), (v,))[1])(vs))


def _ggn_block(log_likelihood: Any, head: Any) -> Any:
    """Jitted products of the generalised Gauss-Newton of the log-likelihood with rows of ``vs``.

    With ``g(x) = (x, head(x))`` and ``L(x, h)`` the log-likelihood, the GGN is
    J_g^T (d^2 L) J_g; ``x`` stays among the outputs so that parameters entering
    the likelihood directly (``sigma``) keep their exact curvature.
    """
    import jax

    grad_l = jax.grad(log_likelihood, argnums=(0, 1))

    def block(x: Any, vs: Any) -> Any:
        h0, pull_back = jax.vjp(head, x)

        def column(v: Any) -> Any:
            dh = jax.jvp(head, (x,), (v,))[1]
            _, (cx, ch) = jax.jvp(grad_l, (x, h0), (v, dh))
            return cx + pull_back(ch)[0]

        return jax.vmap(column)(vs)

    return jax.jit(block)


def _columns(block: Any, x: np.ndarray, columns: np.ndarray) -> np.ndarray:
    """Apply ``block`` at ``x`` to the unit vectors of ``columns``, ``_CHUNK`` at a time.

    Returns them as rows (the matrices are symmetric), (len(columns), size).
    """
    eye = np.eye(len(x))
    padded = np.concatenate([columns, np.repeat(columns[-1:], -len(columns) % _CHUNK)])
    starts = range(0, len(padded), _CHUNK)
    rows = [np.asarray(block(x, eye[padded[i : i + _CHUNK]])) for i in starts]
    return np.concatenate(rows, axis=0)[: len(columns)].astype(np.float64)


def positive_semidefinite(matrix: np.ndarray) -> tuple[np.ndarray, int]:
    """Set the negative eigenvalues of ``matrix`` to zero; return it and how many there were."""
    eigval, eigvec = np.linalg.eigh((matrix + matrix.T) / 2)
    return (eigvec * np.maximum(eigval, 0.0)) @ eigvec.T, int((eigval < 0).sum())


def positive_definite(precision: np.ndarray) -> tuple[np.ndarray, int]:
    """Raise eigenvalues that are not clearly positive (a saddle, a flat direction) to a floor.

    The floor is the relative tolerance of ``np.linalg.matrix_rank``; returns the
    matrix and how many eigenvalues were raised.
    """
    eigval, eigvec = np.linalg.eigh((precision + precision.T) / 2)
    floor = max(np.abs(eigval).max() * len(eigval) * np.finfo(np.float64).eps, 1e-12)
    clipped = int((eigval < floor).sum())
    return (eigvec * np.maximum(eigval, floor)) @ eigvec.T, clipped
