"""Plotly figures of a validation report: ROC with the operating point, reliability diagram, risk histograms.

Used by the HTML report (:mod:`core.validation.html`) and the dashboard's Site validation page. Each function takes
a part of :func:`core.validation.validate.validation_report` and returns a ``go.Figure``.
"""

from __future__ import annotations

import plotly.graph_objects as go

LABEL_COLOURS = {"COVID-19": "#c0392b", "Normal": "#2e86c1", "Pneumonia": "#ca6f1e"}
CURVE = "#2e86c1"  # visible on the printed (white) report and the dark dashboard alike
_OTHER_COLOURS = ("#7d3c98", "#117a65", "#7f8c8d", "#b7950b", "#5d6d7e", "#a04000")
_LAYOUT = dict(template="plotly_white", height=420, margin=dict(l=60, r=20, t=50, b=55),
               legend=dict(orientation="h", yanchor="bottom", y=-0.32, x=0))


def label_colour(label: str, index: int = 0) -> str:
    return LABEL_COLOURS.get(label, _OTHER_COLOURS[index % len(_OTHER_COLOURS)])


def roc_figure(figures: dict, title: str) -> go.Figure:
    """ROC curve of one binary question with its operating point (sensitivity and 1 − specificity with CIs)."""
    fig = go.Figure()
    fig.add_trace(go.Scatter(x=[0, 1], y=[0, 1], mode="lines", line=dict(dash="dot", color="#aaaaaa"),
                             name="chance", hoverinfo="skip"))
    roc = figures.get("roc")
    if roc:
        auc = figures["AUC"]
        low, high = auc["ci"]
        name = f"ROC, AUC {auc['value']:.3f}" + (f" (95% CI {low:.3f}–{high:.3f})" if low is not None else "")
        fig.add_trace(go.Scatter(x=roc["fpr"], y=roc["tpr"], mode="lines", name=name, line=dict(color=CURVE),
                                 customdata=roc["thresholds"],
                                 hovertemplate="1 − specificity %{x:.3f}<br>sensitivity %{y:.3f}<br>"
                                               "threshold %{customdata:.3f}<extra></extra>"))
    point = figures.get("operating_point")
    if point and point["sensitivity"]["value"] is not None and point["specificity"]["value"] is not None:
        sens, spec = point["sensitivity"], point["specificity"]
        x = 1 - spec["value"]
        fig.add_trace(go.Scatter(
            x=[x], y=[sens["value"]], mode="markers", marker=dict(size=12, color="#c0392b", symbol="diamond"),
            name=f"flag threshold {100 * point['threshold']:.1f}%",
            error_y=dict(type="data", symmetric=False, array=[sens["ci"][1] - sens["value"]],
                         arrayminus=[sens["value"] - sens["ci"][0]], color="#c0392b"),
            error_x=dict(type="data", symmetric=False, array=[(1 - spec["ci"][0]) - x],
                         arrayminus=[x - (1 - spec["ci"][1])], color="#c0392b"),
            hovertemplate="sensitivity %{y:.3f}<br>1 − specificity %{x:.3f}<extra>operating point</extra>"))
    fig.update_layout(title=title, xaxis_title="1 − specificity (false-positive rate)",
                      yaxis_title="sensitivity (true-positive rate)", **_LAYOUT)
    fig.update_xaxes(range=[-0.02, 1.02], constrain="domain")
    fig.update_yaxes(range=[-0.02, 1.02], scaleanchor="x", scaleratio=1)
    return fig


