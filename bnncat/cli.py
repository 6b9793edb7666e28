"""The ``bnncat`` command: fit a catalogue model to a dataset and write the results.

bnncat fit --model mlp --data mcycle --method nuts --out results/
bnncat datasets
"""

import argparse
import signal
import sys
import threading
import time
from pathlib import Path
from typing import Any

from bnncat.staging import moved, staged_folder
from bnncat.thresholds import MIN_DRAWS

MODELS = {"mlp": "MLP", "ordered-mlp": "OrderedMLP", "mixture": "MixtureRegressor"}
SHOWN = ("b_out", "sigma", "nu", "weights", "loc")


def _hidden(text: str) -> tuple[int, ...]:
    try:
        widths = tuple(int(w) for w in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"--hidden {text!r}: give widths like 8 or 16,16"
        ) from None
    if not widths or min(widths) < 1:
        raise argparse.ArgumentTypeError(f"--hidden {text!r}: every width must be >= 1")
    return widths


class _Formatter(argparse.ArgumentDefaultsHelpFormatter):
    """Show defaults, but not the empty ones of flags and optional arguments."""

    def _get_help_string(self, action: argparse.Action) -> str | None:
        if action.default in (None, False):
            return action.help
        return super()._get_help_string(action)


def build_parser() -> argparse.ArgumentParser:
    """Build the argument parser of the ``bnncat`` command."""
    parser = argparse.ArgumentParser(
        prog="bnncat",
        description="Bayesian neural networks on PyMC: fit, save, summarise and plot.",
    )
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("datasets", help="list the built-in datasets")
    fit = _add_fit_parser(sub)
    _add_model_arguments(fit)
    _add_method_arguments(fit)
    _add_diagnose_parser(sub)
    _add_predict_parser(sub)
    return parser


def _add_fit_parser(sub: Any) -> argparse.ArgumentParser:
    fit = sub.add_parser(
        "fit",
        help="fit a model to a dataset and write netCDF, summary table and plots",
        description=(
            "Fit a Bayesian neural network and write to --out: fit.nc (the posterior as an "
            "ArviZ DataTree, reload with bnncat.models.load), summary.csv (posterior summary "
            "of the relabelled parameters), trace.png (trace plot), and the diagnosis "
            "(bnncat.diagnose): report.html with its figures embedded, "
            "report.md, and the figures as PNGs (panel, raw vs relabelled traces and ranks, "
            "mode hopping, predictive bands, posterior predictive check, LOO-PIT)."
        ),
        formatter_class=_Formatter,
    )
    fit.add_argument(
        "--data",
        default="mcycle",
        help="a built-in dataset (see `bnncat datasets`) or a CSV file (then give --target)",
    )
    fit.add_argument("--target", help="CSV only: the target column")
    fit.add_argument(
        "--features", help="CSV only: comma-separated input columns (default: all other columns)"
    )
    fit.add_argument("--seed", type=int, default=1, help="random seed of the whole fit")
    fit.add_argument("--out", type=Path, default=Path("results"), help="output folder")
    fit.add_argument(
        "--no-figures",
        action="store_true",
        help="write fit.nc, summary.csv and the report's tables, but draw no figure "
        "(faster: batch jobs)",
    )
    fit.add_argument("--no-progress", action="store_true", help="hide progress bars")
    return fit


