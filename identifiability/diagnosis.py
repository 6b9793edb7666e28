"""``diagnose``: do the chains agree, and if not, why? Tables, a verdict, plots and a report.

The steps, each on ArviZ's R-hat and ESS:

1. convergence in three spaces (raw weights, relabelled weights, predictions
   at probe inputs, plus the pointwise log-likelihood) and the sampler's health;
2. the mode-hopping census from relabelling's per-draw labels;
3. functional modes (chains grouped by their predictions), node duplication and
   dead units;
4. a verdict (see :mod:`bnncat.identifiability.verdict`);
5. posterior predictive checks and calibration
   (:mod:`bnncat.identifiability.calibration`).
"""

import base64
import html
import io
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import xarray as xr
from scipy import special

from bnncat.identifiability import calibration
from bnncat.identifiability.convergence import convergence_table, sampler_health, weight_dataset
from bnncat.identifiability.functional import functional_modes, unit_census
from bnncat.identifiability.hopping import mode_hopping, unit_label_changes
from bnncat.identifiability.relabel import METHODS, canonicalize, resolve_net
from bnncat.identifiability.verdict import Verdict, judge
from bnncat.models.attrs import write_attrs
from bnncat.models.fitting import METHOD_KINDS
from bnncat.models.prediction import net_and_spec
from bnncat.models.validation import check_choice, check_positive_float, check_positive_int, check_X
from bnncat.thresholds import DEFAULT_MAX_TREEDEPTH, MIN_DRAWS, RHAT_MAX


