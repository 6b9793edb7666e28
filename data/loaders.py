"""Loading data sets by name: the shipped files (three small sets, seven UCI) and the generators."""

from __future__ import annotations

import dataclasses
import difflib
import functools
from collections.abc import Callable
from importlib.resources import files
from typing import Any, NamedTuple

import pandas as pd

from bnncat.data.dataset import Dataset
from bnncat.data.synthetic import heteroscedastic, inverse_sine, sine, two_moons
from bnncat.data.uci import ALIASES, UCI

__all__ = ["load", "names"]


class _RealSpec(NamedTuple):
    csv: str
    features: tuple[str, ...]
    target: str
    task: str
    rename: dict[str, str]
    description: str
    source: str
    license: str


_MASS_LICENSE = "GPL-2 | GPL-3 (as stated by the R package MASS)"
_R_LICENSE = "GPL-2 | GPL-3 (R package datasets, part of R)"

_REAL: dict[str, _RealSpec] = {
    "mcycle": _RealSpec(
        csv="mcycle.csv",
        features=("times",),
        target="accel",
        task="regression",
        rename={},
        description=(
            "Head acceleration in a simulated motorcycle accident, used to test crash "
            "helmets: n=133 measurements of times (ms after impact) and accel (head "
            "acceleration in g). Times are sorted and repeat (94 distinct values); the "
            "noise is strongly heteroscedastic. From the R package MASS (Silverman 1985)."
        ),
        source=(
            "Silverman, B. W. (1985) Some aspects of the spline smoothing approach to "
            "non-parametric curve fitting. JRSS B 47, 1-52; via R package MASS "
            "(Venables & Ripley 2002), data set mcycle"
        ),
        license=_MASS_LICENSE,
    ),
    "faithful": _RealSpec(
        csv="faithful.csv",
        features=("waiting",),
        target="eruptions",
        task="regression",
        rename={},
        description=(
            "Old Faithful geyser, Yellowstone National Park: n=272 eruptions with waiting "
            "(waiting time to the next eruption, whole minutes) and eruptions (eruption "
            "time in minutes, heavily rounded). X = waiting, y = eruptions; both are "
            "bimodal. From R's datasets package (Härdle 1991)."
        ),
        source=(
            "Härdle, W. (1991) Smoothing Techniques with Implementation in S. Springer; "
            "via R package datasets, data set faithful"
        ),
        license=_R_LICENSE,
    ),
    "galaxies": _RealSpec(
        csv="galaxies.csv",
        features=(),
        target="velocity",
        task="density",
        rename={"dat": "velocity"},
        description=(
            "Velocities (km/s) of n=82 galaxies from 6 conic sections of an unfilled "
            "survey of the Corona Borealis region; multimodality is evidence for voids "
            "and superclusters. No inputs: X has shape (82, 0) and y is the velocity. "
            "The 78th value, 26690, is a known typo for 26960 and is kept as in R. From "
            "the R package MASS (Roeder 1990; Postman, Huchra & Geller 1986)."
        ),
        source=(
            "Roeder, K. (1990) Density estimation with confidence sets exemplified by "
            "superclusters and voids in galaxies. JASA 85, 617-624; Postman, M., "
            "Huchra, J. P. and Geller, M. J. (1986) Astronomical Journal 92, 1238-1247; "
            "via R package MASS (Venables & Ripley 2002), data set galaxies"
        ),
        license=_MASS_LICENSE,
    ),
}

_SYNTHETIC: dict[str, Callable[..., Dataset]] = {
    "sine": sine,
    "heteroscedastic": heteroscedastic,
    "two_moons": two_moons,
    "inverse_sine": inverse_sine,
}


def names() -> tuple[str, ...]:
    """Names of all data sets that :func:`load` accepts.

    The three small real data sets come first, then the seven UCI regression sets of
    the standard benchmark, then the synthetic generators. ``load`` also takes the
    aliases ``"naval"``, ``"protein"`` and ``"wine"`` of three UCI sets.

    Returns
    -------
    tuple of str
        ``("mcycle", "faithful", "galaxies", "yacht", "energy", "wine-quality-red",
        "power-plant", "naval-propulsion-plant", "kin8nm", "protein-tertiary-structure",
        "sine", "heteroscedastic", "two_moons", "inverse_sine")``.

    Examples
    --------
    >>> from bnncat.data import names
    >>> names()[:3]
    ('mcycle', 'faithful', 'galaxies')
    >>> "two_moons" in names()
    True
    """
    return (*_REAL, *UCI, *_SYNTHETIC)


