"""Online updating: the previous posterior, relabelled, as the next fit's prior."""

import json

import numpy as np
import pytest
from scipy import stats

from bnncat import data
from bnncat.identifiability import online, update
from bnncat.models import MLP, MixtureRegressor, OrderedMLP, fit, predict
from bnncat.models.inference.problem import (
    PREVIOUS_POSTERIOR,
    gaussian_prior,
    prepare_problem,
)

LAPLACE = {"method": "laplace", "draws": 40, "restarts": 1}


@pytest.fixture(scope="module")
def sine():
    ds = data.load("sine", n=120, noise=0.1, seed=3)
    return np.asarray(ds.X), np.asarray(ds.y)


def test_the_previous_posterior_replaces_the_prior_exactly(sine):
    X, y = sine
    first = fit(MLP((2,)), X[:60], y[:60], random_seed=1, **LAPLACE)
    net = MLP((2,))
    gaussian = online.previous_posterior(first, net, "full", relabel=True)
    with gaussian_prior(gaussian):
        new = prepare_problem(net, X[60:], y[60:], draws=10, random_seed=1, store_mu=False)
    assert PREVIOUS_POSTERIOR in new.model.named_vars
    assert new.spec == gaussian.spec  # scaled as the first fit was, whatever this batch is
    point = new.model.initial_point()
    point = {k: v + 0.1 for k, v in point.items()}
    z = np.concatenate([np.ravel(point[n]) for n in gaussian.names])
    log_lik = new.model.compile_fn(new.model.logp(vars=new.model.observed_RVs))(point)
    expected = log_lik + stats.multivariate_normal(gaussian.mean, gaussian.cov).logpdf(z)
    np.testing.assert_allclose(new.model.compile_logp()(point), expected, rtol=1e-10)


# Each prior on two of the three builders: every builder chains two updates, the
# second with another prior than the first (a full grid cost three times as long).
@pytest.mark.parametrize(
    ("net", "priors"),
    [
        (MLP((2,)), ("full", "diag")),
        (OrderedMLP((2,)), ("diag", "laplace")),
        (MixtureRegressor((2,), n_components=2), ("laplace", "full")),
    ],
    ids=lambda v: repr(v) if not isinstance(v, tuple) else "-".join(v),
)
def test_update_runs_on_every_builder_and_records_the_batch(net, priors, sine):
    X, y = sine
    first = fit(net, X[:60], y[:60], random_seed=1, **LAPLACE)
    second = update(first, X[60:], y[60:], prior=priors[0], random_seed=2, **LAPLACE)
    assert json.loads(second.attrs["bnncat_fit"])["update_prior"] == priors[0]
    third = update(second, X[:30], y[:30], prior=priors[1], random_seed=3, **LAPLACE)
    options = json.loads(third.attrs["bnncat_fit"])
    assert options["update_batch"] == 3 and options["update_prior"] == priors[1]
    assert options["update_relabel"] is True and options["method"] == "laplace"
    assert third.attrs["bnncat_data_spec"] == first.attrs["bnncat_data_spec"]
    assert np.isfinite(predict(third, X[:5])["predictions"]["y"]).all()


@pytest.fixture(scope="module")
def advi_fit(sine):
    X, y = sine
    return fit(MLP((2,)), X, y, method="advi", draws=30, advi_iterations=100, random_seed=1)


@pytest.mark.parametrize(
    ("call", "error", "match"),
    [
        (lambda f, X, y: update(f, X[:, [0, 0]], y), ValueError, "X_new has 2 columns"),
        (lambda f, X, y: update(f, X, y, prior="wide"), ValueError, "prior='wide' is not known"),
        (lambda f, X, y: update(f, X, y, relabel="yes"), TypeError, "relabel must be True or"),
        (lambda f, X, y: update(f, X, y, prior="laplace"), ValueError, "needs a Laplace fit"),
        (lambda f, X, y: update(f, X, y, method="laplace", marglik=True), ValueError, "marglik"),
        (lambda f, X, y: update(_without_posterior(f), X, y), ValueError, "no posterior group"),
        (lambda f, X, y: update(f, X, y, method="nope"), ValueError, "method='nope'"),
    ],
    ids=["width", "prior", "relabel", "laplace", "marglik", "posterior", "method"],
)
def test_bad_updates_fail_before_any_work(call, error, match, sine, advi_fit, monkeypatch):
    X, y = sine
    monkeypatch.setattr(online, "fit", lambda *a, **k: pytest.fail("fitted"))
    with pytest.raises(error, match=match):
        call(advi_fit, X, y)


def _without_posterior(idata):
    out = idata.copy()
    del out["posterior"]
    return out


@pytest.mark.slow
def test_four_relabelled_updates_come_close_to_one_fit_on_all_the_data():
    ds = data.load("sine", n=200, noise=0.1, seed=1)
    X, y = np.asarray(ds.X), np.asarray(ds.y)
    batches = np.array_split(np.random.default_rng(0).permutation(len(X)), 4)
    grid = np.linspace(-3, 3, 60)[:, None]
    kw = {"draws": 300, "tune": 300, "chains": 4, "progressbar": False}

    def mean(idata):
        mu = predict(idata, grid, random_seed=1)["predictions"]["mu"]
        return mu.mean(("chain", "draw")).values.ravel()

    def rms(a, b):
        return float(np.sqrt(np.mean((a - b) ** 2)))

    full = mean(fit(MLP((4,)), X, y, random_seed=1, **kw))
    mc_error = rms(full, mean(fit(MLP((4,)), X, y, random_seed=2, **kw)))
    distance = {}
    for relabel in (True, False):
        idata = fit(MLP((4,)), X[batches[0]], y[batches[0]], random_seed=5, **kw)
        for rows in batches[1:]:
            idata = update(idata, X[rows], y[rows], relabel=relabel, random_seed=5, **kw)
        distance[relabel] = rms(mean(idata), full)
    # close: within a quarter of the noise sd; and relabelling measurably better
    assert distance[True] < 0.025
    assert distance[True] + 3 * mc_error < distance[False]
