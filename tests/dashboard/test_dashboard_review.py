"""Dashboard Review page (AppTest): the verdict with its reliability, the viewer, saving (reviewer, thumbnail,
corrected zone grades), the batch table, bad uploads.

Needs the trained default model (models/default); skips with the command that creates it otherwise.
"""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import io

import numpy as np
import pytest
from dashboard_support import (
    APP,
    TIMEOUT_S,
    isolate_app,
    open_page,
    plotly_figures,
    require_default_model,
    shown,
    texts,
)
from imaging_samples import dicom_bytes, dicom_dataset
from PIL import Image
from streamlit.testing.v1 import AppTest

from core.triage.model import TriageModel
from core.triage.reliability import NOT_VALIDATED
from core.worklist.store import WorklistStore


@pytest.fixture(scope="module")
def model() -> TriageModel:
    require_default_model()
    return TriageModel.load()


@pytest.fixture
def worklist_url(model, monkeypatch, tmp_path) -> str:
    return isolate_app(monkeypatch, tmp_path)


def upload(app, *paths_or_files):
    files = [(p.name, p.read_bytes(), "image/png") if hasattr(p, "read_bytes") else p for p in paths_or_files]
    app.file_uploader(key="review_uploader").set_value(files).run()
    assert not app.exception, [e.value for e in app.exception]
    return app


def type_reviewer(app, name: str = "dr-test"):
    """The name typed in the sidebar (AppTest keeps the sidebar only in the first run's tree: set it directly;
    the browser test types it)."""
    app.session_state["identity_name"] = name
    return app


def cases(url: str):
    with WorklistStore(url) as store:
        return store.cases()


def film_panels(app) -> list:
    figure = next(f for f in plotly_figures(app) if f.data and f.data[0].type == "image")
    return figure


def decoded(trace) -> np.ndarray:
    return np.asarray(Image.open(io.BytesIO(base64.b64decode(trace.source.split(",", 1)[1]))).convert("RGB"))


def test_verdict_states_the_risk_its_validation_uncertainty_and_limits(model, worklist_url, sample_png):
    expected = model.predict(sample_png)
    app = open_page()
    assert "does not replace" in " ".join(c.value for c in app.sidebar.get("caption"))
    upload(app, sample_png)
    risk = next(m for m in app.metric if m.label.startswith("COVID-19 risk"))
    assert risk.value == f"{100 * expected.risk:.0f}%"
    shown = texts(app)
    assert ("FLAGGED" if expected.flagged else "Not flagged") in shown
    assert f"Validation:** {NOT_VALIDATED}" in shown
    if len(expected.per_model) > 1:   # the spread of the models (one model: no spread to show)
        assert "models alone give" in shown
    assert expected.reading in shown and f"pneumonia (any) **{100 * expected.pneumonia:.0f}%**" in shown
    assert "Known limits:" in shown and "cross-hospital check" in shown
    assert ":green[" not in shown  # nothing reads as "safe"
    bars = next(f for f in plotly_figures(app) if (f.layout.title.text or "").startswith("Per-model"))
    assert list(bars.data[0].x) == [*expected.per_model, "Consensus"]
    assert np.allclose(bars.data[0].y, [100 * p for p in [*expected.per_model.values(), expected.risk]])
    score = next(m for m in app.metric if m.label.startswith("Corona score"))
    assert score.value.startswith(f"{expected.severity['corona_score']:.0f} / 100 (±")
    assert "Normal films" in shown and "80 % score between" in shown


def test_viewer_has_window_level_overlay_opacity_and_markers(worklist_url, sample_png):
    app = upload(open_page(), sample_png)
    figure = film_panels(app)
    assert [trace.type for trace in figure.data] == ["image", "image"]  # original | overlay
    assert figure.layout.xaxis2.matches == "x"                          # zoomed together
    marks = [a.text for a in figure.layout.annotations]
    assert marks.count("<b>R</b>") == 2 and marks.count("<b>L</b>") == 2
    assert any("alveolar predominant" in text for text in marks)        # the grade legend
    original = decoded(figure.data[0])
    app.slider(key="review_window").set_value(40).run()
    app.slider(key="review_level").set_value(30).run()
    narrowed = decoded(film_panels(app).data[0])
    assert narrowed.mean() > original.mean() + 20                       # a low level brightens the film
    app.slider(key="review_opacity").set_value(0).run()
    figure = film_panels(app)
    assert np.array_equal(decoded(figure.data[0]), decoded(figure.data[1]))  # opacity 0: overlay invisible
    app.toggle(key="review_overlay").set_value(False).run()
    assert len(film_panels(app).data) == 1
    app.button(key="review_reset_view").click().run()
    assert app.slider(key="review_window").value == 100 and app.toggle(key="review_overlay").value


