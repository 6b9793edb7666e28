"""bnncat: a catalogue of Bayesian neural networks built on PyMC."""

import os
from importlib.metadata import PackageNotFoundError, version

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
