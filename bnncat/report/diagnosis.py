"""``diagnose``: do the chains agree, and if not, why? Tables, a verdict, plots and a report.

The steps, each on ArviZ's R-hat and ESS:

1. convergence in three spaces (raw weights, relabelled weights, predictions
   at probe inputs, plus the pointwise log-likelihood) and the sampler's health;
2. the mode-hopping census from relabelling's per-draw labels;
3. functional modes (chains grouped by their predictions), node duplication and
   dead units;
4. a verdict (see :mod:`bnncat.report.verdict`);
5. posterior predictive checks and calibration
   (:mod:`bnncat.evaluation.calibration`).
"""

from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import xarray as xr

from bnncat.models.attrs import read_fit_options
from bnncat.report import render
from bnncat.report.checks import CHECKS
from bnncat.report.inputs import DiagnosisInputs, gather_inputs
from bnncat.report.verdict import Verdict, judge, tempered
from bnncat.thresholds import DEFAULT_MAX_TREEDEPTH, RHAT_MAX


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
    modes : DataFrame
        Per functional mode: its chains, their share, the log predictive density
        per row of the mode's pooled draws (held-out with ``X_test``, else training)
        and, for ensembles and chains started from ensemble members, how many pairs
        of chains within the mode are symmetric copies of one network.
    member_pairs : DataFrame or None
        For fits made of ensemble members: per pair of chains, the distance of
        their mean weights raw and relabelled (:func:`symmetry_pairs`).
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
    modes: pd.DataFrame
    member_pairs: pd.DataFrame | None
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
    #: Results of checks that have no field of their own, by the keys they return.
    extra: dict[str, Any] = field(default_factory=dict)
    _pngs: dict[str, bytes] | None = field(default=None, repr=False)

    # -- text ----------------------------------------------------------------------------

    def tables(self) -> dict[str, pd.DataFrame]:
        """Every table by its title, in report order."""
        summary = pd.DataFrame(
            {"value": pd.Series(self.hopping_summary, dtype=object)}
        ).rename_axis("across chains")
        return {
            "Convergence in three spaces": self.convergence,
            **per_chain("Sampler health", self.sampler),
            **per_chain("Mode-hopping census (per chain)", self.hopping),
            "Mode-hopping census (across chains)": summary,
            **per_chain("Functional modes", self.functional),
            "Functional modes: share, LPD and symmetric copies": self.modes,
            "Dead units and node duplication (per layer)": self.layers,
            "Hidden units: contribution, death and label changes": self.units,
            "Calibration and posterior predictive checks": self.calibration,
        }

    def __str__(self) -> str:
        return self.to_markdown()

    def to_markdown(self) -> str:
        """Render the report as Markdown: the verdict, then every table."""
        return render.markdown(self)

    def to_html(self, *, figures: bool = True) -> str:
        """Render a self-contained HTML page: verdict, tables and (optionally) embedded figures."""
        return render.html_page(self, figures=figures)

    def _repr_html_(self) -> str:  # Jupyter shows the tables, not the figures
        return self.to_html(figures=False)

    # -- figures -------------------------------------------------------------------------

    def plot(self) -> Any:
        """Draw the at-a-glance figure panel (a matplotlib Figure).

        R-hat by space, the hopping timeline, chain-to-chain distances of the
        predictions, predictive bands and interval coverage.
        """
        from bnncat.report.figures import plot_panel

        return plot_panel(self)

    def figures(self) -> dict[str, Any]:
        """Every figure of the report by file stem (matplotlib Figures or ArviZ PlotCollections)."""
        from bnncat.report.figures import report_figures

        return report_figures(self)

    def figure_pngs(self, *, dpi: int = 90) -> dict[str, bytes]:
        """Every figure rendered as PNG bytes (rendered once, then reused)."""
        if self._pngs is None:
            import matplotlib.pyplot as plt

            self._pngs = {}
            for name, fig in self.figures().items():
                self._pngs[name] = render.png_bytes(fig, dpi=dpi)
                plt.close(render.figure_of(fig))
        return self._pngs

    def write(self, folder: str | Path, *, figures: bool = True) -> dict[str, Path]:
        """Write ``report.html`` (figures embedded), ``report.md`` and one PNG per figure.

        ``figures=False`` writes the tables only (no figure is drawn).
        """
        return render.write(self, folder, figures=figures)


