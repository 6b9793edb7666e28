"""MAP searches from many starts in one JAX program."""

import numpy as np
import pytest

from bnncat.models.inference import map_search
from bnncat.models.inference.map_search import find_modes
from bnncat.models.jax_runtime import jax_session

CENTRE = np.array([1.0, -2.0, 0.5])
SCALES = np.array([1.0, 10.0, 0.1])


def _log_density(x):
    """A Gaussian log density, badly scaled, with its mode at CENTRE."""
    return -0.5 * (((x - CENTRE) / SCALES) ** 2).sum()


@pytest.mark.parametrize("devices", [8, 2, 1])
def test_every_start_reaches_the_mode_whatever_the_devices(devices, monkeypatch):
    import jax

    monkeypatch.setattr(jax, "local_device_count", lambda: devices)  # 3 starts: 1, 2 or 3 a device
    starts = np.random.default_rng(0).normal(size=(3, 3)) * 5
    with jax_session("float64"):
        found = find_modes(_log_density, starts, adam_steps=50)
    # converged by SciPy's tolerances: within 1e-4 sd of the mode on every axis
    np.testing.assert_allclose((found.x - CENTRE) / SCALES, 0.0, atol=1e-4)
    assert found.converged.all() and (found.iterations > 0).all()
    np.testing.assert_allclose(found.log_density, 0.0, atol=1e-8)


def test_only_the_given_coordinates_move_and_maxiter_bounds_the_search():
    starts = np.zeros((2, 3))
    with jax_session("float64"):
        part = find_modes(_log_density, starts, coordinates=np.array([0, 2]))
        short = find_modes(_log_density, starts + 100.0, maxiter=1)
    np.testing.assert_allclose(((part.x - CENTRE) / SCALES)[:, [0, 2]], 0.0, atol=1e-4)
    assert (part.x[:, 1] == 0.0).all()
    assert (short.iterations == 1).all() and not short.converged.any()


def test_each_start_can_have_its_own_objective():
    shifts = np.array([[0.0, 0.0, 0.0], [1.0, 2.0, 3.0], [-1.0, 0.0, 1.0], [2.0, 2.0, 2.0]])

    def tilted(x, shift):  # the mode moves to CENTRE + SCALES**2 * shift
        return _log_density(x) + x @ shift

    with jax_session("float64"):
        found = find_modes(tilted, np.zeros((4, 3)), args=shifts)
    expected = CENTRE + SCALES**2 * shifts
    np.testing.assert_allclose((found.x - expected) / SCALES, 0.0, atol=1e-4)


def test_adam_alone_moves_uphill():
    start = np.array([[4.0, 4.0, 4.0]])
    with jax_session("float64"):
        moved = map_search._adam(_log_density, start[0], 200, 1e-2)
    assert _log_density(np.asarray(moved)) > _log_density(start[0])
