"""plot_conditional_density: the heat map of p(y | x, D), its quantile lines and its checks."""

import matplotlib.pyplot as plt
import numpy as np
import pytest
from matplotlib.collections import PathCollection, QuadMesh

from bnncat import data
from bnncat.evaluation.density import predictive_density
from bnncat.evaluation.plots import plot_conditional_density, plot_predictive
from bnncat.models import MLP, MixtureRegressor, read_net

# tiny fits: the convergence warnings of fit() are expected and beside the point here
pytestmark = pytest.mark.filterwarnings("ignore:R-hat of the predictions:UserWarning")

TINY = {"draws": 40, "tune": 40, "chains": 2, "random_seed": 1, "progressbar": False}


@pytest.fixture(scope="module")
def inverse_sine():
    return data.load("inverse_sine", n=60)


@pytest.fixture(scope="module")
def mdn_fit(inverse_sine):
    net = MixtureRegressor((3,), n_components=2, form="mdn")
    return net.fit(inverse_sine.X, inverse_sine.y, **TINY)


@pytest.fixture(scope="module")
def mlp_fit(inverse_sine):
    return MLP((3,)).fit(inverse_sine.X, inverse_sine.y, **TINY)


@pytest.fixture(autouse=True)
def _close_figures():
    yield
    plt.close("all")


def _mesh(ax) -> QuadMesh:
    meshes = [c for c in ax.collections if isinstance(c, QuadMesh)]
    assert len(meshes) == 1
    return meshes[0]


def _density(fig) -> np.ndarray:
    return np.asarray(_mesh(fig.axes[0]).get_array())


def _quantile_lines(ax):
    return [line for line in ax.get_lines() if line.get_linestyle() == "--"]


def _padded(a, share):
    lo, hi = float(a.min()), float(a.max())
    return lo - share * (hi - lo), hi + share * (hi - lo)


def test_mesh_shape_grid_and_training_data(mdn_fit, inverse_sine):
    fig = plot_conditional_density(mdn_fit, n_x=30, n_y=45)
    ax = fig.axes[0]
    dens = _density(fig)
    assert dens.shape == (45, 30)  # (y, x): n_x != n_y, so a transposed mesh fails here
    assert np.isfinite(dens).all() and (dens >= 0).all() and dens.max() > 0
    # x: 5% beyond the data on each side; y: the targets' range padded by 10%
    np.testing.assert_allclose(ax.get_xlim(), _padded(inverse_sine.X[:, 0], 0.05))
    np.testing.assert_allclose(ax.get_ylim(), _padded(inverse_sine.y, 0.1))
    points = [c for c in ax.collections if isinstance(c, PathCollection)]
    assert len(points) == 1
    np.testing.assert_allclose(
        points[0].get_offsets(), np.column_stack([inverse_sine.X[:, 0], inverse_sine.y])
    )
    assert ax.get_xlabel() == "x" and ax.get_ylabel() == "y"
    colorbar_labels = [a.get_ylabel() for a in fig.axes[1:]]
    assert colorbar_labels == ["p(y | x, D)"]


def test_columns_are_the_predictive_density_at_their_x(mdn_fit, inverse_sine):
    fig = plot_conditional_density(mdn_fit, n_x=20, n_y=50, y_range=(-0.5, 1.5), max_draws=30)
    x_grid = np.linspace(*_padded(inverse_sine.X[:, 0], 0.05), 20)
    y_grid = np.linspace(-0.5, 1.5, 50)
    for i in (0, 9, 19):  # the same subset of draws (same seed) at one x at a time
        expected = predictive_density(mdn_fit, [[x_grid[i]]], y_grid, max_draws=30).values
        np.testing.assert_allclose(_density(fig)[:, i], expected[0, 0], rtol=1e-10)


