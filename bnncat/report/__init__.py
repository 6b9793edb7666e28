"""The diagnosis of a fit: :func:`diagnose`, its verdict, tables, figures and HTML/Markdown.

- :mod:`bnncat.report.diagnosis`: :func:`diagnose` and the
  :class:`DiagnosticReport` it returns;
- :mod:`bnncat.report.verdict`: the verdict (a status, one sentence, next steps);
- :mod:`bnncat.report.figures`: the report's figures (the at-a-glance panel and
  every figure by name);
- :mod:`bnncat.report.render`: Markdown, the self-contained HTML page and the
  files ``DiagnosticReport.write`` writes.

Examples
--------
>>> from bnncat.report import diagnose
>>> report = diagnose(idata)  # doctest: +SKIP
>>> report.write("results/")  # doctest: +SKIP
"""

from bnncat.report.diagnosis import DiagnosticReport, diagnose
from bnncat.report.figures import plot_panel, report_figures
from bnncat.report.verdict import Verdict, judge

__all__ = [
    "DiagnosticReport",
    "Verdict",
    "diagnose",
    "judge",
    "plot_panel",
    "report_figures",
]
