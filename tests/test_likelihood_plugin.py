"""A likelihood defined here, outside the library, goes through every entry point unchanged."""

import numpy as np
import pymc as pm
import pytest
from scipy import stats

from bnncat import data, diagnose
from bnncat.evaluation import calibration_table
from bnncat.evaluation.density import log_predictive_density
from bnncat.models import MLP, predict
from bnncat.models.likelihoods import LIKELIHOODS, HeadLikelihood, noise_scale


class LaplaceNoise(HeadLikelihood):
    """Laplace noise with a learned scale per output (a heavier-tailed regression)."""

    name = "laplace"

    def dist(self, mu, b):
        return pm.Laplace.dist(mu=mu, b=b)

    def add_parameters(self, mu, spec):
        return {"mu": mu, "b": noise_scale(spec)}

    def parameters(self, mu, draws):
        return {"mu": mu, "b": np.asarray(draws["sigma"])[..., None, :]}


@pytest.fixture(scope="module")
def laplace_fit():
    with pytest.MonkeyPatch.context() as mp:
        mp.setitem(LIKELIHOODS, "laplace", LaplaceNoise())
        ds = data.load("sine", n=60, noise=0.1, seed=4)
        net = MLP((3,), likelihood="laplace")
        with pytest.warns(UserWarning):  # short chains: fit says the ESS is low
            idata = net.fit(
                ds.X, ds.y, draws=100, tune=150, chains=2, random_seed=2, progressbar=False
            )
        yield ds, idata


def test_its_density_cdf_and_draws_come_from_the_pymc_distribution():
    lik = LaplaceNoise()
    params = {"mu": np.array([[0.0], [1.0]]), "b": np.array([[0.5]])}
    y = np.array([[0.3], [-0.2]])
    np.testing.assert_allclose(lik.logp(params, y), stats.laplace.logpdf(y, [[0.0], [1.0]], 0.5))
    np.testing.assert_allclose(
        np.exp(lik.logcdf(params, y)), stats.laplace.cdf(y, [[0.0], [1.0]], 0.5), rtol=1e-12
    )
    draws = lik.draw({"mu": np.zeros((20_000, 1)), "b": np.full((1, 1), 0.5)}, 1)
    assert stats.kstest(draws.ravel(), stats.laplace(0, 0.5).cdf).pvalue > 1e-3


def test_a_test_defined_likelihood_fits_predicts_scores_and_is_diagnosed(laplace_fit):
    ds, idata = laplace_fit
    assert "sigma" in idata["posterior"]  # noise_scale's name
    X_new = np.linspace(-2, 2, 7)[:, None]
    with pytest.MonkeyPatch.context() as mp:
        mp.setitem(LIKELIHOODS, "laplace", LaplaceNoise())
        pred = predict(idata, X_new, random_seed=1)["predictions"]
        assert pred["y"].shape == (2, 100, 7, 1) and np.isfinite(pred["y"]).all()
        lpd = log_predictive_density(idata, ds.X[:10], ds.y[:10])
        table = calibration_table(idata, X_test=ds.X[:20], y_test=ds.y[:20])
        report = diagnose(idata, X_test=ds.X[:20], y_test=ds.y[:20], random_seed=1)
    assert np.isfinite(lpd["pointwise"]).all() and lpd["mean"] > -1.0
    coverage = table[table.metric == "coverage 90%"].set_index("data")["value"]
    assert 0.6 <= coverage.min() and coverage.max() <= 1.0
    assert report.verdict.status in ("a", "b", "c", "d", "-")
    assert not report.calibration.empty