def per_chain(title: str, table: pd.DataFrame) -> dict[str, pd.DataFrame]:
    """Return a per-chain table by its title; for many chains, quantiles of each column."""
    if len(table) <= render.MAX_CHAIN_ROWS:
        return {title: table}
    quantiles = table.select_dtypes("number").quantile([0.0, 0.05, 0.5, 0.95, 1.0])
    quantiles.index = pd.Index(["min", "5%", "median", "95%", "max"], name="over chains")
    return {f"{title}: quantiles over {len(table)} {table.index.name or 'chain'}s": quantiles}


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
    >>> from bnncat import diagnose
    >>> report = diagnose(idata)  # doctest: +SKIP
    >>> print(report.verdict)  # doctest: +SKIP
    (b) only symmetric label switching: raw weights disagree (max R-hat 2.41) ...
    >>> report.write("results/")  # doctest: +SKIP
    """
    settings = {
        "rhat_threshold": rhat_threshold,
        "mode_threshold": mode_threshold,
        "tol": tol,
        "max_treedepth": max_treedepth,
        "max_unit_draws": max_unit_draws,
        "random_seed": random_seed,
    }
    inputs = gather_inputs(
        idata,
        X_probe=X_probe,
        net=net,
        method=method,
        X_test=X_test,
        y_test=y_test,
        settings=settings,
    )
    found: dict[str, Any] = {}
    for check in CHECKS:
        found |= check(inputs)
    known = {f.name for f in fields(DiagnosticReport)}
    verdict = judge(
        convergence=found["convergence"],
        sampler=found["sampler"],
        hopping=found["hopping"],
        hopping_summary=found["hopping_summary"],
        functional=found["functional"],
        modes=found["modes"],
        kind=inputs.kind,
        rhat_threshold=inputs.settings["rhat_threshold"],
        vi_pareto_k=found["vi_pareto_k"],
        ordered=inputs.net.samples_canonically,
        log_ml_spread=_log_ml_spread(inputs.idata),
    )
    verdict = tempered(verdict, _temperature(inputs))
    return DiagnosticReport(
        verdict=verdict,
        **{k: v for k, v in found.items() if k in known},
        idata=inputs.idata,
        canon=inputs.canon,
        checks=inputs.groups,
        X_probe=inputs.X_probe,
        predictions=inputs.predictions,
        options=_options(inputs, found),
        extra={k: v for k, v in found.items() if k not in known and k != "vi_pareto_k"},
    )


def _temperature(inputs: DiagnosisInputs) -> float:
    return float(read_fit_options(inputs.idata).get("temperature", 1.0))


def _options(inputs: DiagnosisInputs, found: dict[str, Any]) -> dict[str, Any]:
    """Collect what the report's notes say about how the diagnosis was made."""
    net, method = inputs.net, inputs.idata.attrs.get("fit_method") or "unknown"
    temperature = _temperature(inputs)
    if temperature != 1.0:
        method = f"{method}, T = {temperature:g}"
    return {
        "title": f"{type(net).__name__} {tuple(net.hidden)} {net.activation}, {method}",
        "temperature": temperature,
        "relabelling": inputs.relabelling,
        "probe_inputs": int(inputs.X_probe.shape[0]),
        "rhat_threshold": inputs.settings["rhat_threshold"],
        "mode_threshold": inputs.settings["mode_threshold"],
        "vi_pareto_k": found["vi_pareto_k"],
        "fit_method": method,
        "fit_kind": inputs.kind,
    }


def _log_ml_spread(idata: Any) -> float | None:
    """Range of the SMC runs' log marginal likelihood estimates; None for other fits."""
    if "smc" not in idata.children:
        return None
    estimates = idata["smc"]["log_marginal_likelihood"].values
    return float(np.ptp(estimates))
