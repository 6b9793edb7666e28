"""diagnose(): convergence in three spaces, functional modes, verdicts and the report."""

import matplotlib.figure
import numpy as np
import pandas as pd
import pymc as pm
import pytest
import xarray as xr

from bnncat import data, diagnose
from bnncat import identifiability as ident
from bnncat.identifiability.functional import functional_modes, unit_census
from bnncat.models import MLP, MixtureRegressor, OrderedMLP
from bnncat.models.data_spec import DataSpec
from bnncat.report import inputs as diagnosis_inputs
from bnncat.report.verdict import judge

SMALL = {"draws": 150, "tune": 300, "chains": 2, "progressbar": False}
# small fits warn that they have not converged; that is what some of these tests diagnose
pytestmark = pytest.mark.filterwarnings("ignore:.*(R-hat|bulk ESS|divergent):UserWarning")


@pytest.fixture(scope="module")
def mcycle_fit():
    ds = data.load("mcycle")
    return MLP((4,)).fit(ds.X, ds.y, random_seed=3, **SMALL)


@pytest.fixture(scope="module")
def mcycle_report(mcycle_fit):
    return diagnose(mcycle_fit)


# -- the checks of the issue --------------------------------------------------------------


@pytest.mark.slow
def test_chains_in_symmetric_copies_give_verdict_b(copies_fit):
    net, _, idata = copies_fit  # a user's own pm.sample run: net given
    report = diagnose(idata, net=net)
    rhat = report.convergence["max_rhat"]
    assert rhat["raw weights"] > 1.5
    assert rhat["relabelled weights"] <= 1.01
    assert rhat["predictions"] <= 1.01
    assert rhat["log-likelihood"] <= 1.01
    assert report.verdict.status == "b", str(report.verdict)
    assert report.hopping_summary["distinct_modal_copies"] == 4
    assert report.functional["mode"].nunique() == 1


def _two_edges_fit():
    """A one-unit net on a plateau: it fits the left edge or the right edge, never both.

    The two fits are different functions (mirror images in x, not a symmetry of
    the net). Two chains start at each optimum. 300 rows make the barrier between the
    edges high enough that no chain crosses it (on 90 rows one chain in a few crossed, so
    the chains legitimately visited both functions).
    """
    rng = np.random.default_rng(0)
    X = np.linspace(-3, 3, 300)[:, None]
    y = np.tanh(6 * (X[:, 0] + 1.5)) - np.tanh(6 * (X[:, 0] - 1.5)) + 0.1 * rng.normal(size=300)
    net = MLP((1,), prior="fixed", prior_scale=3.0)
    model = net.build(X, y)
    spec = net.data_spec(X, y)[2]
    starts = []
    for edge in (-1.5, -1.5, 1.5, 1.5):
        centre = (edge - spec.x_loc[0]) / spec.x_scale[0]
        start = {
            "W1": np.array([[8.0]]),
            "b1": np.array([-8.0 * centre]),
            "W_out": np.array([[0.5]]),
            "b_out": np.array([0.5 if edge > 0 else -0.5]),
            "sigma_log__": np.array([np.log(0.5)]),
        }
        found = pm.find_MAP(
            model=model, initvals=start, jitter=False, progressbar=False, return_inferencedata=True
        )["posterior"]
        starts.append({k: found[k].values[0, 0] for k in ("W1", "b1", "W_out", "b_out", "sigma")})
    return net, starts, model


@pytest.mark.slow
def test_chains_in_different_functional_modes_give_verdict_d(sample_from_starts):
    net, starts, model = _two_edges_fit()
    left, right = float(starts[0]["b1"][0]), float(starts[2]["b1"][0])
    assert left * right < 0  # the optimisation really found the two edges
    idata = sample_from_starts(model, starts, draws=300, tune=300)
    report = diagnose(idata, net=net)
    assert report.verdict.status == "d", str(report.verdict)
    assert report.functional["mode"].tolist() == [1, 1, 2, 2]
    assert "chains 0, 1" in report.verdict.sentence and "chains 2, 3" in report.verdict.sentence
    assert report.convergence.loc["relabelled weights", "max_rhat"] > 1.1  # relabelling can't help
    assert report.chain_distance[0, 2] > 3 * report.chain_distance[0, 1]


