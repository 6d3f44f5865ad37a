"""Review (landing page): upload chest X-rays; for each film read the risk together with how far to trust it, look
at the film (Window/Level, zoom, overlay), check or correct the zone grades, decide, and save the case."""

from __future__ import annotations

import datetime as dt
import hashlib
from collections.abc import Sequence

import pandas as pd
import streamlit as st

from core.features.describe import explain_effects
from core.lungs.zones import ZONE_NAMES
from core.triage.model import Prediction, TriageModel
from core.worklist.review_data import MAX_ZONE_GRADE, thumbnail_png, zone_label
from core.worklist.store import WorklistError
from dashboard import charts
from dashboard.identity import current_reviewer, require_reviewer_note
from dashboard.state import (
    default_evaluations,
    model_version,
    models_present,
    open_worklist,
    prediction_cache,
    preload_model,
    require_model,
)
from dashboard.text import plain
from dashboard.verdict import show_score_context, show_verdict
from dashboard.viewer import GRADE_WORDS, film_viewer

UPLOAD_TYPES = ["png", "jpg", "jpeg", "dcm", "dicom", "tif", "tiff"]
DECISIONS = ("Flag for quarantine follow-up", "Not flagged")
KEEP_PREDICTIONS = 64  # bound the session's memory: older predictions are dropped first
SCORED, REFUSED, UNREADABLE = "scored", "refused", "unreadable"


def outcome(prediction: Prediction) -> str:
    """Scored; refused (read, but not a frontal chest film: no risk on purpose); or unreadable (not an image)."""
    if prediction.error is None:
        return SCORED
    return REFUSED if prediction.image is not None else UNREADABLE


def problem_message(prediction: Prediction) -> str:
    """The error once, naming the file once (core's messages already start with the file name)."""
    error = prediction.error or ""
    return error if error.startswith(prediction.file) else f"{prediction.file}: {error}"


class UploadContents(Sequence):
    """The bytes of each upload, copied out only when its film is scored (not the whole batch at once)."""

    def __init__(self, files: list):
        self.files = files

    def __len__(self) -> int:
        return len(self.files)

    def __getitem__(self, index: int) -> bytes:
        return self.files[index].getvalue()


def score_uploads(model: TriageModel, files: list, table_slot) -> list[str]:
    """Score the uploads not scored before in this session, as many at a time as the server has threads, redrawing
    the batch table after each group (the first results show while the rest are scored); returns the cache keys in
    upload order."""
    cache = prediction_cache()
    version = model_version(model)
    keys = [f"{version}:{hashlib.sha256(f.getvalue()).hexdigest()}" for f in files]
    todo = [(key, f) for key, f in zip(keys, files) if key not in cache]
    done = 0
    for group in model.predict_groups(UploadContents([f for _, f in todo]), [f.name for _, f in todo]):
        for (key, _), prediction in zip(todo[done:done + len(group)], group):
            cache[key] = prediction
        done += len(group)
        if len(files) > 1:
            scored = {k: cache[k] for k in dict.fromkeys(keys) if k in cache}
            with table_slot.container():
                st.caption(f"Scored {done} of {len(todo)}…" if done < len(todo) else "All films scored.")
                draw_batch_table(batch_table(scored, {}))
    for old in [k for k in cache if k not in keys][:max(len(cache) - KEEP_PREDICTIONS, 0)]:
        del cache[old]
    return keys


def batch_table(predictions: dict[str, Prediction], saved: dict[str, int]) -> pd.DataFrame:
    """One row per film, highest risk first; refused and unreadable films last, each saying so."""
    rows = [{"key": key, "file": p.file, "patient id": p.metadata.get("patient_id", ""),
             "risk %": None if p.risk is None else round(100 * p.risk, 1),
             "verdict": {SCORED: "FLAGGED" if p.flagged else "not flagged", REFUSED: "refused: not scored",
                         UNREADABLE: "unreadable file"}[outcome(p)],
             "corona score": None if p.severity is None else round(p.severity.get("corona_score")),
             "warnings": len(p.warnings), "saved": f"case #{saved[p.sha256]}" if p.sha256 in saved else ""}
            for key, p in predictions.items()]
    return pd.DataFrame(rows).sort_values("risk %", ascending=False, na_position="last").reset_index(drop=True)


