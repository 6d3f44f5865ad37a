"""Plotly figure builders for the pages: drawing only, no science (every number comes from ``core``)."""

from __future__ import annotations

import base64
import io
from collections.abc import Mapping, Sequence

import numpy as np
import pandas as pd
import plotly.graph_objects as go
from PIL import Image
from plotly.subplots import make_subplots

from dashboard.overlay import DISPLAY_MAX_SIDE

# Colour-blind-safe (Okabe–Ito) colours, one per model, stable across pages.
MODEL_COLOURS = {"SVM": "#56B4E9", "Random Forest": "#009E73", "Neural Network": "#E69F00", "kNN": "#CC79A7",
                 "Consensus": "#F0F0F0"}
STAGE_PATTERNS = {"before": "", "after": "/"}
FLAG_COLOUR, CLEAR_COLOUR = "#FF6B6B", "#4CC38A"
FILM_FIGURE_WIDTH = 1100  # px: the viewer spans the main column of a wide layout
_LAYOUT = dict(template="plotly_dark", margin=dict(l=10, r=10, t=40, b=10), font=dict(size=13))


def model_colour(name: str) -> str:
    return MODEL_COLOURS.get(name, "#BBBBBB")


def per_model_bars(per_model: Mapping[str, float], risk: float, threshold: float) -> go.Figure:
    """The four models' P(COVID-19) beside the calibrated consensus, with the consensus flag threshold."""
    names = [*per_model, "Consensus"]
    values = [*per_model.values(), risk]
    figure = go.Figure(go.Bar(
        x=names, y=[100 * v for v in values], marker_color=[model_colour(n) for n in names],
        text=[f"{100 * v:.0f}%" for v in values], textposition="outside",
        hovertemplate="%{x}: %{y:.1f}%<extra></extra>"))
    figure.add_hline(y=100 * threshold, line_dash="dash", line_color=FLAG_COLOUR)
    figure.update_layout(**_LAYOUT, height=300, yaxis=dict(title="P(COVID-19) %", range=[0, 112]),
                         title=f"Per-model probability and consensus<br><sup>dashed: flag threshold "
                               f"{100 * threshold:.0f}% (consensus)</sup>")
    return figure


def zone_label_positions(zones: np.ndarray) -> dict[int, tuple[float, float]]:
    """Where to write each zone's label: the centroid of zone ``k`` (1..6) as fractions (x, y) of width and height.

    ``zones`` is the (h, w) int8 zone map (any resolution; 0 = outside the lungs).
    """
    height, width = zones.shape
    positions = {}
    for zone in np.unique(zones):
        if zone <= 0:
            continue
        rows, cols = np.nonzero(zones == zone)
        positions[int(zone)] = ((cols.mean() + 0.5) / width, (rows.mean() + 0.5) / height)
    return positions


def png_data_uri(rgb: np.ndarray, max_side: int = DISPLAY_MAX_SIDE) -> tuple[str, tuple[int, int]]:
    """The image as a PNG data URI, downsized to ``max_side`` for display; returns it and its (H, W)."""
    picture = Image.fromarray(rgb)
    picture.thumbnail((max_side, max_side), Image.Resampling.LANCZOS)
    buffer = io.BytesIO()
    picture.save(buffer, format="PNG", optimize=False, compress_level=1)  # speed over size: it is sent once
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode("ascii"), \
        (picture.height, picture.width)