@dataclass
class DiagnosticReport:
    """What :func:`diagnose` found. Tables are pandas DataFrames; see each field.

    Attributes
    ----------
    verdict : Verdict
        Status (a/b/c/d, or - for cannot tell), one sentence, next steps.
    convergence : DataFrame
        One row per space (raw weights, relabelled weights, predictions,
        log-likelihood): number of quantities, max R-hat, share of R-hat above
        the threshold, min bulk and tail ESS.
    sampler : DataFrame
        Per chain: draws, divergences, tree-depth saturation, E-BFMI, mean
        acceptance, step size (empty for ADVI).
    hopping : DataFrame
        Per chain: symmetric copies visited, switch rate, mean dwell, modal
        share, ambiguous share (:func:`mode_hopping`).
    hopping_summary : dict
        Across chains: distinct modal copies, overall switch rate and
        ambiguity margin.
    functional : DataFrame
        Per chain: functional mode and mean log-likelihood.
    chain_distance : ndarray
        Chain-to-chain distances of the predictions (in posterior sds).
    units, layers : DataFrame
        Per unit: share of draws dead, mean contribution relative to the
        strongest unit, and how often its label changes between draws (weak
        units trade labels, strong ones keep them); per layer: dead units and
        node duplication.
    calibration : DataFrame
        Posterior predictive checks and calibration metrics.
    canon : DataTree
        The relabelled fit (``canonicalize``) the tables were computed on.
    checks : DataTree
        The fit with ``posterior_predictive`` and ``log_likelihood`` groups
        (for ``az.plot_ppc_dist``, ``az.plot_loo_pit``).
    """

    verdict: Verdict
    convergence: pd.DataFrame
    sampler: pd.DataFrame
    hopping: pd.DataFrame
    hopping_summary: dict[str, Any]
    functional: pd.DataFrame
    chain_distance: np.ndarray
    units: pd.DataFrame
    layers: pd.DataFrame
    calibration: pd.DataFrame
    idata: xr.DataTree = field(repr=False)
    canon: xr.DataTree = field(repr=False)
    checks: xr.DataTree = field(repr=False)
    X_probe: np.ndarray = field(repr=False)
    predictions: np.ndarray = field(repr=False)
    options: dict[str, Any] = field(default_factory=dict)
    _pngs: dict[str, bytes] | None = field(default=None, repr=False)

    # -- text ----------------------------------------------------------------------------

    def tables(self) -> dict[str, pd.DataFrame]:
        """Every table by its title, in report order."""
        summary = pd.DataFrame(
            {"value": pd.Series(self.hopping_summary, dtype=object)}
        ).rename_axis("across chains")
        return {
            "Convergence in three spaces": self.convergence,
            "Sampler health": self.sampler,
            "Mode-hopping census (per chain)": self.hopping,
            "Mode-hopping census (across chains)": summary,
            "Functional modes": self.functional,
            "Dead units and node duplication (per layer)": self.layers,
            "Hidden units: contribution, death and label changes": self.units,
            "Calibration and posterior predictive checks": self.calibration,
        }

    def __str__(self) -> str:
        return self.to_markdown()

    def to_markdown(self) -> str:
        """Render the report as Markdown: the verdict, then every table."""
        parts = [
            f"# Diagnosis: {self.options.get('title', '')}".rstrip(": "),
            "",
            _md_verdict(self.verdict),
        ]
        for title, table in self.tables().items():
            parts += ["", f"## {title}", ""]
            parts.append(_md_table(table) if not table.empty else "(none)")
        parts += ["", _md_notes(self.options)]
        return "\n".join(parts) + "\n"

    def to_html(self, *, figures: bool = True) -> str:
        """Render a self-contained HTML page: verdict, tables and (optionally) embedded figures."""
        title = html.escape(self.options.get("title", "bnncat diagnosis"))
        body = [f"<h1>Diagnosis: {title}</h1>", _html_verdict(self.verdict)]
        for name, table in self.tables().items():
            body.append(f"<h2>{html.escape(name)}</h2>")
            body.append(
                table.to_html(float_format=_fmt, border=0, classes="table")
                if not table.empty
                else "<p>(none)</p>"
            )
        if figures:
            body.append("<h2>Figures</h2>")
            for name, png in self.figure_pngs().items():
                data = base64.b64encode(png).decode("ascii")
                body.append(
                    f"<figure><img alt='{name}' src='data:image/png;base64,{data}'>"
                    f"<figcaption>{html.escape(FIGURE_CAPTIONS.get(name, name))}</figcaption>"
                    "</figure>"
                )
        body.append(f"<p class='notes'>{html.escape(_md_notes(self.options))}</p>")
        return _HTML_PAGE.format(title=title, body="\n".join(body))

    def _repr_html_(self) -> str:  # Jupyter shows the tables, not the figures
        return self.to_html(figures=False)

    # -- figures -------------------------------------------------------------------------

    def plot(self) -> Any:
        """Draw the at-a-glance figure panel (a matplotlib Figure).

        R-hat by space, the hopping timeline, chain-to-chain distances of the
        predictions, predictive bands and interval coverage.
        """
        from bnncat.identifiability.diagnostic_plots import plot_panel

        return plot_panel(self)

    def figures(self) -> dict[str, Any]:
        """Every figure of the report by file stem (matplotlib Figures or ArviZ PlotCollections)."""
        from bnncat.identifiability import diagnostic_plots as dp

        return dp.report_figures(self)

    def figure_pngs(self, *, dpi: int = 90) -> dict[str, bytes]:
        """Every figure rendered as PNG bytes (rendered once, then reused)."""
        if self._pngs is None:
            import matplotlib.pyplot as plt

            self._pngs = {}
            for name, fig in self.figures().items():
                self._pngs[name] = _png_bytes(fig, dpi=dpi)
                plt.close(_figure_of(fig))
        return self._pngs

    def write(self, folder: str | Path) -> dict[str, Path]:
        """Write ``report.html`` (figures embedded), ``report.md`` and one PNG per figure."""
        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        written: dict[str, Path] = {}
        for name, png in self.figure_pngs().items():
            written[name] = folder / f"{name}.png"
            written[name].write_bytes(png)
        (folder / "report.html").write_text(self.to_html(), encoding="utf-8")
        (folder / "report.md").write_text(self.to_markdown(), encoding="utf-8")
        return {"report": folder / "report.html", "markdown": folder / "report.md", **written}


FIGURE_CAPTIONS = {
    "panel": "At a glance: R-hat per space, mode hopping, functional modes, two units raw vs "
    "relabelled, predictive bands, interval coverage.",
    "trace_raw_vs_relabelled": "Traces of the first hidden units' biases and outgoing weights, "
    "raw (left) and relabelled (right), one colour per chain.",
    "rank_raw_vs_relabelled": "Rank ECDF plots, raw (left) and relabelled (right): lines outside "
    "the envelope mean the chains disagree.",
    "pair_units": "Two hidden units' outgoing weights, raw (left) and relabelled (right).",
    "hopping": "Which symmetric copy each draw was in, per chain.",
    "predictive": "Posterior predictive bands against the data.",
    "ppc": "Posterior predictive check: the data's distribution against replicated data sets.",
    "loo_pit": "LOO-PIT ECDF: calibrated predictions stay inside the envelope.",
}


