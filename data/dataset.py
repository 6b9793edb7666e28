"""The :class:`Dataset` container returned by every loader and generator."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

TASKS = ("regression", "classification", "density")


@dataclass(frozen=True, eq=False, repr=False, kw_only=True)
class Dataset:
    """A small data set with its design matrix, target and provenance.

    Instances own private, read-only copies of ``X`` and ``y`` and a private copy of
    ``frame``, so that a cached data set cannot be corrupted through the arrays a
    caller passed in or got back. The table ``frame`` is a plain (mutable)
    :class:`pandas.DataFrame`; :func:`bnncat.data.load` hands out a fresh copy of it
    on every call.

    Equality is identity (two loads of the same data set are not ``==``); compare
    the arrays instead.

    Attributes
    ----------
    name : str
        Short name, as accepted by :func:`bnncat.data.load`.
    X : numpy.ndarray
        Inputs, float64 of shape ``(n, p)``; ``p`` may be 0 (density data).
    y : numpy.ndarray
        Target of shape ``(n,)``: float64 for ``"regression"`` and ``"density"``,
        int64 class labels ``0..K-1`` for ``"classification"``.
    frame : pandas.DataFrame
        The same data as a table with named columns (``n`` rows).
    description : str
        What the data are, their units, ``n`` and where they come from.
    feature_names : tuple of str
        Column names of ``X`` (``p`` entries), each a column of ``frame``.
    target_name : str
        Column name of ``y`` in ``frame``.
    task : str
        ``"regression"``, ``"classification"`` or ``"density"``.
    source : str
        Publication or generator the data come from.
    license : str
        Licence of the data.

    Examples
    --------
    >>> import numpy as np
    >>> import pandas as pd
    >>> from bnncat.data import Dataset
    >>> frame = pd.DataFrame({"x": [0.0, 1.0, 2.0], "y": [0.1, 0.9, 2.2]})
    >>> ds = Dataset(
    ...     name="toy", X=frame[["x"]].to_numpy(), y=frame["y"].to_numpy(), frame=frame,
    ...     description="Three points.", feature_names=("x",), target_name="y",
    ...     task="regression", source="made up", license="CC0-1.0",
    ... )
    >>> ds
    Dataset(name='toy', task='regression', X=(3, 1) float64, y=(3,) float64)
    >>> ds.X.flags.writeable
    False
    """

    name: str
    X: np.ndarray
    y: np.ndarray
    frame: pd.DataFrame
    description: str
    feature_names: tuple[str, ...]
    target_name: str
    task: str
    source: str
    license: str

    def __post_init__(self) -> None:
        for field in ("name", "description", "target_name", "task", "source", "license"):
            value = getattr(self, field)
            if not isinstance(value, str):
                raise TypeError(f"{field} must be a str, got {type(value).__name__}")
        if self.task not in TASKS:
            raise ValueError(f"task must be one of {TASKS}, got {self.task!r}")

        X = np.array(self.X, dtype=np.float64, copy=True)
        if X.ndim != 2:
            raise ValueError(f"X must be 2-D (n, p), got shape {X.shape}")

        y = np.array(self.y, copy=True)
        if y.ndim != 1:
            raise ValueError(f"y must be 1-D, got shape {y.shape}")
        if y.shape[0] != X.shape[0]:
            raise ValueError(
                f"X and y must have the same number of rows, got {X.shape[0]} and {y.shape[0]}"
            )
        if self.task == "classification":
            if y.dtype.kind not in "iu":
                if y.dtype.kind != "f" or not np.all(np.isfinite(y) & (y == np.round(y))):
                    raise ValueError("y must hold integer class labels for a classification task")
            y = y.astype(np.int64)
            if y.size and y.min() < 0:
                raise ValueError(f"y must hold class labels 0..K-1, got a label {y.min()}")
        else:
            y = y.astype(np.float64)

        if isinstance(self.feature_names, str):
            raise TypeError("feature_names must be a sequence of str, not a single str")
        feature_names = tuple(self.feature_names)
        if not all(isinstance(f, str) for f in feature_names):
            raise TypeError("feature_names must all be str")
        if len(feature_names) != X.shape[1]:
            raise ValueError(
                f"feature_names has {len(feature_names)} names but X has {X.shape[1]} columns"
            )

        if not isinstance(self.frame, pd.DataFrame):
            raise TypeError(f"frame must be a pandas DataFrame, got {type(self.frame).__name__}")
        if len(self.frame) != X.shape[0]:
            raise ValueError(f"frame has {len(self.frame)} rows but X has {X.shape[0]}")
        missing = [c for c in (*feature_names, self.target_name) if c not in self.frame.columns]
        if missing:
            raise ValueError(f"frame lacks the column(s) {missing}")
        frame = self.frame.copy(deep=True)

        X.setflags(write=False)
        y.setflags(write=False)
        object.__setattr__(self, "X", X)
        object.__setattr__(self, "y", y)
        object.__setattr__(self, "feature_names", feature_names)
        object.__setattr__(self, "frame", frame)

    def __repr__(self) -> str:
        return (
            f"Dataset(name={self.name!r}, task={self.task!r}, "
            f"X={self.X.shape} {self.X.dtype}, y={self.y.shape} {self.y.dtype})"
        )
