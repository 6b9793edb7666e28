"""Small data sets for Bayesian neural networks: real 1-D problems and synthetic toys.

Real data sets (shipped as CSV files next to this module, see ``README.md``):
``"mcycle"``, ``"faithful"``, ``"galaxies"``. Synthetic generators, all seeded:
:func:`sine`, :func:`heteroscedastic`, :func:`two_moons`, :func:`inverse_sine`.
Load any of them by name with :func:`load`; :func:`names` lists the names.

Examples
--------
>>> from bnncat.data import load, names
>>> len(names())
7
>>> load("faithful").X.shape
(272, 1)
"""

from bnncat.data.dataset import Dataset
from bnncat.data.loaders import load, names
from bnncat.data.synthetic import heteroscedastic, inverse_sine, sine, two_moons

__all__ = [
    "Dataset",
    "heteroscedastic",
    "inverse_sine",
    "load",
    "names",
    "sine",
    "two_moons",
]
