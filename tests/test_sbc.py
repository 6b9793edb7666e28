"""Simulation-based calibration: the CI tier (NUTS on the smallest nets) and its machinery."""

import numpy as np
import pytest
import xarray as xr
from scipy import stats

from bnncat.evaluation import sbc
from bnncat.models import MLP, MixtureRegressor, OrderedMLP

X = np.linspace(-2, 2, 20)[:, None]
NUTS = {"draws": 200, "tune": 300, "chains": 2, "progressbar": False}
MODELS = {
    "mlp-normal": MLP((2,)),
    "mlp-studentt": MLP((2,), likelihood="studentt"),
    "mlp-bernoulli": MLP((2,), likelihood="bernoulli"),
    "mlp-categorical": MLP((2,), likelihood="categorical", n_classes=3),
    "ordered-mlp": OrderedMLP((2,)),
    "mixture-noise": MixtureRegressor((2,), n_components=2),
    "mixture-mdn": MixtureRegressor((2,), n_components=2, form="mdn"),
}


@pytest.mark.slow
@pytest.mark.filterwarnings("ignore::UserWarning")
@pytest.mark.parametrize("model", sorted(MODELS))
def test_nuts_is_calibrated_on_every_quantity_of_every_model(model):
    """50 simulations: every quantity's PIT-ECDF inside the band, 99% jointly per model."""
    result = sbc.run_sbc(MODELS[model], X, method="nuts", simulations=50, random_seed=1, **NUTS)
    table = result.table
    assert "log_lik" in set(table["quantity"]) and table["quantity"].str.startswith("W").any()
    failed = table[~table["pass"]]
    assert failed.empty, f"outside the band:\n{failed.to_string()}"
    assert result.pit.sizes["draw"] == 50 and result.ranked_draws == 100


@pytest.mark.slow
@pytest.mark.filterwarnings("ignore::UserWarning")
def test_a_too_narrow_approximation_fails_and_says_how():
    """ADVI stopped early on a tiny budget: its posterior is too narrow (or off-centre)."""
    result = sbc.run_sbc(
        MLP((2,)), X, method="advi", simulations=30, random_seed=1, draws=100,
        advi_iterations=300, progressbar=False,
    )  # fmt: skip
    failed = result.table[~result.table["pass"]]
    assert not failed.empty
    assert failed["shape"].str.contains("too narrow|too low|too high").all()


@pytest.mark.slow
def test_the_ordered_prior_is_the_canonical_unconstrained_prior():
    """Forward draws made canonical have the marginals of OrderedMLP's own prior (NUTS)."""
    net = sbc.sbc_net(OrderedMLP((2,)))
    simulated = sbc.simulate_prior(net, X, 2000, random_seed=0)["posterior"]
    model = net.build_validated(X, None, net.data_spec(X, np.zeros(len(X)))[2])
    import pymc as pm

    with model:
        prior = pm.sample(
            draws=1000, tune=1000, chains=2, random_seed=2, progressbar=False,
            nuts_sampler="numpyro", var_names=["W1", "b1", "W_out", "b_out"],
        )["posterior"]  # fmt: skip
    for name in ("W1", "b1", "W_out", "b_out"):
        a = simulated[name].values.reshape(2000, -1)
        b = prior[name].values.reshape(2000, -1)[::4]  # thinned: NUTS draws are correlated
        for k in range(a.shape[1]):
            p = stats.ks_2samp(a[:, k], b[:, k]).pvalue
            assert p > 0.001, f"{name}[{k}]: KS p = {p:.2g}"
    assert (np.diff(simulated["b1"].values, axis=-1) >= 0).all()  # canonical: sorted


def test_verdicts_pass_uniform_pits_and_name_the_shape_of_bad_ones():
    rng = np.random.default_rng(0)

    pit = xr.Dataset(
        {
            "uniform": (("chain", "draw"), rng.uniform(size=(1, 300))),
            "narrow": (("chain", "draw"), rng.beta(0.5, 0.5, size=(1, 300))),
            "wide": (("chain", "draw"), rng.beta(3, 3, size=(1, 300))),
            "low": (("chain", "draw"), rng.beta(3, 1, size=(1, 300))),
        }
    )
    table = sbc.verdicts(pit).set_index("quantity")
    assert table.loc["uniform", ["pass", "inside_own_band"]].all()
    assert table.loc["uniform", "shape"] == "no overall shift or spread"
    assert not table.loc[["narrow", "wide", "low"], ["pass", "inside_own_band"]].any().any()
    assert table.loc["narrow", "shape"] == "too narrow"
    assert table.loc["wide", "shape"] == "too wide"
    assert table.loc["low", "shape"].startswith("too low")


def test_the_plot_draws_one_panel_per_quantity():
    import matplotlib

    matplotlib.use("Agg")

    rng = np.random.default_rng(0)
    pit = xr.Dataset({q: (("chain", "draw"), rng.uniform(size=(1, 100))) for q in ("a", "b")})
    result = sbc.SBCResult(pit, sbc.verdicts(pit), "nuts", 100)
    pc = sbc.plot_sbc(result)
    assert len(pc.viz["plot"].data_vars) == 2


def test_the_pit_of_a_rank_breaks_ties_at_random():
    rng = np.random.default_rng(0)
    draws = np.array([0.0, 1.0, 1.0, 2.0])
    values = [sbc._pit(1.0, draws, rng) for _ in range(2000)]
    assert min(values) >= 1 / 5 and max(values) <= 4 / 5  # one below; two ties and itself
    assert abs(np.mean(values) - 0.5) < 0.02


def test_bad_options_are_refused():
    with pytest.raises(ValueError, match="n_classes"):
        sbc.run_sbc(MLP((2,), likelihood="categorical"), X)
    with pytest.raises(ValueError, match="simulations"):
        sbc.run_sbc(MLP((2,)), X, simulations=1)
    with pytest.raises(ValueError, match="X_probe"):
        sbc.run_sbc(MLP((2,)), X, X_probe=np.zeros((2, 3)))
    with pytest.raises(ValueError, match="method"):
        sbc.run_sbc(MLP((2,)), X, method="magic", simulations=2)


def test_the_verdict_band_holds_a_model_at_99_percent_jointly():
    """Bonferroni over a model's quantities: wider than each quantity's own 99% band."""
    assert sbc.family_band_prob(1) == sbc.BAND_PROB
    assert sbc.family_band_prob(20) == pytest.approx(1 - 0.01 / 20)
    # PITs piled a little towards 1: outside their own 99% band, inside the joint one
    u = np.concatenate([np.linspace(0.01, 0.99, 42), np.full(8, 0.96)])
    pit = xr.Dataset({f"q{k}": (("chain", "draw"), u[None]) for k in range(20)})
    table = sbc.verdicts(pit)
    assert not table["inside_own_band"].any() and table["pass"].all()