def _add_model_arguments(fit: argparse.ArgumentParser) -> None:
    from bnncat.models.activations import ACTIVATIONS
    from bnncat.models.likelihoods import LIKELIHOODS
    from bnncat.models.mlp import PRIORS

    fit.add_argument(
        "--model",
        choices=list(MODELS),
        default="mlp",
        help="model family: plain MLP, OrderedMLP (hidden units ordered by constraints) or "
        "MixtureRegressor (a mixture-of-Gaussians likelihood; see --components, --form)",
    )
    fit.add_argument(
        "--components", type=int, default=2, help="mixture only: Gaussian components per output"
    )
    fit.add_argument(
        "--form",
        choices=("noise", "mdn"),
        default="noise",
        help="mixture only: global mixture noise around f(x), or a mixture density network",
    )
    fit.add_argument(
        "--hidden",
        type=_hidden,
        default="8",
        help="hidden layer widths, comma-separated, e.g. 16,16",
    )
    fit.add_argument(
        "--activation",
        choices=sorted(ACTIVATIONS),
        default="tanh",
        help="hidden-unit activation (odd ones such as tanh add sign-flip symmetries)",
    )
    fit.add_argument(
        "--likelihood",
        choices=sorted(LIKELIHOODS),
        help="observation model (default: normal for regression data, "
        "bernoulli or categorical for class labels)",
    )
    fit.add_argument(
        "--prior",
        choices=PRIORS,
        default="lecun",
        help="weight prior scale rule: fixed sd, sd/sqrt(fan-in), or learned per layer",
    )
    fit.add_argument(
        "--prior-scale",
        type=float,
        default=2.0,  # MLP's default, bnncat.models.mlp.DEFAULT_PRIOR_SCALE (a test checks)
        help="scale of the weight prior",
    )
    fit.add_argument(
        "--no-standardize",
        action="store_true",
        help="feed raw inputs/targets to the network instead of standardised ones",
    )


def _add_method_arguments(fit: argparse.ArgumentParser) -> None:
    from bnncat.models.inference import METHODS
    from bnncat.models.inference.laplace_curvature import HESSIANS
    from bnncat.models.inference.nuts import DEFAULT_NUTS_SAMPLER, NUTS_SAMPLERS

    fit.add_argument("--method", choices=list(METHODS), default="nuts", help="inference method")
    fit.add_argument(
        "--draws",
        type=int,
        help="draws per chain (method default: NUTS 1000; an ensemble member is one network)",
    )
    fit.add_argument(
        "--tune",
        type=int,
        help="warm-up iterations per chain (NUTS 1000; dei 100; mclmc: 2000 tuning steps)",
    )
    fit.add_argument(
        "--chains", type=int, default=4, help="chains (NUTS, sgmcmc) or independent runs (smc)"
    )
    fit.add_argument(
        "--nuts-sampler",
        choices=NUTS_SAMPLERS,
        default=DEFAULT_NUTS_SAMPLER,
        help="NUTS implementation",
    )
    fit.add_argument(
        "--target-accept",
        type=float,
        default=0.8,
        help="NUTS target acceptance; raise (e.g. 0.95) if there are divergences",
    )
    fit.add_argument("--advi-iterations", type=int, default=30_000, help="ADVI optimisation steps")
    fit.add_argument(
        "--temperature",
        type=float,
        default=1.0,
        help="raise the likelihood to 1/T (below 1: a cold posterior); every method",
    )
    fit.add_argument("--paths", type=int, default=4, help="Pathfinder: paths (chains)")
    fit.add_argument(
        "--maxiter", type=int, help="Laplace, Pathfinder: L-BFGS iterations per restart or path"
    )
    fit.add_argument("--restarts", type=int, default=4, help="Laplace: MAP searches (chains)")
    fit.add_argument(
        "--hessian",
        choices=HESSIANS,
        help="Laplace, ensemble: curvature of each Gaussian (exact, Gauss-Newton, diagonal, "
        "output layer; Laplace's default full, an ensemble's last_layer)",
    )
    fit.add_argument(
        "--marglik",
        action="store_true",
        help="Laplace: choose the prior and noise sds by the evidence (plain MLP)",
    )
    _add_ensemble_arguments(fit)
    _add_member_chain_arguments(fit)


def _add_ensemble_arguments(fit: argparse.ArgumentParser) -> None:
    from bnncat.models.inference.ensemble import GAUSSIANS

    fit.add_argument("--members", type=int, default=10, help="ensemble: networks (chains)")
    fit.add_argument(
        "--anchored", action="store_true", help="ensemble: each member anchored to its prior draw"
    )
    fit.add_argument(
        "--bootstrap", action="store_true", help="ensemble: each member on a bootstrap resample"
    )
    fit.add_argument("--adam-steps", type=int, help="ensemble: Adam steps before L-BFGS")
    fit.add_argument(
        "--gaussian",
        choices=GAUSSIANS,
        help="ensemble: 'laplace' draws --draws times from each member's Laplace Gaussian",
    )


