"""What every inference method shares: the validated data and model, and the attrs it records."""

import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass
from typing import Any

import numpy as np
import pymc as pm
import pytensor.tensor as pt
import xarray as xr

from bnncat.models.attrs import write_attrs
from bnncat.models.data_spec import DataSpec
from bnncat.models.inference.registry import METHODS
from bnncat.models.pymc_internals import check_versions
from bnncat.models.validation import check_choice, check_positive_float, check_positive_int

PRECISIONS = ("auto", "float32", "float64")
#: Name of the Potential that tempers a model's likelihood.
TEMPERING = "likelihood_tempering"
#: Name of the Potential that puts a previous posterior in place of the prior (``update``).
PREVIOUS_POSTERIOR = "previous_posterior"


@dataclass(frozen=True)
class GaussianPrior:
    """A Gaussian on a model's flat unconstrained values, to replace its prior (``update``).

    ``names`` are the value variables in flat order; ``spec`` is the data scaling of
    the fit it comes from, which the new fit must keep for the weights to mean the
    same function.
    """

    names: tuple[str, ...]
    mean: np.ndarray
    cov: np.ndarray
    spec: DataSpec


_PRIOR: ContextVar[GaussianPrior | None] = ContextVar("bnncat_gaussian_prior", default=None)


@contextmanager
def gaussian_prior(prior: GaussianPrior) -> Iterator[None]:
    """Within this block, every method fits with ``prior`` in place of the model's prior."""
    token = _PRIOR.set(prior)
    try:
        yield
    finally:
        _PRIOR.reset(token)


@dataclass(frozen=True)
class Problem:
    """A net, its validated data and the PyMC model a method fits."""

    net: Any
    X: np.ndarray
    y: np.ndarray
    spec: DataSpec
    model: pm.Model
    #: Variables stored per draw: free variables and deterministics (``mu`` only if asked).
    keep: list[str]
    random_seed: int
    draws: int
    #: The likelihood is raised to 1 / temperature (1: the Bayesian posterior).
    temperature: float = 1.0

    def usable_precision(self, precision: str) -> str:
        """``precision``, or float64 with a warning where float32 cannot hold the data.

        The network standardises its inputs inside the model, so the raw values and
        their scales must be float32 numbers: beyond about 1e38 they overflow, and
        below about 1e-38 they lose their digits.
        """
        if precision != "float32":
            return precision
        for name, values in (("X", self.X), ("y", self.y)):
            size = np.abs(values[values != 0]) if values.dtype.kind == "f" else np.ones(1)
            if size.size and (size.max() > FLOAT32_SAFE[1] or size.min() < FLOAT32_SAFE[0]):
                warnings.warn(
                    f"{name} has values of magnitude {size.min():.3g} to {size.max():.3g}, "
                    f"beyond what float32 holds ({FLOAT32_SAFE[0]:g} to {FLOAT32_SAFE[1]:g}): "
                    "fitting in float64 instead (rescale the data to fit in float32)",
                    UserWarning,
                    stacklevel=3,
                )
                return "float64"
        return precision


#: Magnitudes float32 holds with digits to spare (its range is about 1.2e-38 to 3.4e38).
FLOAT32_SAFE = (1e-30, 1e30)


def check_seed(random_seed: object) -> int:
    """Return ``random_seed``, or a freshly drawn one when it is None (stored in the attrs)."""
    if random_seed is None:
        random_seed = int(np.random.SeedSequence().generate_state(1)[0])
    return check_positive_int(random_seed, "random_seed", minimum=0)


def check_precision(precision: object, *, on_jax: bool, engine_hint: str) -> str:
    """Validate ``precision``; float32 only where JAX computes (``engine_hint`` says how)."""
    precision = check_choice(precision, PRECISIONS, "precision")
    if precision == "float32" and not on_jax:
        raise ValueError(f"precision='float32' needs a JAX computation ({engine_hint})")
    return precision


def prepare_problem(
    net: Any,
    X: object,
    y: object,
    *,
    draws: object,
    random_seed: object,
    store_mu: bool,
    temperature: object = 1.0,
    integrate_output: bool = False,
) -> Problem:
    """Validate the options every method shares and the data; build the (tempered) model.

    ``integrate_output``: the method can fit a net with ``output_layer="integrated"``
    (NUTS); its model then leaves the output layer out (the method draws it after).
    """
    check_versions()
    draws = check_positive_int(draws, "draws")
    random_seed = check_seed(random_seed)
    temperature = check_positive_float(temperature, "temperature")
    integrated = _check_integrated(net, integrate_output, temperature, store_mu)
    X_arr, y_arr, spec = net.data_spec(X, y)
    if _PRIOR.get() is not None:
        spec = _PRIOR.get().spec
    if integrated:
        model = net.build_validated(X_arr, y_arr, spec, integrate_output=True)
    else:
        model = build_model(net, X_arr, y_arr, spec, temperature)
    keep = [v.name for v in model.free_RVs + model.deterministics if store_mu or v.name != "mu"]
    return Problem(net, X_arr, y_arr, spec, model, keep, random_seed, draws, temperature)


