"""bnncat: a catalogue of Bayesian neural networks built on PyMC."""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("bnn-catalogue")
except PackageNotFoundError:  # running from a source tree without an install
    __version__ = "0.0.0"