def _add_member_chain_arguments(fit: argparse.ArgumentParser) -> None:
    fit.add_argument(
        "--chains-per-member", type=int, help="dei, mclmc: chains started from each member"
    )
    fit.add_argument("--thin", type=int, help="mclmc, sgmcmc: steps per kept draw")
    fit.add_argument("--swag-epochs", type=int, help="swag: SGD epochs collected after training")
    fit.add_argument(
        "--swag-learning-rate",
        type=float,
        help="swag: SGD's constant step size (default: 1e-3, or a tenth of the stability bound)",
    )
    fit.add_argument("--rank", type=int, help="swag: rank of each member's low-rank covariance")
    fit.add_argument(
        "--batch-size", type=int, help="advi, swag, sgmcmc: rows per minibatch (default: all)"
    )
    fit.add_argument("--kernel", help="smc: imh or mh; sgmcmc: sgld or sghmc")
    fit.add_argument("--threshold", type=float, help="smc: ESS share that sets each new beta")
    fit.add_argument(
        "--correlation-threshold", type=float, help="smc: how long each stage's kernel moves"
    )
    fit.add_argument("--step-size", type=float, help="sgmcmc: step size (default: set by n)")
    fit.add_argument(
        "--schedule", choices=("constant", "cyclical"), help="sgmcmc: step-size schedule"
    )
    fit.add_argument("--cycles", type=int, help="sgmcmc: cycles of the cyclical schedule")
    fit.add_argument("--burn-in", type=int, help="sgmcmc: steps before the first kept draw")


def _add_diagnose_parser(sub: Any) -> None:
    diag = sub.add_parser(
        "diagnose",
        help="diagnose a saved fit again, optionally against held-out data",
        description=(
            "Load a fit written by `bnncat fit` (or bnncat.models.save), print the verdict "
            "and the R-hat of the three spaces, and with --out write report.html, report.md "
            "and the figures. With --data (and --target for a CSV file) the calibration "
            "table adds held-out rows."
        ),
        formatter_class=_Formatter,
    )
    diag.add_argument("fit", type=Path, help="the saved fit (fit.nc)")
    diag.add_argument(
        "--data", help="held-out data: a built-in dataset or a CSV file (then give --target)"
    )
    diag.add_argument("--target", help="CSV only: the target column")
    diag.add_argument(
        "--features", help="CSV only: comma-separated input columns (default: the fit's)"
    )
    diag.add_argument("--seed", type=int, default=1, help="seed of the predictive checks")
    diag.add_argument("--out", type=Path, help="folder for the report (default: print only)")


def _add_predict_parser(sub: Any) -> None:
    pred = sub.add_parser(
        "predict",
        help="posterior predictive mean, sd and central interval for new rows",
        description=(
            "Load a saved fit and write, for every row of --data, the posterior predictive "
            "mean, sd and central interval of each output (regression), or each class's "
            "predictive probability and the most probable class (classification)."
        ),
        formatter_class=_Formatter,
    )
    pred.add_argument("fit", type=Path, help="the saved fit (fit.nc)")
    pred.add_argument("--data", required=True, help="new inputs: a CSV file, or a built-in dataset")
    pred.add_argument(
        "--features",
        help="comma-separated input columns, in the fit's order (default: the fit's names)",
    )
    pred.add_argument("--out", type=Path, required=True, help="the CSV file to write")
    pred.add_argument(
        "--interval", type=float, default=0.9, help="probability of the central interval"
    )
    pred.add_argument("--seed", type=int, default=1, help="seed of the predictive draws")
    pred.add_argument(
        "--predictive",
        choices=("sampled", "linearized"),
        default="sampled",
        help="draws through the network, or (Laplace fits) through its linearisation at the MAP",
    )


