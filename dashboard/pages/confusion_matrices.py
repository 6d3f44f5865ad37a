"""Confusion matrices (test predictions pooled over repeats): the consensus at the flag threshold the app uses, then
the four models at their own probability 0.5; counts, proportion of predicted, proportion of actual; before and
after feature selection."""

from __future__ import annotations

import streamlit as st

from core.evaluation.consensus import CONSENSUS, has_consensus
from core.learn.models import MODEL_NAMES, STAGES
from dashboard import charts
from dashboard.state import STAGE_LABELS, choose_report, cross_hospital_warning

VIEWS = {"counts": ("counts", ".0f", "Blues"),
         "proportion of predicted": ("proportion_of_predicted", ".1%", "Greens"),
         "proportion of actual": ("proportion_of_actual", ".1%", "Oranges")}


def matrix_title(result) -> str:
    if result.model == CONSENSUS:
        return f"Consensus at the flag threshold {100 * result.roc['operating_point']['threshold']:.0f}% (the app)"
    return f"{result.model} (probability 0.5)"


st.title("Confusion matrices")
cross_hospital_warning()
report = choose_report("confusion_report")
if report is None:
    st.stop()
if not has_consensus(report):
    st.info("This evaluation has no consensus result (saved before the consensus was scored, or run with other "
            "settings than the saved models): only the four models at probability 0.5 are shown.")
available_stages = [s for s in STAGES if any(r.stage == s for r in report.results)]
left, right = st.columns(2)
stage = left.radio("Feature selection", available_stages, index=len(available_stages) - 1,
                   format_func=STAGE_LABELS.get, horizontal=True, key="confusion_stage")
view = right.radio("Show", list(VIEWS), horizontal=True, key="confusion_view")
field, value_format, colours = VIEWS[view]
results = [r for name in (CONSENSUS, *MODEL_NAMES) for r in report.results if r.model == name and r.stage == stage]
columns = st.columns(2)
for index, result in enumerate(results):
    confusion = result.confusion
    figure = charts.confusion_heatmap(confusion[field], confusion.get("labels", ["Normal", "COVID-19"]),
                                      title=matrix_title(result), value_format=value_format, colour_scale=colours)
    columns[index % 2].plotly_chart(figure, key=f"confusion_{index}", width="stretch")
st.caption("Rows: actual class; columns: predicted class, pooled over the "
           f"{report.repeats} repeats' test images. The consensus flags at the saved threshold, as the app does; "
           "each model alone predicts at probability 0.5. Proportion of predicted: each column sums to 100 %; "
           "proportion of actual: each row sums to 100 %.")
