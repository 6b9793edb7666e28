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
