"""Dashboard Worklist page (AppTest), on a temporary SQLite worklist."""

from __future__ import annotations

import pytest
from dashboard_support import isolate_app, open_page, texts

from core.worklist.store import WorklistStore


def add(store: WorklistStore, patient_id: str, risk: float, flagged: bool, offset: float | None = None,
        corona: float | None = None, digit: str = "a") -> int:
    return store.add_case(patient_id=patient_id, image_name=f"{patient_id}-{digit}.png", image_sha256=digit * 64,
                          risk=risk, flagged=flagged, threshold=0.4,
                          per_model={"SVM": risk, "Random Forest": risk, "Neural Network": risk, "kNN": risk},
                          corona_score=corona, offset_days=offset, reviewer="dr-a", note="")


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
    app.selectbox(key="worklist_flag").set_value("flagged").run()
    assert sorted(app.dataframe[0].value["patient id"]) == ["P-1", "P-1"]
    app.selectbox(key="worklist_flag").set_value("all")
    app.selectbox(key="worklist_patient").set_value("P-2").run()
    assert app.dataframe[0].value["patient id"].tolist() == ["P-2"]
    app.selectbox(key="worklist_patient").set_value("all")
    app.selectbox(key="worklist_sort").set_value("highest risk").run()
    assert app.dataframe[0].value["risk %"].tolist() == [90.0, 80.0, 10.0]
    assert "P-2" in store.export_csv()  # the download button serves this text
    assert len(app.get("download_button")) == 1


def test_status_change_is_recorded_with_the_reviewer(store):
    app = open_page("worklist")
    case_id = int(app.selectbox(key="worklist_case").value)
    app.selectbox(key=f"worklist_new_status_{case_id}").set_value("quarantine follow-up")
    app.text_input(key="worklist_reviewer").input("dr-b")
    app.text_area(key=f"worklist_note_{case_id}").input("positive PCR")
    _submit(app)
    assert not app.exception
    case = store.get_case(case_id)
    assert (case["status"], case["reviewer"], case["version"]) == ("quarantine follow-up", "dr-b", 2)
    trail = store.audit_trail(case_id)
    assert trail["to_status"].tolist()[-1] == "quarantine follow-up" and trail["who"].tolist()[-1] == "dr-b"
    assert "now “quarantine follow-up”" in texts(app)


def test_status_change_without_a_name_writes_nothing(store):
    app = open_page("worklist")
    case_id = int(app.selectbox(key="worklist_case").value)
    _submit(app)
    assert "Not saved" in texts(app) and "who must not be empty" in texts(app)
    assert store.get_case(case_id)["version"] == 1


def test_concurrent_change_is_refused_with_a_reload_message(store):
    app = open_page("worklist")
    case_id = int(app.selectbox(key="worklist_case").value)
    store.update_status(case_id, "under review", who="someone else")  # lands while the page is open
    app.selectbox(key=f"worklist_new_status_{case_id}").set_value("cleared")
    app.text_input(key="worklist_reviewer").input("dr-b")
    _submit(app)
    assert "changed by someone else" in texts(app)
    case = store.get_case(case_id)
    assert (case["status"], case["reviewer"]) == ("under review", "someone else")
    # after the message the page shows the current state; a second attempt succeeds
    app.selectbox(key=f"worklist_new_status_{case_id}").set_value("cleared")
    _submit(app)
    assert store.get_case(case_id)["status"] == "cleared"


def _submit(app) -> None:
    """Click the page's form submit button and rerun."""
    assert len(app.form_submit_button) == 1, "expected exactly one form on the page"
    app.form_submit_button[0].click().run()
