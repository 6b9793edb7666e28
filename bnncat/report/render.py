"""Rendering of a diagnosis report: Markdown, a self-contained HTML page, PNGs and files.

The :class:`~bnncat.report.diagnosis.DiagnosticReport` methods ``to_markdown``,
``to_html``, ``figure_pngs`` and ``write`` call these.
"""

import base64
import html
import io
from pathlib import Path
from typing import Any

import pandas as pd

from bnncat.report.verdict import Verdict

#: Chains up to which per-chain tables show a row each and chain plots a line each.
MAX_CHAIN_ROWS = 16

FIGURE_CAPTIONS = {
    "panel": "At a glance: R-hat per space, mode hopping, functional modes, two units raw vs "
    "relabelled, predictive bands, interval coverage.",
    "trace_raw_vs_relabelled": "Traces of the first hidden units' biases and outgoing weights, "
    "raw (left) and relabelled (right), one colour per chain (per superchain, its chains one "
    "after another, for many chains).",
    "rank_raw_vs_relabelled": "Rank ECDF plots, raw (left) and relabelled (right): lines outside "
    "the envelope mean the chains disagree.",
    "pair_units": "Two hidden units' outgoing weights, raw (left) and relabelled (right).",
    "hopping": "Which symmetric copy each draw was in, per chain.",
    "members": "Pairs of ensemble members (or chains started from them): weight distance raw "
    "against relabelled (symmetric copies drop to the floor; different functions stay near the "
    "diagonal), and the members' functional modes.",
    "predictive": "Posterior predictive bands against the data.",
    "ppc": "Posterior predictive check: the data's distribution against replicated data sets.",
    "loo_pit": "LOO-PIT ECDF: calibrated predictions stay inside the envelope.",
    "loo_pit_coverage": "Coverage of every central LOO predictive interval (x: its width in %) "
    "minus the nominal: calibrated predictions stay near 0.",
    "reliability": "Reliability diagram (PAVA): the observed event rate against the predicted "
    "probability; calibrated predictions follow the diagonal.",
}


def markdown(report: Any) -> str:
    """Render a report as Markdown: the verdict, then every table."""
    parts = [
        f"# Diagnosis: {report.options.get('title', '')}".rstrip(": "),
        "",
        _md_verdict(report.verdict),
    ]
    for title, table in report.tables().items():
        parts += ["", f"## {title}", ""]
        parts.append(_md_table(table) if not table.empty else "(none)")
    parts += ["", _md_notes(report.options)]
    return "\n".join(parts) + "\n"


def html_page(report: Any, *, figures: bool = True) -> str:
    """Render a self-contained HTML page: verdict, tables and (optionally) embedded figures."""
    title = html.escape(report.options.get("title", "bnncat diagnosis"))
    body = [f"<h1>Diagnosis: {title}</h1>", _html_verdict(report.verdict)]
    for name, table in report.tables().items():
        body.append(f"<h2>{html.escape(name)}</h2>")
        body.append(
            table.to_html(float_format=_fmt, border=0, classes="table")
            if not table.empty
            else "<p>(none)</p>"
        )
    if figures:
        body.append("<h2>Figures</h2>")
        for name, png in report.figure_pngs().items():
            data = base64.b64encode(png).decode("ascii")
            body.append(
                f"<figure><img alt='{name}' src='data:image/png;base64,{data}'>"
                f"<figcaption>{html.escape(FIGURE_CAPTIONS.get(name, name))}</figcaption>"
                "</figure>"
            )
    body.append(f"<p class='notes'>{html.escape(_md_notes(report.options))}</p>")
    return _HTML_PAGE.format(title=title, body="\n".join(body))


def write(report: Any, folder: str | Path, *, figures: bool = True) -> dict[str, Path]:
    """Write ``report.html`` (figures embedded), ``report.md`` and one PNG per figure.

    With ``figures=False`` no figure is drawn: the HTML page has the tables only.
    """
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    written: dict[str, Path] = {}
    for name, png in report.figure_pngs().items() if figures else ():
        written[name] = folder / f"{name}.png"
        written[name].write_bytes(png)
    html = report.to_html(figures=figures)
    (folder / "report.html").write_text(html, encoding="utf-8")
    (folder / "report.md").write_text(report.to_markdown(), encoding="utf-8")
    return {"report": folder / "report.html", "markdown": folder / "report.md", **written}


def figure_of(fig: Any) -> Any:
    """Return the matplotlib figure behind a Figure or an ArviZ PlotCollection."""
    viz = getattr(fig, "viz", None)
    return viz["figure"].item() if viz is not None else fig


def png_bytes(fig: Any, *, dpi: int = 90) -> bytes:
    """Render a Figure or an ArviZ PlotCollection as PNG bytes."""
    buf = io.BytesIO()
    figure_of(fig).savefig(buf, format="png", dpi=dpi)
    return buf.getvalue()


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