def film_figure(panels: Sequence[tuple[str, np.ndarray]], labels: Sequence[tuple[float, float, str]] = (),
                legend: Sequence[tuple[str, str]] = (), width: int = FILM_FIGURE_WIDTH) -> go.Figure:
    """One film, or the same film twice side by side (original | overlay), zoomed together, with R/L markers.

    Parameters
    ----------
    panels : sequence of (title, rgb)
        (H, W, 3) uint8 pictures of the same size; the picture travels as a compressed PNG (a DICOM can be
        3000 px wide; raw pixel lists would be megabytes).
    labels : sequence of (x, y, text)
        Text at fractional positions of the last panel (e.g. each zone's grade at its centroid).
    legend : sequence of (colour, text)
        Drawn under the panels, e.g. the zone-grade colours.
    width : int
        Expected width of the figure on the page (px): the height follows from it and the films' aspect ratio.

    The patient's right is on the image left (radiological convention): "R" is drawn top left, "L" top right.
    Zoom: drag a box on either panel (both follow), scroll to zoom, double-click to reset.
    """
    figure = make_subplots(rows=1, cols=len(panels), horizontal_spacing=0.01,
                           subplot_titles=[title for title, _ in panels])
    for column, (_, rgb) in enumerate(panels, start=1):
        uri, (shown_height, shown_width) = png_data_uri(rgb)
        figure.add_trace(go.Image(source=uri, hoverinfo="skip"), row=1, col=column)
        axis = "" if column == 1 else str(column)
        for x, text, anchor in ((0.03, "R", "left"), (0.97, "L", "right")):
            figure.add_annotation(x=x * shown_width, y=0.04 * shown_height, xref=f"x{axis}", yref=f"y{axis}",
                                  text=f"<b>{text}</b>", showarrow=False, xanchor=anchor, yanchor="top",
                                  font=dict(size=22, color="white"), bgcolor="rgba(0,0,0,0.6)")
        if column == len(panels):
            for x, y, text in labels:
                figure.add_annotation(x=x * shown_width, y=y * shown_height, xref=f"x{axis}", yref=f"y{axis}",
                                      text=text, showarrow=False, font=dict(size=18, color="white"),
                                      bgcolor="rgba(0,0,0,0.55)")
        if column > 1:  # zoom and pan the two panels together
            figure.update_xaxes(matches="x", row=1, col=column)
            figure.update_yaxes(matches="y", row=1, col=column)
    for index, (colour, text) in enumerate(legend):
        figure.add_annotation(x=index / max(len(legend), 1), y=-0.01, xref="paper", yref="paper", xanchor="left",
                              yanchor="top", showarrow=False, align="left",
                              text=f"<span style='color:{colour}'>■</span> {text}", font=dict(size=13))
    figure.update_xaxes(visible=False)
    figure.update_yaxes(visible=False, scaleanchor="x")
    film_height, film_width = panels[0][1].shape[:2]
    bottom = 40 if legend else 0
    height = round(width / len(panels) * film_height / film_width) + 30 + bottom
    figure.update_layout(**{**_LAYOUT, "margin": dict(l=0, r=0, t=30, b=bottom)}, height=min(height, 1100),
                         dragmode="zoom")
    return figure


def metric_bars(table: pd.DataFrame, metric: str, title: str | None = None) -> go.Figure:
    """Grouped bars: one group per model, one bar per stage (before/after feature selection), ± sd whiskers.

    ``table`` has columns ``model``, ``stage``, ``metric`` and optionally ``metric + "_sd"``; ``title`` is the
    metric's name for the reader (default ``metric``).
    """
    title = title or metric
    figure = go.Figure()
    for stage, rows in table.groupby("stage", sort=False):
        sd = rows.get(f"{metric}_sd")
        figure.add_trace(go.Bar(
            name=str(stage), x=rows["model"], y=rows[metric],
            error_y=dict(type="data", array=sd.to_numpy(), visible=True) if sd is not None else None,
            marker_pattern_shape=STAGE_PATTERNS.get(str(stage).split()[0], ""),
            marker_color=[model_colour(m) for m in rows["model"]],
            hovertemplate="%{x} (" + str(stage) + "): %{y:.3f}<extra></extra>"))
    figure.update_layout(**_LAYOUT, barmode="group", height=380, title=title,
                         yaxis=dict(title=title, range=[0, 1.05]), legend_title_text="feature selection")
    return figure


