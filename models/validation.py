"""Input checks shared by every model builder.

Every check raises before any model is built or sampled, with a message that
names the argument and says what is wrong with it.
"""

import difflib
import math
from collections.abc import Iterable, Sequence

import numpy as np
import pandas as pd


def check_choice(value: object, choices: Iterable[str], argument: str) -> str:
    """Return ``value`` if it is one of ``choices``, else raise a helpful error."""
    choices = list(choices)
    if not isinstance(value, str):
        raise TypeError(f"{argument} must be a string, one of {choices}; got {value!r}")
    if value not in choices:
        close = difflib.get_close_matches(value, choices, n=1)
        hint = f" Did you mean {close[0]!r}?" if close else ""
        raise ValueError(f"{argument}={value!r} is not known; choose one of {choices}.{hint}")
    return value


def check_positive_int(value: object, argument: str, *, minimum: int = 1) -> int:
    """Return ``value`` as an int if it is an integer >= ``minimum``."""
    if isinstance(value, bool) or not isinstance(value, int | np.integer):
        raise TypeError(f"{argument} must be an integer; got {value!r}")
    if value < minimum:
        raise ValueError(f"{argument} must be >= {minimum}; got {value}")
    return int(value)


def check_positive_float(value: object, argument: str) -> float:
    """Return ``value`` as a float if it is finite and > 0."""
    if isinstance(value, bool) or not isinstance(value, int | float | np.number):
        raise TypeError(f"{argument} must be a number; got {value!r}")
    if not math.isfinite(value) or value <= 0:
        raise ValueError(f"{argument} must be finite and > 0; got {value}")
    return float(value)


def check_hidden(hidden: object) -> tuple[int, ...]:
    """Return the hidden-layer widths as a tuple of ints >= 1."""
    if isinstance(hidden, int | np.integer) and not isinstance(hidden, bool):
        hidden = (hidden,)
    if not isinstance(hidden, Sequence) or isinstance(hidden, str):
        raise TypeError(f"hidden must be a sequence of layer widths such as (8,); got {hidden!r}")
    if len(hidden) == 0:
        raise ValueError("hidden must name at least one hidden layer, e.g. hidden=(8,)")
    return tuple(check_positive_int(h, f"hidden[{i}]") for i, h in enumerate(hidden))


def _as_numeric_array(value: object, argument: str) -> np.ndarray:
    if isinstance(value, pd.DataFrame | pd.Series):
        value = value.to_numpy()
    try:
        arr = np.asarray(value)
    except Exception as err:  # ragged lists and the like
        raise TypeError(f"{argument} could not be read as an array: {err}") from err
    if arr.dtype == bool:
        arr = arr.astype(np.int64)
    if not (np.issubdtype(arr.dtype, np.integer) or np.issubdtype(arr.dtype, np.floating)):
        raise TypeError(f"{argument} must be numeric; got dtype {arr.dtype}")
    return arr


def check_X(X: object, argument: str = "X", *, n_features: int | None = None) -> np.ndarray:
    """Return the inputs as a finite, non-empty 2-D float64 array."""
    arr = _as_numeric_array(X, argument)
    if arr.ndim != 2:
        raise ValueError(
            f"{argument} must be 2-D (rows, features); got shape {arr.shape}. "
            "For a single feature use X.reshape(-1, 1)."
        )
    if arr.shape[0] == 0:
        raise ValueError(f"{argument} is empty: it has no rows")
    if arr.shape[1] == 0:
        raise ValueError(f"{argument} has no columns: a network needs at least one input feature")
    if n_features is not None and arr.shape[1] != n_features:
        raise ValueError(
            f"{argument} has {arr.shape[1]} columns but the model was fitted on {n_features}"
        )
    return _check_finite(arr.astype(np.float64), argument)


def check_regression_y(y: object, n_rows: int, argument: str = "y") -> np.ndarray:
    """Return regression targets as a finite (n_rows, n_outputs) float64 array."""
    arr = _as_numeric_array(y, argument)
    if arr.ndim == 1:
        arr = arr[:, None]
    if arr.ndim != 2:
        raise ValueError(f"{argument} must be 1-D or 2-D (rows, outputs); got shape {arr.shape}")
    _check_rows(arr, n_rows, argument)
    if arr.shape[1] == 0:
        raise ValueError(f"{argument} has no columns")
    return _check_finite(arr.astype(np.float64), argument)


def check_labels(y: object, n_rows: int, n_classes: int | None, argument: str = "y") -> np.ndarray:
    """Return class labels as a 1-D int64 array with values in 0..n_classes-1."""
    arr = _as_numeric_array(y, argument)
    if arr.ndim == 2 and arr.shape[1] == 1:
        arr = arr[:, 0]
    if arr.ndim != 1:
        raise ValueError(f"{argument} must be a 1-D array of class labels; got shape {arr.shape}")
    _check_rows(arr, n_rows, argument)
    if np.issubdtype(arr.dtype, np.floating):
        if not np.isfinite(arr).all():
            raise ValueError(f"{argument} contains NaN or infinite class labels")
        if not np.all(arr == np.round(arr)):
            raise ValueError(f"{argument} must hold integer class labels; got non-integer values")
    labels = arr.astype(np.int64)
    upper = n_classes - 1 if n_classes is not None else None
    if labels.min() < 0 or (upper is not None and labels.max() > upper):
        allowed = f"0..{upper}" if upper is not None else "0, 1, 2, ..."
        bad = labels[(labels < 0) | (labels > (upper if upper is not None else labels.max()))]
        raise ValueError(
            f"{argument} has class labels outside {allowed}: {sorted(set(bad.tolist()))[:5]}"
        )
    return labels


#: Magnitudes of data values the models compute with: squares and products of standardised
#: values stay well inside float64 (about 1e-308 to 1e308) between these.
MAGNITUDES = (1e-100, 1e100)


def _check_finite(arr: np.ndarray, argument: str) -> np.ndarray:
    bad = ~np.isfinite(arr)
    if bad.any():
        rows = np.flatnonzero(bad.any(axis=1))
        raise ValueError(
            f"{argument} contains NaN or infinite values in {len(rows)} row(s), "
            f"first at row {rows[0]}"
        )
    size = np.abs(arr[arr != 0])
    if size.size and (size.max() > MAGNITUDES[1] or size.min() < MAGNITUDES[0]):
        raise ValueError(
            f"{argument} has values of magnitude {size.min():.3g} to {size.max():.3g}; the "
            f"models compute with magnitudes between {MAGNITUDES[0]:g} and {MAGNITUDES[1]:g} "
            "(and zero): rescale it, e.g. to its own units of 1e-3 to 1e3"
        )
    return arr


def _check_rows(arr: np.ndarray, n_rows: int, argument: str) -> None:
    if arr.shape[0] == 0:
        raise ValueError(f"{argument} is empty: it has no rows")
    if arr.shape[0] != n_rows:
        raise ValueError(f"{argument} has {arr.shape[0]} rows but X has {n_rows}")
