"""The private PyMC/PyTensor APIs bnncat relies on still exist (bnncat.models.pymc_internals)."""

import importlib

import numpy as np
import pytensor
import pytest

from bnncat.models import pymc_internals


@pytest.mark.parametrize(("module", "name"), pymc_internals.PRIVATE_CALLS)
def test_private_call_exists(module, name):
    found = getattr(importlib.import_module(module), name, None)
    assert found is not None, (
        f"{module}.{name} is gone in this PyMC/PyTensor: bnncat.models.pymc_internals uses it"
    )


def test_the_parameter_check_rewrite_is_registered_by_name():
    import pymc.logprob.utils  # noqa: F401  (registers PyMC's rewrites)

    names = pytensor.compile.optdb["canonicalize"].__db__
    assert pymc_internals.CHECK_PARAMETER_REWRITE in names, (
        f"PyTensor's canonicalize database has no {pymc_internals.CHECK_PARAMETER_REWRITE!r}: "
        "the JAX ADVI loop of bnncat.models.inference.advi_jax asks for it by name"
    )


def test_a_pymc_outside_the_checked_versions_is_warned_about(monkeypatch):
    import pymc

    monkeypatch.setattr(pymc, "__version__", "7.0.0")
    monkeypatch.setattr(pymc_internals, "_warned", False)
    with pytest.warns(UserWarning, match="outside the versions"):
        pymc_internals.check_versions()


def test_jitted_start_checks_keep_the_draws_and_restore_pymc(sine_data):
    import pymc.sampling.jax as pymc_jax

    from bnncat.models import MLP

    X, y = sine_data
    model = MLP((2,)).build(X, y)
    original = pymc_jax._get_batched_jittered_initial_points
    plain = original(model=model, chains=2, initvals=None, random_seed=3, logp_fn=None)
    with pymc_internals.jitted_start_checks():
        assert pymc_jax._get_batched_jittered_initial_points is not original
        checked = pymc_jax._get_batched_jittered_initial_points(
            model=model,
            chains=2,
            initvals=None,
            random_seed=3,
            logp_fn=pymc_jax.get_jaxified_logp(model, negative_logp=False),
        )
    assert pymc_jax._get_batched_jittered_initial_points is original
    for a, b in zip(plain, checked, strict=True):
        np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize("database", ["canonicalize", "specialize"])
def test_the_rewrites_left_out_of_the_jax_translation_are_registered_by_name(database):
    names = pytensor.compile.optdb[database].__db__
    for rewrite in pymc_internals.JAX_SLOW_REWRITES:
        assert rewrite in names, (
            f"PyTensor's {database} database has no {rewrite!r}: leaving it out of the "
            "translation to JAX (bnncat.models.pymc_internals.jax_translation) does nothing"
        )


def test_a_one_input_layer_reaches_jax_as_a_dot_and_the_mode_is_restored(sine_data):
    import jax
    from pymc.sampling.jax import get_jaxified_logp
    from pytensor.compile import mode

    from bnncat.models import MLP

    X, y = sine_data  # one input: the first layer is an (n, 1) @ (1, h) product
    model = MLP((3,)).build(X, y)
    point = [np.asarray(model.initial_point()[v.name]) for v in model.value_vars]

    def dots_and_value():
        logp = get_jaxified_logp(model, negative_logp=False)
        eqns = jax.make_jaxpr(logp)(point).eqns
        return sum(e.primitive.name == "dot_general" for e in eqns), float(logp(point))

    original = mode.JAX
    plain_dots, plain_value = dots_and_value()
    with pymc_internals.jax_translation():
        dots, value = dots_and_value()
    assert mode.JAX is original
    assert dots == plain_dots + 1
    np.testing.assert_allclose(value, plain_value, rtol=1e-12)