def test_an_ordered_mlp_fit_stays_in_one_copy():
    ds = data.load("sine", n=60, noise=0.1, seed=2)
    idata = OrderedMLP((3,)).fit(ds.X, ds.y, random_seed=4, **SMALL)
    report = diagnose(idata)
    assert (report.hopping["switch_rate"] == 0).all()
    assert (report.hopping["copies_visited"] == 1).all()
    assert report.hopping_summary["distinct_modal_copies"] == 1


def test_a_mixture_regressor_fit_is_diagnosed_with_its_components():
    ds = data.load("inverse_sine", n=120)
    idata = MixtureRegressor((4,), n_components=2, form="mdn").fit(
        ds.X, ds.y, random_seed=2, **SMALL
    )
    report = diagnose(idata)
    assert "perm_component" in report.canon["relabelling"]
    assert report.convergence.loc["predictions", "quantities"] == ds.X.shape[0]
    assert report.verdict.status in "abcd"


# -- the report -------------------------------------------------------------------------


def test_report_tables_and_verdict(mcycle_report, mcycle_fit):
    r = mcycle_report
    assert list(r.convergence.index) == list(ident.convergence.SPACES)
    n_weights = sum(
        mcycle_fit["posterior"][v].size // (2 * 150)
        for v in ("W1", "b1", "W_out", "b_out", "sigma")
    )
    assert r.convergence.loc["raw weights", "quantities"] == n_weights
    assert r.convergence.loc["predictions", "quantities"] == 133
    assert len(r.sampler) == 2 and {"divergences", "e_bfmi", "treedepth_saturated"} <= set(
        r.sampler.columns
    )
    assert r.sampler["divergences"].sum() == int(mcycle_fit["sample_stats"]["diverging"].sum())
    assert len(r.hopping) == 2 and len(r.functional) == 2
    assert r.verdict.status in "abcd" and r.verdict.sentence
    assert set(r.layers.columns) >= {"mean_dead", "duplicate_share"}


def test_report_renders_markdown_html_and_figures(mcycle_report, tmp_path):
    md = mcycle_report.to_markdown()
    assert "## Convergence in three spaces" in md and "| relabelled weights" in md
    assert f"Verdict ({mcycle_report.verdict.status})" in md
    assert isinstance(mcycle_report.plot(), matplotlib.figure.Figure)
    written = mcycle_report.write(tmp_path / "report")
    page = written["report"].read_text()
    assert page.count("data:image/png;base64,") == len(mcycle_report.figures())
    for name in ("panel", "trace_raw_vs_relabelled", "rank_raw_vs_relabelled", "hopping", "ppc"):
        assert written[name].stat().st_size > 1000
    assert "<table" in mcycle_report._repr_html_()


def test_a_custom_probe_set_is_used(mcycle_fit):
    probe = np.linspace(0, 60, 7)[:, None]
    report = diagnose(mcycle_fit, X_probe=probe)
    assert report.convergence.loc["predictions", "quantities"] == 7
    assert report.predictions.shape[2] == 7


def test_one_chain_says_rhat_is_undefined():
    ds = data.load("mcycle")
    idata = MLP((3,)).fit(ds.X, ds.y, random_seed=1, **(SMALL | {"chains": 1}))
    report = diagnose(idata)
    assert report.convergence["max_rhat"].isna().all()
    assert report.verdict.status == "-"
    assert "R-hat is undefined" in report.verdict.sentence
    report.to_markdown()  # renders without R-hat
    assert "rank_raw_vs_relabelled" not in report.figures()  # rank plots compare chains


def test_advi_says_what_it_cannot_tell_and_its_pareto_k():
    ds = data.load("sine", n=60, noise=0.1, seed=2)
    net = MLP((2,))
    kwargs = {"method": "fullrank_advi", "draws": 400, "random_seed": 1, "progressbar": False}
    crude = net.fit(ds.X, ds.y, advi_iterations=30, advi_init="pymc", **kwargs)
    better = net.fit(ds.X, ds.y, advi_iterations=4000, **kwargs)
    reports = [diagnose(fit) for fit in (crude, better)]
    k_crude, k_better = (r.options["vi_pareto_k"] for r in reports)
    assert k_crude > 0.7 and k_better < k_crude  # k-hat sees how far q is from the posterior
    crude_report = reports[0]
    assert crude_report.sampler.empty
    assert crude_report.verdict.status == "d"
    assert "no R-hat" in crude_report.verdict.sentence and "k-hat" in crude_report.verdict.sentence


