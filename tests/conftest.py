import matplotlib
import numpy as np
import pytest

matplotlib.use("Agg")


@pytest.fixture
def sine_data():
    rng = np.random.default_rng(0)
    X = rng.uniform(-3, 3, size=(40, 1))
    y = np.sin(X[:, 0]) + 0.1 * rng.normal(size=40)
    return X, y