def diagnose(
    idata: xr.DataTree,
    *,
    X_probe: object = None,
    net: Any = None,
    method: str | None = None,
    X_test: object = None,
    y_test: object = None,
    rhat_threshold: float = RHAT_MAX,
    mode_threshold: float = 1.0,
    tol: float = 0.05,
    max_treedepth: int = DEFAULT_MAX_TREEDEPTH,
    max_unit_draws: int = 400,
    random_seed: int = 0,
) -> DiagnosticReport:
    """Diagnose a fit: convergence in three spaces, mode hopping, functional modes, a verdict.

    Parameters
    ----------
    idata : xarray.DataTree
        A fit of ``MLP``, ``OrderedMLP`` or ``MixtureRegressor`` (``net.fit``,
        ``load``), or your own ``pm.sample`` / ``pm.fit`` result on a model
        from ``net.build(X, y)`` with ``net`` given.
    X_probe : array-like (m, n_features), optional
        Inputs where predictions are compared; the training inputs by default.
    net : optional
        The model, if ``idata`` carries no bnncat configuration.
    method : {"pivot", "sort"}, optional
        Relabelling method (``canonicalize``). By default ``pivot``, which
        adapts to the posterior and flips fewer labels at near-ties, so the
        hopping census counts real moves between copies; for an ``OrderedMLP``
        ``sort``, because its constraints already make every draw canonical.
    X_test, y_test : array-like, optional
        Held-out data for calibration (coverage, log predictive density,
        RMSE, CRPS; accuracy, Brier, ECE for classification). Without them,
        calibration is judged on the training data by PSIS-LOO and in-sample.
    rhat_threshold : float
        R-hat above which chains disagree (1.01, Vehtari et al. 2021).
    mode_threshold : float
        Chain-to-chain distance (in posterior sds, see
        :func:`~bnncat.identifiability.functional.functional_modes`) above
        which chains are in different functional modes.
    tol : float
        Ambiguity margin of the hopping census (:func:`mode_hopping`).
    max_treedepth : int
        The NUTS tree-depth limit, for samplers that record the depth only.
    max_unit_draws : int
        Draws (evenly thinned) used for the dead-unit and duplication census.
    random_seed : int
        Seed of the posterior predictive draws.

    Returns
    -------
    DiagnosticReport
        Tables, ``verdict``, ``plot()``, ``figures()``, ``to_markdown()``,
        ``to_html()``, ``write(folder)``.

    Raises
    ------
    ValueError
        For an idata without a posterior, fewer than 20 draws per chain, a
        probe or test set of the wrong width, or NaN values.
    TypeError
        If ``idata`` is not a DataTree.

    Examples
    --------
    >>> from bnncat import identifiability as ident
    >>> report = ident.diagnose(idata)  # doctest: +SKIP
    >>> print(report.verdict)  # doctest: +SKIP
    (b) only symmetric label switching: raw weights disagree (max R-hat 2.41) ...
    >>> report.write("results/")  # doctest: +SKIP
    """
    # every check before any computation
    net = resolve_net(idata, net)
    if method is None:
        method = "sort" if net.samples_canonically else "pivot"
    method = check_choice(method, METHODS, "method")
    rhat_threshold = check_positive_float(rhat_threshold, "rhat_threshold")
    if rhat_threshold <= 1:
        raise ValueError(f"rhat_threshold must be > 1; got {rhat_threshold}")
    mode_threshold = check_positive_float(mode_threshold, "mode_threshold")
    max_treedepth = check_positive_int(max_treedepth, "max_treedepth")
    max_unit_draws = check_positive_int(max_unit_draws, "max_unit_draws")
    post = idata["posterior"]
    draws = int(post.sizes.get("draw", 0))
    if draws < MIN_DRAWS:
        raise ValueError(
            f"idata has {draws} draws per chain; diagnose needs at least {MIN_DRAWS} for "
            "R-hat and ESS to mean anything: draw more"
        )
    net, spec = net_and_spec(idata, net)
    if X_probe is None:
        if "constant_data" not in idata.children or "X" not in idata["constant_data"]:
            raise ValueError("idata has no constant_data['X']: give the probe inputs X_probe")
        X_probe = idata["constant_data"]["X"].values
    X_probe = check_X(X_probe, "X_probe", n_features=spec.n_features)
    calibration.check_test_data(idata, X_test, y_test, net=net)

    fit_method = idata.attrs.get("fit_method") or "unknown"
    kind = fit_kind(idata)
    if "bnncat_config" not in idata.attrs:  # a user's own run: record what it is
        idata = idata.copy()
        write_attrs(idata, net, spec, {"method": fit_method, "kind": kind, "random_seed": None})
    canon = canonicalize(idata, method=method, net=net)
    hopping, hopping_summary = mode_hopping(canon, net=net, tol=tol)
    params = {k: post[k].values for k in post.data_vars}
    predictions = probe_predictions(net, params, X_probe, spec)
    checks = calibration.add_predictive_groups(idata, net=net, random_seed=random_seed)
    loglik = checks["log_likelihood"]["y"].values  # (chain, draw, obs)

    spaces = {
        "raw weights": weight_dataset(post),
        "relabelled weights": weight_dataset(canon["posterior"]),
        "predictions": xr.Dataset({"f": (("chain", "draw", "probe", "output"), predictions)}),
        "log-likelihood": xr.Dataset({"loglik": (("chain", "draw", "obs"), loglik)}),
    }
    conv = convergence_table(spaces, rhat_threshold=rhat_threshold)
    sampler = (
        sampler_health(idata, max_treedepth=max_treedepth) if kind == "mcmc" else (pd.DataFrame())
    )
    functional, distance = functional_modes(predictions, threshold=mode_threshold, loglik=loglik)
    canon_post = canon["posterior"]
    flat = {
        k: canon_post[k].values.reshape(-1, *canon_post[k].shape[2:]) for k in canon_post.data_vars
    }
    n_flat = next(iter(flat.values())).shape[0]
    keep = np.unique(np.linspace(0, n_flat - 1, min(max_unit_draws, n_flat)).astype(int))
    units, layers = unit_census(
        {k: v[keep] for k, v in flat.items()}, X_probe, activation=net.activation, spec=spec
    )
    units = units.join(unit_label_changes(canon))
    calib = calibration.calibration_table(
        idata, X_test=X_test, y_test=y_test, net=net, random_seed=random_seed
    )
    vi_k = vi_pareto_k(idata)
    verdict = judge(
        convergence=conv,
        sampler=sampler,
        hopping=hopping,
        hopping_summary=hopping_summary,
        functional=functional,
        kind=kind,
        rhat_threshold=rhat_threshold,
        vi_pareto_k=vi_k,
        ordered=net.samples_canonically,
    )
    options = {
        "title": f"{type(net).__name__} {tuple(net.hidden)} {net.activation}, {fit_method}",
        "relabelling": method,
        "probe_inputs": int(X_probe.shape[0]),
        "rhat_threshold": rhat_threshold,
        "mode_threshold": mode_threshold,
        "vi_pareto_k": vi_k,
        "fit_method": fit_method,
    }
    return DiagnosticReport(
        verdict=verdict,
        convergence=conv,
        sampler=sampler,
        hopping=hopping,
        hopping_summary=hopping_summary,
        functional=functional,
        chain_distance=distance,
        units=units,
        layers=layers,
        calibration=calib,
        idata=idata,
        canon=canon,
        checks=checks,
        X_probe=X_probe,
        predictions=predictions,
        options=options,
    )