# -- bad input -----------------------------------------------------------------------------


def test_bad_input_gets_clear_errors(mcycle_fit):
    with pytest.raises(TypeError, match="DataTree"):
        diagnose({"posterior": None})
    no_post = xr.DataTree.from_dict({"observed_data": mcycle_fit["observed_data"].to_dataset()})
    with pytest.raises(ValueError, match="no posterior"):
        diagnose(no_post, net=MLP((4,)))
    short = mcycle_fit.isel(draw=slice(0, 10))
    with pytest.raises(ValueError, match="10 draws per chain.*at least 20"):
        diagnose(short)
    with pytest.raises(ValueError, match="X_probe"):
        diagnose(mcycle_fit, X_probe=np.zeros((5, 2)))
    with pytest.raises(ValueError, match="X_probe"):
        diagnose(mcycle_fit, X_probe=np.array([[np.nan]]))
    with pytest.raises(ValueError, match="method"):
        diagnose(mcycle_fit, method="hungarian")
    with pytest.raises(ValueError, match="rhat_threshold"):
        diagnose(mcycle_fit, rhat_threshold=0.99)


# -- the parts, on known inputs (no sampling) -----------------------------------------------


def test_functional_modes_groups_chains_by_their_function():
    rng = np.random.default_rng(0)
    x = np.linspace(-1, 1, 30)
    f = {1: np.sin(3 * x), 2: np.sin(3 * x) + 0.5 * (x > 0.5)}  # differ on 1/4 of the inputs
    pred = np.stack(
        [f[m][None, :, None] + 0.1 * rng.normal(size=(400, 30, 1)) for m in (2, 1, 2, 1, 1)]
    )
    per_chain, distance = functional_modes(pred)
    assert per_chain["mode"].tolist() == [1, 2, 1, 2, 2]  # numbered by first appearance
    assert distance[0, 2] < 0.5 and distance[0, 1] > 3
    same = np.stack([f[1][None, :, None] + 0.1 * rng.normal(size=(400, 30, 1))] * 4)
    assert functional_modes(same)[0]["mode"].nunique() == 1


def test_unit_census_finds_dead_and_duplicated_units():
    spec = DataSpec(("x",), ("y",), (0.0,), (1.0,), (0.0,), (1.0,))
    X = np.linspace(-2, 2, 50)[:, None]
    # unit 0 and 1 identical, unit 2 flipped copy of 0, unit 3 dead (no outgoing weight)
    W1 = np.array([[1.0, 1.0, -1.0, 2.0]])
    b1 = np.array([0.2, 0.2, -0.2, 0.0])
    W_out = np.array([[0.5], [0.5], [0.3], [0.0]])
    params = {"W1": W1[None], "b1": b1[None], "W_out": W_out[None], "b_out": np.zeros((1, 1))}
    units, layers = unit_census(params, X, activation="tanh", spec=spec)
    assert units["dead_share"].tolist() == [0, 0, 0, 1]
    assert layers.loc[1, "mean_duplicate_pairs"] == 3  # (0,1), (0,2), (1,2)
    assert layers.loc[1, "always_dead"] == 1


def _tables(raw, rel, pred, modes=(1, 1), divergences=0, copies=1, modal=1.0):
    conv = pd.DataFrame(
        {"max_rhat": [raw, rel, pred, pred], "min_ess_bulk": [1000.0] * 4},
        index=ident.convergence.SPACES,
    )
    sampler = pd.DataFrame({"draws": [1000, 1000], "divergences": [divergences, 0]})
    hopping = pd.DataFrame({"copies_visited": [copies, 1], "modal_share": [modal, 1.0]})
    functional = pd.DataFrame({"mode": list(modes), "mean_loglik": [-10.0, -30.0]})
    summary = {"distinct_modal_copies": 2, "ambiguous_share": 0.4}
    return {
        "convergence": conv,
        "sampler": sampler,
        "hopping": hopping,
        "hopping_summary": summary,
        "functional": functional,
        "kind": "mcmc",
    }