@pytest.mark.parametrize("fit_name", ["mdn_fit", "mlp_fit"])
def test_density_integrates_to_one_over_y(fit_name, request):
    # y lies in [0, 1] (sd 0.3). On a uniform grid whose step h is below a Gaussian's
    # sd s, the trapezoid rule integrates it with a relative error of about
    # 2 exp(-2 pi^2 s^2 / h^2) < 1e-8 (Poisson summation), so what is left is the mass
    # beyond the range, checked small at the edges below; 1e-3 is then a generous
    # tolerance that still catches any lost factor (a missing y scale, sum over draws).
    idata = request.getfixturevalue(fit_name)
    net, spec = read_net(idata)
    lo, hi, n_y = -1.5, 2.5, 2001  # step 0.002: the MDN's narrowest component has sd 0.003
    fig = plot_conditional_density(idata, n_x=25, n_y=n_y, y_range=(lo, hi))
    dens = _density(fig)
    step = (hi - lo) / (n_y - 1)
    post = idata["posterior"]
    params = {k: post[k].values for k in post.data_vars}
    x_grid = np.linspace(*_padded(idata["constant_data"]["X"].values[:, 0], 0.05), 25)
    scale = net.observation_parameters(params, x_grid[:, None], spec)["sigma"]
    assert scale.min() > step  # the grid resolves every component
    assert dens[[0, -1]].max() < 1e-3 * dens.max()  # no mass cut off at the edges
    integral = np.trapezoid(dens, dx=step, axis=0)
    np.testing.assert_allclose(integral, 1.0, atol=1e-3)


def test_mean_of_the_density_is_the_posterior_mean_for_a_gaussian_mlp(mlp_fit):
    # E[y | x, D] = mean over draws of mu_s(x): the density's first moment must agree
    lo, hi, n_y = -1.5, 2.5, 801
    fig = plot_conditional_density(mlp_fit, n_x=15, n_y=n_y, y_range=(lo, hi))
    dens, y_grid = _density(fig), np.linspace(lo, hi, n_y)
    first_moment = np.trapezoid(dens * y_grid[:, None], y_grid, axis=0)
    net, spec = read_net(mlp_fit)
    post = mlp_fit["posterior"]
    x_grid = np.linspace(*_padded(mlp_fit["constant_data"]["X"].values[:, 0], 0.05), 15)
    mu = net.forward({k: post[k].values for k in post.data_vars}, x_grid[:, None], spec)
    np.testing.assert_allclose(first_moment, mu.mean(axis=(0, 1))[:, 0], atol=2e-3)


def test_quantile_lines_are_the_quantiles_of_each_column(mdn_fit):
    probs = (0.1, 0.5, 0.9)
    lo, hi, n_y = -1.0, 2.0, 600
    fig = plot_conditional_density(mdn_fit, n_x=12, n_y=n_y, y_range=(lo, hi), probs=probs)
    ax = fig.axes[0]
    lines = _quantile_lines(ax)
    assert len(lines) == 3
    q = np.stack([line.get_ydata() for line in lines])  # (quantile, x)
    assert q.shape == (3, 12)
    assert (np.diff(q, axis=0) > 0).all()  # 10% < 50% < 90% at every x
    # recompute the quantiles from the mesh itself (left Riemann CDF): within a grid step
    dens, y_grid = _density(fig), np.linspace(lo, hi, n_y)
    cdf = np.cumsum(dens, axis=0)
    cdf /= cdf[-1]
    for k, p in enumerate(probs):
        expected = y_grid[np.argmax(cdf >= p, axis=0)]
        np.testing.assert_allclose(q[k], expected, atol=2 * (hi - lo) / (n_y - 1))
    labels = [t.get_text() for t in ax.get_legend().get_texts()]
    assert "10%, 90% predictive quantiles" in labels and "predictive median" in labels


def test_no_quantile_lines_when_probs_is_empty(mdn_fit):
    fig = plot_conditional_density(mdn_fit, n_x=10, n_y=10, probs=())
    assert _quantile_lines(fig.axes[0]) == []


