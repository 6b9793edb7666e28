"""The figures of a diagnosis report: the at-a-glance panel and every figure by name.

They assemble the symmetry plots of :mod:`bnncat.identifiability.plots` and the
predictive plots of :mod:`bnncat.evaluation.plots` for a
:class:`~bnncat.report.diagnosis.DiagnosticReport`.
"""

import warnings
from typing import Any

import arviz as az
import matplotlib.pyplot as plt
import numpy as np
import xarray as xr
from matplotlib.figure import Figure

from bnncat.evaluation.plots import plot_coverage, plot_predictive
from bnncat.identifiability.plots import (
    plot_chain_distance,
    plot_hopping_timeline,
    plot_member_pairs,
    plot_raw_vs_relabelled,
    plot_rhat_by_space,
    plot_unit_pair,
)
from bnncat.models import read_net
from bnncat.models.inference.convergence_check import superchain_ids
from bnncat.report import render
from bnncat.report.checks.functional import pool_chains
from bnncat.thresholds import MIN_LOO_DRAWS


def plot_panel(report: Any) -> Figure:
    """Draw the at-a-glance panel of a :class:`DiagnosticReport` (``report.plot()``)."""
    fig = plt.figure(figsize=(15, 8.5), layout="constrained")
    grid = fig.add_gridspec(2, 3)
    plot_rhat_by_space(
        report.convergence,
        threshold=report.options["rhat_threshold"],
        ax=fig.add_subplot(grid[0, 0]),
    )
    plot_hopping_timeline(report.canon, ax=fig.add_subplot(grid[0, 1:]))
    plot_chain_distance(
        report.chain_distance,
        report.functional["mode"].tolist(),
        ax=fig.add_subplot(grid[1, 0]),
        unit="noise sds" if report.options["fit_kind"] == "ensemble" else "posterior sds",
    )
    net, spec = read_net(report.idata)
    if net.lik.task != "regression" or spec.n_outputs == 1:  # bands in one axes
        plot_predictive(report.idata, ax=fig.add_subplot(grid[1, 1]))
    plot_coverage(report.calibration, ax=fig.add_subplot(grid[1, 2]))
    fig.suptitle(f"({report.verdict.status}) {report.verdict.label}", fontsize=14)
    return fig


def report_figures(report: Any) -> dict[str, Any]:
    """Every figure of a report by name (see ``DiagnosticReport.figures``)."""
    figs: dict[str, Any] = {"panel": plot_panel(report)}
    idata, canon = chains_to_draw(report)
    figs["trace_raw_vs_relabelled"] = plot_raw_vs_relabelled(idata, canon)
    if idata["posterior"].sizes["chain"] > 1:  # rank plots compare chains
        figs["rank_raw_vs_relabelled"] = plot_raw_vs_relabelled(idata, canon, kind="rank")
    width = idata["posterior"]["W_out"].shape[2]
    if width >= 2:
        figs["pair_units"] = plot_unit_pair(idata, canon)
    figs["hopping"] = plot_hopping_timeline(report.canon)
    if report.member_pairs is not None and len(report.member_pairs):
        figs["members"] = _members_figure(report)
    figs["predictive"] = plot_predictive(report.idata)
    figs |= _calibration_figures(report)
    return figs


def chains_to_draw(report: Any) -> tuple[Any, Any]:
    """Return the fit and its relabelled copy as the chain plots show them.

    Many chains started in groups are drawn one line per group (superchain), each
    group's chains one after another: a line per chain of a thousand says nothing.
    """
    groups = superchain_ids(report.idata["posterior"])
    if groups is None or len(groups) <= render.MAX_CHAIN_ROWS:
        return report.idata, report.canon
    return _pooled(report.idata, groups), _pooled(report.canon, groups)


def _pooled(tree: xr.DataTree, groups: np.ndarray) -> xr.DataTree:
    """Return a copy of ``tree`` whose posterior has one chain per group of chains."""

    def pool(da: xr.DataArray) -> xr.DataArray:
        da = da.transpose("chain", "draw", ...)
        rest = {d: da[d] for d in da.dims[2:] if d in da.coords}
        return xr.DataArray(pool_chains(da.values, groups), dims=da.dims, coords=rest)

    out = tree.copy()
    out["posterior"] = tree["posterior"].to_dataset().drop_vars("superchain").map(pool)
    return out


def _members_figure(report: Any) -> Figure:
    """Pairs of members raw vs relabelled, beside their functional modes' distances."""
    fig, (left, right) = plt.subplots(1, 2, figsize=(11, 4.5), layout="constrained")
    modes = report.functional["mode"].to_numpy()
    plot_member_pairs(report.member_pairs, modes, ax=left)
    unit = "noise sds" if report.options["fit_kind"] == "ensemble" else "posterior sds"
    plot_chain_distance(report.chain_distance, modes.tolist(), ax=right, unit=unit)
    return fig


def _calibration_figures(report: Any) -> dict[str, Any]:
    """ArviZ's checks of the predictive distribution, chosen by the kind of target.

    Continuous targets: the PPC, LOO-PIT and its coverage form (every central interval
    at once; the panel's own coverage plot shows the table's levels with their standard
    errors in one axes, which an ArviZ PlotCollection cannot share). Class labels: the
    PAVA reliability diagram instead, since PIT values of discrete data are not uniform.
    """
    net, _ = read_net(report.idata)
    checks, mpl = report.checks, {"backend": "matplotlib"}
    if net.lik.task == "regression":
        figs = {"ppc": az.plot_ppc_dist(checks, **mpl)}
        sizes = report.idata["posterior"].sizes
        if sizes["chain"] * sizes["draw"] < MIN_LOO_DRAWS:
            return figs  # too few draws for PSIS (the calibration table says so)
        try:
            figs["loo_pit"] = az.plot_loo_pit(checks, **mpl)
            figs["loo_pit_coverage"] = az.plot_loo_pit(checks, coverage=True, **mpl)
        except ValueError as err:  # PSIS fails on draws with too few distinct values
            warnings.warn(f"no LOO-PIT figures: PSIS failed ({err})", UserWarning, stacklevel=2)
        return figs
    data_type = "binary" if net.lik.binary else "categorical"
    return {"reliability": az.plot_ppc_pava(checks, data_type=data_type, **mpl)}
