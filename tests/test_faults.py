"""Faults with nothing lost: interrupted runs, failed saves, damaged files and caches."""

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import h5py
import pytest
import xarray as xr

from bnncat import data
from bnncat.cli import main
from bnncat.models import MLP, load, save
from bnncat.models.persistence import CHECKSUM

SMALL = {"method": "advi", "draws": 20, "advi_iterations": 300, "progressbar": False}


@pytest.fixture(scope="module")
def small_fit():
    ds = data.load("sine", n=30, noise=0.2, seed=1)
    return MLP((3,)).fit(ds.X, ds.y, random_seed=1, **SMALL)


def _fail_while_writing(error):
    """A ``to_netcdf`` that writes half a file, then fails as a full or read-only disk would."""

    def to_netcdf(self, path, **kwargs):
        Path(path).write_bytes(b"\x89HDF\r\n\x1a\n" + b"\0" * 1000)
        raise error

    return to_netcdf


@pytest.mark.parametrize(
    "error",
    [OSError(28, "No space left on device"), PermissionError(13, "Permission denied")],
    ids=["disk full", "read-only folder"],
)
def test_a_save_that_fails_midway_leaves_the_old_file_intact(
    small_fit, tmp_path, error, monkeypatch
):
    path = save(small_fit, tmp_path / "fit.nc")
    before = path.read_bytes()
    monkeypatch.setattr(xr.DataTree, "to_netcdf", _fail_while_writing(error))
    with pytest.raises(OSError, match=r"could not write path=.*fit\.nc.*as it was"):
        save(small_fit, path)
    assert path.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["fit.nc"]  # no temporary file left


def test_damage_inside_the_data_is_found_by_the_checksum(small_fit, tmp_path):
    path = save(small_fit, tmp_path / "fit.nc")
    with h5py.File(path, "r") as f:
        offset = f["posterior"]["W1"].id.get_offset()  # where W1's values lie in the file
    raw = bytearray(path.read_bytes())
    raw[offset + 3] ^= 0xFF  # one byte of one weight: netCDF itself reads it without a word
    path.write_bytes(bytes(raw))
    with pytest.raises(ValueError, match=r"fit\.nc.*is damaged.*checksum"):
        load(path)


def test_the_checksum_is_not_left_in_the_fit_nor_required(small_fit, tmp_path):
    back = load(save(small_fit, tmp_path / "fit.nc"))
    assert CHECKSUM not in back.attrs and CHECKSUM not in small_fit.attrs
    xr.testing.assert_identical(back["posterior"].to_dataset(), small_fit["posterior"].to_dataset())
    small_fit.to_netcdf(tmp_path / "plain.nc", engine="h5netcdf")  # written without save
    assert load(tmp_path / "plain.nc")["posterior"]["W1"].shape == (1, 20, 1, 3)


CLI_FIT = ["fit", "--data", "mcycle", "--hidden", "3", "--method", "advi", "--draws", "100"]
CLI_FIT += ["--no-progress", "--no-figures", "--seed", "1"]


def test_a_failed_cli_run_leaves_the_old_results_whole(tmp_path, monkeypatch):
    out = tmp_path / "res"
    assert main([*CLI_FIT, "--advi-iterations", "300", "--out", str(out)]) == 0
    before = {p.name: p.read_bytes() for p in out.iterdir()}
    assert {"fit.nc", "summary.csv", "report.html", "report.md"} <= set(before)

    def disk_full(*args, **kwargs):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr("bnncat.report.render.write", disk_full)  # after fit.nc and summary
    with pytest.raises(OSError, match="No space left"):
        main([*CLI_FIT, "--advi-iterations", "300", "--seed", "2", "--out", str(out)])
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["res"]  # no partial folder


def _wait_for(proc: subprocess.Popen, text: str) -> None:
    for line in proc.stdout:
        if text in line:
            return
    raise AssertionError(f"the process ended before printing {text!r}")


def _group_is_gone(pgid: int, seconds: float = 20.0) -> bool:
    """Whether every process of the group has ended (within ``seconds``)."""
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        try:
            os.killpg(pgid, 0)
        except ProcessLookupError:
            return True
        time.sleep(0.2)
    return False


