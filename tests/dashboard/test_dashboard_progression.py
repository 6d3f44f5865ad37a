"""Dashboard Patient progression page (AppTest): worklist patients, and reference patients scored by the model."""

from __future__ import annotations

import numpy as np
import pytest
from dashboard_support import (
    isolate_app,
    open_page,
    plotly_figures,
    require_default_model,
    texts,
)

from core.worklist.review_data import thumbnail_png
from core.worklist.store import WorklistStore

PER_MODEL = {"SVM": 0.5, "Random Forest": 0.5, "Neural Network": 0.5, "kNN": 0.5}


@pytest.fixture
def store(monkeypatch, tmp_path):
    url = isolate_app(monkeypatch, tmp_path)
    with WorklistStore(url) as opened:
        yield opened


def add(store: WorklistStore, patient_id: str, digit: str, risk: float, **fields) -> int:
    return store.add_case(patient_id=patient_id, image_name=f"{patient_id}-{digit}.png", image_sha256=digit * 64,
                          risk=risk, flagged=risk >= 0.4, threshold=0.4, per_model=PER_MODEL, **fields)


def series_traces(app) -> dict:
    return {trace.name: trace for trace in plotly_figures(app)[0].data}


def test_worklist_patient_over_days_since_onset(store):
    film = np.linspace(0, 1, 300 * 240, dtype=np.float32).reshape(300, 240)
    later = add(store, "P-1", "b", 0.8, offset_days=9, corona_score=55,   # saved out of order on purpose
                thumbnail_png=thumbnail_png(film))
    add(store, "P-1", "a", 0.9, offset_days=2, corona_score=30)           # saved before films were kept
    add(store, "P-2", "c", 0.1)
    app = open_page("progression")
    app.selectbox(key="progression_patient").set_value("P-1").run()
    assert not app.exception
    traces = series_traces(app)
    assert list(traces["corona score"].x) == [2.0, 9.0]
    assert list(traces["corona score"].y) == [30.0, 55.0]
    assert [round(v) for v in traces["COVID-19 risk %"].y] == [90, 80]
    assert "days since symptom onset" in plotly_figures(app)[0].layout.xaxis.title.text
    # the film stored with the later case is shown second (time order); the earlier case says it has none
    assert [caption for image in app.image for caption in image.captions] == [f"case #{later}: day 9 — risk 80%, "
                                                                             "score 55"]
    assert "no copy of the film was stored" in texts(app)


def test_worklist_patient_over_study_dates(store):
    add(store, "P-3", "d", 0.7, study_date="2020-03-20", corona_score=20)
    add(store, "P-3", "e", 0.6, study_date="2020-03-14", corona_score=10)
    app = open_page("progression")
    app.selectbox(key="progression_patient").set_value("P-3").run()
    traces = series_traces(app)
    assert list(traces["corona score"].x) == ["2020-03-14", "2020-03-20"]
    assert list(traces["corona score"].y) == [10.0, 20.0]


def test_reference_patient_is_scored_through_the_model(store, cxr_manifest):
    require_default_model()
    dated = cxr_manifest.dropna(subset=["offset_days"]).groupby("patient_id")["offset_days"].nunique()
    patient_id = sorted(dated[dated >= 2].index)[0]
    rows = cxr_manifest[(cxr_manifest.patient_id == patient_id) & cxr_manifest.offset_days.notna()]
    app = open_page("progression")
    assert app.radio(key="progression_source").options == ["Reference data set"]  # the worklist is empty
    app.selectbox(key="progression_patient").set_value(patient_id).run()
    assert not app.exception
    risk = series_traces(app)["COVID-19 risk %"]
    assert sorted(risk.x) == sorted(rows.offset_days.astype(float))
    assert all(0 <= value <= 100 for value in risk.y)
    assert len(app.image) == len(rows)  # one thumbnail per image
