"""The UCI benchmark's unit of work (fit, then score held out) and its resumable driver."""

import importlib.util
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from bnncat import data
from bnncat.evaluation import fit_and_score, log_predictive_density, predictive_mean
from bnncat.models import MLP, fit

ROOT = Path(__file__).resolve().parents[1]
ADVI = {"advi_iterations": 500, "draws": 50, "progressbar": False, "random_seed": 3}


@pytest.fixture(scope="module")
def yacht_split():
    ds = data.load("yacht")
    train, test = data.uci_splits("yacht", n_splits=1)[0]
    return ds.X[train], ds.y[train], ds.X[test], ds.y[test]


def test_fit_and_score_gives_the_scores_of_the_fit_it_made(yacht_split):
    X, y, X_test, y_test = yacht_split
    net = MLP((4,))
    row = fit_and_score(net, X, y, X_test, y_test, method="advi", options=ADVI)
    idata = fit(net, X, y, method="advi", **ADVI)  # the same seed: the same fit
    mean = predictive_mean(idata, X_test)
    assert mean.shape == (len(y_test), 1)
    assert row["rmse"] == pytest.approx(np.sqrt(np.mean((mean[:, 0] - y_test) ** 2)))
    lpd = log_predictive_density(idata, X_test, y_test)
    assert row["lpd_per_row"] == pytest.approx(lpd["mean"])
    assert row["lpd_per_row_se"] == pytest.approx(lpd["pointwise"].std(ddof=1) / np.sqrt(31))
    assert row["log_sd_y_train"] == pytest.approx(np.log(np.std(y)))
    assert (row["n_train"], row["n_test"], row["divergences"]) == (277, 31, 0)
    assert row["seconds"] > 0
    # a 4-unit net beats the predict-the-mean baseline on yacht
    assert row["rmse"] < np.std(y_test)


def _benchmark(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / "uci.py"), *args],
        capture_output=True,
        text=True,
        cwd=ROOT,
    )


def test_the_benchmark_runs_any_csv_keeps_each_split_and_resumes(tmp_path):
    rng = np.random.default_rng(0)
    x = rng.uniform(-2, 2, size=(60, 2))
    t = np.sin(x[:, 0]) + 0.1 * rng.normal(size=60)
    frame = pd.DataFrame({"a": x[:, 0], "b": x[:, 1], "t": t})
    frame.to_csv(tmp_path / "toy.csv", index=False)
    args = [
        "--data",
        str(tmp_path / "toy.csv"),
        "--methods",
        "advi",
        "--splits",
        "2",
        "--quick",
        "--out",
        str(tmp_path / "out"),
    ]
    first = _benchmark(*args)
    assert first.returncode == 0, first.stderr[-2000:]
    assert "2 splits to fit" in first.stdout
    runs = sorted((tmp_path / "out" / "runs" / "hl-quick" / "toy" / "1x50" / "advi").glob("*.json"))
    assert [p.name for p in runs] == ["split-00.json", "split-01.json"]
    row = json.loads(runs[0].read_text())
    assert row["n_test"] == 6 and row["n_train"] == 54 and np.isfinite(row["lpd_per_row"])
    table = (tmp_path / "out" / "uci_hl_quick.md").read_text()
    assert "| toy | ADVI (mean-field) | 2 |" in table
    assert (tmp_path / "out" / "uci_hl_quick.png").stat().st_size > 0
    again = _benchmark(*args)  # everything is on disk: nothing to fit
    assert again.returncode == 0 and "0 splits to fit" in again.stdout
    assert pd.read_csv(tmp_path / "out" / "uci_hl_quick.csv").shape[0] == 2
    # another prior is another net: fitted and summarised apart from the default's splits
    other = _benchmark(*args[:-4], "1", "--quick", "--prior", "hierarchical", *args[-2:])
    assert other.returncode == 0 and "1 splits to fit" in other.stdout, other.stderr[-2000:]
    assert (runs[0].parents[2] / "1x50-hierarchical" / "advi" / "split-00.json").exists()
    table = (tmp_path / "out" / "uci_hl_quick.md").read_text()
    assert "| toy | ADVI (mean-field), hierarchical prior | 1 |" in table
    assert "| toy | ADVI (mean-field) | 2 |" in table


def test_the_benchmark_refuses_unknown_methods_before_fitting(tmp_path):
    done = _benchmark("--methods", "nuts,dropout", "--out", str(tmp_path))
    assert done.returncode == 2 and "unknown ['dropout']" in done.stderr
    assert not any(tmp_path.iterdir())


def _uci_module():
    spec = importlib.util.spec_from_file_location("uci_benchmark", ROOT / "benchmarks" / "uci.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_comparison_takes_each_data_sets_best_method_and_best_published_figure():
    uci = _uci_module()
    table = pd.DataFrame(
        {
            "data": ["yacht", "yacht", "wine-quality-red", "my-data"],
            "net": ["1x50", "1x50", "1x50-hierarchical", "1x50"],
            "method": ["nuts", "advi", "advi", "nuts"],
            "splits": [3, 3, 2, 2],
            "lpd_per_row": [-1.0, -1.5, -1.0, 0.0],
            "lpd_per_row_se": [0.1, 0.1, 0.05, 0.1],
        }
    )
    versus = uci.versus_published(table).set_index("data")
    assert list(versus.index) == ["yacht", "wine-quality-red"]  # none published for my-data
    # yacht: NUTS's -1.0 against deep ensembles' -1.18, the best of the three published
    assert versus.loc["yacht", "method"] == "nuts"
    assert versus.loc["yacht", "published"] == "deep ensembles" and versus.loc["yacht", "beats"]
    assert not versus.loc["wine-quality-red", "beats"]  # -1.0 against -0.94
    text = uci.markdown_versus(uci.versus_published(table))
    # -1.0 +- 0.1 against -1.18 +- 0.21: better, but by less than two SE of the difference
    assert "on 1 of 2 data sets; by more than two standard errors of the difference on 0" in text
    row = "| yacht | NUTS (3) | -1.00 ± 0.10 | deep ensembles | -1.18 ± 0.21 | 0.18 ± 0.23 |"
    assert row in text
    # a prior other than the default is named beside its method
    assert "| wine-quality-red | ADVI (mean-field), hierarchical prior (2) |" in text


def test_figures_keep_two_significant_digits_when_small():
    uci = _uci_module()
    assert uci.plus_minus(0.46, 0.08) == "0.46 ± 0.08"
    assert uci.plus_minus(0.00011, 0.000004) == "0.00011 ± 0.00000"
    assert uci.plus_minus(-2.5, float("nan")) == "-2.50"
