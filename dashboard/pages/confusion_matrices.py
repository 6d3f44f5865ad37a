"""Confusion matrices of the four models (test predictions pooled over repeats): counts, proportion of predicted,
proportion of actual, before and after feature selection."""

from __future__ import annotations

import streamlit as st

from core.learn.models import MODEL_NAMES, STAGES
from dashboard import charts
from dashboard.state import STAGE_LABELS, choose_report

VIEWS = {"counts": ("counts", ".0f", "Blues"),
         "proportion of predicted": ("proportion_of_predicted", ".1%", "Greens"),
         "proportion of actual": ("proportion_of_actual", ".1%", "Oranges")}

st.title("Confusion matrices")
report = choose_report("confusion_report")
if report is None:
    st.stop()
available_stages = [s for s in STAGES if any(r.stage == s for r in report.results)]
left, right = st.columns(2)
stage = left.radio("Feature selection", available_stages, index=len(available_stages) - 1,
                   format_func=STAGE_LABELS.get, horizontal=True, key="confusion_stage")
view = right.radio("Show", list(VIEWS), horizontal=True, key="confusion_view")
field, value_format, colours = VIEWS[view]
models = [m for m in MODEL_NAMES if any(r.model == m and r.stage == stage for r in report.results)]
columns = st.columns(2)
for index, model in enumerate(models):
    confusion = report.result(model, stage).confusion
    figure = charts.confusion_heatmap(confusion[field], confusion.get("labels", ["Normal", "COVID-19"]),
                                      title=model, value_format=value_format, colour_scale=colours)
    columns[index % 2].plotly_chart(figure, key=f"confusion_{index}", width="stretch")
st.caption("Rows: actual class; columns: predicted class (each model's own prediction, probability 0.5), "
           f"pooled over the {report.repeats} repeats' test images. Proportion of predicted: each column sums to "
           "100 %; proportion of actual: each row sums to 100 %.")