def _check_integrated(net: Any, method_can: bool, temperature: float, store_mu: bool) -> bool:
    """Whether the fit integrates the output layer out; refuse what it cannot do."""
    if getattr(net, "output_layer", "sampled") != "integrated":
        return False
    if not method_can:
        raise ValueError(
            "net has output_layer='integrated', which only NUTS fits (method='nuts'); "
            "use output_layer='sampled' for other methods"
        )
    if temperature != 1.0 or store_mu or _PRIOR.get() is not None:
        raise ValueError(
            "output_layer='integrated' fits the Bayesian posterior only: temperature must "
            "be 1, store_mu False, and it cannot update a previous fit"
        )
    return True


def build_model(
    net: Any,
    X: np.ndarray,
    y: np.ndarray,
    spec: DataSpec,
    temperature: float,
    *,
    batch_size: int | None = None,
) -> pm.Model:
    """Build ``net``'s model, with the prior of an ``update`` if one is set, tempered."""
    model = net.build_validated(X, y, spec, batch_size=batch_size)
    prior = _PRIOR.get()
    if prior is not None:
        replace_prior(model, prior)
    return temper(model, temperature)


def replace_prior(model: pm.Model, prior: GaussianPrior) -> None:
    """Put ``prior`` in place of the model's prior: a Potential adds it and takes the old one off.

    The model's free variables keep their transforms (an ``OrderedMLP`` keeps its
    constraints); the Gaussian is on their unconstrained values, Jacobians included
    in what it replaces.
    """
    values = [v for v in model.value_vars if model.values_to_rvs[v] in model.free_RVs]
    names = tuple(v.name for v in values)
    if names != prior.names:
        raise ValueError(
            f"the previous posterior is over {list(prior.names)}, this model's parameters are "
            f"{list(names)}: update with the net of the previous fit"
        )
    z = pt.concatenate([pt.flatten(v) for v in values])
    chol = np.linalg.cholesky(prior.cov)
    whitened = pt.as_tensor(np.linalg.inv(chol)) @ (z - prior.mean)
    log_gauss = -0.5 * pt.sum(whitened**2) - np.log(np.diag(chol)).sum()
    log_gauss -= len(prior.mean) / 2 * np.log(2 * np.pi)
    with model:
        pm.Potential(PREVIOUS_POSTERIOR, log_gauss - model.logp(vars=model.free_RVs))


def temper(model: pm.Model, temperature: float) -> pm.Model:
    """Raise ``model``'s likelihood to 1 / ``temperature`` (Wenzel et al. 2020).

    Adds (1 / T - 1) log p(y | theta) as a Potential, so that every method sees the
    tempered log density through ``model.logp()``; with T = 1 the model is left as
    it is, bit for bit. The likelihood term keeps any minibatch scaling.
    """
    if temperature == 1.0:
        return model
    with model:
        log_lik = model.logp(vars=model.observed_RVs)
        pm.Potential(TEMPERING, (1.0 / temperature - 1.0) * log_lik)
    return model


def record_fit(idata: xr.DataTree, problem: Problem, method: str, options: dict) -> xr.DataTree:
    """Write the net, data spec, method, kind, options, seed and versions into the attrs."""
    fit_options = {
        "method": method,
        "kind": METHODS[method].kind,
        "draws": problem.draws,
        "random_seed": problem.random_seed,
        "temperature": problem.temperature,
        **options,
    }
    write_attrs(idata, problem.net, problem.spec, fit_options)
    return idata


def as_numpy_float64(ds: xr.Dataset) -> xr.Dataset:
    """Turn a group's variables into NumPy arrays, float32 ones cast to float64 (exactly).

    JAX samplers hand back JAX arrays; cast by JAX, or summed later, each would compile
    a small XLA program of its own.
    """

    def numpy(da: xr.DataArray) -> xr.DataArray:
        values = np.asarray(da.data)
        return da.copy(data=values.astype(np.float64) if values.dtype == np.float32 else values)

    return ds.map(numpy)
