"""The JAX ADVI engine: BlackJAX's VI on PyMC's log density, in PyMC's layout and parameters."""

import numpy as np
import pytest

from bnncat import data
from bnncat.models import MLP, OrderedMLP
from bnncat.models.inference import advi_jax
from bnncat.models.inference.advi_start import make_inference, map_start


@pytest.fixture(scope="module")
def ordered_model():
    ds = data.load("sine", n=30, seed=4)
    # an ordered (transformed) variable and a positive one: the Jacobians must be in
    return OrderedMLP((3,)).build(ds.X, ds.y)


@pytest.mark.parametrize("method", ["advi", "fullrank_advi"])
def test_start_parameters_survive_the_round_trip_through_blackjax(ordered_model, method):
    start = map_start(ordered_model, method, random_seed=1)
    (group,) = make_inference(ordered_model, method, 1, start).approx.groups
    before = {k: v.get_value().copy() for k, v in group.params_dict.items()}
    mu, spread = advi_jax._start_params(group, method)
    np.testing.assert_allclose(mu, before["mu"])
    if method == "advi":  # MAP start: every sd is advi_start's 0.05
        np.testing.assert_allclose(np.exp(spread), 0.05, rtol=1e-6)
        state = _State(mu=mu, rho=spread)
    else:
        state = _State(mu=mu, chol_params=spread)
    for v in group.params_dict.values():  # overwritten by what BlackJAX ended with
        v.set_value(np.zeros_like(v.get_value()))
    advi_jax._set_params(group, method, state)
    for name, value in before.items():
        np.testing.assert_allclose(group.params_dict[name].get_value(), value, rtol=1e-6)


def test_flat_log_density_is_the_models_log_density_in_pymcs_layout(ordered_model):
    (group,) = make_inference(ordered_model, "advi", 1, {}).approx.groups
    rng = np.random.default_rng(0)
    z = rng.normal(size=group.ddim)
    point = {name: z[slc].reshape(shape) for name, (_, slc, shape, _) in group.ordering.items()}
    expected = ordered_model.compile_logp()(point)
    log_density = advi_jax.flat_log_density(ordered_model, group)
    np.testing.assert_allclose(float(log_density(z)), expected, rtol=1e-10)


def test_the_same_seed_gives_the_same_fit_and_chunks_do_not_change_it(monkeypatch):
    ds = data.load("sine", n=30, seed=4)
    kwargs = {"method": "advi", "draws": 20, "advi_iterations": 250, "progressbar": False}
    one = MLP((2,)).fit(ds.X, ds.y, random_seed=7, **kwargs)
    monkeypatch.setattr(advi_jax, "ADVI_CHUNK", 100)  # three chunks instead of one
    other = MLP((2,)).fit(ds.X, ds.y, random_seed=7, **kwargs)
    np.testing.assert_array_equal(
        one["fit_history"]["loss"].values, other["fit_history"]["loss"].values
    )
    np.testing.assert_array_equal(one["posterior"]["W1"].values, other["posterior"]["W1"].values)


def test_the_loop_runs_every_iteration_once_and_stops_at_the_first_nan(monkeypatch):
    import jax.numpy as jnp

    monkeypatch.setattr(advi_jax, "ADVI_CHUNK", 100)

    def count(state, i):  # the state counts the steps; the loss is the step's index
        return state + 1, i.astype(float)

    state, losses, _ = advi_jax._optimise(count, jnp.int32(0), 250, progressbar=False)
    assert int(state) == 250
    np.testing.assert_array_equal(losses, np.arange(250))

    def nan_at_230(state, i):  # in the third chunk, while none is queued after it
        return state + 1, jnp.where(i == 230, jnp.nan, 0.0)

    with pytest.raises(FloatingPointError, match="NaN ADVI loss at iteration 231"):
        advi_jax._optimise(nan_at_230, jnp.int32(0), 250, progressbar=False)

    def nan_at_130(state, i):  # in the second chunk, while the third is queued
        return state + 1, jnp.where(i == 130, jnp.nan, 0.0)

    with pytest.raises(FloatingPointError, match="NaN ADVI loss at iteration 131"):
        advi_jax._optimise(nan_at_130, jnp.int32(0), 250, progressbar=False)


def test_minibatch_models_keep_pymcs_objective_graph():
    """BlackJAX's step would freeze pm.Minibatch's rows into one constant batch."""
    from bnncat.models.inference.problem import build_model, prepare_problem

    ds = data.load("sine", n=40, seed=3)
    net = MLP((2,))
    problem = prepare_problem(
        net, ds.X, ds.y, draws=10, random_seed=1, store_mu=False, temperature=1.0
    )
    assert not advi_jax._uses_minibatches(problem.model)
    batched = build_model(net, problem.X, problem.y, problem.spec, 1.0, batch_size=10)
    assert advi_jax._uses_minibatches(batched)


class _State:
    """The fields of BlackJAX's VI states that ``_set_params`` reads."""

    def __init__(self, **fields):
        self.__dict__.update(fields)
