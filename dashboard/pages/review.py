"""Review (landing page): upload chest X-rays, read the consensus risk, the four models and the corona score,
decide, and save the case to the worklist."""

from __future__ import annotations

import datetime as dt
import hashlib

import numpy as np
import pandas as pd
import streamlit as st

from core.lungs.zones import ZONE_NAMES
from core.triage.model import Prediction, TriageModel
from core.worklist.store import WorklistError
from dashboard import charts
from dashboard.overlay import overlay_rgb
from dashboard.state import (
    model_version,
    open_worklist,
    prediction_cache,
    require_model,
)

UPLOAD_TYPES = ["png", "jpg", "jpeg", "dcm", "dicom", "tif", "tiff"]
DECISIONS = ("Flag for quarantine follow-up", "Not flagged")
MAX_ZONE_GRADE = 3  # zone grades are 0–3 (strongest tint at 3)
KEEP_PREDICTIONS = 64  # bound the session's memory: older predictions are dropped first


def score_uploads(model: TriageModel, files: list) -> list[str]:
    """Score the uploads not scored before in this session; returns their cache keys in upload order."""
    cache = prediction_cache()
    version = model_version(model)
    keys = [f"{version}:{hashlib.sha256(f.getvalue()).hexdigest()}" for f in files]
    todo = [(key, f) for key, f in zip(keys, files) if key not in cache]
    if todo:
        bar = st.progress(0.0, text=f"scoring {len(todo)} image(s)…")
        results = model.predict_many([f.getvalue() for _, f in todo], [f.name for _, f in todo],
                                     progress=lambda fraction, message: bar.progress(fraction, text=message))
        bar.empty()
        cache.update({key: prediction for (key, _), prediction in zip(todo, results)})
        for old in [k for k in cache if k not in keys][:max(len(cache) - KEEP_PREDICTIONS, 0)]:
            del cache[old]
    return keys


def batch_table(predictions: dict[str, Prediction]) -> pd.DataFrame:
    rows = [{"key": key, "file": p.file, "risk %": None if p.risk is None else round(100 * p.risk, 1),
             "verdict": "unreadable" if p.error else ("FLAGGED" if p.flagged else "not flagged"),
             "corona score": None if p.severity is None else p.severity.get("corona_score"),
             "warnings": len(p.warnings), "patient id": p.metadata.get("patient_id", "")}
            for key, p in predictions.items()]
    return pd.DataFrame(rows).sort_values("risk %", ascending=False, na_position="last").reset_index(drop=True)


def show_image(prediction: Prediction) -> None:
    image = prediction.image
    if prediction.severity is None or prediction.lung_fields is None:
        st.image(image.to_uint8(), caption=f"{prediction.file} ({image.format}, {image.pixels.shape[1]}×"
                 f"{image.pixels.shape[0]} px)", width="stretch")
        return
    grades = prediction.severity.get("zones", {})
    values = [grades.get(name, np.nan) for name in ZONE_NAMES]
    rgb = overlay_rgb(image.pixels, prediction.lung_fields, zone_values=values, vmax=MAX_ZONE_GRADE)
    positions = charts.zone_label_positions(prediction.lung_fields.zones)
    labels = [(x, y, str(grades.get(ZONE_NAMES[zone - 1], "?"))) for zone, (x, y) in positions.items()]
    title = f"Corona score {prediction.severity['corona_score']:.0f} / 100 — zone grades 0–3"
    st.plotly_chart(charts.xray_figure(rgb, labels, title), key="review_xray", width="stretch")


def show_verdict(prediction: Prediction, target_sensitivity: float | None) -> None:
    st.metric("COVID-19 risk (consensus of the four models)", f"{100 * prediction.risk:.0f}%")
    if prediction.flagged:
        st.markdown("### :red[FLAGGED] — risk at or above the threshold")
    else:
        st.markdown("### :green[Not flagged] — risk below the threshold")
    aim = f", chosen for {target_sensitivity:.0%} sensitivity" if target_sensitivity else ""
    st.caption(f"Flag threshold {100 * prediction.threshold:.1f}%{aim} (out-of-fold on the training data).")
    if prediction.severity is not None:
        st.metric("Corona score (lung-zone severity)", f"{prediction.severity['corona_score']:.0f} / 100")


def show_details(prediction: Prediction) -> None:
    with st.expander("Features behind the decision"):
        st.caption("How much the consensus risk changes when each feature is set to its training median "
                   "(positive: the feature pushes towards COVID-19).")
        frame = pd.DataFrame(prediction.top_features)
        if not frame.empty:
            frame["effect"] = (100 * frame["effect"]).round(1).astype(str) + " pp"
        st.dataframe(frame, hide_index=True, width="stretch")
        if prediction.out_of_distribution is not None:
            st.caption(f"Distance to the training images: {prediction.out_of_distribution:.2f}× the usual "
                       "(above 1: unusual).")
    if prediction.severity is not None:
        with st.expander("Lung-zone severity"):
            zones = prediction.severity.get("zones", {})
            st.dataframe(pd.DataFrame({"zone": list(zones), "grade (0–3)": list(zones.values())}), hide_index=True)
            st.json({k: v for k, v in prediction.severity.items() if k != "zones"})


