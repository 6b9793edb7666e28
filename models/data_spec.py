"""What a model learned about its data at build time: names, sizes and scaling.

A :class:`DataSpec` is stored in a fit's attrs, so that prediction on new rows
and loading a saved file need nothing but that file.
"""

import json
from dataclasses import asdict, dataclass

import numpy as np
import pandas as pd


@dataclass(frozen=True)
class DataSpec:
    """Names, output size and the standardisation constants of a model's data.

    The network sees ``(X - x_loc) / x_scale``; for regression its output ``f``
    is mapped back to the units of ``y`` as ``y_loc + y_scale * f``. With
    ``standardize=False`` the locations are 0 and the scales 1.

    Attributes
    ----------
    feature_names, output_names : tuple of str
        Coordinates of the ``feature`` and ``output`` dims. For classification
        the outputs are the logits of the classes.
    x_loc, x_scale, y_loc, y_scale : tuple of float
        Per-feature and per-output location and scale.
    n_classes : int or None
        Number of classes for classification likelihoods, else None.
    """

    feature_names: tuple[str, ...]
    output_names: tuple[str, ...]
    x_loc: tuple[float, ...]
    x_scale: tuple[float, ...]
    y_loc: tuple[float, ...]
    y_scale: tuple[float, ...]
    n_classes: int | None = None

    @property
    def n_features(self) -> int:
        """Number of input columns."""
        return len(self.feature_names)

    @property
    def n_outputs(self) -> int:
        """Number of network outputs."""
        return len(self.output_names)

    @classmethod
    def from_data(
        cls,
        X_raw: object,
        X: np.ndarray,
        y_raw: object,
        y: np.ndarray,
        *,
        task: str,
        n_classes: int | None,
        binary: bool = False,
        standardize: bool,
    ) -> "DataSpec":
        """Derive the spec from validated arrays (and names from pandas inputs)."""
        feature_names = _names(X_raw, X.shape[1], "x")
        x_loc, x_scale = _loc_scale(X, standardize)
        if task == "classification":
            # Bernoulli: one logit for class 1; categorical: one logit per class.
            k = int(n_classes)
            output_names = ("logit",) if binary else tuple(str(c) for c in range(k))
            n_out = len(output_names)
            return cls(
                feature_names, output_names, x_loc, x_scale, (0.0,) * n_out, (1.0,) * n_out, k
            )
        output_names = _names(y_raw, y.shape[1], "y")
        y_loc, y_scale = _loc_scale(y, standardize)
        return cls(feature_names, output_names, x_loc, x_scale, y_loc, y_scale, None)

    def to_json(self) -> str:
        """Serialise for a netCDF attribute (floats round-trip exactly)."""
        return json.dumps(asdict(self))

    @classmethod
    def from_json(cls, text: str) -> "DataSpec":
        """Inverse of :meth:`to_json`."""
        raw = json.loads(text)
        return cls(**{k: tuple(v) if isinstance(v, list) else v for k, v in raw.items()})


def _loc_scale(a: np.ndarray, standardize: bool) -> tuple[tuple[float, ...], tuple[float, ...]]:
    if not standardize:
        return (0.0,) * a.shape[1], (1.0,) * a.shape[1]
    # computed on each column divided by its largest magnitude, so that squares of values
    # near 1e300 do not overflow nor those near 1e-300 underflow to a zero scale
    size = np.abs(a).max(axis=0)
    size = np.where(size > 0, size, 1.0)
    loc = (a / size).mean(axis=0) * size
    scale = (a / size).std(axis=0) * size
    scale = np.where(scale > 0, scale, 1.0)  # a constant column is only centred
    return tuple(float(v) for v in loc), tuple(float(v) for v in scale)


def _names(raw: object, n: int, prefix: str) -> tuple[str, ...]:
    if isinstance(raw, pd.DataFrame):
        return tuple(str(c) for c in raw.columns)
    if isinstance(raw, pd.Series) and raw.name is not None:
        return (str(raw.name),)
    if n == 1:
        return (prefix,)
    return tuple(f"{prefix}{i}" for i in range(n))