def test_saving_keeps_reviewer_thumbnail_and_corrected_grade(worklist_url, sample_png):
    app = type_reviewer(upload(open_page(), sample_png))
    sha = hashlib.sha256(sample_png.read_bytes()).hexdigest()
    suffix = sha[:16]
    app.text_input(key=f"review_patient_{suffix}").input("study-patient-7")
    app.radio(key=f"review_decision_{suffix}").set_value("Flag for quarantine follow-up")
    model_grade = app.selectbox(key=f"review_grade_right_lower_{suffix}").value
    app.selectbox(key=f"review_grade_right_lower_{suffix}").set_value((model_grade + 1) % 4)
    app.text_area(key=f"review_note_{suffix}").input("bilateral opacities")
    app.form_submit_button[0].click().run()
    assert not app.exception
    saved = cases(worklist_url)
    assert len(saved) == 1
    row = saved.iloc[0]
    assert (row.patient_id, row.image_sha256, bool(row.flagged), row.reviewer, row.reviewer_source, row.note) == \
        ("study-patient-7", sha, True, "dr-test", "typed", "bilateral opacities")
    assert "Saved to the worklist as case #" in texts(app)
    assert app.form_submit_button[0].disabled  # no accidental second copy
    with WorklistStore(worklist_url) as store:
        case = store.get_case(int(row.id))
        assert case["zones_corrected"]["right_lower"] == (model_grade + 1) % 4
        assert store.audit_trail(int(row.id))["action"].tolist() == ["created", "zones"]
        thumbnail = Image.open(io.BytesIO(store.thumbnails([int(row.id)])[int(row.id)]))
    assert max(thumbnail.size) == 256 and thumbnail.mode == "L"


def test_saving_needs_a_reviewer_and_a_patient_id(worklist_url, sample_png):
    app = upload(open_page(), sample_png)
    suffix = hashlib.sha256(sample_png.read_bytes()).hexdigest()[:16]
    app.text_input(key=f"review_patient_{suffix}").input("P-1")
    app.form_submit_button[0].click().run()
    assert "Not saved" in texts(app) and "name in the sidebar" in texts(app)
    type_reviewer(app)
    app.text_input(key=f"review_patient_{suffix}").input("")
    app.form_submit_button[0].click().run()
    assert "Not saved" in texts(app) and "patient_id" in texts(app)
    assert cases(worklist_url).empty


def app_with_user(user: dict) -> AppTest:
    app = AppTest.from_file(str(APP), default_timeout=TIMEOUT_S)
    app.user = user
    return app.run()


def test_reviewer_from_the_login_when_one_is_configured(worklist_url, sample_png):
    signed_out = app_with_user({"is_logged_in": False})
    assert any(button.label == "Log in" for button in signed_out.sidebar.get("button"))
    assert not [w for w in signed_out.sidebar.get("text_input") if w.key == "identity_name_input"]
    app = app_with_user({"is_logged_in": True, "email": "radiologist@hospital.example", "name": "R. Adiologist"})
    assert "radiologist@hospital.example" in " ".join(shown(c.value) for c in app.sidebar.get("caption"))
    upload(app, sample_png)
    suffix = hashlib.sha256(sample_png.read_bytes()).hexdigest()[:16]
    app.text_input(key=f"review_patient_{suffix}").input("P-9")
    app.form_submit_button[0].click().run()
    row = cases(worklist_url).iloc[0]
    assert (row.reviewer, row.reviewer_source) == ("radiologist@hospital.example", "login")


