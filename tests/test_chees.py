"""ChEES-HMC: many chains in one vectorised program, and a diagnosis that summarises them."""

import numpy as np
import pandas as pd
import pytest

from bnncat import data, diagnose
from bnncat.models import MLP, OrderedMLP, fit, load, predict, save
from bnncat.report.diagnosis import per_chain
from bnncat.report.figures import chains_to_draw
from bnncat.report.verdict import index_ranges

QUICK = {"draws": 10, "tune": 60, "random_seed": 3}


@pytest.fixture(scope="module")
def sine():
    return data.load("sine", n=40, noise=0.1, seed=2)


@pytest.fixture(scope="module")
def many(sine):
    """32 chains in 4 superchains: enough to be summarised, fast enough to run."""
    with pytest.warns(UserWarning):  # 60 warm-up steps: the check says run longer
        return fit(MLP((3,)), sine.X, sine.y, method="chees", chains=32, superchains=4, **QUICK)


def test_chees_fit_has_chains_in_superchains_and_hmc_statistics(many, tmp_path):
    post, stats = many["posterior"], many["sample_stats"]
    assert (post.sizes["chain"], post.sizes["draw"]) == (32, 10)
    assert list(post["superchain"].values) == [c // 8 for c in range(32)]
    assert many.attrs["fit_kind"] == "mcmc" and many.attrs["fit_method"] == "chees"
    assert post["W1"].dtype == np.float64 and np.isfinite(post["W1"]).all()
    assert np.isfinite(stats["lp"]).all() and (stats["n_steps"] >= 1).all()
    # every chain takes the same number of leapfrog steps at a draw: one vectorised program
    # (of a device; a device runs whole superchains)
    per_group = stats["n_steps"].values.reshape(4, 8, 10)
    assert (per_group == per_group[:, :1]).all()
    # chains of one superchain start together and then part
    assert float(post["b_out"].isel(draw=-1).std("chain").min()) > 0
    assert predict(many, np.zeros((3, 1)))["predictions"]["y"].shape == (32, 10, 3, 1)
    again = load(save(many, tmp_path / "fit.nc"))
    np.testing.assert_array_equal(again["posterior"]["superchain"], post["superchain"])


@pytest.mark.filterwarnings("ignore:R-hat of the predictions", "ignore:the smallest bulk ESS")
def test_chees_same_seed_same_draws_and_ordered_nets(sine, many):
    again = fit(MLP((3,)), sine.X, sine.y, method="chees", chains=32, superchains=4, **QUICK)
    np.testing.assert_array_equal(again["posterior"]["W1"], many["posterior"]["W1"])
    ordered = fit(
        OrderedMLP((3,)), sine.X, sine.y, method="chees", chains=4, **QUICK | {"superchains": 2}
    )
    b1 = ordered["posterior"]["b1"].values
    assert (np.diff(b1, axis=-1) > 0).all()  # the constraint holds in every draw


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"chains": 30, "superchains": 4}, "chains must be a multiple of superchains"),
        ({"chains": 1, "superchains": 1}, "chains must be >= 2"),
        ({"mass_matrix": "dense"}, "mass_matrix"),
        ({"target_accept": 1.0}, "target_accept"),
        ({"batch_size": 10}, "batch_size"),
    ],
)
def test_chees_refuses_bad_options_before_sampling(sine, options, message):
    with pytest.raises(ValueError, match=message):
        fit(MLP((3,)), sine.X, sine.y, method="chees", **options)


def test_diagnosis_of_many_chains_uses_superchains(many):
    few = many.copy()
    few["posterior"] = many["posterior"].to_dataset().isel(draw=slice(0, 3))
    with pytest.raises(ValueError, match="at least 4 per chain in superchains"):
        diagnose(few)
    report = diagnose(many, random_seed=1)
    assert "predictions, nested R-hat" in report.convergence.index
    assert report.functional.index.name == "superchain" and len(report.functional) == 4
    assert "superchains" in report.modes.columns
    titles = list(report.tables())
    assert "Sampler health: quantiles over 32 chains" in titles
    assert "Functional modes" in titles  # 4 superchains: a row each
    idata, canon = chains_to_draw(report)
    assert idata["posterior"].sizes["chain"] == canon["posterior"].sizes["chain"] == 4
    assert idata["posterior"].sizes["draw"] == 80
    # superchain 1 drawn as one line: its 8 chains one after another
    np.testing.assert_array_equal(
        idata["posterior"]["W1"].values[1, 10:20], many["posterior"]["W1"].values[9]
    )


def test_per_chain_tables_become_quantiles_beyond_sixteen_chains():
    few = pd.DataFrame({"draws": [5] * 16}, index=pd.RangeIndex(16, name="chain"))
    assert per_chain("Sampler health", few) == {"Sampler health": few}
    table = pd.DataFrame({"x": np.arange(101.0)}, index=pd.RangeIndex(101, name="chain"))
    [(title, quantiles)] = per_chain("Sampler health", table).items()
    assert title == "Sampler health: quantiles over 101 chains"
    assert quantiles["x"].to_dict() == {"min": 0, "5%": 5, "median": 50, "95%": 95, "max": 100}


def test_index_ranges_shortens_runs():
    assert index_ranges([0, 1, 2, 3, 5, 7, 8, 10, 11, 12]) == "0-3, 5, 7, 8, 10-12"
    assert index_ranges(range(1000)) == "0-999"
