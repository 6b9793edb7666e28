"""What every inference method shares: the validated data and model, and the attrs it records."""

from dataclasses import dataclass
from typing import Any

import numpy as np
import pymc as pm
import xarray as xr

from bnncat.models.attrs import write_attrs
from bnncat.models.data_spec import DataSpec
from bnncat.models.inference.registry import METHODS
from bnncat.models.pymc_internals import check_versions
from bnncat.models.validation import check_choice, check_positive_int

PRECISIONS = ("auto", "float32", "float64")


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
    net: Any, X: object, y: object, *, draws: object, random_seed: object, store_mu: bool
) -> Problem:
    """Validate the options every method shares and the data; build the model."""
    check_versions()
    draws = check_positive_int(draws, "draws")
    random_seed = check_seed(random_seed)
    X_arr, y_arr, spec = net.data_spec(X, y)
    model = net.build_validated(X_arr, y_arr, spec)
    keep = [v.name for v in model.free_RVs + model.deterministics if store_mu or v.name != "mu"]
    return Problem(net, X_arr, y_arr, spec, model, keep, random_seed, draws)


def record_fit(idata: xr.DataTree, problem: Problem, method: str, options: dict) -> xr.DataTree:
    """Write the net, data spec, method, kind, options, seed and versions into the attrs."""
    fit_options = {
        "method": method,
        "kind": METHODS[method].kind,
        "draws": problem.draws,
        "random_seed": problem.random_seed,
        **options,
    }
    write_attrs(idata, problem.net, problem.spec, fit_options)
    return idata


def as_float64(ds: xr.Dataset) -> xr.Dataset:
    """Cast the float32 variables of a group to float64 (exactly)."""
    return ds.map(lambda da: da.astype(np.float64) if da.dtype == np.float32 else da)


def n_free_parameters(model: pm.Model) -> int:
    """Count the scalars the sampler moves (the free variables' values)."""
    return int(sum(np.prod(shape, dtype=int) for shape in model.eval_rv_shapes().values()))