def _load_data(args: argparse.Namespace):
    import pandas as pd

    from bnncat import data

    path = Path(args.data)
    if args.data in data.names():
        if args.target or args.features:
            raise ValueError("--target/--features apply to a CSV file, not a built-in dataset")
        ds = data.load(args.data)
        if ds.X.shape[1] == 0:
            raise ValueError(
                f"--data {args.data}: this dataset has no input features ({ds.task} data); "
                "an MLP needs at least one"
            )
        X = pd.DataFrame(ds.X, columns=list(ds.feature_names))
        y = pd.Series(ds.y, name=ds.target_name)
        return X, y, ds.task
    if path.suffix.lower() != ".csv" or not path.is_file():
        raise ValueError(
            f"--data {args.data!r} is neither a built-in dataset {list(data.names())} "
            "nor an existing .csv file"
        )
    frame = pd.read_csv(path)
    if not args.target:
        raise ValueError(f"--data {path}: give the target column with --target")
    if args.target not in frame:
        raise ValueError(f"--target {args.target!r} is not a column of {path}: {list(frame)}")
    features = args.features.split(",") if args.features else [c for c in frame if c != args.target]
    unknown = [c for c in features if c not in frame]
    if unknown:
        raise ValueError(f"--features {unknown} are not columns of {path}: {list(frame)}")
    y = frame[args.target]
    task = "classification" if y.dtype.kind in "iub" and y.nunique() <= 20 else "regression"
    return frame[features], y, task


def run_fit(args: argparse.Namespace) -> int:
    """Fit, save and plot; return the exit code."""
    X, y, task = _load_data(args)
    net = _build_net(args, y, task)
    net.data_spec(X, y)  # all input checks before the (slow) imports and the fit
    from bnncat.models.inference import method_kind

    few = args.draws is not None and args.draws < MIN_DRAWS
    if few and method_kind(args.method) != "ensemble":
        raise ValueError(  # diagnose()'s minimum; an ensemble's members are its draws
            f"--draws {args.draws}: the diagnosis needs at least {MIN_DRAWS} draws per chain"
        )

    import matplotlib

    matplotlib.use("Agg")
    from bnncat import diagnose
    from bnncat.models import save

    print(f"Fitting {net} to {args.data} (n={len(y)}) by {args.method} ...", flush=True)
    start = time.perf_counter()
    idata = net.fit(X, y, method=args.method, **_method_options(args))
    elapsed = time.perf_counter() - start
    with staged_folder(args.out) as stage:  # all files, or on failure none of them
        written = {"fit": save(idata, stage / "fit.nc")}
        report = diagnose(idata, random_seed=args.seed)
        summary = _write_relabelled_summary(idata, report, stage, written, args.no_figures)
        written |= report.write(stage, figures=not args.no_figures)
    written = moved(written, args.out)

    print(f"\nDone in {elapsed:.1f} s.")
    print()
    _print_verdict(report)
    shown = "summary.csv shows" if args.no_figures else "summary.csv and trace.png show"
    print(
        f"{shown} the weights relabelled to one canonical copy "
        "(bnncat.identifiability.canonicalize, method pivot); report.html has the diagnosis."
    )
    rows = [i for i in summary.index if i.split("[")[0] in SHOWN or i.endswith("_sd")]
    print("\nOutput-layer bias and noise (all parameters in summary.csv):")
    print(summary.loc[rows].to_string())
    print("\nWritten:")
    for what, path in written.items():
        print(f"  {what:24s} {path}")
    return 0


def _build_net(args: argparse.Namespace, y: Any, task: str) -> Any:
    """Build the model the options describe (the likelihood from the target if not given)."""
    likelihood = args.likelihood
    if likelihood is None:
        likelihood = (
            "normal"
            if task == "regression"
            else ("bernoulli" if y.nunique() <= 2 else "categorical")
        )

    from bnncat import models

    extra = {}
    if args.model == "mixture":
        extra = {"n_components": args.components, "form": args.form}
    elif args.components != 2 or args.form != "noise":
        raise ValueError("--components and --form apply to --model mixture only")
    return getattr(models, MODELS[args.model])(
        **extra,
        hidden=args.hidden,
        activation=args.activation,
        likelihood=likelihood,
        prior=args.prior,
        prior_scale=args.prior_scale,
        standardize=not args.no_standardize,
    )