def test_the_same_image_saved_twice_is_warned_about(worklist_url, sample_png):
    app = type_reviewer(upload(open_page(), sample_png))
    suffix = hashlib.sha256(sample_png.read_bytes()).hexdigest()[:16]
    app.text_input(key=f"review_patient_{suffix}").input("P-1")
    app.form_submit_button[0].click().run()
    again = type_reviewer(upload(open_page(), sample_png))  # a new session, the same film
    assert "already in the worklist: case #1 (P-1)" in texts(again)


def test_bad_upload_shows_one_clear_error_and_writes_nothing(worklist_url):
    noise = np.random.default_rng(0).bytes(4096)
    app = upload(open_page(), ("x.png", noise, "image/png"))
    assert len(app.error) == 1 and shown(app.error[0].value).count("x.png") == 1
    assert "Traceback" not in app.error[0].value
    assert not app.form_submit_button and not app.metric
    assert cases(worklist_url).empty


def test_batch_is_sorted_by_risk_and_survives_a_page_switch(model, worklist_url, cxr_manifest, cxr_dir):
    names = [cxr_manifest.loc[cxr_manifest.label == label, "file"].iloc[1] for label in ("COVID-19", "Normal")]
    paths = [cxr_dir / "images" / name for name in names]
    app = upload(open_page(), *paths)
    table = app.dataframe[0].value
    assert len(table) == 2 and table["risk %"].is_monotonic_decreasing
    assert app.selectbox(key="review_selected").value is not None
    scored = dict(app.session_state["review_predictions"])
    app.switch_page("pages/worklist.py").run()
    app.switch_page("pages/review.py").run()
    assert not app.exception
    assert "Showing your last batch" in texts(app)
    assert len(app.dataframe[0].value) == 2
    after = app.session_state["review_predictions"]
    assert all(after[key] is prediction for key, prediction in scored.items())  # nothing was rescored


def test_dicom_header_prefills_patient_and_study_date(worklist_url, sample_png):
    pixels = np.asarray(Image.open(sample_png).convert("L"))
    dataset = dicom_dataset(pixels, bits_stored=8, PatientID="DCM-42", StudyDate="20200314", Modality="CR",
                            ViewPosition="PA")
    content = dicom_bytes(dataset)
    app = type_reviewer(upload(open_page(), ("study.dcm", content, "application/dicom")))
    suffix = hashlib.sha256(content).hexdigest()[:16]
    assert app.text_input(key=f"review_patient_{suffix}").value == "DCM-42"
    assert app.date_input(key=f"review_date_{suffix}").value == dt.date(2020, 3, 14)
    assert app.slider(key="review_window") is not None  # the same viewer for DICOM
    app.form_submit_button[0].click().run()
    row = cases(worklist_url).iloc[0]
    assert (row.patient_id, row.study_date, row.image_name) == ("DCM-42", "2020-03-14", "study.dcm")


def test_batch_says_refused_and_unreadable_apart_and_counts_them(worklist_url, sample_png):
    pixels = np.asarray(Image.open(sample_png).convert("L"))
    lateral = dicom_bytes(dicom_dataset(pixels, bits_stored=8, Modality="CR", ViewPosition="LL"))
    app = upload(open_page(), sample_png, ("broken.png", b"\x89PNG\r\n\x1a\n truncated", "image/png"),
                 ("side.dcm", lateral, "application/dicom"))
    errors = [shown(e.value) for e in app.error]
    assert len(errors) == 2 and all(message.count(name) == 1 for message, name in
                                    zip(sorted(errors), ["broken.png", "side.dcm"]))
    table = app.dataframe[0].value
    assert table["verdict"].tolist()[1:] == sorted(["unreadable file", "refused: not scored"], reverse=True) or \
        set(table["verdict"].tolist()[1:]) == {"unreadable file", "refused: not scored"}
    assert table["risk %"].notna().tolist() == [True, False, False]
    assert "3 files**: 1 scored" in texts(app) and "1 refused" in texts(app) and "1 unreadable" in texts(app)
    assert any(m.label.startswith("COVID-19 risk") for m in app.metric)  # the readable one is shown first
