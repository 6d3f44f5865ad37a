"""Worklist: saved cases, filters and sorting, status changes with the reviewer's name, audit trail, CSV export."""

from __future__ import annotations

import pandas as pd
import streamlit as st

from core.learn.flag import is_flagged
from core.learn.models import MODEL_NAMES
from core.worklist.store import (
    NEXT_STATUSES,
    STATUSES,
    ConflictError,
    WorklistError,
    WorklistStore,
)
from dashboard.state import open_worklist

ALL = "all"
SORTS = {"newest first": ("created_at", False), "highest risk": ("risk", False),
         "highest corona score": ("corona_score", False), "patient id": ("patient_id", True),
         "status": ("status", True)}
SHOWN_COLUMNS = {"id": "case", "created_at": "saved (UTC)", "patient_id": "patient id", "study_date": "study date",
                 "image_name": "image", "risk %": "risk %", "model flag": "model flag",
                 "corona_score": "corona score", "flagged": "flagged (decision)", "status": "status",
                 "reviewer": "reviewer", "note": "note", "version": "version"}


def filtered_cases(store: WorklistStore) -> pd.DataFrame:
    status_column, flag_column, patient_column, sort_column = st.columns(4)
    status = status_column.selectbox("Status", [ALL, *STATUSES], key="worklist_status")
    flag = flag_column.selectbox("Flag", [ALL, "flagged", "not flagged"], key="worklist_flag")
    patient = patient_column.selectbox("Patient", [ALL, *store.patients()], key="worklist_patient")
    sort = sort_column.selectbox("Sort by", list(SORTS), key="worklist_sort")
    cases = store.cases(status=None if status == ALL else status,
                        flagged=None if flag == ALL else flag == "flagged",
                        patient_id=None if patient == ALL else patient)
    column, ascending = SORTS[sort]
    return cases.sort_values(column, ascending=ascending, na_position="last", kind="stable").reset_index(drop=True)


def display_table(cases: pd.DataFrame) -> pd.DataFrame:
    shown = cases.copy()
    shown["created_at"] = shown["created_at"].str.slice(0, 19).str.replace("T", " ")
    shown["risk %"] = (100 * shown["risk"]).round(1)
    shown["model flag"] = is_flagged(shown["risk"], shown["threshold"])
    return shown[list(SHOWN_COLUMNS)].rename(columns=SHOWN_COLUMNS)


def status_form(store: WorklistStore, case: dict) -> None:
    """Change the status; the version the user was looking at guards against overwriting someone else's change."""
    displayed = st.session_state.setdefault("worklist_displayed_versions", {})
    seen_version = displayed.get(case["id"], case["version"])
    displayed[case["id"]] = case["version"]  # what the user sees now is what the next submit refers to
    if seen_version != case["version"]:
        st.info(f"Case #{case['id']} was changed since you last looked (now version {case['version']}).")
    choices = NEXT_STATUSES[case["status"]]
    with st.form(f"worklist_status_form_{case['id']}"):
        new_status = st.selectbox(f"Move from “{case['status']}” to", choices,
                                  key=f"worklist_new_status_{case['id']}")
        reviewer = st.text_input("Your name (recorded in the audit trail)", key="worklist_reviewer")
        note = st.text_area("Reason / note (optional)", key=f"worklist_note_{case['id']}", max_chars=4000)
        submitted = st.form_submit_button("Change status", type="primary")
    if not submitted:
        return
    try:
        updated = store.update_status(case["id"], new_status, who=reviewer, note=note or None,
                                      expected_version=seen_version)
    except ConflictError as exc:
        st.error(f"Not saved: {exc}. The table above now shows the current state; check it and try again.")
        st.button("Reload", key="worklist_reload")
        return
    except WorklistError as exc:
        st.error(f"Not saved: {exc}")
        return
    displayed[case["id"]] = updated["version"]
    st.session_state["worklist_message"] = f"Case #{case['id']} is now “{updated['status']}”."
    st.rerun()


def case_panel(store: WorklistStore, cases: pd.DataFrame) -> None:
    labels = {int(row.id): f"#{row.id} — {row.patient_id} — {row.image_name} — {row.status}"
              for row in cases.itertuples()}
    case_id = st.selectbox("Case", list(labels), format_func=labels.get, key="worklist_case")
    try:
        case = store.get_case(case_id)
    except WorklistError as exc:
        st.error(str(exc))
        return
    # the four models in the usual order (the store keeps them sorted by name)
    per_model = sorted(case["per_model"].items(),
                       key=lambda item: MODEL_NAMES.index(item[0]) if item[0] in MODEL_NAMES else len(MODEL_NAMES))
    corona = "—" if case["corona_score"] is None else f"{case['corona_score']:.0f} / 100"
    left, right = st.columns([2, 3])
    with left:
        st.markdown(f"**Risk** {100 * case['risk']:.0f}% (threshold {100 * case['threshold']:.0f}%)  \n"
                    f"**Corona score** {corona}  \n"
                    f"**Per model** " + ", ".join(f"{k} {100 * v:.0f}%" for k, v in per_model)
                    + f"  \n**Model** {case.get('model_version') or '—'}")
        status_form(store, case)
    with right:
        st.markdown("**Audit trail**")
        trail = store.audit_trail(case_id)
        trail["at"] = trail["at"].str.slice(0, 19).str.replace("T", " ")
        st.dataframe(trail.drop(columns=["id", "case_id"]), hide_index=True, width="stretch")


st.title("Worklist")
store = open_worklist()
if store is None:
    st.stop()
if message := st.session_state.pop("worklist_message", None):
    st.success(message)
cases = filtered_cases(store)
st.download_button("Download all cases (CSV)", store.export_csv(), file_name="worklist.csv", mime="text/csv",
                   key="worklist_download")
if cases.empty:
    st.info("No saved cases match these filters. Cases are saved from the Review page.")
    st.stop()
st.caption(f"{len(cases)} case(s). Click a column header to sort the table.")
st.dataframe(display_table(cases), hide_index=True, width="stretch", column_config={
    "risk %": st.column_config.NumberColumn(format="%.1f%%"),
    "corona score": st.column_config.NumberColumn(format="%.0f")})
st.divider()
case_panel(store, cases)