def roc_figure(curves: Sequence[dict], operating_points: Sequence[dict] = ()) -> go.Figure:
    """ROC curves with the threshold on hover, plus marked operating points.

    ``curves``: dicts with ``name``, ``fpr``, ``tpr``, optional ``thresholds``, ``colour``, ``dash``, ``width``; points are
    joined by straight lines (ties between the classes give diagonal segments, as in sklearn's ``roc_curve``).
    ``operating_points``: dicts with ``name``, ``fpr``, ``tpr``, optional ``colour``, ``symbol`` and ``text``.
    """
    figure = go.Figure()
    figure.add_trace(go.Scatter(x=[0, 1], y=[0, 1], mode="lines", line=dict(dash="dot", color="#666666"),
                                name="chance", hoverinfo="skip"))
    for curve in curves:
        thresholds = curve.get("thresholds")
        hover = ("FPR %{x:.3f}, TPR %{y:.3f}" + (", threshold %{customdata:.3f}" if thresholds is not None else "")
                 + "<extra>" + curve["name"] + "</extra>")
        figure.add_trace(go.Scatter(
            x=curve["fpr"], y=curve["tpr"], mode="lines", name=curve["name"], customdata=thresholds,
            line=dict(color=curve.get("colour"), dash=curve.get("dash", "solid"), width=curve.get("width", 2)),
            hovertemplate=hover))
    for point in operating_points:
        figure.add_trace(go.Scatter(
            x=[point["fpr"]], y=[point["tpr"]], mode="markers", name=point["name"],
            marker=dict(size=16 if point.get("symbol") == "star" else 12, symbol=point.get("symbol", "x"),
                        color=point.get("colour", "white"), line=dict(width=1)),
            hovertemplate=point.get("text", "FPR %{x:.3f}, TPR %{y:.3f}") + "<extra></extra>"))
    # square plot: equal scales on both axes, the x axis shrinks to fit instead of extending past [0, 1]
    figure.update_layout(**_LAYOUT, height=600,
                         xaxis=dict(title="1 − specificity (FPR)", range=[-0.01, 1.01], constrain="domain"),
                         yaxis=dict(title="Sensitivity (TPR)", range=[-0.01, 1.01], scaleanchor="x",
                                    constrain="domain"),
                         legend=dict(yanchor="bottom", y=0.02, xanchor="right", x=0.98))
    return figure


def confusion_heatmap(matrix: np.ndarray, labels: Sequence[str], title: str, value_format: str = ".0f",
                      colour_scale: str = "Blues") -> go.Figure:
    """An annotated (actual × predicted) heatmap of a square matrix."""
    matrix = np.asarray(matrix, dtype=float)
    text = [[format(v, value_format) for v in row] for row in matrix]
    figure = go.Figure(go.Heatmap(
        z=matrix, x=list(labels), y=list(labels), text=text, texttemplate="%{text}", textfont=dict(size=18),
        colorscale=colour_scale, showscale=False,
        hovertemplate="actual %{y}, predicted %{x}: %{text}<extra></extra>"))
    figure.update_layout(**_LAYOUT, height=320, title=title, xaxis=dict(title="predicted", side="bottom"),
                         yaxis=dict(title="actual", autorange="reversed"))
    return figure


def progression_figure(series: pd.DataFrame, x: str, x_title: str) -> go.Figure:
    """Corona score (0–100) and consensus risk (as %) of one patient over time, on one 0–100 axis."""
    figure = go.Figure()
    if "corona_score" in series and series["corona_score"].notna().any():
        figure.add_trace(go.Scatter(x=series[x], y=series["corona_score"], mode="lines+markers", name="corona score",
                                    line=dict(color=FLAG_COLOUR, width=3),
                                    hovertemplate="%{x}: corona score %{y:.0f}<extra></extra>"))
    figure.add_trace(go.Scatter(x=series[x], y=100 * series["risk"], mode="lines+markers", name="COVID-19 risk %",
                                line=dict(color=MODEL_COLOURS["SVM"], dash="dash"),
                                hovertemplate="%{x}: risk %{y:.0f}%<extra></extra>"))
    integer_axis = pd.api.types.is_integer_dtype(series[x])
    figure.update_layout(**_LAYOUT, height=380, xaxis=dict(title=x_title, dtick=1 if integer_axis else None),
                         yaxis=dict(title="0–100", range=[0, 105]), showlegend=True,
                         legend=dict(orientation="h", y=1.1))
    return figure
