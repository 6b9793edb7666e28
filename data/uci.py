"""The seven UCI regression data sets of the standard BNN benchmark, and its random splits.

The files (xz-compressed CSV in ``uci/``, provenance in ``README.md``) hold the rows in the
order of the files the benchmark papers used (Hernández-Lobato & Adams 2015, Gal &
Ghahramani 2016, Lakshminarayanan et al. 2017); the target is the last column kept.
:func:`uci_splits` gives the protocol's random train/test splits reproducibly.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

_UCI_LICENSE = "CC BY 4.0 (UCI Machine Learning Repository)"


class UciSpec(NamedTuple):
    """One UCI file: its target column, columns that are not features, and its provenance."""

    target: str
    drop: tuple[str, ...]
    description: str
    source: str
    license: str = _UCI_LICENSE

    def csv(self, name: str) -> str:
        """Path of the compressed file inside the package."""
        return f"uci/{name}.csv.xz"


UCI: dict[str, UciSpec] = {
    "yacht": UciSpec(
        target="residuary_resistance",
        drop=(),
        description=(
            "Yacht hydrodynamics: residuary resistance per unit weight of displacement of "
            "n=308 runs of 22 sailing-yacht hulls in the Delft towing tank, from 5 hull "
            "geometry coefficients and the Froude number (6 features)."
        ),
        source=(
            "Gerritsma, J., Onnink, R. and Versluis, A. (1981), Delft Ship Hydromechanics "
            "Laboratory; UCI Machine Learning Repository, Yacht Hydrodynamics"
        ),
    ),
    "energy": UciSpec(
        target="heating_load",
        drop=(),
        description=(
            "Energy efficiency: heating load of n=768 simulated buildings from 8 shape and "
            "glazing features (some discrete). The original's second target, the cooling "
            "load, is not included."
        ),
        source=(
            "Tsanas, A. and Xifara, A. (2012) Energy and Buildings 49, 560-567; UCI Machine "
            "Learning Repository, Energy Efficiency"
        ),
    ),
    "wine-quality-red": UciSpec(
        target="quality",
        drop=(),
        description=(
            "Red Vinho Verde wines: sensory quality score (integers 3-8) of n=1599 wines "
            "from 11 physicochemical tests; treated as regression, as in the benchmark."
        ),
        source=(
            "Cortez, P. et al. (2009) Decision Support Systems 47, 547-553; UCI Machine "
            "Learning Repository, Wine Quality"
        ),
    ),
    "power-plant": UciSpec(
        target="energy_output",
        drop=(),
        description=(
            "Combined cycle power plant: net hourly electrical energy output (MW) from "
            "temperature, exhaust vacuum, ambient pressure and relative humidity; n=9568 "
            "hourly averages (4 features)."
        ),
        source=(
            "Tüfekci, P. (2014) Int. J. Electrical Power & Energy Systems 60, 126-140; UCI "
            "Machine Learning Repository, Combined Cycle Power Plant"
        ),
    ),
    "naval-propulsion-plant": UciSpec(
        target="compressor_decay",
        drop=("turbine_decay",),
        description=(
            "Naval propulsion plant (a simulated gas turbine of a frigate): the compressor "
            "decay state coefficient from 16 measurements, n=11934. Two features are "
            "constant (compressor inlet air temperature and pressure); turbine_decay, the "
            "other target, is dropped."
        ),
        source=(
            "Coraddu, A. et al. (2016) Proc. IMechE Part M 230, 136-153; UCI Machine "
            "Learning Repository, Condition Based Maintenance of Naval Propulsion Plants"
        ),
    ),
    "kin8nm": UciSpec(
        target="y",
        drop=(),
        description=(
            "Forward kinematics of an 8-link robot arm (DELVE kin family: nonlinear, "
            "moderate noise): distance of the end effector from a target, n=8192, 8 features."
        ),
        source="DELVE data sets, University of Toronto (Rasmussen et al. 1996), kin-8nm",
        license="freely distributed for research (DELVE, University of Toronto)",
    ),
    "protein-tertiary-structure": UciSpec(
        target="RMSD",
        drop=(),
        description=(
            "Physicochemical properties of protein tertiary structure: RMSD of n=45730 "
            "decoys (CASP 5-9) from 9 features F1-F9."
        ),
        source=(
            "Rana, P. S. (2013); UCI Machine Learning Repository, Physicochemical Properties "
            "of Protein Tertiary Structure"
        ),
    ),
}

#: Short names that ``load`` and :func:`uci_splits` also accept.
ALIASES = {
    "naval": "naval-propulsion-plant",
    "protein": "protein-tertiary-structure",
    "wine": "wine-quality-red",
}


def uci_splits(
    name: str, n_splits: int = 20, test_fraction: float = 0.1, seed: int = 0
) -> list[tuple[np.ndarray, np.ndarray]]:
    """Random train/test splits of a UCI data set, as in Hernández-Lobato & Adams (2015).

    Each split is a fresh permutation of the rows: the first ``round(test_fraction * n)``
    rows of it are the test set. The splits depend only on the arguments (the same in
    every process), and the first k splits of ``n_splits=20`` are those of ``n_splits=k``.

    Parameters
    ----------
    name : str
        A UCI data set (``bnncat.data.UCI``), or an alias (``"naval"``, ``"protein"``,
        ``"wine"``).
    n_splits : int
        Number of splits (20 in the protocol).
    test_fraction : float
        Share of the rows held out, in (0, 1) (0.1 in the protocol; 0.2 in Wiese et al. 2023).
    seed : int
        Seed of the permutations (a non-negative integer).

    Returns
    -------
    list of (ndarray, ndarray)
        Sorted row indices (int64) of the training and test part of each split: disjoint,
        and together every row once.

    Examples
    --------
    >>> from bnncat.data import uci_splits
    >>> train, test = uci_splits("yacht", n_splits=2)[0]
    >>> len(train), len(test)
    (277, 31)
    """
    from bnncat.data.loaders import load

    name = resolve_uci(name)
    return random_splits(load(name).y.shape[0], n_splits, test_fraction, seed)


def random_splits(
    n_rows: int, n_splits: int = 20, test_fraction: float = 0.1, seed: int = 0
) -> list[tuple[np.ndarray, np.ndarray]]:
    """Random train/test splits of ``n_rows`` rows: the protocol of :func:`uci_splits`, any data.

    Examples
    --------
    >>> from bnncat.data import random_splits
    >>> train, test = random_splits(10, n_splits=1, test_fraction=0.2)[0]
    >>> len(train), len(test)
    (8, 2)
    """
    n = _check_count(n_rows, "n_rows", minimum=2)
    n_splits = _check_count(n_splits, "n_splits")
    seed = _check_count(seed, "seed", minimum=0)
    n_test = _test_rows(test_fraction, n)
    rng = np.random.default_rng(seed)
    splits = []
    for _ in range(n_splits):
        order = rng.permutation(n)
        splits.append((np.sort(order[n_test:]), np.sort(order[:n_test])))
    return splits


def resolve_uci(name: object) -> str:
    """Return the UCI data set's full name; a clear error for anything else."""
    if not isinstance(name, str):
        raise TypeError(f"name must be a str, got {type(name).__name__} {name!r}")
    name = ALIASES.get(name, name)
    if name not in UCI:
        raise ValueError(
            f"name={name!r} is not a UCI data set; the UCI data sets are {', '.join(UCI)} "
            f"(aliases {', '.join(ALIASES)})"
        )
    return name


def _check_count(value: object, what: str, minimum: int = 1) -> int:
    if isinstance(value, bool) or not isinstance(value, int | np.integer):
        raise TypeError(f"{what} must be an integer, got {type(value).__name__} {value!r}")
    if value < minimum:
        raise ValueError(f"{what} must be at least {minimum}, got {value}")
    return int(value)


def _test_rows(test_fraction: object, n: int) -> int:
    """Return the number of test rows; refuse a fraction that leaves either part empty."""
    if isinstance(test_fraction, bool) or not isinstance(test_fraction, int | float):
        raise TypeError(f"test_fraction must be a number, got {test_fraction!r}")
    if not 0 < test_fraction < 1:
        raise ValueError(f"test_fraction must be in (0, 1), got {test_fraction}")
    n_test = round(test_fraction * n)
    if not 0 < n_test < n:
        raise ValueError(
            f"test_fraction={test_fraction} leaves {n_test} of {n} rows for testing: "
            "both parts need at least one row"
        )
    return n_test
