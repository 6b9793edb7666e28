"""NUTS on NumPyro's program per model structure: the log density it computes for each data set."""

import jax.numpy as jnp
import numpy as np
import pytest

from bnncat.models import MLP, MixtureRegressor
from bnncat.models.inference import numpyro_program
from bnncat.models.inference.problem import prepare_problem
from bnncat.models.jax_runtime import jax_session


def _potentials(net, X, y, precision):
    """The kept program's -log p at a point off the start, and PyMC's own (float64) there."""
    problem = prepare_problem(net, X, y, draws=10, random_seed=1, store_mu=True)
    point = {k: v + 0.3 for k, v in problem.model.initial_point().items()}
    with jax_session(precision):
        data = numpyro_program.model_with_data_inputs(problem.model, problem.keep)
        program = numpyro_program.program_for(data)
        values = [jnp.asarray(point[v.name]) for v in problem.model.value_vars]
        ours = float(program.potential(values, data.values))
    return ours, -float(problem.model.compile_logp()(point))


@pytest.mark.parametrize(
    ("net", "programs"),
    [
        (MLP((2,), standardize=False), 1),
        # a term the MDN computes from the data has its rows in its type: 30 rows, another program
        (MixtureRegressor((2,), form="mdn", standardize=False), 2),
    ],
    ids=["mlp", "mdn"],
)
def test_a_kept_program_computes_each_data_set_s_own_log_density(net, programs):
    """Other data of the same shapes reuse the program; other rows do where the graph allows."""
    numpyro_program.forget_programs()
    rng = np.random.default_rng(0)
    for i, n in enumerate((20, 20, 30)):
        X = rng.normal(size=(n, 1))
        ours, pymc = _potentials(net, X, np.sin(X[:, 0]), "float64")
        assert ours == pytest.approx(pymc, rel=1e-12)
        if i == 1:
            assert numpyro_program.held_programs() == 1
    assert numpyro_program.held_programs() == programs


def test_inputs_of_a_large_offset_keep_their_digits_in_float32():
    """Standardised in float64 before the program: float32 would round 1e7 + x to steps of 1."""
    rng = np.random.default_rng(1)
    X = 1e7 + rng.normal(size=(40, 1))
    y = np.sin(X[:, 0] - 1e7)
    ours, pymc = _potentials(MLP((3,)), X, y, "float32")
    assert ours == pytest.approx(pymc, rel=1e-5)