def probe_predictions(
    net: Any, params: dict[str, np.ndarray], X: np.ndarray, spec: Any
) -> np.ndarray:
    """Symmetry-invariant predictions (chain, draw, m, k) at probe inputs.

    Regression: the predictive mean E[y | x] (of a mixture, too). Classification:
    class probabilities, because logits of a categorical net are only defined up to
    a shift common to all classes.
    """
    out = net.forward(params, X, spec)
    if net.lik.task == "regression":
        return out
    if net.lik.binary:
        return special.expit(out[..., :1])
    return special.softmax(out, axis=-1)


def vi_pareto_k(idata: xr.DataTree) -> float | None:
    """PSIS k-hat of an ADVI fit's importance ratios p/q (Yao et al. 2018), if it has them."""
    stats = idata["sample_stats"] if "sample_stats" in idata.children else None
    if stats is None or "log_p" not in stats or "log_q" not in stats:
        return None
    log_ratio = stats["log_p"] - stats["log_q"]
    # ArviZ 1.3's pareto_khat(log_weights=True) fits the Pareto tail to the log weights
    # themselves; the tail of the weights is what matters, so pass them (scaled to max 1).
    # The draws are independent (r_eff = 1).
    weights = np.exp(log_ratio - log_ratio.max())
    return float(weights.azstats.pareto_khat(tail="right", r_eff=1.0))


