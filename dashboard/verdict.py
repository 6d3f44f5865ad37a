"""The verdict panel of the Review page: the risk, the flag, and — where the verdict is read — how far to trust it:
the validation status for this site, the spread of the four models, and the models' known limits.

No colour here reads as "safe": a flag is red, a risk below the threshold is plain grey, because a low risk from
models that failed the cross-hospital check does not rule COVID-19 out.
"""

from __future__ import annotations

import streamlit as st

from core.evaluation.report import EvaluationReport
from core.triage.model import Prediction, TriageModel
from core.triage.reliability import (
    ScoreReference,
    known_limits,
    risk_spread,
    score_reference,
    validation_status,
)
from dashboard.reading import draw_reading


def show_verdict(prediction: Prediction, model: TriageModel, source_evaluation: EvaluationReport | None) -> None:
    """Risk, flag and threshold, then the reliability lines (validation status, uncertainty, known limits)."""
    draw_reading(prediction)
    st.metric("COVID-19 risk (calibrated consensus)", f"{100 * prediction.risk:.0f}%")
    if prediction.flagged:
        st.markdown("### :red[FLAGGED] — risk at or above the flag threshold")
    else:
        st.markdown("### :gray[Not flagged] — risk below the flag threshold, which does not rule COVID-19 out")
    target = model.report.get("consensus", {}).get("target_sensitivity")
    aim = f", chosen to catch {target:.0%} of COVID-19 films in training" if target else ""
    st.caption(f"Flag threshold {100 * prediction.threshold:.1f}%{aim}.")
    show_reliability(prediction, model, source_evaluation)


def show_reliability(prediction: Prediction, model: TriageModel, source_evaluation: EvaluationReport | None) -> None:
    """The three lines a reader needs before acting on the verdict."""
    status = validation_status(prediction)
    st.markdown(f"**Validation:** {status}", help="Which site profile's local validation produced this operating "
                "point. Until one is active for this site, no number on this screen has been checked here.")
    spread = risk_spread(model, prediction)
    if spread is not None:
        line = f"**Uncertainty:** {spread.describe()}."
        (st.warning if spread.straddles_threshold else st.markdown)(line)
    st.caption(known_limits(model.report, source_evaluation))


def score_line(severity: dict, reference: ScoreReference | None) -> str:
    """``Corona score 35 / 100 (±8)``, with the retake uncertainty when known."""
    score = f"Corona score {severity['corona_score']:.0f} / 100"
    if reference is not None and reference.uncertainty is not None:
        score += f" (±{reference.uncertainty:.0f})"
    return score


def show_score_context(prediction: Prediction, model: TriageModel) -> None:
    """The corona score against the normal range of several sites, with its test–retest uncertainty."""
    if prediction.severity is None:
        return
    reference = score_reference(model.report)
    st.metric("Corona score (lung-zone severity, 0–100)", score_line(prediction.severity, reference)
              .removeprefix("Corona score "))
    if reference is not None:
        st.caption(reference.describe() + ".")
    extent, opacity = prediction.severity.get("geographic_extent"), prediction.severity.get("opacity")
    if extent is not None and opacity is not None:
        st.caption(f"On the experts' scales, if this is COVID-19 pneumonia: extent {extent:.1f} / 8, "
                   f"opacity {opacity:.1f} / 6.")
