import matplotlib
import numpy as np
import pymc as pm
import pytest

matplotlib.use("Agg")


@pytest.fixture
def sine_data():
    rng = np.random.default_rng(0)
    X = rng.uniform(-3, 3, size=(40, 1))
    y = np.sin(X[:, 0]) + 0.1 * rng.normal(size=40)
    return X, y


def _sample_from_starts(model, starts, *, draws, tune=300, random_seed=2):
    """NUTS with one chain per start point, no jitter: chains begin exactly there."""
    return pm.sample(
        draws,
        tune=tune,
        chains=len(starts),
        model=model,
        initvals=starts,
        random_seed=random_seed,
        nuts_sampler="numpyro",
        nuts={"jitter": False},
        progressbar=False,
        compute_convergence_checks=False,
    )


@pytest.fixture(scope="session")
def sample_from_starts():
    return _sample_from_starts
