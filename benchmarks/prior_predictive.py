"""The mixture regressor's prior predictive, both forms, against the data: a sensible prior.

For each form (noise and MDN, K = 2, 1x8 tanh, the default priors) draws the prior
predictive y at the training inputs of a data set and plots, over x, its central 50% and 90%
bands and five single draws of E[y | x], with the data on top; a last panel compares the
marginal prior predictive density of y (all x pooled) of both forms with the data's
histogram. Also prints, per form, what the prior says in units of the data's sd s_y: the
spread of y, the spread of E[y | x] across x within one draw, the component sds and the
smallest mixture weight.

    python benchmarks/prior_predictive.py                  # inverse_sine
    python benchmarks/prior_predictive.py --data faithful

Writes ``benchmarks/figures/prior_predictive_<data>.png``.
"""

import argparse
import warnings
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import pymc as pm  # noqa: E402

from bnncat import data  # noqa: E402
from bnncat.models import MixtureRegressor  # noqa: E402

FORMS = ("noise", "mdn")


def prior_draws(form: str, X: np.ndarray, y: np.ndarray, draws: int, seed: int) -> dict:
    """Prior predictive y, E[y | x] and the mixture components at the inputs X."""
    net = MixtureRegressor((8,), n_components=2, form=form)
    X_arr, y_arr, spec = net.data_spec(X, y)
    model = net.build_validated(X_arr, y_arr, spec)
    with warnings.catch_warnings():  # numba runs the mixture's numpy random in object mode
        warnings.simplefilter("ignore", UserWarning)
        idata = pm.sample_prior_predictive(draws=draws, model=model, random_seed=seed)
    params = {k: v.values[0] for k, v in idata["prior"].items()}
    mixture = net.observation_parameters(params, X_arr, spec)  # (draw, n, output, component)
    w, sds = mixture["w"], mixture["sigma"]
    return {
        "y": idata["prior_predictive"]["y"].values[0, :, :, 0],  # (draw, n)
        "mu": params["mu"][..., 0],
        "weights": w[..., 0, :],
        "sds": sds[..., 0, :],
    }


def summary(form: str, draws: dict, y: np.ndarray) -> dict:
    s_y = y.std()
    return {
        "form": form,
        "y: 5-95% / s_y": np.ptp(np.quantile(draws["y"], [0.05, 0.95])) / s_y,
        "data: 5-95% / s_y": np.ptp(np.quantile(y, [0.05, 0.95])) / s_y,
        "median sd of E[y|x] over x / s_y": np.median(draws["mu"].std(axis=1)) / s_y,
        "component sd / s_y, 5%": np.quantile(draws["sds"], 0.05) / s_y,
        "component sd / s_y, 95%": np.quantile(draws["sds"], 0.95) / s_y,
        "smallest weight, median": np.median(draws["weights"].min(axis=-1)),
    }


def plot(x: np.ndarray, y: np.ndarray, all_draws: dict, name: str, path: Path) -> None:
    order = np.argsort(x)
    fig, axes = plt.subplots(1, 3, figsize=(15, 4.2), sharey=True)
    for ax, form in zip(axes, FORMS, strict=False):
        d = all_draws[form]
        for lo, hi, alpha in ((0.05, 0.95, 0.2), (0.25, 0.75, 0.35)):
            q = np.quantile(d["y"], [lo, hi], axis=0)
            ax.fill_between(x[order], q[0, order], q[1, order], color="C0", alpha=alpha, lw=0)
        for i in range(5):
            ax.plot(x[order], d["mu"][i, order], color="C1", lw=1)
        ax.scatter(x, y, s=6, color="k", zorder=3)
        ax.set(title=f"{form} form: prior predictive 50%/90% bands", xlabel="x")
    axes[0].plot([], [], color="C1", label="E[y | x], five prior draws")
    axes[0].legend(loc="upper left", fontsize=8)
    axes[0].set_ylabel("y")
    pooled = np.concatenate([all_draws[form]["y"].ravel() for form in FORMS])
    lo, hi = np.quantile(pooled, [0.005, 0.995])
    bins = np.linspace(lo, hi, 80)
    axes[2].hist(
        y, bins=bins, density=True, orientation="horizontal", color="k", alpha=0.3, label="data"
    )
    for i, form in enumerate(FORMS):
        axes[2].hist(
            all_draws[form]["y"].ravel(),
            bins=bins,
            density=True,
            orientation="horizontal",
            histtype="step",
            color=f"C{i}",
            lw=1.5,
            label=f"{form} prior predictive",
        )
    axes[2].set(title="marginal density of y, all x", xlabel="density", ylim=(lo, hi))
    axes[2].legend(fontsize=8)
    fig.suptitle(f"MixtureRegressor((8,), n_components=2), default priors, on {name}")
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default="inverse_sine")
    parser.add_argument("--draws", type=int, default=1000)
    parser.add_argument("--out", type=Path, default=Path(__file__).parent / "figures")
    args = parser.parse_args()
    ds = data.load(args.data)
    x, y = ds.X[:, 0], np.asarray(ds.y, dtype=float).ravel()
    all_draws = {form: prior_draws(form, ds.X, y, args.draws, seed=1) for form in FORMS}
    table = pd.DataFrame([summary(form, all_draws[form], y) for form in FORMS])
    print(table.round(3).to_markdown(index=False))
    args.out.mkdir(parents=True, exist_ok=True)
    plot(x, y, all_draws, args.data, args.out / f"prior_predictive_{args.data}.png")


if __name__ == "__main__":
    main()