def reliability_figure(bins: list[dict], title: str, risk_name: str = "predicted risk") -> go.Figure:
    """Mean predicted risk against the observed share per bin, with exact CIs; marker area ∝ films in the bin."""
    fig = go.Figure()
    fig.add_trace(go.Scatter(x=[0, 1], y=[0, 1], mode="lines", line=dict(dash="dot", color="#aaaaaa"),
                             name="perfect calibration", hoverinfo="skip"))
    if bins:
        largest = max(b["n"] for b in bins)
        fig.add_trace(go.Scatter(
            x=[b["mean_risk"] for b in bins], y=[b["observed"] for b in bins], mode="markers+lines",
            name="observed share (95% CI)", line=dict(color=CURVE),
            marker=dict(size=[8 + 22 * (b["n"] / largest) ** 0.5 for b in bins], color=CURVE,
                        line=dict(color="#1b2631", width=1)),
            error_y=dict(type="data", symmetric=False, array=[b["observed_ci"][1] - b["observed"] for b in bins],
                         arrayminus=[b["observed"] - b["observed_ci"][0] for b in bins], color="#5d6d7e"),
            customdata=[[b["n"], b["range"][0], b["range"][1]] for b in bins],
            hovertemplate="bin %{customdata[1]:.1f}–%{customdata[2]:.1f}: %{customdata[0]} films<br>"
                          "mean risk %{x:.3f}<br>observed %{y:.3f}<extra></extra>"))
    fig.update_layout(title=title, xaxis_title=f"mean {risk_name} in the bin", yaxis_title="observed share",
                      **_LAYOUT)
    fig.update_xaxes(range=[-0.02, 1.02], constrain="domain")
    fig.update_yaxes(range=[-0.05, 1.05], scaleanchor="x", scaleratio=1)
    return fig


def histogram_figure(distributions: dict[str, dict], title: str, threshold: float | None = None,
                     risk_name: str = "risk") -> go.Figure:
    """Risk histograms per label (share of the label's films per bin), with the flag threshold."""
    fig = go.Figure()
    for index, (label, dist) in enumerate(distributions.items()):
        edges, counts = dist["histogram"]["edges"], dist["histogram"]["counts"]
        total = max(sum(counts), 1)
        centres = [(a + b) / 2 for a, b in zip(edges[:-1], edges[1:])]
        fig.add_trace(go.Bar(x=centres, y=[c / total for c in counts], width=edges[1] - edges[0],
                             name=f"{label} ({dist['n']} films)", marker_color=label_colour(label, index),
                             opacity=0.55, customdata=counts,
                             hovertemplate=f"{label}<br>{risk_name} %{{x:.2f}}: %{{customdata}} films"
                                           "<extra></extra>"))
    if threshold is not None:
        fig.add_vline(x=threshold, line=dict(color="#808b96", dash="dash"),
                      annotation_text=f"threshold {100 * threshold:.1f}%", annotation_position="top")
    fig.update_layout(title=title, barmode="overlay", xaxis_title=risk_name, yaxis_title="share of the label's films",
                      **_LAYOUT)
    fig.update_xaxes(range=[0, 1])
    return fig


def report_figures(report: dict) -> dict[str, go.Figure]:
    """Every figure of a validation report, by name (pneumonia ones only when the predictions allow)."""
    covid = report["covid"]
    figures = {
        "roc": roc_figure(covid, "COVID-19 vs Normal: ROC with the flag threshold"),
        "reliability": reliability_figure(covid["calibration"], "Reliability: COVID-19 risk vs observed share"),
        "histograms": histogram_figure(report["score_distributions"], "COVID-19 risk by label",
                                       report.get("threshold"), "COVID-19 risk"),
    }
    pneumonia = report.get("pneumonia", {})
    if pneumonia.get("available"):
        if pneumonia.get("roc"):
            figures["pneumonia_roc"] = roc_figure(pneumonia, "Pneumonia vs Normal: ROC")
        figures["pneumonia_reliability"] = reliability_figure(pneumonia["calibration"],
                                                              "Reliability: pneumonia probability", "probability")
        figures["pneumonia_histograms"] = histogram_figure(
            pneumonia["score_distributions"], "Pneumonia probability by label",
            pneumonia.get("operating_point", {}).get("threshold"), "pneumonia probability")
    return figures