def fit_kind(idata: xr.DataTree) -> str:
    """``"mcmc"`` (Markov chains) or ``"approximation"`` (draws from one fitted distribution).

    From the attrs of a catalogue fit (older fits: from their method); for a user's own
    run, Markov chains leave sampler statistics such as ``diverging``.
    """
    kind = idata.attrs.get("fit_kind")
    if kind:
        return str(kind)
    if idata.attrs.get("fit_method") in METHOD_KINDS:
        return METHOD_KINDS[idata.attrs["fit_method"]]
    stats = idata["sample_stats"] if "sample_stats" in idata.children else None
    return "mcmc" if stats is not None and "diverging" in stats else "approximation"


def _fmt(x: float) -> str:
    return f"{x:.4g}"


def _md_table(table: pd.DataFrame) -> str:
    return table.to_markdown(floatfmt=".4g")


def _md_verdict(verdict: Verdict) -> str:
    sentence = verdict.sentence[:1].upper() + verdict.sentence[1:]
    text = f"**Verdict ({verdict.status}): {verdict.label}.** {sentence}"
    if verdict.next_steps:
        text += "\n\nNext steps:\n" + "\n".join(f"- {s}" for s in verdict.next_steps)
    return text


def _html_verdict(verdict: Verdict) -> str:
    colour = {"a": "#1a7f37", "b": "#1a7f37", "c": "#9a6700", "d": "#cf222e"}.get(
        verdict.status, "#57606a"
    )
    steps = "".join(f"<li>{html.escape(s)}</li>" for s in verdict.next_steps)
    return (
        f"<div class='verdict' style='border-left:6px solid {colour}'>"
        f"<p><b>Verdict ({verdict.status}): {html.escape(verdict.label)}.</b> "
        f"{html.escape(verdict.sentence)}</p>"
        + (f"<p>Next steps:</p><ul>{steps}</ul>" if steps else "")
        + "</div>"
    )


def _md_notes(options: dict[str, Any]) -> str:
    return (
        f"R-hat: ArviZ rank-normalised split R-hat (threshold {options.get('rhat_threshold')}); "
        f"ESS: ArviZ bulk/tail. Relabelling: {options.get('relabelling')}. Predictions at "
        f"{options.get('probe_inputs')} probe inputs."
    )


def _figure_of(fig: Any) -> Any:
    """Return the matplotlib figure behind a Figure or an ArviZ PlotCollection."""
    viz = getattr(fig, "viz", None)
    return viz["figure"].item() if viz is not None else fig


def _png_bytes(fig: Any, *, dpi: int = 90) -> bytes:
    buf = io.BytesIO()
    _figure_of(fig).savefig(buf, format="png", dpi=dpi)
    return buf.getvalue()


_HTML_PAGE = """<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>{title}</title>
<style>
body {{ font-family: system-ui, sans-serif; max-width: 70rem; margin: 2rem auto; color: #1f2328; }}
table.table {{ border-collapse: collapse; font-size: 0.9rem; margin-bottom: 1rem; }}
table.table th, table.table td {{ padding: 0.2rem 0.6rem; border-bottom: 1px solid #d0d7de;
  text-align: right; }}
.verdict {{ background: #f6f8fa; padding: 0.5rem 1rem; }}
figure img {{ max-width: 100%; }}
figcaption, .notes {{ color: #57606a; font-size: 0.9rem; }}
</style></head>
<body>
{body}
</body></html>
"""
