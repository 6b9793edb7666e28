"""Small data sets for Bayesian neural networks: real 1-D problems and synthetic toys.

Real data sets (shipped as CSV files next to this module, see ``README.md``):
``"mcycle"``, ``"faithful"``, ``"galaxies"``, and the seven UCI regression sets of
the standard BNN benchmark (:data:`UCI`; compressed in ``uci/``) with the protocol's
random splits (:func:`uci_splits`; :func:`random_splits` for any data). Synthetic
generators, all seeded: :func:`sine`, :func:`heteroscedastic`, :func:`two_moons`,
:func:`inverse_sine`.
Load any of them by name with :func:`load`; :func:`names` lists the names.

Examples
--------
>>> from bnncat.data import load, names
>>> len(names())
14
>>> load("faithful").X.shape
(272, 1)
"""

from bnncat.data.dataset import Dataset
from bnncat.data.loaders import load, names
from bnncat.data.synthetic import heteroscedastic, inverse_sine, sine, two_moons
from bnncat.data.uci import UCI, random_splits, uci_splits

__all__ = [
    "UCI",
    "Dataset",
    "heteroscedastic",
    "inverse_sine",
    "load",
    "names",
    "random_splits",
    "sine",
    "two_moons",
    "uci_splits",
]
