"""Observation models: each is one class, its PyMC distribution and all computed from it.

A likelihood says how ``y`` is distributed given its parameters (``dist``). The
log density, the CDF, predictive draws and class probabilities that prediction,
LOO, calibration, the predictive density and the plots need are all derived
here from that one PyMC distribution, by ``pm.logp``, ``pm.logcdf`` and PyMC's
own random graph, each compiled once per pattern of shapes. PyMC rather than a
table of SciPy distributions: it is the distribution the model was fitted
with, and compiled it took 0.2-0.4x SciPy's time for log densities and the
Student-t CDF on 4000 draws x 1000 rows (``benchmarks/likelihood_backends.py``).

The likelihoods of an MLP head (:class:`HeadLikelihood`) also add their own
parameters to the model (``sigma``, ``nu``) and read them back from the draws.
A new one is a subclass registered with :func:`register_likelihood`; then
``MLP(likelihood=<its name>)`` fits, predicts, calibrates and is diagnosed with
no other change.
"""

import warnings
from collections.abc import Mapping
from functools import lru_cache
from typing import Any, ClassVar

import numpy as np
import pymc as pm
import pytensor
import pytensor.tensor as pt
from pymc.distributions.shape_utils import change_dist_size
from pymc.pytensorf import compile as compile_pymc
from pymc.pytensorf import reseed_rngs
from pytensor.scalar.basic import autocast_float_as
from pytensor.tensor.random.type import RandomGeneratorType

from bnncat.models.data_spec import DataSpec


class Likelihood:
    """An observation model: the PyMC distribution of ``y`` given its parameters.

    Subclasses set ``name`` and ``task`` (and ``binary`` for a single-logit
    classifier) and define :meth:`dist`. Parameters are passed by name, as
    NumPy arrays that broadcast against each other and against ``y`` (leading
    axes are draws, then rows, then outputs).
    """

    name: ClassVar[str] = ""
    #: ``"regression"`` (real targets, one column per output) or ``"classification"``.
    task: ClassVar[str] = "regression"
    #: Classification with a single logit output (class 1 against class 0).
    binary: ClassVar[bool] = False

    def dist(self, **params: Any) -> pt.TensorVariable:
        """Return the unregistered PyMC distribution of ``y`` (``pm.<Dist>.dist``)."""
        raise NotImplementedError

    def observe(
        self,
        params: Mapping[str, Any],
        observed: np.ndarray | None,
        dims: tuple[str, ...],
        *,
        name: str = "y",
    ) -> pt.TensorVariable:
        """Add ``name`` (observed, or to predict when None) to the model on the context stack."""
        model = pm.modelcontext(None)
        rv = self.dist(**params)
        if rv.ndim < len(dims):  # parameters shared by all rows: one variable per dims entry
            rv = change_dist_size(rv, tuple(model.dim_lengths[d] for d in dims))
        return model.register_rv(rv, name, observed=observed, dims=dims)

    def logp(self, params: Mapping[str, np.ndarray], y: np.ndarray) -> np.ndarray:
        """Log density (or mass) of ``y`` under each parameter draw, broadcast elementwise."""
        return _evaluate(self, "logp", params, y)

    def logcdf(self, params: Mapping[str, np.ndarray], y: np.ndarray) -> np.ndarray:
        """Log CDF of ``y`` under each parameter draw (regression likelihoods)."""
        return _evaluate(self, "logcdf", params, y)

    def draw(self, params: Mapping[str, np.ndarray], random_seed: int) -> np.ndarray:
        """One draw of ``y`` per parameter draw, reproducible from ``random_seed``."""
        fn = _draw_function(self, _pattern(params))
        rngs = [v for v in fn.get_shared() if isinstance(v.type, RandomGeneratorType)]
        reseed_rngs(rngs, random_seed)
        return np.asarray(fn(*params.values()))

    def class_log_probs(self, params: Mapping[str, np.ndarray], n_classes: int) -> np.ndarray:
        """Log probability of each class, on a new last axis (classification likelihoods)."""
        shape = np.broadcast_shapes(*(np.shape(v) for v in params.values()))
        batch = shape if self.binary else shape[:-1]  # categorical: classes on the last axis
        labels = (np.full(batch, k, dtype=np.int64) for k in range(n_classes))
        return np.stack([self.logp(params, label) for label in labels], axis=-1)

    def __eq__(self, other: object) -> bool:
        return type(other) is type(self) and vars(other) == vars(self)

    def __hash__(self) -> int:
        return hash((type(self), tuple(sorted(vars(self).items()))))


