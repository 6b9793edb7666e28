"""The command-line main job."""

import contextlib
import io
import json
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest

from bnncat.cli import build_parser, main
from bnncat.models import load


def test_help_explains_every_option():
    parser = build_parser()
    fit = parser._subparsers._group_actions[0].choices["fit"]
    text = fit.format_help()
    for action in fit._actions:
        if action.dest != "help":
            assert action.help, f"option {action.option_strings} has no help text"
            assert action.option_strings[0] in text


@pytest.mark.parametrize("command", ["diagnose", "predict"])
def test_help_of_the_other_commands_explains_every_option(command):
    parser = build_parser()._subparsers._group_actions[0].choices[command]
    text = parser.format_help()
    for action in parser._actions:
        if action.dest != "help":
            assert action.help, f"{command} {action.option_strings or action.dest} has no help"
            assert (action.option_strings or [action.dest])[0] in text


def test_model_defaults_are_the_library_defaults():
    from bnncat.models import MLP

    args = build_parser().parse_args(["fit"])
    assert args.prior == MLP().prior and args.prior_scale == MLP().prior_scale


def test_console_script_help_runs():
    done = subprocess.run(
        [sys.executable, "-m", "bnncat", "--help"], capture_output=True, text=True, check=True
    )
    assert "fit" in done.stdout and "datasets" in done.stdout


def test_fit_writes_netcdf_summary_and_plots(tmp_path, capsys):
    out = tmp_path / "res"
    code = main(
        [
            "fit",
            "--data",
            "mcycle",
            "--hidden",
            "3",
            "--draws",
            "40",
            "--tune",
            "40",
            "--chains",
            "2",
            "--out",
            str(out),
            "--no-progress",
            "--seed",
            "3",
        ]
    )
    assert code == 0
    names = sorted(p.name for p in out.iterdir())
    report_files = [
        "hopping.png",
        "loo_pit.png",
        "loo_pit_coverage.png",
        "pair_units.png",
        "panel.png",
        "ppc.png",
        "predictive.png",
        "rank_raw_vs_relabelled.png",
        "report.html",
        "report.md",
        "trace_raw_vs_relabelled.png",
    ]
    assert names == sorted(["fit.nc", "summary.csv", "trace.png", *report_files])
    idata = load(out / "fit.nc")
    assert idata["posterior"]["W1"].shape == (2, 40, 1, 3)
    summary = pd.read_csv(out / "summary.csv", index_col=0)
    assert "r_hat" in summary.columns and any(i.startswith("sigma") for i in summary.index)
    printed = capsys.readouterr().out
    assert str(out / "fit.nc") in printed and str(out / "report.html") in printed
    assert "R-hat (max) of raw weights" in printed and "Next steps" in printed
    assert "Convergence in three spaces" in (out / "report.md").read_text()
    assert "relabelled to one canonical copy" in printed
    table = printed.split("Output-layer bias and noise")[1]
    assert "sigma[accel]" in table and "b_out[accel]" in table and "W1[" not in table
    for png in ("trace.png", "predictive.png", "panel.png"):
        assert (out / png).stat().st_size > 10_000


def test_fit_from_a_csv_file_with_advi(tmp_path):
    csv = tmp_path / "d.csv"
    pd.DataFrame(
        {"a": range(20), "b": [i % 3 for i in range(20)], "t": [float(i) ** 0.5 for i in range(20)]}
    ).to_csv(csv, index=False)
    out = tmp_path / "res"
    code = main(
        [
            "fit",
            "--data",
            str(csv),
            "--target",
            "t",
            "--method",
            "advi",
            "--draws",
            "30",
            "--advi-iterations",
            "200",
            "--out",
            str(out),
            "--no-progress",
            "--no-figures",
        ]
    )
    assert code == 0
    assert load(out / "fit.nc")["posterior"]["W1"].shape == (1, 30, 2, 8)
    # the tables without a figure: no PNG, and none embedded in the page
    assert (out / "summary.csv").is_file() and not list(out.glob("*.png"))
    assert (
        "<table" in (out / "report.html").read_text()
        and "<img" not in (out / "report.html").read_text()
    )


@pytest.mark.parametrize(
    "argv, message",
    [
        (["fit", "--data", "nosuch"], "neither a built-in dataset"),
        (["fit", "--data", "galaxies"], "no input features"),
        (["fit", "--data", "mcycle", "--target", "x"], "apply to a CSV file"),
        (["fit", "--data", "mcycle", "--draws", "0"], "at least 20 draws per chain"),
        (["fit", "--data", "mcycle", "--draws", "19"], "at least 20 draws per chain"),
        (["fit", "--data", "mcycle", "--likelihood", "bernoulli"], "class labels"),
    ],
)
def test_bad_arguments_give_a_clear_error_and_write_nothing(argv, message, tmp_path, capsys):
    out = tmp_path / "res"
    assert main([*argv, "--out", str(out), "--no-progress"]) == 2
    assert message in capsys.readouterr().err
    assert not out.exists()


