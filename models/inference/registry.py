"""The registry of inference methods: each method's name, kind and fit function.

A method module registers its ``fit_<method>`` function with :func:`register`;
``bnncat.models.inference`` imports every method module, so the registry is
complete once the package is imported. Diagnoses read a fit's *kind* from its
attrs and never compare method names.
"""

import inspect
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import xarray as xr

#: What a method's draws are. ``mcmc``: several Markov chains (NUTS, and DEI, MCLMC,
#: SG-MCMC); ``approximation``: draws from one fitted distribution (ADVI, Laplace,
#: Pathfinder); ``ensemble``: independent optima or members, one chain each (deep
#: ensembles, MultiSWAG); ``smc``: the particles of independent SMC runs.
KINDS = ("mcmc", "approximation", "ensemble", "smc")


@dataclass(frozen=True)
class Method:
    """One inference method: its name, kind, fit function and the hints of its errors."""

    name: str
    kind: str
    fit: Callable[..., Any]
    #: Why an option other methods take does not apply here, for the error message
    #: (without an entry the message names a method that takes it).
    refuses: dict[str, str]

    @property
    def options(self) -> tuple[str, ...]:
        """The keyword-only options of the fit function, in signature order."""
        params = inspect.signature(self.fit).parameters.values()
        return tuple(p.name for p in params if p.kind is inspect.Parameter.KEYWORD_ONLY)


#: Every registered method by name.
METHODS: dict[str, Method] = {}


def register(
    name: str, *, kind: str, refuses: dict[str, str] | None = None
) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """Register ``fit_<name>`` (as a decorator) as the inference method ``name`` of ``kind``."""
    if kind not in KINDS:
        raise ValueError(f"kind={kind!r} is not known; choose one of {list(KINDS)}")

    def add(func: Callable[..., Any]) -> Callable[..., Any]:
        METHODS[name] = Method(name, kind, func, dict(refuses or {}))
        return func

    return add


def method_kind(name: str) -> str | None:
    """Return the kind of the method called ``name``, or None for a method not registered here."""
    method = METHODS.get(name)
    return method.kind if method else None


def fit_kind(idata: xr.DataTree) -> str:
    """Tell what a fit's draws are: ``"mcmc"``, ``"approximation"``, ``"ensemble"``, ``"smc"``.

    From the attrs of a catalogue fit (older fits: from their method); for a user's own
    run, Markov chains leave sampler statistics such as ``diverging``.
    """
    kind = idata.attrs.get("fit_kind")
    if kind:
        return str(kind)
    if method_kind(idata.attrs.get("fit_method", "")):  # saved before kinds were recorded
        return str(method_kind(idata.attrs["fit_method"]))
    stats = idata["sample_stats"] if "sample_stats" in idata.children else None
    return "mcmc" if stats is not None and "diverging" in stats else "approximation"