class HeadLikelihood(Likelihood):
    """A likelihood on an MLP's output ``mu`` that adds its own parameters to the model."""

    def add_parameters(self, mu: Any, spec: DataSpec) -> dict[str, Any]:
        """Add the likelihood's parameters to the model; return every argument of ``dist``."""
        return {}

    def parameters(self, mu: np.ndarray, draws: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        """Arguments of ``dist`` per draw from the network output (..., n, output) and draws."""
        raise NotImplementedError

    def add(self, mu: Any, observed: np.ndarray | None, spec: DataSpec) -> None:
        """Add the parameters and ``y`` to the model on the context stack."""
        dims = ("obs", "output") if self.task == "regression" else ("obs",)
        self.observe(self.add_parameters(mu, spec), observed, dims)


def noise_scale(spec: DataSpec) -> Any:
    """Add ``sigma``: a half-normal noise sd per output, in the units of y.

    On standardised data this is the usual HalfNormal(1).
    """
    return pm.HalfNormal("sigma", sigma=np.asarray(spec.y_scale), dims="output")


class Normal(HeadLikelihood):
    """Gaussian noise with a learned sd per output."""

    name: ClassVar[str] = "normal"

    def dist(self, mu: Any, sigma: Any) -> pt.TensorVariable:  # noqa: D102
        return pm.Normal.dist(mu, sigma)

    def add_parameters(self, mu: Any, spec: DataSpec) -> dict[str, Any]:  # noqa: D102
        return {"mu": mu, "sigma": noise_scale(spec)}

    def parameters(self, mu, draws):  # noqa: D102
        return {"mu": mu, "sigma": np.asarray(draws["sigma"])[..., None, :]}


class StudentT(HeadLikelihood):
    """Student-t noise: a learned sd per output and learned degrees of freedom."""

    name: ClassVar[str] = "studentt"

    def dist(self, mu: Any, sigma: Any, nu: Any) -> pt.TensorVariable:  # noqa: D102
        return pm.StudentT.dist(nu=nu, mu=mu, sigma=sigma)

    def add_parameters(self, mu: Any, spec: DataSpec) -> dict[str, Any]:  # noqa: D102
        # Gamma(2, 0.1) on the degrees of freedom (Juarez & Steel 2010)
        sigma = noise_scale(spec)
        nu = pm.Gamma("nu", alpha=2.0, beta=0.1)
        return {"mu": mu, "sigma": sigma, "nu": nu}

    def parameters(self, mu, draws):  # noqa: D102
        return {
            "mu": mu,
            "sigma": np.asarray(draws["sigma"])[..., None, :],
            "nu": np.asarray(draws["nu"])[..., None, None],
        }


class Bernoulli(HeadLikelihood):
    """Two classes from one logit output."""

    name: ClassVar[str] = "bernoulli"
    task: ClassVar[str] = "classification"
    binary: ClassVar[bool] = True

    def dist(self, logit_p: Any) -> pt.TensorVariable:  # noqa: D102
        return pm.Bernoulli.dist(logit_p=logit_p)

    def add_parameters(self, mu: Any, spec: DataSpec) -> dict[str, Any]:  # noqa: D102
        return {"logit_p": mu[..., 0]}

    def parameters(self, mu, draws):  # noqa: D102
        return {"logit_p": mu[..., 0]}


class Categorical(HeadLikelihood):
    """K classes from K logit outputs (softmax)."""

    name: ClassVar[str] = "categorical"
    task: ClassVar[str] = "classification"

    def dist(self, logit_p: Any) -> pt.TensorVariable:  # noqa: D102
        return pm.Categorical.dist(logit_p=logit_p)

    def add_parameters(self, mu: Any, spec: DataSpec) -> dict[str, Any]:  # noqa: D102
        return {"logit_p": mu}

    def parameters(self, mu, draws):  # noqa: D102
        return {"logit_p": mu}


#: The likelihoods an MLP head can take, by name.
LIKELIHOODS: dict[str, HeadLikelihood] = {}


def register_likelihood(likelihood: HeadLikelihood) -> HeadLikelihood:
    """Make ``likelihood`` available as ``MLP(likelihood=likelihood.name)``."""
    if not isinstance(likelihood, HeadLikelihood) or not likelihood.name:
        raise TypeError(
            "register a named HeadLikelihood instance, e.g. register_likelihood(Normal())"
        )
    LIKELIHOODS[likelihood.name] = likelihood
    return likelihood


for _lik in (Normal(), StudentT(), Bernoulli(), Categorical()):
    register_likelihood(_lik)


# -- compiled once per likelihood and pattern of shapes ---------------------------------------


def _pattern(arrays: Mapping[str, Any]) -> tuple:
    """Names, dtypes and broadcastable axes: what a compiled function depends on."""
    out = []
    for name, value in arrays.items():
        value = np.asarray(value)
        out.append((name, str(value.dtype), tuple(s == 1 for s in value.shape)))
    return tuple(out)


def _inputs(pattern: tuple) -> dict[str, pt.TensorVariable]:
    return {
        name: pt.tensor(name, dtype=dtype, shape=tuple(1 if b else None for b in bcast))
        for name, dtype, bcast in pattern
    }


def _evaluate(lik: Likelihood, what: str, params: Mapping[str, Any], y: np.ndarray) -> np.ndarray:
    fn = _value_function(lik, what, _pattern(params), _pattern({"y": y})[0])
    return np.asarray(fn(*params.values(), y))


@lru_cache(maxsize=128)
def _value_function(lik: Likelihood, what: str, pattern: tuple, y_pattern: tuple) -> Any:
    """Compile ``pm.logp`` or ``pm.logcdf`` of ``y`` under ``lik.dist``."""
    inputs = _inputs(pattern)
    y = _inputs((y_pattern,))["y"]
    # Python float constants in float64: by default PyTensor stores 2.0 as float32, and
    # PyMC's normal log CDF then divides by a float32 sqrt(2) (CDF off by 3e-8 relative)
    with autocast_float_as("float64"):
        rv = lik.dist(**inputs)
        out = pm.logp(rv, y) if what == "logp" else pm.logcdf(rv, y)
    return pytensor.function([*inputs.values(), y], out, on_unused_input="ignore")


@lru_cache(maxsize=128)
def _draw_function(lik: Likelihood, pattern: tuple) -> Any:
    """Compile a draw of ``lik.dist`` with its own generator (reseeded at each call)."""
    inputs = _inputs(pattern)
    with warnings.catch_warnings():
        # a CustomDist's draws are its own NumPy function, which numba runs in object mode
        warnings.filterwarnings("ignore", "Numba will use object mode", UserWarning)
        with autocast_float_as("float64"):  # as in _value_function
            rv = lik.dist(**inputs)
        return compile_pymc(list(inputs.values()), rv, random_seed=0)
