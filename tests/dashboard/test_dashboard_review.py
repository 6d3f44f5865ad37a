"""Dashboard Review page (AppTest): upload, risk and verdict, batch table, saving to the worklist, bad uploads.

Needs the trained default model (models/default); skips with the command that creates it otherwise.
"""

from __future__ import annotations

import datetime as dt
import hashlib

import numpy as np
import pytest
from dashboard_support import (
    isolate_app,
    open_page,
    plotly_figures,
    require_default_model,
    texts,
)
from imaging_samples import dicom_bytes, dicom_dataset
from PIL import Image

from core.triage.model import TriageModel
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


def cases(url: str):
    with WorklistStore(url) as store:
        return store.cases()


def test_upload_shows_the_risk_and_the_verdict(model, worklist_url, sample_png):
    expected = model.predict(sample_png)
    app = open_page()
    # (AppTest drops the sidebar from the element tree of later runs; the browser test checks every page)
    assert "does not replace" in " ".join(c.value for c in app.sidebar.get("caption"))
    upload(app, sample_png)
    risk = next(m for m in app.metric if m.label.startswith("COVID-19 risk"))
    assert risk.value == f"{100 * expected.risk:.0f}%"
    verdict = "FLAGGED" if expected.flagged else "Not flagged"
    assert verdict in texts(app)
    bars = next(f for f in plotly_figures(app) if f.layout.title.text.startswith("Per-model"))
    assert list(bars.data[0].x) == [*expected.per_model, "Consensus"]
    assert np.allclose(bars.data[0].y, [100 * p for p in [*expected.per_model.values(), expected.risk]])
    if expected.severity is not None:
        assert f"{expected.severity['corona_score']:.0f} / 100" in texts(app)


def test_saving_creates_one_worklist_case(worklist_url, sample_png):
    app = upload(open_page(), sample_png)
    sha = hashlib.sha256(sample_png.read_bytes()).hexdigest()
    suffix = sha[:16]
    app.text_input(key=f"review_patient_{suffix}").input("study-patient-7")
    app.radio(key=f"review_decision_{suffix}").set_value("Flag for quarantine follow-up")
    app.text_input(key="review_reviewer").input("dr-test")
    app.text_area(key=f"review_note_{suffix}").input("bilateral opacities")
    app.form_submit_button[0].click().run()
    assert not app.exception
    saved = cases(worklist_url)
    assert len(saved) == 1
    row = saved.iloc[0]
    assert (row.patient_id, row.image_sha256, bool(row.flagged), row.reviewer, row.note, row.status) == \
        ("study-patient-7", sha, True, "dr-test", "bilateral opacities", "new")
    assert "Saved to the worklist as case #" in texts(app)
    assert app.form_submit_button[0].disabled  # no accidental second copy


def test_saving_without_patient_id_writes_nothing(worklist_url, sample_png):
    app = upload(open_page(), sample_png)
    app.form_submit_button[0].click().run()
    assert "Not saved" in texts(app) and "patient_id" in texts(app)
    assert cases(worklist_url).empty


def test_bad_upload_shows_a_clear_error_and_writes_nothing(worklist_url):
    noise = np.random.default_rng(0).bytes(4096)
    app = upload(open_page(), ("x.png", noise, "image/png"))
    assert len(app.error) == 1 and "x.png" in app.error[0].value
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
    app = upload(open_page(), ("study.dcm", content, "application/dicom"))
    suffix = hashlib.sha256(content).hexdigest()[:16]
    assert app.text_input(key=f"review_patient_{suffix}").value == "DCM-42"
    assert app.date_input(key=f"review_date_{suffix}").value == dt.date(2020, 3, 14)
    app.form_submit_button[0].click().run()
    row = cases(worklist_url).iloc[0]
    assert (row.patient_id, row.study_date, row.image_name) == ("DCM-42", "2020-03-14", "study.dcm")


def test_batch_with_an_unreadable_file_scores_the_rest(worklist_url, sample_png):
    app = upload(open_page(), sample_png, ("broken.png", b"\x89PNG\r\n\x1a\n truncated", "image/png"))
    assert len(app.error) == 1 and "broken.png" in app.error[0].value
    table = app.dataframe[0].value
    assert table["verdict"].tolist()[-1] == "unreadable" and table["risk %"].notna().tolist() == [True, False]
    assert any(m.label.startswith("COVID-19 risk") for m in app.metric)  # the readable one is shown first