def test_draws_into_a_given_axes(mlp_fit):
    fig, axes = plt.subplots(1, 2)
    out = plot_conditional_density(mlp_fit, n_x=10, n_y=12, ax=axes[1])
    assert out is fig
    assert not any(isinstance(c, QuadMesh) for c in axes[0].collections)
    assert _mesh(axes[1]).get_array().shape == (12, 10)
    assert len(fig.axes) == 3  # the two panels and axes[1]'s colorbar


def test_max_draws_and_seed_choose_the_draws(mdn_fit):
    a = _density(plot_conditional_density(mdn_fit, n_x=8, n_y=20, max_draws=5, random_seed=0))
    b = _density(plot_conditional_density(mdn_fit, n_x=8, n_y=20, max_draws=5, random_seed=3))
    c = _density(plot_conditional_density(mdn_fit, n_x=8, n_y=20, max_draws=5, random_seed=3))
    assert not np.allclose(a, b)
    np.testing.assert_array_equal(b, c)


@pytest.fixture(scope="module")
def classifier_fit():
    rng = np.random.default_rng(0)
    X = rng.normal(size=(30, 1))
    return MLP((2,), likelihood="bernoulli").fit(X, (X[:, 0] > 0).astype(int), **TINY)


@pytest.fixture(scope="module")
def two_feature_fit():
    rng = np.random.default_rng(0)
    X = rng.normal(size=(30, 2))
    return MLP((2,)).fit(X, X.sum(axis=1) + 0.1 * rng.normal(size=30), **TINY)


def test_rejects_classification(classifier_fit):
    with pytest.raises(ValueError, match="regression model.*classification likelihood 'bernoulli'"):
        plot_conditional_density(classifier_fit)


def test_rejects_more_than_one_feature(two_feature_fit):
    with pytest.raises(ValueError, match="exactly one input feature; this fit has 2"):
        plot_conditional_density(two_feature_fit)


@pytest.mark.parametrize(
    ("kwargs", "error", "message"),
    [
        ({"output": 1}, ValueError, r"output=1 is out of range: this model has 1 output"),
        ({"output": -1}, ValueError, r"output=-1 is out of range"),
        ({"output": "t"}, ValueError, r"output='t' is not an output of this model"),
        ({"output": 0.0}, TypeError, r"output must be an int index or an output name"),
        ({"y_range": (1.0, 0.0)}, ValueError, r"y_range must be finite with low < high"),
        ({"y_range": (0.0, np.inf)}, ValueError, r"y_range must be finite"),
        ({"y_range": 1.0}, ValueError, r"y_range must be a \(low, high\) pair"),
        ({"n_x": 1}, ValueError, r"n_x must be >= 2"),
        ({"n_y": 1}, ValueError, r"n_y must be >= 2"),
        ({"probs": (0.0, 0.5)}, ValueError, r"probs must lie in \(0, 1\)"),
    ],
)
def test_rejects_bad_arguments(mdn_fit, kwargs, error, message):
    with pytest.raises(error, match=message):
        plot_conditional_density(mdn_fit, **{"n_x": 5, "n_y": 5, **kwargs})


def test_output_by_name(mdn_fit):
    by_name = _density(plot_conditional_density(mdn_fit, n_x=6, n_y=7, output="y"))
    by_index = _density(plot_conditional_density(mdn_fit, n_x=6, n_y=7, output=0))
    np.testing.assert_array_equal(by_name, by_index)


def test_class_bands_show_the_posterior_mean_probability_of_class_one(classifier_fit):
    from scipy import special

    fig = plot_predictive(classifier_fit, grid_size=50)
    line = fig.axes[0].get_lines()[0]  # the posterior mean
    x, p = line.get_xdata(), line.get_ydata()
    post = classifier_fit["posterior"]
    params = {k: post[k].values for k in post.data_vars}
    net, spec = read_net(classifier_fit)
    logits = net.forward(params, x[:, None], spec)[..., 0]  # the test's own inverse logit
    np.testing.assert_allclose(p, special.expit(logits).mean(axis=(0, 1)), rtol=1e-10)
    assert fig.axes[0].get_ylabel() == "P(class 1)"
