"""Evaluation of a fit's predictions: predictive checks, calibration, predictive density, plots.

Everything here uses the predictive distribution only, so it is invariant to the
symmetries of the hidden units and needs no relabelling.

- :mod:`bnncat.evaluation.calibration`: the ``posterior_predictive`` and
  ``log_likelihood`` groups ArviZ reads, and the calibration table (interval
  coverage, log predictive density, RMSE, CRPS; accuracy, Brier, ECE) on
  PSIS-LOO, in-sample or held-out data;
- :mod:`bnncat.evaluation.density`: the posterior predictive density
  p(y | x, D) on a grid, its quantiles, its mean and the log predictive density;
- :mod:`bnncat.evaluation.holdout`: a fit on a training part scored on the held-out
  part (RMSE, log predictive density per row, wall time), as a benchmark repeats it
  per split;
- :mod:`bnncat.evaluation.plots`: predictive bands, the conditional density
  heat map and interval coverage.

Examples
--------
>>> from bnncat.evaluation import calibration_table
>>> table = calibration_table(idata)  # doctest: +SKIP
"""

from bnncat.evaluation.calibration import (
    add_predictive_groups,
    calibration_table,
    check_test_data,
    pit_values,
    select_output,
)
from bnncat.evaluation.density import (
    log_predictive_density,
    predictive_density,
    predictive_mean,
    predictive_quantiles,
)
from bnncat.evaluation.holdout import fit_and_score, heldout_scores
from bnncat.evaluation.plots import plot_conditional_density, plot_coverage, plot_predictive

__all__ = [
    "add_predictive_groups",
    "calibration_table",
    "check_test_data",
    "fit_and_score",
    "heldout_scores",
    "log_predictive_density",
    "pit_values",
    "plot_conditional_density",
    "plot_coverage",
    "plot_predictive",
    "predictive_density",
    "predictive_mean",
    "predictive_quantiles",
    "select_output",
]
