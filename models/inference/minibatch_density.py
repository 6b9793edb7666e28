"""A PyMC model's log posterior on a minibatch, as JAX functions of the flat unconstrained vector.

Stochastic-gradient methods evaluate the likelihood on ``B`` rows at a time. The
model's data (the ``pm.Data`` input ``X`` and the observed ``y``, a constant in the
graph) are replaced by symbolic inputs, so that one evaluation costs what ``B``
rows cost, however many rows the model was built on; PyMC's graphs are translated
to JAX by ``get_jaxified_graph``, as :func:`~bnncat.models.inference.laplace_curvature.flat_model`
does for the full data.
"""

from dataclasses import dataclass
from typing import Any

import numpy as np
import pymc as pm
from pymc.sampling.jax import get_jaxified_graph
from pytensor.compile.sharedvalue import SharedVariable
from pytensor.graph.replace import graph_replace
from pytensor.graph.traversal import ancestors

from bnncat.models.inference.laplace_curvature import unflatten_values
from bnncat.models.inference.problem import TEMPERING


@dataclass(frozen=True)
class MinibatchDensity:
    """JAX functions of the flat unconstrained values ``x`` and a batch of rows.

    ``log_likelihood_rows(x, X_batch, y_batch)``: the (tempered) log-likelihood of
    each row of the batch (and output); ``log_prior(x)``: everything but the
    likelihood, the transforms' Jacobians included; ``log_posterior(x, X_batch,
    y_batch)``: the unbiased estimate ``log_prior(x) + n / B * sum(rows)`` of the
    full-data log posterior. ``X`` and ``y`` are the model's full data, in the
    dtypes its graph takes, to draw batches from.
    """

    shapes: dict[str, tuple[int, ...]]
    log_likelihood_rows: Any
    log_prior: Any
    X: np.ndarray
    y: np.ndarray

    @property
    def n(self) -> int:
        """Rows of the full data."""
        return len(self.X)

    def log_posterior(self, x: Any, X_batch: Any, y_batch: Any) -> Any:
        """Unbiased minibatch estimate of the full-data log posterior at ``x``."""
        rows = self.log_likelihood_rows(x, X_batch, y_batch)
        return self.log_prior(x) + self.n / X_batch.shape[0] * rows.sum()


def minibatch_density(model: pm.Model, temperature: float = 1.0) -> MinibatchDensity:
    """Translate ``model``'s prior and per-row likelihood, with the data as inputs, to JAX.

    ``model`` is one built by a catalogue builder (``problem.model``): one ``pm.Data``
    input ``X`` with dims (``obs``, ``feature``) and one observed variable. The
    likelihood is divided by ``temperature`` (as the Potential of a tempered model
    does). Call within a float64 :func:`~bnncat.models.jax_runtime.jax_session`.

    Raises
    ------
    ValueError
        For a model whose likelihood does not factor over the rows of ``X`` and
        ``y`` alone (another data container, several observed variables), or whose
        prior depends on the data.
    """
    X_shared, observed, y_data = _data_nodes(model)
    X_batch = X_shared.type.clone(shape=(None, *X_shared.type.shape[1:]))("X_batch")
    y_batch = y_data.type.clone(shape=(None, *y_data.type.shape[1:]))("y_batch")
    [observed_of_batch] = graph_replace([observed], {X_shared: X_batch}, strict=True)
    rows = pm.logp(observed_of_batch, y_batch) / temperature
    [rows] = model.replace_rvs_by_values([rows])
    not_tempering = [p for p in model.potentials if p.name != TEMPERING]
    prior = model.logp(vars=model.free_RVs + not_tempering)
    _check_free_of_data(model, rows, (X_shared, y_data), "likelihood of a batch")
    _check_free_of_data(model, prior, (X_shared, y_data), "prior")
    values = model.value_vars
    shapes = {v.name: tuple(np.shape(p)) for v, p in zip(values, _point(model), strict=True)}
    rows_fn = get_jaxified_graph([*values, X_batch, y_batch], [rows])
    prior_fn = get_jaxified_graph(values, [prior])

    def log_likelihood_rows(x: Any, X: Any, y: Any) -> Any:
        return rows_fn(*unflatten_values(x, shapes).values(), X, y)[0]

    def log_prior(x: Any) -> Any:
        return prior_fn(*unflatten_values(x, shapes).values())[0]

    X_full = np.asarray(X_shared.get_value(), dtype=X_shared.dtype)
    return MinibatchDensity(shapes, log_likelihood_rows, log_prior, X_full, np.asarray(y_data.data))


def _data_nodes(model: pm.Model) -> tuple[Any, Any, Any]:
    """Return the input ``X`` (a shared variable), the observed variable and its data."""
    if len(model.observed_RVs) != 1:
        raise ValueError(
            f"a minibatch log density needs one observed variable; the model has "
            f"{[rv.name for rv in model.observed_RVs]}"
        )
    [observed] = model.observed_RVs
    data = [v for v in ancestors([observed]) if isinstance(v, SharedVariable) and v.name == "X"]
    if len(data) != 1 or data[0] not in model.data_vars:
        raise ValueError(
            "a minibatch log density needs the inputs as one pm.Data named 'X' (a catalogue "
            "builder's model); this model's likelihood does not take them so"
        )
    y_data = model.rvs_to_values[observed]
    if not hasattr(y_data, "data") or np.ndim(y_data.data) == 0:
        raise ValueError("a minibatch log density needs the observed y as constant rows")
    if len(y_data.data) != len(data[0].get_value()):
        raise ValueError("the observed y and the inputs X have different numbers of rows")
    return data[0], observed, y_data


def _check_free_of_data(model: pm.Model, output: Any, data: tuple[Any, ...], what: str) -> None:
    """Refuse a graph that still reads the full data, or shared values other than dim lengths.

    Another shared value would be a data container whose rows a batch does not select.
    """
    lengths = list(model.dim_lengths.values())
    found = [
        v
        for v in ancestors([output])
        if any(v is d for d in data)
        or (isinstance(v, SharedVariable) and not any(v is d for d in lengths))
    ]
    if found:
        raise ValueError(
            f"the {what} depends on the full data or on other shared values "
            f"({[v.name or str(v) for v in found]}): this model's log density does not "
            "factor over minibatches of rows"
        )


def _point(model: pm.Model) -> list[Any]:
    point = model.initial_point()
    return [point[v.name] for v in model.value_vars]
