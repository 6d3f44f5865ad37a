"""Worklist: the saved cases with their films, filters and sorting; one case opened with its film, its zone grades
(correctable), its status (changed under the reviewer's name) and its audit trail; CSV export of the cases and of
the audit trail."""

from __future__ import annotations

import base64
import io

import pandas as pd
import streamlit as st
from PIL import Image

from core.learn.flag import is_flagged
from core.learn.models import MODEL_NAMES
from core.lungs.zones import ZONE_NAMES
from core.worklist.review_data import MAX_ZONE_GRADE, zone_label
from core.worklist.store import (
    NEXT_STATUSES,
    STATUSES,
    ConflictError,
    WorklistError,
    WorklistStore,
)
from dashboard.identity import Reviewer, current_reviewer, require_reviewer_note
from dashboard.state import open_worklist
from dashboard.text import plain
from dashboard.viewer import GRADE_WORDS

ALL = "all"
SORTS = {"newest first": ("created_at", False), "highest risk": ("risk", False),
         "highest corona score": ("corona_score", False), "patient id": ("patient_id", True),
         "status": ("status", True)}
# Short, decisive columns first; long free text (image name, note) last, so it never pushes risk or status away.
SHOWN_COLUMNS = {"film": "film", "id": "case", "risk %": "risk %", "flagged": "decision", "status": "status",
                 "patient_id": "patient id", "study_date": "study date", "corona_score": "corona score",
                 "corrected": "grades corrected", "reviewer": "reviewer", "created_at": "saved (UTC)",
                 "image_name": "image", "note": "note"}
TABLE_THUMBNAIL_SIDE = 96  # px sent per row: the stored copy is 256 px


@st.cache_data(show_spinner=False, max_entries=1000)
def table_thumbnail(png: bytes) -> str:
    """A small JPEG data URI of a stored thumbnail for the table's film column."""
    picture = Image.open(io.BytesIO(png))
    picture.thumbnail((TABLE_THUMBNAIL_SIDE, TABLE_THUMBNAIL_SIDE))
    buffer = io.BytesIO()
    picture.convert("L").save(buffer, format="JPEG", quality=80)
    return "data:image/jpeg;base64," + base64.b64encode(buffer.getvalue()).decode("ascii")


def filtered_cases(store: WorklistStore) -> pd.DataFrame:
    status_column, flag_column, patient_column, sort_column = st.columns(4)
    status = status_column.selectbox("Status", [ALL, *STATUSES], key="worklist_status")
    flag = flag_column.selectbox("Decision", [ALL, "flagged", "not flagged"], key="worklist_flag")
    patient = patient_column.selectbox("Patient", [ALL, *store.patients()], key="worklist_patient")
    sort = sort_column.selectbox("Sort by", list(SORTS), key="worklist_sort")
    cases = store.cases(status=None if status == ALL else status,
                        flagged=None if flag == ALL else flag == "flagged",
                        patient_id=None if patient == ALL else patient)
    column, ascending = SORTS[sort]
    return cases.sort_values(column, ascending=ascending, na_position="last", kind="stable").reset_index(drop=True)


def display_table(cases: pd.DataFrame, thumbnails: dict[int, bytes]) -> pd.DataFrame:
    shown = cases.copy()
    shown["film"] = [table_thumbnail(thumbnails[i]) if i in thumbnails else None for i in shown["id"]]
    shown["created_at"] = shown["created_at"].str.slice(0, 16).str.replace("T", " ")
    shown["risk %"] = (100 * shown["risk"]).round(1)
    model_flag = is_flagged(shown["risk"], shown["threshold"])
    shown["flagged"] = [("flagged" if decided else "not flagged") + ("" if decided == model else " (model differs)")
                        for decided, model in zip(shown["flagged"], model_flag)]
    shown["corrected"] = shown["zones_corrected_json"].notna().map({True: "yes", False: ""})
    return shown[list(SHOWN_COLUMNS)].rename(columns=SHOWN_COLUMNS)


def draw_table(table: pd.DataFrame) -> None:
    st.dataframe(table, hide_index=True, width="stretch", row_height=56, column_config={
        "film": st.column_config.ImageColumn("film", width="small"),
        "case": st.column_config.NumberColumn("case", width="small"),
        "risk %": st.column_config.NumberColumn("risk %", format="%.1f%%", width="small"),
        "status": st.column_config.TextColumn("status", width="small"),
        "corona score": st.column_config.NumberColumn("corona score", format="%.0f", width="small"),
        "image": st.column_config.TextColumn("image", width="medium"),
        "note": st.column_config.TextColumn("note", width="medium")})


def reviewer_or_refuse() -> Reviewer | None:
    reviewer = current_reviewer()
    if reviewer is None:
        st.error(f"Not saved: {require_reviewer_note()}")
    return reviewer


def report_outcome(change, case_id: int) -> None:
    """Run a change; on success remember a message and redraw, on a refusal say why (and offer a reload)."""
    try:
        updated = change()
    except ConflictError as exc:
        st.error(f"Not saved: {plain(exc)}. The table above now shows the current state; check it and try again.")
        st.button("Reload", key="worklist_reload")
        return
    except WorklistError as exc:
        st.error(f"Not saved: {plain(exc)}")
        return
    st.session_state["worklist_displayed_versions"][case_id] = updated["version"]
    st.session_state["worklist_message"] = f"Case #{case_id} is now “{updated['status']}”" + (
        " with corrected zone grades." if updated.get("zones_corrected") else ".")
    st.rerun()