@pytest.mark.parametrize(
    ("tables", "status"),
    [
        (_tables(1.001, 1.001, 1.002), "a"),
        (_tables(2.4, 1.004, 1.002), "b"),
        (_tables(1.002, 1.004, 1.002, copies=40, modal=0.2), "b"),  # hops inside chains
        (_tables(2.4, 1.3, 1.002), "c"),
        (_tables(2.4, 1.3, 1.2), "d"),
        (_tables(1.001, 1.001, 1.002, modes=(1, 2)), "d"),
        (_tables(1.001, 1.001, 1.002, divergences=50), "d"),  # 2.5% divergent
    ],
)
def test_verdict_rules(tables, status):
    verdict = judge(**tables)
    assert verdict.status == status, str(verdict)
    if status == "d" and tables["functional"]["mode"].nunique() > 1:
        assert "better by 20.0 nats" in verdict.sentence


@pytest.mark.parametrize(
    ("loglik", "local_optimum"), [((-10.0, -30.0), True), ((-10.0, -12.0), False)]
)
def test_functional_mode_steps_depend_on_the_fit_gap(loglik, local_optimum):
    tables = _tables(1.001, 1.001, 1.002, modes=(1, 2))
    tables["functional"]["mean_loglik"] = loglik
    steps = " ".join(judge(**tables).next_steps)
    assert "pooled predictive" in steps and "ADVI" in steps
    # longer tuning did not merge separated modes (noise form on inverse_sine), so not offered
    assert "tune=" not in steps
    assert ("compare the modes on held-out data" in steps) is local_optimum


def test_held_out_data_is_checked_before_anything_runs(mcycle_fit, monkeypatch):
    def fail(*args, **kwargs):
        raise AssertionError("computation started before the input checks")

    monkeypatch.setattr(diagnosis_inputs, "canonicalize", fail)
    with pytest.raises(ValueError, match="X_test has 2 columns"):
        diagnose(mcycle_fit, X_test=np.zeros((4, 2)), y_test=np.zeros(4))
    with pytest.raises(ValueError, match="y_test was given without X_test"):
        diagnose(mcycle_fit, y_test=np.zeros(4))


def test_held_out_calibration_rows(mcycle_fit):
    ds = data.load("mcycle")
    report = diagnose(mcycle_fit, X_test=ds.X[::3], y_test=ds.y[::3])
    held = report.calibration[report.calibration["data"] == "held-out"]
    assert {"coverage 90%", "RMSE", "CRPS", "log predictive density"} <= set(held["metric"])


def test_the_kind_of_a_fit_comes_from_its_attrs_or_its_sampler_stats(mcycle_fit):
    from bnncat.models.inference import fit_kind

    assert mcycle_fit.attrs["fit_kind"] == "mcmc" and fit_kind(mcycle_fit) == "mcmc"
    older = mcycle_fit.copy()
    del older.attrs["fit_kind"]  # saved before kinds were recorded: from the method
    older.attrs["fit_method"] = "fullrank_advi"
    assert fit_kind(older) == "approximation"
    own = mcycle_fit.copy()  # a user's own pm.sample: no attrs, NUTS's statistics
    own.attrs = {}
    assert fit_kind(own) == "mcmc"
    del own["sample_stats"]
    assert fit_kind(own) == "approximation"


def test_a_classifier_report_has_a_reliability_diagram_not_pit_plots():
    ds = data.load("two_moons")
    net = MLP((3,), likelihood="bernoulli")
    with pytest.warns(UserWarning):  # short chains
        idata = net.fit(
            ds.X[:80], ds.y[:80], draws=60, tune=60, chains=2, random_seed=1, progressbar=False
        )
    figures = diagnose(idata, random_seed=1).figures()
    assert "reliability" in figures
    assert not {"loo_pit", "loo_pit_coverage", "ppc"} & set(figures)