def study_date_of(prediction: Prediction) -> dt.date | None:
    try:
        return dt.date.fromisoformat(prediction.metadata.get("study_date") or "")
    except ValueError:
        return None


def save_form(key: str, prediction: Prediction, model: TriageModel) -> None:
    """Patient id, study date, the clinician's decision and a note; saves one worklist case or nothing."""
    saved = st.session_state.setdefault("review_saved", {})
    suffix = prediction.sha256[:16]
    with st.form(f"review_form_{suffix}"):
        st.markdown("#### Decision")
        left, right = st.columns(2)
        patient_id = left.text_input("Patient id (pseudonymous, no names)", key=f"review_patient_{suffix}",
                                     value=prediction.metadata.get("patient_id", ""))
        study_date = right.date_input("Study date", value=study_date_of(prediction), key=f"review_date_{suffix}",
                                      min_value=dt.date(1990, 1, 1), format="YYYY-MM-DD")
        offset = left.number_input("Days since symptom onset (optional)", value=None, step=1.0,
                                   key=f"review_offset_{suffix}")
        reviewer = right.text_input("Reviewer", key="review_reviewer")
        decision = st.radio("Your decision", DECISIONS, index=0 if prediction.flagged else 1, horizontal=True,
                            key=f"review_decision_{suffix}")
        note = st.text_area("Note", key=f"review_note_{suffix}", max_chars=4000)
        submitted = st.form_submit_button("Save to worklist", type="primary", disabled=key in saved)
    if key in saved:
        st.success(f"Saved to the worklist as case #{saved[key]}.")
    if not submitted:
        return
    store = open_worklist()
    if store is None:
        return
    severity = prediction.severity or {}
    try:
        case_id = store.add_case(
            patient_id=patient_id, image_name=prediction.file, image_sha256=prediction.sha256,
            risk=prediction.risk, flagged=decision == DECISIONS[0], threshold=prediction.threshold,
            per_model=prediction.per_model, corona_score=severity.get("corona_score"),
            zones=severity.get("zones"), study_date=study_date, offset_days=offset, reviewer=reviewer,
            note=note, model_version=model_version(model))
    except WorklistError as exc:
        st.error(f"Not saved: {exc}")
        return
    saved[key] = case_id
    st.rerun()  # redraw with the button disabled and the confirmation shown


def show_prediction(key: str, prediction: Prediction, model: TriageModel) -> None:
    if prediction.error is not None:
        st.error(f"{prediction.file}: {prediction.error}")
        return
    st.subheader(prediction.file)
    for warning in prediction.warnings:
        st.warning(warning)
    image_column, result_column = st.columns([3, 2])
    with image_column:
        show_image(prediction)
    with result_column:
        show_verdict(prediction, model.report.get("consensus", {}).get("target_sensitivity"))
        st.plotly_chart(charts.per_model_bars(prediction.per_model, prediction.risk, prediction.threshold),
                        key="review_models", width="stretch")
    show_details(prediction)
    save_form(key, prediction, model)


st.title("Review chest X-rays")
model = require_model()
uploads = st.file_uploader("Chest X-rays: PNG, JPEG, TIFF or DICOM (several at once for a batch)",
                           type=UPLOAD_TYPES, accept_multiple_files=True, key="review_uploader")
if uploads:
    st.session_state["review_batch"] = score_uploads(model, uploads)
elif st.session_state.get("review_batch"):
    # The uploader forgets its files when another page is shown; the scored batch is kept in the session.
    st.caption("Showing your last batch. Upload images to replace it.")
    if st.button("Clear the batch", key="review_clear"):
        st.session_state["review_batch"] = []
        st.rerun()
batch_keys = [k for k in st.session_state.get("review_batch", []) if k in prediction_cache()]
if not batch_keys:
    st.info("Upload one or more frontal chest X-rays to see the COVID-19 risk.")
    st.stop()

batch = {key: prediction_cache()[key] for key in dict.fromkeys(batch_keys)}
selected = batch_keys[0]
if len(batch) > 1:
    table = batch_table(batch)
    flagged = int((table["verdict"] == "FLAGGED").sum())
    for prediction in batch.values():
        if prediction.error is not None:
            st.error(f"{prediction.file}: {prediction.error}")
    st.markdown(f"**{len(table)} images**, {flagged} flagged, highest risk first.")
    st.dataframe(table.drop(columns="key"), hide_index=True, width="stretch", column_config={
        "risk %": st.column_config.ProgressColumn("risk %", min_value=0, max_value=100, format="%.1f%%")})
    labels = dict(zip(table["key"], table["file"] + "  —  " + table["verdict"]))
    selected = st.selectbox("Image to review", list(labels), format_func=labels.get, key="review_selected")
show_prediction(selected, batch[selected], model)
