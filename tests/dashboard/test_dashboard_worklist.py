"""Dashboard Worklist page (AppTest), on a temporary SQLite worklist."""

from __future__ import annotations

import numpy as np
import pytest
from dashboard_support import isolate_app, open_page, texts

from core.lungs.zones import ZONE_NAMES
from core.worklist.review_data import thumbnail_png
from core.worklist.store import WorklistStore

GRADES = dict(zip(ZONE_NAMES, (0, 1, 2, 0, 1, 1)))


def add(store: WorklistStore, patient_id: str, risk: float, flagged: bool, offset: float | None = None,
        corona: float | None = None, digit: str = "a") -> int:
    return store.add_case(patient_id=patient_id, image_name=f"{patient_id}-{digit}.png", image_sha256=digit * 64,
                          risk=risk, flagged=flagged, threshold=0.4,
                          per_model={"SVM": risk, "Random Forest": risk, "Neural Network": risk, "kNN": risk},
                          corona_score=corona, offset_days=offset, reviewer="dr-a", note="", zones=GRADES,
                          thumbnail_png=thumbnail_png(np.linspace(0, 1, 300 * 200, dtype=np.float32).reshape(300, 200)))


@pytest.fixture
def store(monkeypatch, tmp_path):
    url = isolate_app(monkeypatch, tmp_path)
    with WorklistStore(url) as opened:
        add(opened, "P-1", 0.9, True, offset=2, corona=30, digit="a")
        add(opened, "P-1", 0.8, True, offset=9, corona=55, digit="b")
        add(opened, "P-2", 0.1, False, digit="c")
        yield opened


def test_worklist_lists_filters_and_exports(store):
    app = open_page("worklist")
    assert len(app.dataframe[0].value) == 3
    assert "P-1" in app.dataframe[0].value["patient id"].tolist()
    assert "version" not in app.dataframe[0].value.columns  # internal fields stay hidden
    assert app.dataframe[0].value["film"].str.startswith("data:image/jpeg;base64,").all()  # each case's film
    app.selectbox(key="worklist_flag").set_value("flagged").run()
    assert sorted(app.dataframe[0].value["patient id"]) == ["P-1", "P-1"]
    app.selectbox(key="worklist_flag").set_value("all")
    app.selectbox(key="worklist_patient").set_value("P-2").run()
    assert app.dataframe[0].value["patient id"].tolist() == ["P-2"]
    app.selectbox(key="worklist_patient").set_value("all")
    app.selectbox(key="worklist_sort").set_value("highest risk").run()
    assert app.dataframe[0].value["risk %"].tolist() == [90.0, 80.0, 10.0]
    assert "P-2" in store.export_csv()  # the download buttons serve these texts
    assert "created" in store.export_audit_csv()
    assert len(app.get("download_button")) == 2
    assert any("case #" in caption for image in app.get("image") for caption in image.captions)  # its film


def as_reviewer(app, name: str = "dr-b"):
    app.session_state["identity_name"] = name  # typed once in the sidebar (see test_dashboard_review)
    return app


def test_status_change_is_recorded_with_the_reviewer_and_the_label_follows(store):
    app = as_reviewer(open_page("worklist"))
    case_id = int(app.selectbox(key="worklist_case").value)
    app.selectbox(key=f"worklist_new_status_{case_id}_1").set_value("quarantine follow-up")
    app.text_area(key=f"worklist_note_{case_id}").input("positive PCR")
    _submit(app, "Change status")
    assert not app.exception
    case = store.get_case(case_id)
    assert (case["status"], case["reviewer"], case["version"]) == ("quarantine follow-up", "dr-b", 2)
    trail = store.audit_trail(case_id)
    assert trail["to_status"].tolist()[-1] == "quarantine follow-up" and trail["who"].tolist()[-1] == "dr-b"
    assert trail["who_source"].tolist()[-1] == "typed"
    assert "now “quarantine follow-up”" in texts(app)
    # the page shows the new status everywhere, and offers the moves from it
    assert "**Status** quarantine follow-up" in texts(app)
    assert app.selectbox(key=f"worklist_new_status_{case_id}_2").label == "Move from “quarantine follow-up” to"
    assert app.dataframe[0].value.loc[lambda t: t["case"] == case_id, "status"].item() == "quarantine follow-up"


def test_status_change_without_a_reviewer_writes_nothing(store):
    app = open_page("worklist")
    case_id = int(app.selectbox(key="worklist_case").value)
    _submit(app, "Change status")
    assert "Not saved" in texts(app) and "name in the sidebar" in texts(app)
    assert store.get_case(case_id)["version"] == 1


def test_a_zone_grade_correction_is_saved_audited_and_exported(store):
    app = as_reviewer(open_page("worklist"))
    case_id = int(app.selectbox(key="worklist_case").value)
    app.selectbox(key=f"worklist_grade_left_lower_{case_id}_1").set_value(3)
    _submit(app, "Save corrected grades")
    assert not app.exception
    case = store.get_case(case_id)
    assert case["zones_corrected"] == {**GRADES, "left_lower": 3} and case["zones"] == GRADES
    assert store.audit_trail(case_id)["note"].tolist()[-1] == "zone grades corrected: left lower 1 → 3"
    assert "left lower grade (radiologist)" in store.export_csv()
    assert app.dataframe[0].value.loc[lambda t: t["case"] == case_id, "grades corrected"].item() == "yes"


def test_concurrent_change_is_refused_with_a_reload_message(store):
    app = as_reviewer(open_page("worklist"))
    case_id = int(app.selectbox(key="worklist_case").value)
    store.update_status(case_id, "under review", who="someone else")  # lands while the page is open
    app.selectbox(key=f"worklist_new_status_{case_id}_1").set_value("cleared")
    _submit(app, "Change status")
    assert "changed by someone else" in texts(app)
    case = store.get_case(case_id)
    assert (case["status"], case["reviewer"]) == ("under review", "someone else")
    # after the message the page shows the current state; a second attempt succeeds
    app.selectbox(key=f"worklist_new_status_{case_id}_2").set_value("cleared")
    _submit(app, "Change status")
    assert store.get_case(case_id)["status"] == "cleared"


def _submit(app, label: str) -> None:
    """Click the form button with this label and rerun."""
    buttons = [button for button in app.form_submit_button if button.label == label]
    assert len(buttons) == 1, f"expected exactly one {label!r} button"
    buttons[0].click().run()


def test_a_read_only_worklist_is_shown_with_a_note(store, monkeypatch):
    from core.worklist import schema

    with store.engine.begin() as conn:  # as a release without migration 3 left it: opening must write
        conn.exec_driver_sql("DELETE FROM schema_version WHERE version = 3")
        for trigger in ("audit_events_no_overwrite", "audit_events_known_case", "cases_no_replace",
                        "cases_keep_audited"):
            conn.exec_driver_sql(f"DROP TRIGGER {trigger}")
    path = schema.sqlite_file_path(store.url)
    monkeypatch.setenv("CXR_WORKLIST_URL", f"sqlite:///file:{path.as_posix()}?mode=ro&uri=true")
    app = open_page("worklist")
    assert app.dataframe, texts(app)
    assert len(app.dataframe[0].value) == 3
    assert "cannot be saved here" in texts(app) and "cannot be opened" not in texts(app)