def draw_batch_table(table: pd.DataFrame) -> None:
    st.dataframe(table.drop(columns="key"), hide_index=True, width="stretch", column_config={
        "file": st.column_config.TextColumn("file", width="medium"),
        "patient id": st.column_config.TextColumn("patient id", width="small"),
        "risk %": st.column_config.ProgressColumn("risk %", min_value=0, max_value=100, format="%.1f%%",
                                                  width="small"),
        "verdict": st.column_config.TextColumn("verdict", width="small"),
        "corona score": st.column_config.NumberColumn("corona score", format="%d", width="small"),
        "warnings": st.column_config.NumberColumn("warnings", width="small"),
        "saved": st.column_config.TextColumn("saved", width="small",
                                             help="Already in the worklist (same image SHA-256)")})


def batch_summary(batch: dict[str, Prediction]) -> str:
    kinds = [outcome(p) for p in batch.values()]
    flagged = sum(p.flagged is True for p in batch.values())
    parts = [f"{kinds.count(SCORED)} scored ({flagged} flagged)"]
    parts += [f"{kinds.count(kind)} {kind}" for kind in (REFUSED, UNREADABLE) if kinds.count(kind)]
    return f"**{len(batch)} files**: " + ", ".join(parts) + ". Highest risk first."


def saved_cases(batch: dict[str, Prediction]) -> dict[str, int]:
    """Image SHA-256 -> the latest worklist case holding that image, for the films of this batch."""
    store = open_worklist()
    if store is None:
        return {}
    found = {}
    for prediction in batch.values():
        if prediction.sha256:
            cases = store.cases_with_image(prediction.sha256)
            if not cases.empty:
                found[prediction.sha256] = int(cases["id"].iloc[-1])
    return found


def show_details(prediction: Prediction) -> None:
    with st.expander("Features behind the decision"):
        st.caption("How much the consensus risk changes when a feature is set to the training films' median "
                   "(+: pushes towards COVID-19), in percentage points.")
        rows = explain_effects(prediction.top_features)
        if rows:
            frame = pd.DataFrame(rows)
            frame["effect on the risk"] = frame.pop("effect").map(lambda e: f"{100 * e:+.0f} points")
            st.dataframe(frame.rename(columns={"features": "features (count)"}), hide_index=True, width="stretch")
        if prediction.out_of_distribution is not None:
            st.caption(f"Distance to the training films: {prediction.out_of_distribution:.2f}× the usual "
                       "(above 1: unusual).")
        if st.toggle("Show raw values (for developers)", key="review_developer"):
            st.dataframe(pd.DataFrame(prediction.top_features), hide_index=True, width="stretch")
            st.json({"severity": prediction.severity, "lung_quality": prediction.lung_fields.quality
                     if prediction.lung_fields is not None else None, "metadata": prediction.metadata})


def study_date_of(prediction: Prediction) -> dt.date | None:
    try:
        return dt.date.fromisoformat(prediction.metadata.get("study_date") or "")
    except ValueError:
        return None


def zone_grade_inputs(prediction: Prediction, suffix: str) -> dict[str, int] | None:
    """Six grade boxes laid out as on the film (patient's right lung on the left), prefilled with the model's."""
    grades = (prediction.severity or {}).get("zones")
    if not grades:
        return None
    st.markdown("**Zone grades** — correct any you disagree with (saved with the case as a training label)")
    right_column, left_column = st.columns(2)
    chosen = {}
    for name in ZONE_NAMES:
        column = right_column if name.startswith("right") else left_column
        chosen[name] = column.selectbox(zone_label(name), range(MAX_ZONE_GRADE + 1), index=int(grades[name]),
                                        format_func=lambda g: f"{g} — {GRADE_WORDS[g]}",
                                        key=f"review_grade_{name}_{suffix}")
    return chosen


def duplicate_warning(prediction: Prediction) -> None:
    store = open_worklist()
    earlier = store.cases_with_image(prediction.sha256) if store is not None else pd.DataFrame()
    if not earlier.empty:
        listed = ", ".join(f"#{row.id} ({row.patient_id})" for row in earlier.itertuples())
        st.warning(f"This image (same SHA-256) is already in the worklist: case {plain(listed)}. Saving it again "
                   "creates another case.")


