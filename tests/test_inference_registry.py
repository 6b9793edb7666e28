"""Inference methods as plug-ins: the registry, option checks and a method added by a test."""

import numpy as np
import pymc as pm
import pytest
import xarray as xr

from bnncat import data, diagnose
from bnncat.models import MLP, fit, predict
from bnncat.models.inference import METHODS, fit_nuts, register
from bnncat.models.inference.problem import prepare_problem, record_fit
from bnncat.models.inference.progress import Progress


def test_every_method_has_a_kind_and_the_shared_options():
    for method in METHODS.values():
        assert method.kind in ("mcmc", "approximation", "ensemble", "smc")
        assert {"draws", "random_seed", "store_mu", "progressbar"} <= set(method.options)


def test_an_option_of_another_method_is_refused_naming_the_methods_own(monkeypatch):
    monkeypatch.setattr(pm, "fit", lambda *a, **k: pytest.fail("fitting started"))
    ds = data.load("sine", n=20, seed=1)
    with pytest.raises(ValueError, match="method='advi' takes no option 'chains'") as err:
        fit(MLP((2,)), ds.X, ds.y, method="advi", chains=4)
    assert "advi_iterations" in str(err.value) and "one chain" in str(err.value)
    with pytest.raises(
        ValueError, match=r"no option 'target_accept' \(an option of method='nuts'\)"
    ):
        fit(MLP((2,)), ds.X, ds.y, method="laplace", target_accept=0.9)
    with pytest.raises(ValueError, match="takes no option 'n_iter'; its options are: draws"):
        fit(MLP((2,)), ds.X, ds.y, method="nuts", n_iter=5)


def test_a_method_called_directly_gives_what_fit_gives():
    ds = data.load("sine", n=20, seed=1)
    opts = {"draws": 20, "tune": 20, "chains": 1, "random_seed": 4, "progressbar": False}
    with pytest.warns(UserWarning):
        direct = fit_nuts(MLP((2,)), ds.X, ds.y, **opts)
    with pytest.warns(UserWarning):
        dispatched = fit(MLP((2,)), ds.X, ds.y, method="nuts", **opts)
    np.testing.assert_array_equal(direct["posterior"]["W1"], dispatched["posterior"]["W1"])
    assert direct.attrs["bnncat_fit"] == dispatched.attrs["bnncat_fit"]


def fit_prior_draws(net, X, y, *, draws=100, random_seed=None, store_mu=False, progressbar=False):
    """A method defined outside the library: draws from the prior, as one chain."""
    problem = prepare_problem(net, X, y, draws=draws, random_seed=random_seed, store_mu=store_mu)
    prior = pm.sample_prior_predictive(
        problem.draws, model=problem.model, random_seed=problem.random_seed
    )
    groups = {g: prior[g].to_dataset() for g in ("observed_data", "constant_data")}
    idata = xr.DataTree.from_dict(
        {"posterior": prior["prior"].to_dataset()[problem.keep], **groups}
    )
    return record_fit(idata, problem, "prior_draws", {"store_mu": store_mu})


def test_a_new_method_is_one_function_and_one_registry_line(monkeypatch):
    monkeypatch.setitem(METHODS, "prior_draws", None)  # the key is removed after the test
    register("prior_draws", kind="approximation")(fit_prior_draws)
    ds = data.load("sine", n=30, seed=2)
    idata = fit(MLP((3,)), ds.X, ds.y, method="prior_draws", draws=50, random_seed=3)
    assert idata.attrs["fit_kind"] == "approximation"
    assert idata.attrs["fit_method"] == "prior_draws"
    assert idata["posterior"]["W1"].shape == (1, 50, 1, 3)
    assert predict(idata, np.zeros((4, 1)))["predictions"]["mu"].shape == (1, 50, 4, 1)
    report = diagnose(idata, random_seed=1)
    assert "one fitted approximation" in report.verdict.sentence  # read from the kind
    assert report.sampler.empty  # no NUTS statistics asked of it


def test_progress_in_a_log_is_a_line_at_a_time(monkeypatch, capsys):
    monkeypatch.setattr("bnncat.models.inference.progress.writes_to_log", lambda: True)
    monkeypatch.setattr("bnncat.models.inference.progress.LOG_INTERVAL", 0.0)
    with Progress(3, "ADVI") as progress:
        for _ in range(3):
            progress.update(1, "loss = 1")
    lines = capsys.readouterr().err.splitlines()
    assert lines == ["ADVI: 1/3 loss = 1", "ADVI: 2/3 loss = 1", "ADVI: 3/3 loss = 1"]


def test_a_sampler_in_a_log_beats_then_reports_each_chain(monkeypatch, capsys):
    import time

    from bnncat.models.inference import nuts, progress

    monkeypatch.setattr(progress, "LOG_INTERVAL", 0.05)
    with progress.heartbeat("NUTS (numpyro): 2 chains x 40 iterations"):
        time.sleep(0.3)
    beats = capsys.readouterr().err.splitlines()
    assert len(beats) >= 2 and all(b.startswith("NUTS (numpyro): 2 chains") for b in beats)
    monkeypatch.setattr(nuts, "writes_to_log", lambda: True)
    ds = data.load("sine", n=20, seed=1)
    with pytest.warns(UserWarning):
        fit_nuts(MLP((2,)), ds.X, ds.y, draws=20, tune=20, chains=2, random_seed=1)
    err = capsys.readouterr().err
    assert "NUTS chain 0: 20 draws" in err and "NUTS chain 1: 20 draws" in err
    assert "\r" not in err  # no bars
