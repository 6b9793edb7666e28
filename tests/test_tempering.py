"""Tempered posteriors: the likelihood raised to 1/T on every method."""

import json

import numpy as np
import pymc as pm
import pytest

from bnncat import data, diagnose
from bnncat.models import MLP, fit
from bnncat.models.inference import METHODS
from bnncat.models.inference.laplace_curvature import flat_model
from bnncat.models.inference.problem import TEMPERING, prepare_problem
from bnncat.models.jax_runtime import jax_session

FAST = {
    "nuts": {"draws": 30, "tune": 30, "chains": 1, "progressbar": False},
    "advi": {"draws": 30, "advi_iterations": 200, "progressbar": False},
    "fullrank_advi": {"draws": 30, "advi_iterations": 200, "progressbar": False},
    "laplace": {"draws": 30, "restarts": 1},
}


@pytest.fixture(scope="module")
def sine():
    return data.load("sine", n=30, noise=0.1, seed=4)


def test_every_method_takes_a_temperature():
    for name, method in METHODS.items():
        if name in FAST:
            assert "temperature" in method.options, name


@pytest.mark.parametrize("method", list(FAST))
def test_temperature_one_is_the_untempered_model_bit_for_bit(method, sine):
    plain = fit(MLP((2,)), sine.X, sine.y, method=method, random_seed=5, **FAST[method])
    one = fit(
        MLP((2,)), sine.X, sine.y, method=method, random_seed=5, temperature=1, **FAST[method]
    )
    np.testing.assert_array_equal(plain["posterior"]["W1"], one["posterior"]["W1"])
    assert json.loads(one.attrs["bnncat_fit"])["temperature"] == 1.0


def test_the_tempered_log_density_divides_the_likelihood(sine):
    cold = prepare_problem(
        MLP((2,)), sine.X, sine.y, draws=10, random_seed=1, store_mu=False, temperature=0.25
    )
    plain = prepare_problem(MLP((2,)), sine.X, sine.y, draws=10, random_seed=1, store_mu=False)
    point = plain.model.initial_point()
    point = {k: v + 0.3 for k, v in point.items()}  # away from zero, where the net is flat
    log_lik = plain.model.compile_fn(plain.model.logp(vars=plain.model.observed_RVs))(point)
    log_prior = plain.model.compile_fn(plain.model.logp(vars=plain.model.free_RVs))(point)
    tempered = cold.model.compile_logp()(point)
    np.testing.assert_allclose(tempered, log_prior + log_lik / 0.25, rtol=1e-12)
    assert TEMPERING in cold.model.named_vars and TEMPERING not in plain.model.named_vars
    with jax_session("float64"):  # Laplace's own split of the density agrees
        flat = flat_model(cold.model, cold.temperature)
        x = flat.flatten(point)
        split = float(flat.log_prior(x)) + float(flat.log_likelihood(x, flat.head(x)))
    np.testing.assert_allclose(split, tempered, rtol=1e-10)


def test_a_cold_posterior_is_narrower_and_the_report_says_so(sine):
    kwargs = {"method": "laplace", "draws": 200, "restarts": 1, "random_seed": 2}
    warm = fit(MLP((3,)), sine.X, sine.y, temperature=1.0, **kwargs)
    cold = fit(MLP((3,)), sine.X, sine.y, temperature=0.1, **kwargs)
    assert float(cold["posterior"]["b_out"].std()) < float(warm["posterior"]["b_out"].std())
    report = diagnose(cold, random_seed=1)
    assert "cold posterior (T = 0.1" in report.verdict.sentence
    assert "T = 0.1" in report.options["title"]
    assert "cold posterior" not in diagnose(warm, random_seed=1).verdict.sentence


@pytest.mark.parametrize(
    ("temperature", "error", "match"),
    [
        (0.0, ValueError, "temperature must be finite and > 0"),
        (-1.0, ValueError, "temperature must be finite and > 0"),
        (float("inf"), ValueError, "temperature must be finite and > 0"),
        ("cold", TypeError, "temperature must be a number"),
    ],
)
@pytest.mark.parametrize("method", list(FAST))
def test_bad_temperatures_fail_before_any_work(
    method, temperature, error, match, sine, monkeypatch
):
    monkeypatch.setattr(pm.Model, "logp", lambda *a, **k: pytest.fail("built a log density"))
    with pytest.raises(error, match=match):
        fit(MLP((2,)), sine.X, sine.y, method=method, temperature=temperature, **FAST[method])