@functools.cache
def _load_uci(name: str) -> Dataset:
    spec = UCI[name]
    with files("bnncat.data").joinpath(spec.csv(name)).open("rb") as fh:
        frame = pd.read_csv(fh, compression="xz")
    frame = frame.drop(columns=list(spec.drop))
    features = tuple(c for c in frame.columns if c != spec.target)
    return Dataset(
        name=name,
        X=frame.loc[:, list(features)].to_numpy(dtype="float64"),
        y=frame[spec.target].to_numpy(dtype="float64"),
        frame=frame,
        description=spec.description,
        feature_names=features,
        target_name=spec.target,
        task="regression",
        source=spec.source,
        license=spec.license,
    )


@functools.cache
def _load_real(name: str) -> Dataset:
    spec = _REAL[name]
    with files("bnncat.data").joinpath(spec.csv).open("r", encoding="utf-8") as fh:
        frame = pd.read_csv(fh)
    frame = frame.rename(columns=spec.rename)
    return Dataset(
        name=name,
        X=frame.loc[:, list(spec.features)].to_numpy(dtype="float64"),
        y=frame[spec.target].to_numpy(dtype="float64"),
        frame=frame,
        description=spec.description,
        feature_names=spec.features,
        target_name=spec.target,
        task=spec.task,
        source=spec.source,
        license=spec.license,
    )


def load(name: str, **kwargs: Any) -> Dataset:
    """Load a data set by name.

    Real data sets (``"mcycle"``, ``"faithful"``, ``"galaxies"`` and the seven UCI
    regression sets, e.g. ``"yacht"``, ``"energy"``, ``"power-plant"``; see
    :data:`bnncat.data.UCI`) are read once from the files shipped in this package and
    cached; each call returns a new :class:`Dataset` with its own copy of ``frame``
    (the arrays are read-only).
    Synthetic data sets (``"sine"``, ``"heteroscedastic"``, ``"two_moons"``,
    ``"inverse_sine"``) are generated by the function of the same name, which
    receives ``kwargs``.

    Parameters
    ----------
    name : str
        One of :func:`names`.
    **kwargs
        Keyword arguments for a synthetic generator (e.g. ``n``, ``noise``,
        ``seed``). Real data sets take none.

    Returns
    -------
    Dataset
        The data set.

    Raises
    ------
    ValueError
        If ``name`` is not a known data set (the message lists the valid names and
        suggests a close match).
    TypeError
        If ``name`` is not a str, if keyword arguments are given for a real data set,
        or if a generator does not accept one of them.

    Examples
    --------
    >>> from bnncat.data import load
    >>> ds = load("mcycle")
    >>> ds
    Dataset(name='mcycle', task='regression', X=(133, 1) float64, y=(133,) float64)
    >>> ds.feature_names, ds.target_name
    (('times',), 'accel')
    >>> load("galaxies").X.shape
    (82, 0)
    >>> load("naval").X.shape  # naval-propulsion-plant: 16 features, compressor decay
    (11934, 16)
    >>> load("two_moons", n=10, seed=1).y.tolist().count(1)
    5
    """
    if not isinstance(name, str):
        raise TypeError(f"name must be a str, got {type(name).__name__} {name!r}")
    name = ALIASES.get(name, name)
    if name in _REAL or name in UCI:
        if kwargs:
            raise TypeError(
                f"load({name!r}) takes no keyword arguments (it is a fixed, real data set), "
                f"got {', '.join(map(repr, kwargs))}"
            )
        cached = _load_real(name) if name in _REAL else _load_uci(name)
        return dataclasses.replace(cached)  # fresh copy of the (mutable) frame
    if name in _SYNTHETIC:
        return _SYNTHETIC[name](**kwargs)

    valid = names()
    close = difflib.get_close_matches(name.lower(), valid, n=1)
    hint = f" Did you mean {close[0]!r}?" if close else ""
    raise ValueError(f"unknown data set {name!r}.{hint} Valid names: {', '.join(valid)}.")