def _write_relabelled_summary(
    idata: Any, report: Any, out: Path, written: dict, no_figures: bool = False
) -> Any:
    """Write summary.csv and trace.png of the relabelled weights; return the summary."""
    import arviz as az

    from bnncat.identifiability.plots import plot_trace
    from bnncat.models.inference import fit_kind

    # raw weights are defined only up to permutations and sign flips of hidden units (and
    # label switching of mixture components): summarise one canonical copy of every draw
    canon = report.canon  # pivot relabelling, as the report's census
    summary = az.summary(canon, kind="all" if fit_kind(idata) == "mcmc" else "stats")
    summary.to_csv(out / "summary.csv")
    written["summary"] = out / "summary.csv"
    if not no_figures:
        plot_trace(canon).savefig(out / "trace.png", dpi=90)
        written["trace"] = out / "trace.png"
    return summary


def _method_options(args: argparse.Namespace) -> dict[str, Any]:
    """Pick the command-line options that the chosen method takes (each ignores the others)."""
    from bnncat.models.inference import METHODS

    given = {
        "draws": args.draws,
        "tune": args.tune,
        "chains": args.chains,
        "random_seed": args.seed,
        "nuts_sampler": args.nuts_sampler,
        "target_accept": args.target_accept,
        "advi_iterations": args.advi_iterations,
        "temperature": args.temperature,
        "paths": args.paths,
        "maxiter": args.maxiter,
        "restarts": args.restarts,
        "hessian": args.hessian,
        "marglik": args.marglik,
        "members": args.members,
        "anchored": args.anchored,
        "bootstrap": args.bootstrap,
        "adam_steps": args.adam_steps,
        "gaussian": args.gaussian,
        "chains_per_member": args.chains_per_member,
        "thin": args.thin,
        "swag_epochs": args.swag_epochs,
        "swag_learning_rate": args.swag_learning_rate,
        "rank": args.rank,
        "batch_size": args.batch_size,
        "kernel": args.kernel,
        "threshold": args.threshold,
        "correlation_threshold": args.correlation_threshold,
        "step_size": args.step_size,
        "schedule": args.schedule,
        "cycles": args.cycles,
        "burn_in": args.burn_in,
        "progressbar": not args.no_progress,
    }
    takes = METHODS[args.method].options
    return {k: v for k, v in given.items() if k in takes and v is not None}


def _print_verdict(report: Any) -> None:
    """Print the verdict and the R-hat of the three spaces, as fit and diagnose both do."""
    conv = report.convergence
    print(report.verdict)
    print(
        "\nR-hat (max) of raw weights {:.3f}, relabelled weights {:.3f}, predictions {:.3f}; "
        "min bulk ESS of the predictions {:.0f}.".format(
            *conv["max_rhat"].iloc[:3], conv.iloc[2]["min_ess_bulk"]
        )
    )


def _load_fit(path: Path):
    from bnncat.models import load

    if not path.is_file():
        raise ValueError(f"{path}: no such fit file (write one with `bnncat fit --out`)")
    return load(path)


def _inputs(frame: Any, features: str | None, spec: Any, path: str) -> Any:
    """Select the fit's input columns of ``frame`` by name (or as ``--features`` lists them)."""
    columns = features.split(",") if features else list(spec.feature_names)
    missing = [c for c in columns if c not in frame]
    if missing:
        raise ValueError(
            f"--data {path}: columns {missing} are missing (the fit's inputs are "
            f"{list(spec.feature_names)}; name others with --features): {list(frame)}"
        )
    if len(columns) != spec.n_features:
        raise ValueError(f"--features: the fit has {spec.n_features} inputs, not {len(columns)}")
    return frame[columns]


def run_diagnose(args: argparse.Namespace) -> int:
    """Diagnose a saved fit (optionally on held-out data); return the exit code."""
    from bnncat.models import read_net

    idata = _load_fit(args.fit)
    X_test = y_test = None
    if args.data:
        X_test, y_test, _ = _load_data(args)
        X_test = _inputs(X_test, args.features, read_net(idata)[1], args.data)

    import matplotlib

    matplotlib.use("Agg")
    from bnncat import diagnose

    report = diagnose(idata, X_test=X_test, y_test=y_test, random_seed=args.seed)
    _print_verdict(report)
    if X_test is not None:
        held = report.calibration[report.calibration["data"] == "held-out"]
        print(f"\nHeld-out ({len(y_test)} rows):")
        print(held.to_string(index=False))
    if args.out:
        with staged_folder(args.out) as stage:
            written = moved(report.write(stage), args.out)
        for path in written.values():
            print(f"  {path}")
    return 0