def status_form(store: WorklistStore, case: dict, seen_version: int) -> None:
    """Change the status; the version the user was looking at guards against overwriting someone else's change."""
    with st.form(f"worklist_status_form_{case['id']}"):
        # the options depend on the current status: a key per version keeps a stale choice from surviving a change
        new_status = st.selectbox(f"Move from “{case['status']}” to", NEXT_STATUSES[case["status"]],
                                  key=f"worklist_new_status_{case['id']}_{case['version']}")
        note = st.text_area("Reason / note (optional)", key=f"worklist_note_{case['id']}", max_chars=4000)
        submitted = st.form_submit_button("Change status", type="primary")
    if submitted and (reviewer := reviewer_or_refuse()) is not None:
        report_outcome(lambda: store.update_status(case["id"], new_status, who=reviewer.name,
                                                    who_source=reviewer.source, note=note or None,
                                                    expected_version=seen_version), case["id"])


def zone_form(store: WorklistStore, case: dict, seen_version: int) -> None:
    """The six zone grades as the model gave them (or as last corrected); a change is saved as a correction."""
    shown = case["zones_corrected"] or case["zones"]
    if not shown or any(name not in shown for name in ZONE_NAMES):
        return
    with st.form(f"worklist_zone_form_{case['id']}"):
        st.markdown("**Zone grades** (" + ("corrected by a radiologist" if case["zones_corrected"] else "the model's")
                    + "; patient's right lung on the left)")
        right_column, left_column = st.columns(2)
        chosen = {name: (right_column if name.startswith("right") else left_column).selectbox(
                      zone_label(name), range(MAX_ZONE_GRADE + 1), index=int(shown[name]),
                      format_func=lambda g: f"{g} — {GRADE_WORDS[g]}",
                      key=f"worklist_grade_{name}_{case['id']}_{case['version']}")
                  for name in ZONE_NAMES}
        submitted = st.form_submit_button("Save corrected grades")
    if submitted and (reviewer := reviewer_or_refuse()) is not None:
        report_outcome(lambda: store.correct_zones(case["id"], chosen, who=reviewer.name, who_source=reviewer.source,
                                                   expected_version=seen_version), case["id"])


def case_panel(store: WorklistStore, cases: pd.DataFrame) -> None:
    labels = {int(row.id): f"#{row.id} — {row.patient_id} — {row.image_name}" for row in cases.itertuples()}
    case_id = st.selectbox("Case", list(labels), format_func=labels.get, key="worklist_case")
    try:
        case = store.get_case(case_id)
    except WorklistError as exc:
        st.error(plain(exc))
        return
    displayed = st.session_state.setdefault("worklist_displayed_versions", {})
    seen_version = displayed.get(case["id"], case["version"])
    displayed[case["id"]] = case["version"]  # what the user sees now is what the next submit refers to
    if seen_version != case["version"]:
        st.info(f"Case #{case['id']} was changed since you last looked (now version {case['version']}).")
    # the four models in the usual order (the store keeps them sorted by name)
    per_model = sorted(case["per_model"].items(),
                       key=lambda item: MODEL_NAMES.index(item[0]) if item[0] in MODEL_NAMES else len(MODEL_NAMES))
    corona = "—" if case["corona_score"] is None else f"{case['corona_score']:.0f} / 100"
    film_column, facts_column, trail_column = st.columns([2, 3, 4])
    thumbnail = store.thumbnails([case_id]).get(case_id)
    if thumbnail is not None:
        film_column.image(thumbnail, caption=f"case #{case_id} (stored copy, 256 px)", width="stretch")
    else:
        film_column.caption("No copy of the film was stored with this case (saved before copies were kept).")
    with facts_column:
        st.markdown(f"**Status** {case['status']}  \n"
                    f"**Risk** {100 * case['risk']:.0f}% (flag threshold {100 * case['threshold']:.0f}%)  \n"
                    f"**Corona score** {corona}  \n"
                    "**Per model** " + ", ".join(f"{plain(k)} {100 * v:.0f}%" for k, v in per_model)
                    + f"  \n**Reviewer** {plain(case['reviewer'] or '—')}  \n"
                    f"**Model** {plain(case.get('model_version') or '—')}"
                    + f"  \n**Site calibration** {plain(case.get('site_profile') or 'not recorded')}")
        status_form(store, case, seen_version)
        zone_form(store, case, seen_version)
    with trail_column:
        st.markdown("**Audit trail**")
        trail = store.audit_trail(case_id)
        trail["at"] = trail["at"].str.slice(0, 19).str.replace("T", " ")
        shown = trail.rename(columns={"at": "at (UTC)", "who_source": "identified by", "from_status": "from",
                                      "to_status": "to"})
        st.dataframe(shown.drop(columns=["id", "case_id", "case_version"]), hide_index=True, width="stretch")


st.title("Worklist")
store = open_worklist()
if store is None:
    st.stop()
if store.read_only:
    st.warning(plain(store.read_only) + ". Status changes and grade corrections cannot be saved here.")
if message := st.session_state.pop("worklist_message", None):
    st.success(message)
cases = filtered_cases(store)
cases_column, audit_column, _ = st.columns([2, 2, 3])
cases_column.download_button("Download the cases (CSV)", store.export_csv(), file_name="worklist-cases.csv",
                             mime="text/csv", key="worklist_download")
audit_column.download_button("Download the audit trail (CSV)", store.export_audit_csv(),
                             file_name="worklist-audit-trail.csv", mime="text/csv", key="worklist_download_audit")
if cases.empty:
    st.info("No saved cases match these filters. Cases are saved from the Review page.")
    st.stop()
st.caption(f"{len(cases)} case(s). Click a column header to sort the table.")
draw_table(display_table(cases, store.thumbnails(cases["id"].astype(int).tolist())))
st.divider()
case_panel(store, cases)