def test_bad_hidden_is_an_argparse_error(capsys):
    with pytest.raises(SystemExit):
        main(["fit", "--hidden", "8,x"])
    assert "--hidden '8,x'" in capsys.readouterr().err


def test_datasets_lists_all(capsys):
    assert main(["datasets"]) == 0
    printed = capsys.readouterr().out
    for name in ("mcycle", "faithful", "galaxies", "sine", "two_moons"):
        assert name in printed


@pytest.fixture(scope="module")
def saved_fit(tmp_path_factory):
    """A small fit written by `bnncat fit`, and what the command printed."""
    out = tmp_path_factory.mktemp("cli") / "res"
    argv = ["fit", "--data", "mcycle", "--hidden", "3", "--draws", "40", "--tune", "40"]
    argv += ["--no-figures"]
    printed = io.StringIO()
    with contextlib.redirect_stdout(printed):
        assert (
            main([*argv, "--chains", "2", "--seed", "3", "--out", str(out), "--no-progress"]) == 0
        )
    return out / "fit.nc", printed.getvalue()


def test_diagnose_reproduces_the_verdict_of_fit(saved_fit, capsys):
    path, printed_by_fit = saved_fit
    assert main(["diagnose", str(path), "--seed", "3"]) == 0
    verdict = capsys.readouterr().out.split("\n\nR-hat")[0]
    assert verdict.startswith("(") and verdict in printed_by_fit