def run_predict(args: argparse.Namespace) -> int:
    """Write the posterior predictive summary of every new row; return the exit code."""
    import pandas as pd

    from bnncat import data
    from bnncat.models import predict_summary, read_net

    if not 0 < args.interval < 1:
        raise ValueError(f"--interval {args.interval}: give a probability in (0, 1)")
    if args.out.suffix.lower() != ".csv":
        raise ValueError(f"--out {args.out}: give a .csv file to write")
    idata = _load_fit(args.fit)
    net, spec = read_net(idata)
    if args.data in data.names():
        ds = data.load(args.data)
        frame = pd.DataFrame(ds.X, columns=list(ds.feature_names))
    elif Path(args.data).suffix.lower() == ".csv" and Path(args.data).is_file():
        frame = pd.read_csv(args.data)
    else:
        raise ValueError(f"--data {args.data!r} is neither a built-in dataset nor a .csv file")
    X = _inputs(frame, args.features, spec, args.data)
    lo, hi = (1 - args.interval) / 2, (1 + args.interval) / 2
    summary = predict_summary(
        idata, X, probs=(lo, hi), random_seed=args.seed, predictive=args.predictive
    )
    table = _predictive_table(summary, spec, net.lik.task)
    with staged_folder(args.out.parent) as stage:  # the whole CSV, or on failure none
        pd.concat([X.reset_index(drop=True), table], axis=1).to_csv(
            stage / args.out.name, index=False
        )
    print(f"Wrote {len(table)} rows to {args.out}")
    return 0


def _predictive_table(summary: Any, spec: Any, task: str) -> Any:
    """Per row: mean, sd and central interval per output, or class probabilities."""
    import pandas as pd

    if task == "classification":
        p = summary["p"].values
        table = pd.DataFrame({f"p_{k}": p[:, k] for k in range(p.shape[1])})
        table["predicted"] = p.argmax(axis=1)
        return table
    columns = {}
    for j, name in enumerate(spec.output_names):
        columns[f"{name}_mean"] = summary["mean"].values[:, j]
        columns[f"{name}_sd"] = summary["sd"].values[:, j]
        quantiles = summary["quantiles"].isel(output=j)
        for level in summary["quantile"].values:
            columns[f"{name}_q{level:.3g}"] = quantiles.sel(quantile=level).values
    return pd.DataFrame(columns)


class Stopped(BaseException):
    """Ctrl-C or SIGTERM, as an abort that every ``finally`` sees on its way out.

    Not a KeyboardInterrupt, which PyMC's and our ADVI loops take as "stop early and
    keep the fit": the command would then write the results of a fit cut short.
    """


def _stop(signum: int, frame: Any) -> None:
    raise Stopped(signum)


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``bnncat`` command."""
    args = build_parser().parse_args(argv)
    signals = (signal.SIGINT, signal.SIGTERM)
    in_main = threading.current_thread() is threading.main_thread()  # where signals go
    previous = {s: signal.signal(s, _stop) for s in signals} if in_main else {}
    try:
        return _run(args)
    except Stopped as stop:
        print(
            "bnncat: interrupted: no result was written (earlier results are as they were)",
            file=sys.stderr,
        )
        return 128 + stop.args[0]
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def _run(args: argparse.Namespace) -> int:
    """Run one command; a bad argument or input is an error message and exit code 2."""
    try:
        if args.command == "datasets":
            from bnncat import data

            width = max(map(len, data.names()))
            for name in data.names():
                description = data.load(name).description.splitlines()[0]
                print(f"{name:{width}s} {description[:80]}")
            return 0
        runs = {"fit": run_fit, "diagnose": run_diagnose, "predict": run_predict}
        return runs[args.command](args)
    except (ValueError, TypeError) as err:
        print(f"bnncat: error: {err}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
