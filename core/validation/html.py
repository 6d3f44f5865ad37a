"""The printable validation report: one self-contained HTML file (plotly.js inlined, no network needed to open it).

What a radiology lead reads, prints and signs: which models and which calibration produced the verdicts, the figures
with their 95 % confidence intervals, the caveats, the figures (ROC with the operating point, reliability diagram,
risk histograms per label), the tables behind them, how they were computed, and a sign-off block.
"""

from __future__ import annotations

import datetime as dt
import os
from html import escape
from pathlib import Path

import pandas as pd
import plotly.io as pio
from plotly.offline import get_plotlyjs

from core.validation.figures import report_figures
from core.validation.tables import (
    calibration_table,
    label_table,
    refused_table,
    summary_table,
    warnings_table,
)

_CSS = """
body { font-family: "DejaVu Sans", Arial, sans-serif; color: #1b2631; max-width: 1100px; margin: 24px auto;
       padding: 0 16px; font-size: 14px; line-height: 1.45; }
h1 { font-size: 24px; margin-bottom: 4px; } h2 { font-size: 18px; border-bottom: 2px solid #d5d8dc;
padding-bottom: 3px; margin-top: 28px; } .sub { color: #5d6d7e; margin-top: 0; }
.box { border: 1px solid #aab7b8; border-radius: 6px; padding: 10px 14px; background: #f8f9f9; }
.calibration { font-weight: bold; } .warn { border-color: #ca6f1e; background: #fdf2e9; }
table { border-collapse: collapse; margin: 8px 0; } th, td { border: 1px solid #d5d8dc; padding: 4px 9px;
text-align: left; } th { background: #eaeded; } td.num { text-align: right; font-variant-numeric: tabular-nums; }
.figs { display: flex; flex-wrap: wrap; gap: 12px; } .fig { width: 530px; page-break-inside: avoid; }
.signoff td { height: 34px; min-width: 260px; } .small { font-size: 12px; color: #5d6d7e; }
@media print { body { margin: 0; max-width: none; font-size: 12px; } h2 { page-break-after: avoid; }
  .fig, table, .box { page-break-inside: avoid; } .noprint { display: none; } }
@page { size: A4; margin: 14mm; }
"""


def _table(frame: pd.DataFrame, numeric_from: int = 1) -> str:
    """An HTML table of display strings (every cell escaped; columns from ``numeric_from`` right-aligned)."""
    head = "".join(f"<th>{escape(str(h))}</th>" for h in frame.columns)
    body = "".join("<tr>" + "".join(f'<td class="num">{escape(str(c))}</td>' if i >= numeric_from
                                    else f"<td>{escape(str(c))}</td>" for i, c in enumerate(row)) + "</tr>"
                   for row in frame.itertuples(index=False))
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def _figures_html(figures: dict, names: list[str]) -> str:
    parts = []
    for name in names:
        if name in figures:
            html = pio.to_html(figures[name], full_html=False, include_plotlyjs=False, div_id=f"fig-{name}",
                               config={"displaylogo": False, "responsive": True})
            parts.append(f'<div class="fig">{html}</div>')
    return '<div class="figs">' + "".join(parts) + "</div>"