def save_form(key: str, prediction: Prediction, model: TriageModel) -> None:
    """Patient id, study date, the decision, corrected zone grades and a note; saves one worklist case or nothing."""
    saved = st.session_state.setdefault("review_saved", {})
    suffix = prediction.sha256[:16]
    if key not in saved:
        duplicate_warning(prediction)
    with st.form(f"review_form_{suffix}"):
        st.markdown("#### Decision")
        left, right = st.columns(2)
        patient_id = left.text_input("Patient id (pseudonymous, no names)", key=f"review_patient_{suffix}",
                                     value=prediction.metadata.get("patient_id", ""))
        study_date = right.date_input("Study date", value=study_date_of(prediction), key=f"review_date_{suffix}",
                                      min_value=dt.date(1990, 1, 1), format="YYYY-MM-DD")
        offset = left.number_input("Days since symptom onset (optional)", value=None, step=1.0,
                                   key=f"review_offset_{suffix}")
        decision = right.radio("Your decision", DECISIONS, index=0 if prediction.flagged else 1,
                               key=f"review_decision_{suffix}")
        corrected = zone_grade_inputs(prediction, suffix)
        note = st.text_area("Note", key=f"review_note_{suffix}", max_chars=4000)
        reviewer = current_reviewer()
        st.caption(f"Saved by {plain(reviewer.describe())}." if reviewer else require_reviewer_note())
        submitted = st.form_submit_button("Save to worklist", type="primary", disabled=key in saved)
    if key in saved:
        st.success(f"Saved to the worklist as case #{saved[key]}.")
    if not submitted:
        return
    if reviewer is None:
        st.error(f"Not saved: {require_reviewer_note()}")
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
            zones=severity.get("zones"), study_date=study_date, offset_days=offset, reviewer=reviewer.name,
            reviewer_source=reviewer.source, note=note, model_version=model_version(model),
            thumbnail_png=thumbnail_png(prediction.image.pixels), zones_corrected=corrected,
            site_profile=prediction.calibration_statement())
    except WorklistError as exc:
        st.error(f"Not saved: {plain(exc)}")
        return
    saved[key] = case_id
    st.rerun()  # redraw with the button disabled and the confirmation shown


def shown_grades(prediction: Prediction, suffix: str) -> dict[str, int] | None:
    """The grades on the overlay: the reviewer's corrections once made (the form's boxes), else the model's."""
    grades = (prediction.severity or {}).get("zones")
    if not grades:
        return None
    return {name: st.session_state.get(f"review_grade_{name}_{suffix}", grades[name]) for name in ZONE_NAMES}


def show_prediction(key: str, prediction: Prediction, model: TriageModel) -> None:
    if prediction.error is not None:
        st.error(plain(problem_message(prediction)))
        return
    st.subheader(plain(prediction.file))
    for warning in prediction.warnings:
        st.warning(plain(warning))
    verdict_column, models_column, score_column = st.columns([5, 4, 3])
    with verdict_column:  # first: the verdict is what the reader waits for, with how far to trust it
        show_verdict(prediction, model, default_evaluations().get("source"))
    with models_column:
        st.plotly_chart(charts.per_model_bars(prediction.per_model, prediction.risk, prediction.threshold),
                        key="review_models", width="stretch")
    with score_column:
        show_score_context(prediction, model)
    film_viewer(prediction, shown_grades(prediction, prediction.sha256[:16]))
    show_details(prediction)
    save_form(key, prediction, model)


st.title("Review chest X-rays")
if not models_present():
    require_model()  # first start: the reason, the command and the train button (and no uploader)
uploads = st.file_uploader("Chest X-rays: PNG, JPEG, TIFF or DICOM (several at once for a batch)",
                           type=UPLOAD_TYPES, accept_multiple_files=True, key="review_uploader")
if not uploads and not st.session_state.get("review_batch"):
    preload_model()  # in the background: the page is ready now, the models by the time a film is chosen
    st.info("Upload one or more frontal chest X-rays to see the COVID-19 risk.")
    st.stop()
model = require_model()
table_slot = st.empty()
if uploads:
    st.session_state["review_batch"] = score_uploads(model, uploads, table_slot)
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
    table = batch_table(batch, saved_cases(batch))
    with table_slot.container():
        st.markdown(batch_summary(batch))
        for prediction in batch.values():
            if prediction.error is not None:
                st.error(plain(problem_message(prediction)))
        draw_batch_table(table)
    labels = dict(zip(table["key"], table["file"] + "  —  " + table["verdict"]))
    selected = st.selectbox("Film to review", list(labels), format_func=labels.get, key="review_selected")
show_prediction(selected, batch[selected], model)
