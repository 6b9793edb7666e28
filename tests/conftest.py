import matplotlib
import numpy as np
import pymc as pm
import pytest

from bnncat import data
from bnncat import identifiability as ident
from bnncat.models import MLP

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


@pytest.fixture(scope="session")
def copies_fit():
    """4 chains started in 4 random symmetric copies of one fitted point."""
    ds = data.load("sine", n=60, noise=0.1, seed=2)
    net = MLP((3,), prior_scale=1.0)  # the prior the copies tests were built and measured with
    model = net.build(ds.X, ds.y)
    one = pm.sample(
        200,
        tune=500,
        chains=1,
        model=model,
        random_seed=1,
        nuts_sampler="numpyro",
        progressbar=False,
        compute_convergence_checks=False,
    )
    point = {k: one["posterior"][k].values[0, -1] for k in ["W1", "b1", "W_out", "b_out", "sigma"]}
    rng = np.random.default_rng(5)
    starts = []
    for _ in range(4):
        perms, signs = ident.random_group_element(net, rng)
        starts.append(ident.apply_group_element(point, perms, signs, net.activation))
    idata = _sample_from_starts(model, starts, draws=1000)
    return net, ds, idata


@pytest.fixture(scope="session", autouse=True)
def jax_cache_of_the_session(tmp_path_factory):
    """Compiled programs go to a folder of this test session, not the user's cache.

    The xdist workers (and the notebooks' kernels) share it: a program one of them
    compiled, the others load.
    """
    import os

    from bnncat.models.jax_runtime import CACHE_ENV

    before = os.environ.get(CACHE_ENV)
    session_root = tmp_path_factory.getbasetemp()
    if os.environ.get("PYTEST_XDIST_WORKER"):  # each worker's folder sits in the session's
        session_root = session_root.parent
    os.environ[CACHE_ENV] = str(session_root / "jax-cache")
    yield
    if before is None:
        os.environ.pop(CACHE_ENV)
    else:
        os.environ[CACHE_ENV] = before


# Scheduling on two workers: a notebook or a simulation-based calibration of one model
# runs for minutes, so each is a work unit of its own and they all start before the
# rest, which goes module by module in file order and fills the gaps (the calibrations
# as one module kept one worker busy for 11 minutes after the other had finished).
LONG_RUNS = (
    "test_notebooks.py::test_notebook_executes",
    "test_sbc.py::test_nuts_is_calibrated_on_every_quantity_of_every_model",
)


def _is_long_run(nodeid):
    return any(run in nodeid for run in LONG_RUNS)


def pytest_collection_modifyitems(config, items):
    items.sort(key=lambda item: not _is_long_run(item.nodeid))  # stable: order kept


def pytest_xdist_make_scheduler(config, log):
    if config.getoption("dist") != "loadscope":
        return None
    from xdist.scheduler import LoadScopeScheduling

    class LongRunsApart(LoadScopeScheduling):
        def _split_scope(self, nodeid):
            return nodeid if _is_long_run(nodeid) else super()._split_scope(nodeid)

    return LongRunsApart(config, log)
