"""The Laplace approximation: its Hessian, its draws, and the usual result format."""

import numpy as np
import pymc as pm
import pytest

from bnncat import data, diagnose
from bnncat import identifiability as ident
from bnncat.models import MLP, MixtureRegressor, OrderedMLP, fit, load, predict, save
from bnncat.models.inference import laplace
from bnncat.models.jax_runtime import jax_session


@pytest.fixture(scope="module")
def tiny_model():
    ds = data.load("sine", n=20, noise=0.1, seed=3)
    return MLP((2,)).build(ds.X, ds.y)


def _fd_hessian(model, x, h=1e-5):
    """Central differences of PyMC's gradient of -logp (Jacobians included), flat space."""
    dlogp = model.compile_dlogp(jacobian=True)
    shapes = {v.name: np.shape(model.initial_point()[v.name]) for v in model.value_vars}

    def grad(flat):
        return -dlogp({k: v[0] for k, v in laplace._unflatten(flat[None], shapes).items()})

    cols = []
    for j in range(x.size):
        e = np.zeros_like(x)
        e[j] = h
        cols.append((grad(x + e) - grad(x - e)) / (2 * h))
    return np.stack(cols, axis=1)


def test_the_covariance_is_the_inverse_hessian_at_the_map(tiny_model):
    with jax_session("float64"):
        mode = laplace._mode(tiny_model, seed=1, hessian="full")
        diag = laplace._mode(tiny_model, seed=1, hessian="diag")["cov"]
    shapes = {v.name: np.shape(tiny_model.initial_point()[v.name]) for v in tiny_model.value_vars}
    point = {k: v[0] for k, v in laplace._unflatten(mode["mean"][None], shapes).items()}
    dlogp = tiny_model.compile_dlogp(jacobian=True)
    assert np.abs(dlogp(point)).max() < 1e-3  # a mode: the gradient vanishes
    hessian = _fd_hessian(tiny_model, mode["mean"])
    exact = np.linalg.inv(mode["cov"])
    assert np.abs(exact - hessian).max() <= 1e-5 * np.abs(hessian).max()
    np.testing.assert_allclose(np.diag(diag), 1 / np.diag(exact), rtol=1e-8)
    assert np.count_nonzero(diag - np.diag(np.diag(diag))) == 0


@pytest.mark.parametrize(
    "net", [MLP((3,)), OrderedMLP((3,)), MixtureRegressor((3,), n_components=2)], ids=repr
)
def test_laplace_fits_predicts_saves_relabels_and_is_diagnosed(net, tmp_path):
    ds = data.load("sine", n=60, noise=0.1, seed=2)
    idata = fit(net, ds.X, ds.y, method="laplace", draws=100, restarts=2, random_seed=4)
    post = idata["posterior"]
    assert post.sizes["chain"] == 2 and post.sizes["draw"] == 100
    assert idata.attrs["fit_kind"] == "approximation" and idata.attrs["fit_method"] == "laplace"
    stats = idata["sample_stats"]
    assert np.isfinite(stats["log_p"]).all() and np.isfinite(stats["log_q"]).all()
    assert predict(idata, np.zeros((3, 1)))["predictions"]["y"].shape == (2, 100, 3, 1)
    again = load(save(idata, tmp_path / "fit.nc"))
    np.testing.assert_array_equal(again["posterior"]["W1"], post["W1"])
    canon = ident.canonicalize(idata)
    assert canon["posterior"]["W1"].shape == post["W1"].shape
    report = diagnose(idata, random_seed=1)
    assert "PSIS k-hat" in report.verdict.sentence and report.sampler.empty


def test_draws_repeat_with_the_seed_and_log_q_is_the_mixture_of_the_restarts():
    ds = data.load("sine", n=30, seed=1)
    a = fit(MLP((2,)), ds.X, ds.y, method="laplace", draws=50, restarts=2, random_seed=9)
    b = fit(MLP((2,)), ds.X, ds.y, method="laplace", draws=50, restarts=2, random_seed=9)
    np.testing.assert_array_equal(a["posterior"]["W1"], b["posterior"]["W1"])
    means = a["laplace"]["mean"].values
    assert means.shape[0] == 2 and np.isfinite(a["laplace"]["map_logp"]).all()


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        ({"hessian": "ggn2"}, ValueError, "hessian='ggn2' is not known"),
        ({"restarts": 0}, ValueError, "restarts must be >= 1"),
        ({"chains": 4}, ValueError, "its chains are its MAP restarts"),
    ],
)
def test_bad_options_fail_before_any_search(kwargs, error, match, monkeypatch):
    monkeypatch.setattr(pm, "find_MAP", lambda *a, **k: pytest.fail("searched"))
    ds = data.load("sine", n=20, seed=1)
    with pytest.raises(error, match=match):
        fit(MLP((2,)), ds.X, ds.y, method="laplace", **kwargs)