def render_html_report(report: dict, title: str = "Local validation of the COVID-19 chest X-ray triage tool") -> str:
    """The whole report as one HTML document (a string)."""
    data, models, covid = report["data"], report["models"], report["covid"]
    figures = report_figures(report)
    generated = dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    profile = report.get("site_profile")
    target = report.get("target_sensitivity")
    sections = [
        f"<h1>{escape(title)}</h1>",
        f'<p class="sub">Site data: <b>{escape(data["root"])}</b> ({data["n_images"]} films, {data["n_patients"]} '
        f"patients, {data['n_scored']} scored) · data fingerprint {escape(data['fingerprint'][:16])}… · "
        f"generated {generated}</p>",
        '<div class="box"><div class="calibration">Verdicts in this report: '
        f"{escape(report['calibration_statement'])}</div>"
        f"Models: {escape(models['folder'])} (trained {escape(str(models.get('created')))}, fingerprint "
        f"{escape(models['fingerprint'][:16])}…). Flag threshold in use: "
        + (f"{100 * report['threshold']:.1f}%" if report.get("threshold") is not None else "—")
        + (f", chosen for {target:.0%} sensitivity" if target else "")
        + (f" on the site's own films ({profile['n_images']} films, profile made {escape(profile['created'])})"
           if profile else " on the training data (out of fold)") + ".</div>",
    ]
    if report["notes"]:
        sections.append('<div class="box warn"><b>Read first</b><ul>'
                        + "".join(f"<li>{escape(n)}</li>" for n in report["notes"]) + "</ul></div>")
    sections += [
        "<h2>COVID-19 vs Normal</h2>",
        _table(summary_table(covid, report["warnings"])),
        _figures_html(figures, ["roc", "reliability", "histograms"]),
        "<h2>Flag rate and risk by label</h2>",
        _table(label_table(report["score_distributions"], report["flag_rate_per_label"])),
        "<h2>Calibration bins</h2>",
        _table(calibration_table(covid["calibration"])),
        "<h2>Warnings</h2>",
        _table(warnings_table(report["warnings"])),
    ]
    pneumonia = report["pneumonia"]
    sections.append("<h2>Pneumonia (other than COVID-19)</h2>")
    if pneumonia.get("available"):
        if pneumonia.get("note"):
            sections.append(f"<p>{escape(pneumonia['note'])}</p>")
        sections += [_table(summary_table(pneumonia)),
                     _figures_html(figures, ["pneumonia_roc", "pneumonia_reliability", "pneumonia_histograms"]),
                     _table(label_table(pneumonia["score_distributions"], pneumonia["flag_rate_per_label"],
                                        "probability"))]
    else:
        sections.append(f"<p>Not available: {escape(pneumonia.get('reason', ''))}.</p>")
    if data["refused"]:
        sections += ["<h2>Films not scored</h2>",
                     _table(refused_table(data["refused"]), numeric_from=3)]
    sections += [
        "<h2>How these figures were computed</h2>",
        "<ul class=\"small\">"
        f"<li>Every film was scored by the same path as <code>python -m core predict</code>; the figures use exactly "
        "its output.</li>"
        f"<li>AUC, Brier score: 95% percentile intervals from {report['n_bootstrap']} bootstrap replicates over "
        "patients (all films of a drawn patient are kept).</li>"
        "<li>Sensitivity, specificity, flag rates: exact (Clopper–Pearson) 95% intervals on the number of patients "
        "behind them (conservative when patients have several films).</li>"
        "<li>Calibration bins: equal-width risk bins; observed share of COVID-19 films with its exact interval.</li>"
        "<li>Only COVID-19 and Normal films enter AUC, sensitivity, specificity, Brier and calibration; other "
        "findings are shown by their flag rate.</li></ul>",
        "<h2>Sign-off</h2>",
        '<table class="signoff"><tr><th>Reviewed by (name, role)</th><td></td></tr><tr><th>Decision</th><td>'
        "☐ use at this site &nbsp; ☐ use with the site calibration &nbsp; ☐ do not use</td></tr>"
        "<tr><th>Signature</th><td></td></tr><tr><th>Date</th><td></td></tr></table>",
        '<p class="small">Research use only. This tool supports, and does not replace, a radiologist\'s reading of the '
        "image. Not a medical device.</p>",
    ]
    return ("<!DOCTYPE html><html lang=\"en\"><head><meta charset=\"utf-8\">"
            f"<title>{escape(title)} — {escape(data['root'])}</title><style>{_CSS}</style>"
            f"<script type=\"text/javascript\">{get_plotlyjs()}</script></head><body>"
            + "\n".join(sections) + "</body></html>")


def write_html_report(report: dict, path: str | os.PathLike) -> Path:
    """Write :func:`render_html_report` to ``path`` (folders created)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(render_html_report(report), encoding="utf-8")
    return path
