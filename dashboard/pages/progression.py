"""Patient progression: corona score and COVID-19 risk of one patient's images over time, thumbnails, trend verdict.

Patients come from the worklist and, when the reference data set is present, from its patients with images on
two or more dates (scored through the model here, since the data set holds no predictions).
"""

from __future__ import annotations

import pandas as pd
import streamlit as st

from core.io.datasets import DatasetError, load_dataset
from core.learn.artifacts import ModelLoadError
from core.paths import default_data_dir, default_models_dir
from core.severity.progression import trend as severity_trend
from core.triage.model import TriageModel
from dashboard import charts
from dashboard.state import (
    load_model,
    models_stamp,
    open_worklist,
    predictions_by_image_sha,
)
from dashboard.text import plain

WORKLIST, REFERENCE = "Worklist", "Reference data set"
THUMBNAILS_PER_ROW = 5


@st.cache_data(show_spinner=False, max_entries=2)
def reference_patients(data_dir: str) -> dict[str, pd.DataFrame]:
    """Reference patients with images on two or more distinct days: their rows, oldest first."""
    try:
        table = load_dataset(data_dir).table
    except DatasetError:
        return {}
    if "offset_days" not in table:
        return {}
    dated = table[table["patient_known"] & table["offset_days"].notna()]
    return {str(pid): rows.sort_values("offset_days").reset_index(drop=True)
            for pid, rows in dated.groupby("patient_id") if rows["offset_days"].nunique() >= 2}


@st.cache_data(show_spinner="Scoring the patient's images…", max_entries=64)
def reference_series(patient_id: str, rows: pd.DataFrame, models_dir: str, stamp: float,
                     _model: TriageModel) -> pd.DataFrame:
    """Risk and corona score of each reference image of one patient (keyed by the models' identity)."""
    records = []
    for row in rows.itertuples():
        prediction = _model.predict(row.path)
        if prediction.error is not None:
            continue
        records.append({"image_name": row.file, "path": row.path, "offset_days": float(row.offset_days),
                        "study_date": None, "risk": prediction.risk,
                        "corona_score": (prediction.severity or {}).get("corona_score"),
                        "label": row.label})
    return pd.DataFrame(records)


def time_axis(series: pd.DataFrame) -> tuple[str, str]:
    """Which column to plot over: day offsets if every image has one, else study dates, else save order."""
    if series["offset_days"].notna().all():
        return "offset_days", "days since symptom onset"
    if series["study_date"].notna().all():
        return "study_date", "study date"
    series["study #"] = range(1, len(series) + 1)
    return "study #", "study (in the order saved; no dates recorded)"


def show_trend(series: pd.DataFrame, x: str) -> None:
    scored = series[series["corona_score"].notna()]
    if len(scored) < 2:
        st.info("A trend needs at least two images with a corona score.")
        return
    verdict = severity_trend(scored.rename(columns={x: "time"})[["time", "corona_score"]])
    st.metric("Trend", str(verdict["verdict"]))
    if "change" in verdict:
        st.caption(f"Fitted change first → last image: {verdict['change']:+.1f} points "
                   f"(needed beyond ±{verdict['threshold']:.1f}).")
    elif "reason" in verdict:
        st.caption(verdict["reason"])
    st.caption(f"Rule: {verdict['rule']}")


def show_thumbnails(series: pd.DataFrame, x: str, stored: dict[int, bytes]) -> None:
    """Each film of the series in time order: the reference file, or the copy stored with the worklist case."""
    in_session = predictions_by_image_sha()
    columns = st.columns(THUMBNAILS_PER_ROW)
    for index, row in enumerate(series.itertuples()):
        when = series.at[index, x]
        label = f"day {when:g}" if x == "offset_days" else (str(when) if x == "study_date" else f"study {when}")
        caption = f"{label} — risk {100 * row.risk:.0f}%"
        if pd.notna(row.corona_score):
            caption += f", score {row.corona_score:.0f}"
        column = columns[index % THUMBNAILS_PER_ROW]
        case_id = getattr(row, "id", None)
        if "path" in series and isinstance(row.path, str):
            column.image(row.path, caption=caption, width="stretch")
        elif case_id is not None and int(case_id) in stored:
            column.image(stored[int(case_id)], caption=f"case #{case_id}: {caption}", width="stretch")
        elif getattr(row, "image_sha256", None) in in_session:
            column.image(in_session[row.image_sha256].image.to_uint8(), caption=caption, width="stretch")
        else:
            column.caption(f"{plain(row.image_name)}: no copy of the film was stored with this case. {caption}")


st.title("Patient progression")
store = open_worklist()
worklist_ids = store.patients() if store is not None else []
reference = reference_patients(str(default_data_dir()))
sources = [s for s, ids in ((WORKLIST, worklist_ids), (REFERENCE, reference)) if ids]
if not sources:
    st.info("No patient to show yet: save cases with a patient id on the Review page.")
    st.stop()
source = st.radio("Patients from", sources, horizontal=True, key="progression_source")
patient_ids = worklist_ids if source == WORKLIST else list(reference)
patient_id = st.selectbox("Patient", patient_ids, key="progression_patient")

if source == WORKLIST:
    series = store.patient_series(patient_id)
else:
    try:
        model = load_model()
    except ModelLoadError as exc:
        st.error(f"The reference series are scored with the model, which cannot be used: {plain(exc)}")
        st.stop()
    models_dir = default_models_dir()
    series = reference_series(patient_id, reference[patient_id], str(models_dir), models_stamp(models_dir), model)
if series.empty:
    st.info("No readable images for this patient.")
    st.stop()
series = series.reset_index(drop=True)
x, x_title = time_axis(series)
st.plotly_chart(charts.progression_figure(series, x, x_title), key="progression_chart", width="stretch")
show_trend(series, x)
st.subheader("Images")
stored = store.thumbnails(series["id"].astype(int).tolist()) if source == WORKLIST else {}
show_thumbnails(series, x, stored)