def test_diagnose_on_held_out_data_writes_the_report(saved_fit, tmp_path, capsys):
    out = tmp_path / "report"
    assert main(["diagnose", str(saved_fit[0]), "--data", "mcycle", "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "Held-out (133 rows)" in printed and "CRPS" in printed
    assert (out / "report.html").is_file() and "held-out" in (out / "report.md").read_text()


def test_predict_writes_one_row_per_input_row(saved_fit, tmp_path):
    new = tmp_path / "new.csv"
    pd.DataFrame({"other": [1, 2, 3, 4], "times": [2.0, 15.0, 30.0, 50.0]}).to_csv(new, index=False)
    out = tmp_path / "pred" / "p.csv"
    argv = ["predict", str(saved_fit[0]), "--data", str(new), "--out", str(out)]
    assert main([*argv, "--interval", "0.8"]) == 0
    pred = pd.read_csv(out)
    assert list(pred.columns) == ["times", "accel_mean", "accel_sd", "accel_q0.1", "accel_q0.9"]
    assert len(pred) == 4 and (pred["times"] == [2.0, 15.0, 30.0, 50.0]).all()
    assert (pred["accel_q0.1"] < pred["accel_mean"]).all()
    assert (pred["accel_mean"] < pred["accel_q0.9"]).all() and (pred["accel_sd"] > 0).all()


def test_predict_gives_class_probabilities(tmp_path):
    out = tmp_path / "res"
    argv = ["fit", "--data", "two_moons", "--method", "advi", "--draws", "50"]
    argv += ["--advi-iterations", "300", "--no-figures"]
    assert main([*argv, "--out", str(out), "--no-progress"]) == 0
    pred_path = tmp_path / "p.csv"
    assert (
        main(["predict", str(out / "fit.nc"), "--data", "two_moons", "--out", str(pred_path)]) == 0
    )
    pred = pd.read_csv(pred_path)
    assert {"p_0", "p_1", "predicted"} <= set(pred.columns)
    assert np.allclose(pred["p_0"] + pred["p_1"], 1.0)
    assert (pred["predicted"] == (pred["p_1"] > pred["p_0"]).astype(int)).all()


@pytest.mark.parametrize(
    "extra, message",
    [
        (["--features", "nosuch"], "columns ['nosuch'] are missing"),
        (["--interval", "1.5"], "--interval 1.5: give a probability in (0, 1)"),
        (["--data", "nosuch.csv"], "neither a built-in dataset nor a .csv file"),
    ],
)
def test_predict_bad_input_is_a_clear_error_and_writes_nothing(
    saved_fit, tmp_path, capsys, extra, message
):
    out = tmp_path / "p.csv"
    argv = ["predict", str(saved_fit[0]), "--data", "mcycle", "--out", str(out)]
    assert main([*argv, *extra]) == 2
    assert message in capsys.readouterr().err
    assert not out.exists()


def test_diagnose_of_a_missing_file_is_a_clear_error(tmp_path, capsys):
    assert main(["diagnose", str(tmp_path / "none.nc")]) == 2
    assert "no such fit file" in capsys.readouterr().err


def test_laplace_from_the_command_line_with_its_options_and_a_linearized_predictive(tmp_path):
    out = tmp_path / "res"
    argv = ["fit", "--data", "mcycle", "--method", "laplace", "--hessian", "ggn", "--restarts"]
    argv += ["2", "--draws", "40", "--marglik", "--temperature", "0.5", "--no-figures"]
    argv += ["--hidden", "3"]
    assert main([*argv, "--out", str(out), "--no-progress"]) == 0
    idata = load(out / "fit.nc")
    options = json.loads(idata.attrs["bnncat_fit"])
    assert options["hessian"] == "ggn" and options["marglik"] and options["restarts"] == 2
    assert options["temperature"] == 0.5
    assert idata["posterior"].sizes["chain"] == 2 and options["tuned_noise_sd"] > 0
    pred = tmp_path / "p.csv"
    argv = ["predict", str(out / "fit.nc"), "--data", "mcycle", "--out", str(pred)]
    assert main([*argv, "--predictive", "linearized"]) == 0
    assert (pd.read_csv(pred)["accel_sd"] > 0).all()


def test_pathfinder_from_the_command_line(tmp_path):
    out = tmp_path / "res"
    argv = ["fit", "--data", "mcycle", "--method", "pathfinder", "--paths", "2", "--draws", "30"]
    assert main([*argv, "--hidden", "3", "--out", str(out), "--no-progress", "--no-figures"]) == 0
    idata = load(out / "fit.nc")
    assert idata["posterior"].sizes["chain"] == 2 and "pareto_k" in idata["sample_stats"].attrs


def test_an_ensemble_from_the_command_line(tmp_path, capsys):
    out = tmp_path / "res"
    argv = ["fit", "--data", "mcycle", "--method", "ensemble", "--members", "3", "--anchored"]
    argv += ["--adam-steps", "50", "--maxiter", "100", "--gaussian", "laplace", "--draws", "30"]
    assert main([*argv, "--hidden", "3", "--out", str(out), "--no-progress", "--no-figures"]) == 0
    idata = load(out / "fit.nc")
    options = json.loads(idata.attrs["bnncat_fit"])
    assert options["anchored"] and options["hessian"] == "last_layer"
    assert idata["posterior"].sizes["chain"] == 3 and options["adam_steps"] == 50
    capsys.readouterr()
    # a plain ensemble (one network a member, one draw a chain): the diagnosis groups members
    plain = ["fit", "--data", "mcycle", "--method", "ensemble", "--members", "4", "--hidden", "3"]
    plain += ["--adam-steps", "50", "--maxiter", "100", "--out", str(tmp_path / "p")]
    assert main([*plain, "--no-progress"]) == 0
    said = capsys.readouterr().out
    assert "the 4 members differ" in said and "An ensemble is not a posterior sample" in said
    assert (tmp_path / "p" / "members.png").is_file()
    assert load(tmp_path / "p" / "fit.nc")["posterior"].sizes["draw"] == 1


@pytest.mark.filterwarnings("ignore:R-hat of the predictions")
def test_chains_from_ensemble_members_from_the_command_line(tmp_path):
    out = tmp_path / "res"
    argv = ["fit", "--data", "mcycle", "--method", "dei", "--members", "2", "--tune", "20"]
    argv += ["--chains-per-member", "2", "--adam-steps", "30", "--maxiter", "30", "--draws", "20"]
    assert main([*argv, "--hidden", "2", "--out", str(out), "--no-progress", "--no-figures"]) == 0
    idata = load(out / "fit.nc")
    options = json.loads(idata.attrs["bnncat_fit"])
    assert options["tune"] == 20 and options["chains_per_member"] == 2
    assert idata["posterior"].sizes["chain"] == 4 and (out / "report.html").is_file()


@pytest.mark.parametrize(
    "options",
    [
        [
            "--method",
            "swag",
            "--members",
            "2",
            "--swag-epochs",
            "20",
            "--rank",
            "5",
            "--draws",
            "20",
        ],
        ["--method", "smc", "--chains", "2", "--draws", "100", "--kernel", "mh"],
        [
            "--method",
            "sgmcmc",
            "--chains",
            "2",
            "--draws",
            "40",
            "--thin",
            "2",
            "--burn-in",
            "200",
            "--schedule",
            "cyclical",
            "--cycles",
            "2",
            "--batch-size",
            "32",
        ],
    ],
    ids=["swag", "smc", "sgmcmc"],
)
@pytest.mark.filterwarnings("ignore::UserWarning")
def test_the_other_many_mode_methods_from_the_command_line(options, tmp_path):
    out = tmp_path / "res"
    argv = ["fit", "--data", "mcycle", "--hidden", "2", *options, "--seed", "3", "--no-figures"]
    assert main([*argv, "--out", str(out), "--no-progress"]) == 0
    idata = load(out / "fit.nc")
    fitted = json.loads(idata.attrs["bnncat_fit"])
    given = dict(zip(options[::2], options[1::2], strict=True))
    assert idata.attrs["fit_method"] == given["--method"]
    for flag, value in given.items():
        key = flag[2:].replace("-", "_")
        if key in fitted and key not in ("method", "draws"):
            assert str(fitted[key]) == value, key
    assert idata["posterior"].sizes["draw"] == int(given["--draws"])
    assert (out / "report.html").is_file() and (out / "summary.csv").is_file()
