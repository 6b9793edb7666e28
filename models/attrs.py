"""The configuration a fit carries in its attrs, and rebuilding a net from it.

Everything needed to predict, relabel or reload a fit lives in the root attrs
of its ``DataTree``: the model class and its options (``bnncat_config``), what
was learned about the data (``bnncat_data_spec``), how it was fitted
(``bnncat_fit``) and the versions of the libraries that produced it.
"""

import json
from collections.abc import Mapping
from importlib.metadata import PackageNotFoundError, version
from typing import Any

import xarray as xr

from bnncat.models.data_spec import DataSpec

#: Model classes that can be rebuilt from attrs, by their ``bnncat_model`` name.
MODEL_CLASSES: dict[str, type] = {}

_LIBRARIES = ("bnn-catalogue", "pymc", "pytensor", "arviz", "numpy", "jax", "numpyro")


def register_model(cls: type) -> type:
    """Class decorator: make ``cls`` loadable from a fit's attrs."""
    MODEL_CLASSES[cls.__name__] = cls
    return cls


def library_versions() -> dict[str, str]:
    """Versions of the libraries that shape a fit's result."""
    out = {}
    for name in _LIBRARIES:
        try:
            out[name] = version(name)
        except PackageNotFoundError:
            out[name] = "not installed"
    return out


def write_attrs(
    idata: xr.DataTree, net: Any, spec: DataSpec, fit_options: Mapping[str, Any]
) -> None:
    """Record model, data spec, fit options, seed and versions in ``idata.attrs``."""
    idata.attrs.update(
        {
            "bnncat_model": type(net).__name__,
            "bnncat_config": json.dumps(net.options()),
            "bnncat_data_spec": spec.to_json(),
            "bnncat_fit": json.dumps(dict(fit_options)),
            "bnncat_versions": json.dumps(library_versions()),
            # also as plain attrs, so a reader of the netCDF header sees them at once
            "random_seed": -1
            if fit_options.get("random_seed") is None
            else int(fit_options["random_seed"]),
            "fit_method": str(fit_options["method"]),
            "fit_kind": str(fit_options.get("kind", "")),
        }
    )


def read_net(idata: xr.DataTree) -> tuple[Any, DataSpec]:
    """Rebuild the net and its data spec from a fit's attrs.

    Raises
    ------
    ValueError
        If the attrs are missing, name an unknown model, or hold options that
        the model class rejects.
    """
    attrs = idata.attrs
    missing = [k for k in ("bnncat_model", "bnncat_config", "bnncat_data_spec") if k not in attrs]
    if missing:
        raise ValueError(
            f"idata has no bnncat configuration in its attrs (missing {missing}); it was not "
            "produced by a bnncat model's fit(). For your own pm.sample() result pass net=..."
        )
    name = attrs["bnncat_model"]
    if name not in MODEL_CLASSES:
        raise ValueError(
            f"idata.attrs['bnncat_model']={name!r} is not a known model; "
            f"known: {sorted(MODEL_CLASSES)}"
        )
    try:
        options = json.loads(attrs["bnncat_config"])
        spec = DataSpec.from_json(attrs["bnncat_data_spec"])
    except (json.JSONDecodeError, TypeError) as err:
        raise ValueError(f"idata attrs hold an unreadable bnncat configuration: {err}") from err
    try:
        net = MODEL_CLASSES[name](**options)
    except (TypeError, ValueError) as err:
        raise ValueError(f"idata attrs hold an invalid {name} configuration: {err}") from err
    return net, spec


def read_fit_options(idata: xr.DataTree) -> dict[str, Any]:
    """Return the options a catalogue fit recorded (method, kind, seed, temperature...), or {}."""
    try:
        return dict(json.loads(idata.attrs.get("bnncat_fit", "{}")))
    except (json.JSONDecodeError, TypeError) as err:
        raise ValueError(f"idata attrs hold unreadable fit options: {err}") from err


def stored_or_given_net(idata: xr.DataTree, net: Any, *, example: str) -> Any:
    """Return the net a fit's attrs describe (``net``, if given, must equal it), else ``net``.

    ``example`` shows the call that passes ``net``, for the error message when
    the fit carries no configuration and none was given.
    """
    if "bnncat_config" in idata.attrs:
        stored, _ = read_net(idata)
        if net is not None and net != stored:
            raise ValueError(f"net={net!r} does not match the model stored in idata: {stored!r}")
        return stored
    if net is None:
        raise ValueError(
            "idata carries no bnncat configuration (not from a catalogue fit): pass the net you "
            f"built the model with, e.g. {example}"
        )
    return net