@pytest.mark.parametrize(("sig", "code"), [(signal.SIGTERM, 143), (signal.SIGINT, 130)])
def test_an_interrupted_cli_fit_writes_nothing_and_leaves_no_process(tmp_path, sig, code):
    out = tmp_path / "res"
    args = [*CLI_FIT, "--advi-iterations", "2000000", "--out", str(out)]  # runs until stopped
    proc = subprocess.Popen(
        [sys.executable, "-m", "bnncat", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,  # its own process group, to look for strays afterwards
    )
    _wait_for(proc, "Fitting")
    time.sleep(3)
    proc.send_signal(sig)
    assert proc.wait(timeout=120) == code
    assert "interrupted: no result was written" in proc.stderr.read()
    assert not out.exists() and list(tmp_path.iterdir()) == []
    assert _group_is_gone(proc.pid)


def test_workers_end_when_their_parent_is_killed(tmp_path):
    script = textwrap.dedent(
        """
        from bnncat import data
        from bnncat.models import MLP, fit_each
        ds = data.load("sine", n=30, noise=0.2, seed=1)
        print("starting", flush=True)
        fit_each(MLP((3,)), [(ds.X, ds.y)] * 2, method="advi", executor="processes",
                 workers=2, advi_iterations=2_000_000, random_seed=1)
        """
    )
    proc = subprocess.Popen(
        [sys.executable, "-c", script],
        stdout=subprocess.PIPE,
        text=True,
        start_new_session=True,
        env=os.environ | {"BNNCAT_WORKER_COMPILEDIR": str(tmp_path / "workers")},
    )
    _wait_for(proc, "starting")
    time.sleep(5)  # the two workers are up
    assert len(_group_members(proc.pid)) >= 3
    proc.kill()  # SIGKILL: the parent runs no cleanup at all
    proc.wait(timeout=30)
    assert _group_is_gone(proc.pid)


def _group_members(pgid: int) -> list[int]:
    """Process ids of a process group, from /proc."""
    members = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[2]) == pgid:
            members.append(int(stat.parent.name))
    return members


FIT_SCRIPT = textwrap.dedent(
    """
    import sys
    from bnncat import data
    from bnncat.models import MLP
    ds = data.load("sine", n=30, noise=0.2, seed=1)
    idata = MLP((3,)).fit(ds.X, ds.y, method="advi", draws=20, advi_iterations=300,
                          random_seed=1, progressbar=False)
    print("W1", repr(float(idata["posterior"]["W1"].sum())))
    """
)


def _fit_in_process(cache: Path, compiledir: Path) -> subprocess.Popen:
    env = os.environ | {
        "BNNCAT_JAX_CACHE": str(cache),
        "PYTENSOR_FLAGS": f"compiledir={compiledir}",
    }
    return subprocess.Popen(
        [sys.executable, "-c", FIT_SCRIPT],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )


def _result(proc: subprocess.Popen) -> tuple[str, str]:
    out, err = proc.communicate(timeout=600)
    assert proc.returncode == 0, err[-2000:]
    return [line for line in out.splitlines() if line.startswith("W1")][0], err


def test_two_fits_at_once_share_a_cold_cache_and_a_damaged_entry_is_recompiled(tmp_path):
    cache, compiledir = tmp_path / "jax", tmp_path / "pytensor"
    both = [_fit_in_process(cache, compiledir) for _ in range(2)]  # at once, caches cold
    first, second = (_result(p)[0] for p in both)
    assert first == second
    entries = sorted(cache.glob("*-cache"))
    assert entries
    warm, _ = _result(_fit_in_process(cache, compiledir))
    assert warm == first
    for entry in entries:  # damage every compiled program: half of it, one byte flipped
        raw = bytearray(entry.read_bytes()[: max(entry.stat().st_size // 2, 1)])
        raw[-1] ^= 0xFF
        entry.write_bytes(bytes(raw))
    damaged, err = _result(_fit_in_process(cache, compiledir))
    assert damaged == first
    assert "damaged entries of the JAX compilation cache" in err
    again, err = _result(_fit_in_process(cache, compiledir))
    assert again == first and "damaged" not in err  # the entries were written anew
