"""ROC curves: the consensus the app flags with, at its own threshold, beside the four models (each at its own
probability 0.5); merged (pooled over repeats, threshold on hover) and vertically averaged (mean ± sd over
repeats), before and after feature selection; with the cross-hospital check where the curves are read."""

from __future__ import annotations

import math

import numpy as np
import streamlit as st

from core.evaluation.consensus import CONSENSUS, has_consensus
from core.learn.models import MODEL_NAMES, STAGES
from dashboard import charts
from dashboard.state import STAGE_LABELS, choose_report, cross_hospital_warning

STAGE_DASH = {"before": "dot", "after": "solid"}
CURVE_NAMES = (CONSENSUS, *MODEL_NAMES)


def _auc_text(value: float, sd: float | None = None) -> str:
    if math.isnan(value):
        return "AUC n/a"
    return f"AUC {value:.3f}" + ("" if sd is None or math.isnan(sd) else f" ± {sd:.3f}")


def operating_point_text(label: str, model: str, point: dict) -> str:
    rule = (f"flag threshold {100 * point['threshold']:.0f}% (what the app uses)" if model == CONSENSUS
            else f"its own probability {point['threshold']:g}")
    return f"{label}: {rule}, sensitivity {point['tpr']:.3f}, specificity {1 - point['fpr']:.3f}"


def build_curves(report, models: list[str], stages: list[str], merged: bool, averaged: bool,
                 show_points: bool) -> tuple[list[dict], list[dict]]:
    curves, points = [], []
    for stage in stages:
        for model in models:
            try:
                result = report.result(model, stage)
            except KeyError:  # the consensus exists at the saved models' stage only
                continue
            colour, dash = charts.model_colour(model), STAGE_DASH[stage]
            label = f"{model} ({stage})" if len(stages) > 1 else model
            if merged and result.roc["merged"]["fpr"]:
                roc = result.roc["merged"]
                thresholds = np.clip(np.asarray(roc["thresholds"], dtype=float), 0.0, 1.0)  # first is +inf
                curves.append({"name": f"{label} merged, {_auc_text(result.pooled['AUC_pooled'])}",
                               "fpr": roc["fpr"], "tpr": roc["tpr"], "thresholds": thresholds,
                               "colour": colour, "dash": dash, "width": 4 if model == CONSENSUS else 2})
            if averaged:
                roc = result.roc["averaged"]
                curves.append({"name": f"{label} averaged, {_auc_text(result.mean('AUC'), result.sd('AUC'))}",
                               "fpr": roc["fpr"], "tpr": roc["tpr_mean"], "colour": colour,
                               "dash": "dash" if merged else dash})
            if show_points:
                point = result.roc["operating_point"]
                name = f"{label} at the flag threshold" if model == CONSENSUS else f"{label} operating point"
                points.append({"name": name, "fpr": point["fpr"], "tpr": point["tpr"], "colour": colour,
                               "symbol": "star" if model == CONSENSUS else "x",
                               "text": operating_point_text(label, model, point)})
    return curves, points


st.title("ROC curves")
cross_hospital_warning()
report = choose_report("roc_report")
if report is None:
    st.stop()
if not has_consensus(report):
    st.info("This evaluation has no consensus result (it was saved before the consensus was scored, or run with "
            "other settings than the saved models): only the four models are shown. Retrain, or run an evaluation "
            "with the saved models' settings on Model comparison, to see the consensus at its threshold.")
available_stages = [s for s in STAGES if any(r.stage == s for r in report.results)]
available_models = [m for m in CURVE_NAMES if any(r.model == m for r in report.results)]
left, middle, right = st.columns(3)
stages = left.multiselect("Feature selection", available_stages, default=available_stages[-1:],
                          format_func=STAGE_LABELS.get, key="roc_stages")
models = middle.multiselect("Models", available_models, default=available_models, key="roc_models")
with right:
    merged = st.toggle("Merged over repeats (threshold on hover)", value=True, key="roc_merged")
    averaged = st.toggle("Vertically averaged (mean over repeats)", value=False, key="roc_averaged")
    show_points = st.toggle("Operating points", value=True, key="roc_points")
if not stages or not models or not (merged or averaged):
    st.info("Choose at least one stage, one model and one curve type.")
    st.stop()
curves, points = build_curves(report, models, stages, merged, averaged, show_points)
st.plotly_chart(charts.roc_figure(curves, points), key="roc_figure", width="stretch")
st.caption("Consensus: the mean of the four models' probabilities, calibrated, flagged at the saved threshold — what "
           "the app does with a film (star). Each model's point (×) is its own prediction at probability 0.5, which "
           "the app never uses. Merged: the test predictions of all repeats pooled into one curve (AUC of the pooled "
           "scores). Averaged: each repeat's curve interpolated on a common false-positive-rate grid and averaged "
           "(AUC: mean ± sd over repeats).")
