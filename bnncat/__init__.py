"""bnncat: a catalogue of Bayesian neural networks built on PyMC."""

import os
from importlib.metadata import PackageNotFoundError, version
from typing import TYPE_CHECKING, Any

try:
    __version__ = version("bnn-catalogue")
except PackageNotFoundError:  # running from a source tree without an install
    __version__ = "0.0.0"

# NUTS runs on numpyro with one chain per XLA host device ("parallel" chains): on 2
# cores this halves the wall time against sequential chains (benchmarks/nuts_backends.py).
# XLA reads the device count once, when JAX starts its CPU backend, so it must be set
# before that; a count the user set in XLA_FLAGS is kept.
HOST_DEVICES = max(8, os.cpu_count() or 1)
if "xla_force_host_platform_device_count" not in os.environ.get("XLA_FLAGS", ""):
    os.environ["XLA_FLAGS"] = (
        os.environ.get("XLA_FLAGS", "") + f" --xla_force_host_platform_device_count={HOST_DEVICES}"
    ).strip()

# PyMC hands JAX the observed data as constants of the log density. JAX's "simplified
# constants" (its coming default) pass every array constant to the compiled program as an
# argument instead of writing it into the program, so a fit of other data of the same
# shapes finds its compiled programs in the persistent cache (models/jax_runtime.py) rather
# than compiling them again. JAX reads these once, at its import; a user's own values win.
for _name, _value in {
    "JAX_USE_SIMPLIFIED_JAXPR_CONSTANTS": "true",
    "JAX_EMBEDDED_CONSTANTS_MAX_BYTES": "0",
}.items():
    os.environ.setdefault(_name, _value)

# The public API, `from bnncat import diagnose`. It is loaded on first use (PEP 562), so
# that `import bnncat` (the command line's start, `bnncat --help`) stays free of PyMC and
# JAX, and the XLA flags above are set before anything can start JAX.
if TYPE_CHECKING:
    from bnncat.report import DiagnosticReport, diagnose

__all__ = ["DiagnosticReport", "HOST_DEVICES", "__version__", "diagnose"]
_LAZY = {"DiagnosticReport", "diagnose"}


def __getattr__(name: str) -> Any:
    """Import ``diagnose`` and ``DiagnosticReport`` from :mod:`bnncat.report` on first use."""
    if name in _LAZY:
        from bnncat import report

        return getattr(report, name)
    raise AttributeError(f"module 'bnncat' has no attribute {name!r}")


def __dir__() -> list[str]:
    """List the module's names, the lazily loaded ones included."""
    return sorted(set(globals()) | _LAZY)
