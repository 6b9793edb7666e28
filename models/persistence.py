"""Saving fits to netCDF and loading them back, checked against their attrs."""

import hashlib
import os
from pathlib import Path
from typing import Any

import arviz as az
import numpy as np
import xarray as xr

from bnncat.models.attrs import read_net
from bnncat.models.data_spec import DataSpec


def save(idata: xr.DataTree, path: str | os.PathLike) -> Path:
    """Write a fit to a netCDF file (h5netcdf), atomically.

    The file is written next to its destination and renamed into place, so
    a failure leaves no half-written file behind.

    Examples
    --------
    >>> from bnncat.models import save
    >>> save(idata, "results/fit.nc")  # doctest: +SKIP
    """
    read_net(idata)  # refuse to save what could not be loaded again
    path = Path(path)
    if path.is_dir():
        raise ValueError(f"path={str(path)!r} is a directory; give a file name such as fit.nc")
    if not path.parent.exists():
        raise ValueError(f"path={str(path)!r}: folder {str(path.parent)!r} does not exist")
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    stamped = idata.copy()  # a shallow copy: the caller's attrs stay as they were
    stamped.attrs[CHECKSUM] = checksum(idata)
    try:
        stamped.to_netcdf(tmp, engine="h5netcdf")
        os.replace(tmp, path)
    except OSError as err:
        raise OSError(
            f"could not write path={str(path)!r} (a file there is as it was): {err}"
        ) from err
    finally:
        tmp.unlink(missing_ok=True)
    return path


#: Attribute holding the SHA-256 of a saved fit's values, checked when it is loaded.
CHECKSUM = "bnncat_sha256"


def checksum(idata: xr.DataTree) -> str:
    """SHA-256 of every variable of every group: names, shapes and values.

    Values are hashed in a fixed dtype (64-bit numbers, text for strings), so that
    what netCDF writes and reads back hashes the same; damage inside the data,
    which netCDF itself does not notice, changes it.
    """
    digest = hashlib.sha256()
    for node in sorted(idata.subtree, key=lambda n: n.path):
        for name, var in sorted(node.dataset.variables.items()):
            values = np.asarray(var.values)
            digest.update(f"{node.path}/{name}{values.shape}".encode())
            if values.dtype.kind in "biu":
                digest.update(values.astype(np.int64).tobytes())
            elif values.dtype.kind in "fc":
                wide = np.complex128 if values.dtype.kind == "c" else np.float64
                digest.update(values.astype(wide).tobytes())
            else:
                digest.update("\x1f".join(map(str, values.ravel())).encode())
    return digest.hexdigest()


def load(path: str | os.PathLike, *, net: Any = None) -> xr.DataTree:
    """Read a fit saved by :func:`save` and check it against its stored configuration.

    Parameters
    ----------
    path : str or path-like
        The netCDF file.
    net : MLP, optional
        If given, the file must hold a fit of exactly this configuration.

    Returns
    -------
    xarray.DataTree
        The fit, fully read into memory (the file is closed).

    Raises
    ------
    ValueError
        If the file is not a readable netCDF file (truncated, damaged), holds
        no bnncat configuration, a configuration different
        from ``net``, or a posterior whose variables or shapes do not match
        the model that the configuration describes.

    Examples
    --------
    >>> from bnncat.models import load, read_net
    >>> idata = load("results/fit.nc")  # doctest: +SKIP
    >>> net, spec = read_net(idata)  # doctest: +SKIP
    """
    path = Path(path)
    if not path.is_file():
        raise ValueError(f"path={str(path)!r} is not a file")
    idata = _read_netcdf(path)
    written = idata.attrs.pop(CHECKSUM, None)  # None: saved before checksums were written
    if written is not None and written != checksum(idata):
        raise ValueError(
            f"path={str(path)!r} is damaged: its values differ from those written by save "
            "(the checksum does not match)"
        )
    stored, spec = read_net(idata)
    if net is not None and net != stored:
        differ = {
            k: (v, stored.options().get(k))
            for k, v in net.options().items()
            if stored.options().get(k) != v
        }
        raise ValueError(
            f"{path} holds a {type(stored).__name__} fit whose configuration differs from "
            f"net in {differ} (given, stored)"
            if type(net) is type(stored)
            else f"{path} holds a {type(stored).__name__} fit, not a {type(net).__name__}"
        )
    check_posterior_matches(idata, stored, spec)
    return idata


def _read_netcdf(path: Path) -> xr.DataTree:
    """Read a whole netCDF file into memory; a damaged file is a ValueError naming it."""
    try:
        with az.from_netcdf(path, engine="h5netcdf") as opened:
            return opened.load().copy()
    # h5py's messages for a damaged file: OSError (truncated, no signature), KeyError
    # (a damaged object header), ValueError or RuntimeError (damaged data)
    except (OSError, KeyError, ValueError, RuntimeError) as err:
        raise ValueError(
            f"path={str(path)!r} is not a readable netCDF file (truncated or damaged?): {err}"
        ) from err


def check_posterior_matches(idata: xr.DataTree, net: Any, spec: DataSpec) -> None:
    """Raise ``ValueError`` unless the posterior has the variables and shapes of ``net``."""
    if "posterior" not in idata.children:
        raise ValueError("the file has no posterior group")
    model = net.build_validated(np.zeros((1, spec.n_features)), None, spec)
    shapes = model.eval_rv_shapes()
    posterior = idata["posterior"]
    for rv in model.free_RVs:
        if rv.name == "y":
            continue
        if rv.name not in posterior:
            raise ValueError(
                f"the stored configuration does not match the posterior: {rv.name!r} is missing"
            )
        got = tuple(posterior[rv.name].shape[2:])
        want = tuple(int(s) for s in shapes[rv.name])
        if got != want:
            raise ValueError(
                f"the stored configuration does not match the posterior: {rv.name!r} has "
                f"shape {got}, the configuration implies {want}"
            )
