"""The settings fit runs its JAX computations under: cache, precision, per-chain work on a CPU."""

from pathlib import Path

import jax
import numpy as np
import pytest

from bnncat import data
from bnncat.models import MLP
from bnncat.models.inference import numpyro_program
from bnncat.models.jax_runtime import (
    CACHE_ENV,
    cache_dir,
    chains_one_at_a_time,
    jax_session,
    step_each_chain,
)

NUTS = {"draws": 30, "tune": 30, "chains": 1, "random_seed": 3, "progressbar": False}


def _fit(seed=4, new_session=True, net=None):
    """A small NUTS fit; by default as a new session's, with no compiled program in memory."""
    if new_session:
        numpyro_program.forget_programs()
    ds = data.load("sine", n=30, seed=seed)
    with pytest.warns(UserWarning):  # too few draws for the convergence check
        return (net or MLP((2,))).fit(ds.X, ds.y, **NUTS)


def _files(folder):
    return sorted(p.name for p in folder.rglob("*") if p.is_file() and p.name != ".lockfile")


def test_cache_folder_follows_the_environment(monkeypatch, tmp_path):
    monkeypatch.delenv(CACHE_ENV, raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    assert cache_dir() == tmp_path / "bnncat" / "jax"
    monkeypatch.setenv(CACHE_ENV, str(tmp_path / "elsewhere"))
    assert cache_dir() == tmp_path / "elsewhere"
    for off in ("off", "OFF", "0", "none"):
        monkeypatch.setenv(CACHE_ENV, off)
        assert cache_dir() is None


def test_a_second_fit_loads_every_program_and_draws_the_same(monkeypatch, tmp_path):
    settings = (
        "jax_compilation_cache_dir",
        "jax_persistent_cache_min_compile_time_secs",
        "jax_persistent_cache_min_entry_size_bytes",
        "jax_compilation_cache_max_size",
    )
    before = {name: getattr(jax.config, name) for name in settings}
    monkeypatch.setenv(CACHE_ENV, "off")
    uncached = _fit()
    folder = tmp_path / "cache"
    monkeypatch.setenv(CACHE_ENV, str(folder))
    first = _fit()
    written = _files(folder)
    assert written, "the first fit wrote no compiled program"
    second = _fit()
    assert _files(folder) == written  # nothing compiled anew: every program was loaded
    for idata in (first, second):
        for name in ("W1", "b1", "W_out", "sigma"):
            np.testing.assert_array_equal(
                idata["posterior"][name].values, uncached["posterior"][name].values
            )
    # JAX's own settings are as they were: the user's JAX code is not cached by us
    assert {name: getattr(jax.config, name) for name in settings} == before


def test_other_data_of_the_same_shapes_compiles_nothing_new(monkeypatch, tmp_path):
    # the data reach the compiled programs as arguments (bnncat/__init__.py), not constants
    folder = tmp_path / "cache"
    monkeypatch.setenv(CACHE_ENV, str(folder))
    first = _fit(seed=4)
    written = _files(folder)
    other = _fit(seed=5)
    assert _files(folder) == written
    X_first, X_other = (idata["constant_data"]["X"].values for idata in (first, other))
    assert not np.array_equal(X_first, X_other)


def test_a_second_fit_of_the_model_runs_the_first_ones_program(monkeypatch):
    # unstandardised (as simulation-based calibration fits): other data, the same model
    monkeypatch.setenv(CACHE_ENV, "off")
    net = MLP((2,), standardize=False)
    first = _fit(seed=4, net=net)
    [program] = numpyro_program._PROGRAMS
    traced = program.run._cache_size()
    other = _fit(seed=5, new_session=False, net=net)
    assert len(numpyro_program._PROGRAMS) == 1 and numpyro_program._PROGRAMS[0] is program
    assert program.run._cache_size() == traced  # not traced again
    assert not np.array_equal(other["constant_data"]["X"], first["constant_data"]["X"])
    again = _fit(seed=4, net=net)  # translated and compiled afresh: the same draws
    np.testing.assert_array_equal(again["posterior"]["W1"], first["posterior"]["W1"])


def test_a_model_of_other_structure_or_constants_gets_a_program_of_its_own(monkeypatch):
    monkeypatch.setenv(CACHE_ENV, "off")
    _fit(seed=4)
    _fit(seed=5, new_session=False)  # standardised: other locations and scales in the graph
    _fit(seed=4, new_session=False, net=MLP((3,)))
    assert numpyro_program.held_programs() == 3
    _fit(seed=4, new_session=False)
    assert numpyro_program.held_programs() == 3


def test_a_cache_folder_the_user_gave_jax_is_kept(monkeypatch, tmp_path):
    from jax.experimental.compilation_cache import compilation_cache as jax_cache

    ours, users = tmp_path / "ours", tmp_path / "users"
    monkeypatch.setenv(CACHE_ENV, str(ours))
    jax.config.update("jax_compilation_cache_dir", str(users))
    try:
        _fit()
        assert jax.config.jax_compilation_cache_dir == str(users)
    finally:
        jax.config.update("jax_compilation_cache_dir", None)
        jax_cache.reset_cache()
    assert _files(users) and not ours.exists()


def test_an_unwritable_cache_folder_means_no_cache(monkeypatch, tmp_path):
    import warnings

    blocker = tmp_path / "a file"
    blocker.write_text("not a folder")
    monkeypatch.setenv(CACHE_ENV, str(blocker / "jax"))
    ds = data.load("sine", n=30, seed=4)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        idata = MLP((2,)).fit(ds.X, ds.y, **NUTS)
    assert any("ESS" in str(w.message) for w in caught)  # the warnings were recorded
    assert "W1" in idata["posterior"]
    assert not [w for w in caught if "cache" in str(w.message).lower()]
    assert blocker.read_text() == "not a folder"


def _memory_maps() -> int:
    with open("/proc/self/maps") as maps:
        return sum(1 for _ in maps)


@pytest.mark.skipif(not Path("/proc/self/maps").exists(), reason="Linux's /proc")
def test_repeated_fits_do_not_pile_up_compiled_programs():
    """Each fit's programs are released: without it ~200 memory maps per fit accumulate."""
    X = np.linspace(-2, 2, 20)[:, None]
    rng = np.random.default_rng(0)
    counts = []
    for i in range(8):
        y = rng.normal(size=20)
        MLP((2,)).fit(X, y, method="nuts", draws=20, tune=20, chains=1, random_seed=i)
        counts.append(_memory_maps())
    assert counts[-1] - counts[1] < 100, counts


def test_a_fit_runs_blas_on_one_thread_and_gives_the_threads_back():
    import scipy.linalg  # noqa: F401  (XLA's LAPACK calls on a CPU run in SciPy's OpenBLAS)
    from threadpoolctl import threadpool_info

    def blas_threads():
        return [pool["num_threads"] for pool in threadpool_info() if pool["user_api"] == "blas"]

    before = blas_threads()
    assert before
    with jax_session("float32"):
        assert set(blas_threads()) == {1}
    assert blas_threads() == before


def _log_density(x):
    # a small net's shape: a (rows, units) hidden layer from a (units,) row of weights
    h = jax.numpy.tanh(jax.numpy.linspace(-2.0, 2.0, 30)[:, None] * x[:8] + x[8:16])
    return -jax.numpy.sum((h @ x[16:24] - 0.5) ** 2) - 0.5 * jax.numpy.sum(x**2)


def test_batched_gradients_take_one_chain_after_another_with_the_same_values():
    xs = np.random.default_rng(0).normal(size=(6, 24))
    wrapped = chains_one_at_a_time(_log_density)
    plain_batch = jax.vmap(jax.value_and_grad(_log_density))(xs)
    batch = jax.jit(jax.vmap(jax.value_and_grad(wrapped)))(xs)
    for got, want in zip(batch, plain_batch, strict=True):
        np.testing.assert_allclose(got, want, rtol=1e-6)
    # one chain, not batched: the plain value and gradient
    one = jax.value_and_grad(wrapped)(xs[0])
    np.testing.assert_allclose(one[1], plain_batch[1][0], rtol=1e-6)
    # the batched gradient is a loop over the chains, not one vectorised program
    jaxpr = str(jax.make_jaxpr(jax.vmap(jax.value_and_grad(wrapped)))(xs))
    assert "scan" in jaxpr or "while" in jaxpr
    assert "scan" not in str(jax.make_jaxpr(jax.vmap(jax.value_and_grad(_log_density)))(xs))


def test_each_chain_steps_as_under_vmap():
    def step(key, state):
        return state + jax.random.normal(key, state.shape), jax.numpy.sum(state)

    keys = jax.random.split(jax.random.PRNGKey(0), 5)
    states = np.arange(15.0).reshape(5, 3)
    for got, want in zip(
        step_each_chain(step)(keys, states), jax.vmap(step)(keys, states), strict=True
    ):
        np.testing.assert_allclose(got, want, rtol=1e-12)
