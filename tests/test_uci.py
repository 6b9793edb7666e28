"""The seven UCI regression data sets shipped in ``bnncat.data`` and the benchmark's splits."""

import hashlib
import lzma
import re
import subprocess
import sys
from importlib.resources import files

import numpy as np
import pytest

from bnncat.data import UCI, load, random_splits, uci_splits

# name: (rows, features, target, first three targets)
EXPECTED = {
    "yacht": (308, 6, "residuary_resistance", [0.11, 0.27, 0.47]),
    "energy": (768, 8, "heating_load", [15.55, 15.55, 15.55]),
    "wine-quality-red": (1599, 11, "quality", [5.0, 5.0, 5.0]),
    "power-plant": (9568, 4, "energy_output", [480.48, 445.75, 438.76]),
    "naval-propulsion-plant": (11934, 16, "compressor_decay", [0.95, 0.95, 0.95]),
    "kin8nm": (8192, 8, "y", [0.53652416, 0.3080143, 0.51889978]),
    "protein-tertiary-structure": (45730, 9, "RMSD", [17.284, 6.021, 9.275]),
}


@pytest.mark.parametrize("name", list(EXPECTED))
def test_each_data_set_has_its_rows_features_and_target(name):
    rows, features, target, first = EXPECTED[name]
    ds = load(name)
    assert ds.X.shape == (rows, features) and ds.y.shape == (rows,)
    assert ds.target_name == target and target not in ds.feature_names
    assert ds.task == "regression" and np.isfinite(ds.X).all() and np.isfinite(ds.y).all()
    np.testing.assert_allclose(ds.y[:3], first)
    assert ds.license and ds.source and str(rows) in ds.description


def test_naval_drops_the_other_target_and_the_aliases_name_the_long_files():
    naval = load("naval")
    assert naval.name == "naval-propulsion-plant" and "turbine_decay" not in naval.frame
    assert load("protein").name == "protein-tertiary-structure"
    assert load("wine").name == "wine-quality-red"


def test_the_shipped_files_decompress_to_the_files_the_readme_names():
    """Provenance: each file's SHA-256 after decompression is the one data/README.md gives."""
    readme = files("bnncat.data").joinpath("README.md").read_text(encoding="utf-8")
    for name in UCI:
        packed = files("bnncat.data").joinpath(f"uci/{name}.csv.xz").read_bytes()
        digest = hashlib.sha256(lzma.decompress(packed)).hexdigest()
        assert re.search(rf"{digest}\s+{re.escape(name)}\.csv\b", readme), name


@pytest.mark.parametrize("name", ["yacht", "power-plant"])
def test_splits_are_disjoint_cover_the_rows_and_hold_out_a_tenth(name):
    n = load(name).y.shape[0]
    splits = uci_splits(name)
    assert len(splits) == 20
    for train, test in splits:
        assert len(test) == round(0.1 * n)
        assert np.intersect1d(train, test).size == 0
        np.testing.assert_array_equal(np.sort(np.concatenate([train, test])), np.arange(n))
        assert train.dtype == np.int64 and (np.diff(train) > 0).all()
    tests = {tuple(test) for _, test in splits}
    assert len(tests) == 20  # every split its own


def test_splits_are_the_same_in_another_process_and_the_first_k_do_not_depend_on_n_splits():
    code = (
        "import numpy as np; from bnncat.data import uci_splits\n"
        "print(','.join(str(int(t.sum())) for _, t in uci_splits('energy', seed=3)))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    here = uci_splits("energy", seed=3)
    assert out.stdout.strip() == ",".join(str(int(t.sum())) for _, t in here)
    for (a, b), (c, d) in zip(uci_splits("energy", n_splits=5, seed=3), here[:5], strict=True):
        np.testing.assert_array_equal(a, c)
        np.testing.assert_array_equal(b, d)
    assert not np.array_equal(uci_splits("energy", n_splits=1, seed=4)[0][1], here[0][1])


def test_the_wiese_protocol_holds_out_a_fifth():
    train, test = uci_splits("yacht", n_splits=1, test_fraction=0.2)[0]
    assert (len(train), len(test)) == (246, 62)


def test_random_splits_of_any_data_are_those_of_a_uci_set_of_its_size():
    for (a, b), (c, d) in zip(
        random_splits(308, n_splits=3, seed=2), uci_splits("yacht", n_splits=3, seed=2), strict=True
    ):
        np.testing.assert_array_equal(a, c)
        np.testing.assert_array_equal(b, d)
    with pytest.raises(ValueError, match="n_rows must be at least 2"):
        random_splits(1)
    with pytest.raises(TypeError, match="n_rows must be an integer"):
        random_splits(10.0)


@pytest.mark.parametrize(
    "kwargs, error, match",
    [
        ({"name": "mcycle"}, ValueError, "not a UCI data set"),
        ({"name": 3}, TypeError, "name must be a str"),
        ({"name": "yacht", "n_splits": 0}, ValueError, "n_splits must be at least 1"),
        ({"name": "yacht", "n_splits": 2.5}, TypeError, "n_splits must be an integer"),
        ({"name": "yacht", "test_fraction": 1.0}, ValueError, r"test_fraction must be in \(0, 1\)"),
        ({"name": "yacht", "test_fraction": 0.001}, ValueError, "both parts need at least one"),
        ({"name": "yacht", "test_fraction": "0.1"}, TypeError, "test_fraction must be a number"),
        ({"name": "yacht", "seed": -1}, ValueError, "seed must be at least 0"),
    ],
)
def test_bad_arguments_are_clear_errors(kwargs, error, match):
    with pytest.raises(error, match=match):
        uci_splits(**kwargs)
