"""Dashboard first start without a trained model (train button) and the Model comparison's own evaluation run.

Both run the real pipeline on a small class-folder data set of reference images (symbolic links in tmp_path).
"""

from __future__ import annotations

from pathlib import Path

import pytest
from dashboard_support import isolate_app, open_page, plotly_figures, texts

from core.learn.models import MODEL_NAMES

IMAGES_PER_CLASS = 10


@pytest.fixture(scope="module")
def small_dataset(cxr_dir, cxr_manifest, tmp_path_factory) -> Path:
    """COVID/ and Normal/ folders of links to reference images (class-folder layout, no patient ids)."""
    root = tmp_path_factory.mktemp("small-cxr")
    for label, folder in (("COVID-19", "COVID"), ("Normal", "Normal")):
        (root / folder).mkdir()
        for name in cxr_manifest.loc[cxr_manifest.label == label, "file"].iloc[:IMAGES_PER_CLASS]:
            (root / folder / name).symlink_to(cxr_dir / "images" / name)
    return root


@pytest.fixture
def fresh_app(small_dataset, monkeypatch, tmp_path) -> Path:
    models_dir = tmp_path / "models" / "default"
    isolate_app(monkeypatch, tmp_path, models_dir=models_dir)
    monkeypatch.setenv("CXR_DATA", str(small_dataset))
    monkeypatch.setenv("CXR_CACHE", str(tmp_path / "feature-cache"))
    return models_dir


@pytest.mark.slow
def test_first_start_offers_the_command_and_trains_the_model(fresh_app):
    app = open_page()
    assert "no trained model" in app.error[0].value
    assert "python -m core train" in app.code[0].value and str(fresh_app) in app.code[0].value
    assert not app.file_uploader  # nothing to upload to before a model exists
    app.button(key="state_train_button").click().run()
    assert not app.exception, [e.value for e in app.exception]
    assert (fresh_app / "report.json").is_file() and (fresh_app / "evaluation-random.json").is_file()
    assert not app.error and len(app.file_uploader) == 1  # the page now works
    comparison = open_page("model_comparison")
    assert "saved: random split" in comparison.selectbox(key="comparison_report").options


def test_comparison_runs_an_evaluation_and_offers_it_to_the_other_pages(fresh_app, small_dataset):
    app = open_page("model_comparison")
    assert app.text_input(key="comparison_data_dir").value == str(small_dataset)
    app.selectbox(key="comparison_feature_set").set_value("radiomic")
    app.selectbox(key="comparison_split").set_value("random")
    app.number_input(key="comparison_repeats").set_value(2)
    app.number_input(key="comparison_select_k").set_value(5)
    app.form_submit_button[0].click().run()
    assert not app.exception, [e.value for e in app.exception]
    assert "Finished: random split, radiomic features, k=5, 2 repeats" in texts(app)
    table = app.dataframe[0].value
    assert sorted(set(table["model"])) == sorted(MODEL_NAMES) and len(table) == 8
    assert any(f.layout.title.text == "AUC" for f in plotly_figures(app))
    # the run is offered on the ROC page of the same session
    app.switch_page("pages/roc_curves.py").run()
    options = app.selectbox(key="roc_report").options
    assert any(option.startswith("your run: random split, radiomic") for option in options)


def test_running_the_same_evaluation_twice_works(fresh_app, small_dataset):
    """The second identical run used to crash (CacheReplayClosureError: a progress bar inside st.cache_data)."""
    app = open_page("model_comparison")
    app.selectbox(key="comparison_feature_set").set_value("radiomic")
    app.selectbox(key="comparison_split").set_value("random")
    app.number_input(key="comparison_repeats").set_value(2)
    app.number_input(key="comparison_select_k").set_value(5)
    app.form_submit_button[0].click().run()
    first = app.dataframe[0].value
    app.form_submit_button[0].click().run()
    assert not app.exception, [e.value for e in app.exception]
    assert "Finished: random split, radiomic features, k=5, 2 repeats" in texts(app)
    assert app.dataframe[0].value.equals(first)


def test_comparison_reports_a_bad_data_folder_clearly(fresh_app, tmp_path):
    app = open_page("model_comparison")
    app.text_input(key="comparison_data_dir").set_value(str(tmp_path / "nowhere"))
    app.form_submit_button[0].click().run()
    assert not app.exception
    assert "could not run" in app.error[0].value and "nowhere" in app.error[0].value
