"""Dashboard Model comparison, ROC curves and Confusion matrices pages (AppTest).

The saved reports are made by the real ``core.evaluation.evaluate`` on a small synthetic feature table (a few
seconds), so these pages are tested without the trained default model.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from dashboard_support import isolate_app, open_page, plotly_figures, texts

from core.evaluation.evaluate import evaluate
from core.learn.models import MODEL_NAMES
from core.workflow import evaluation_file_name


@pytest.fixture(scope="module")
def saved_models_dir(tmp_path_factory) -> tuple:
    """A models folder holding evaluation-patient.json and evaluation-random.json."""
    rng = np.random.default_rng(0)
    n_images = 48
    y = (np.arange(n_images) // 2) % 2                      # two images per patient, one label per patient
    signal = np.r_[np.ones(3), np.zeros(7)]
    X = pd.DataFrame(rng.normal(size=(n_images, 10)) + 1.5 * y[:, None] * signal,
                     columns=[f"feature_{i}" for i in range(10)])
    groups = np.arange(n_images) // 2
    folder = tmp_path_factory.mktemp("models")
    reports = {}
    for split in ("patient", "random"):
        reports[split] = evaluate(X, y, groups=groups, split=split, repeats=2, select_k=4, n_jobs=1,
                                  random_state=1)
        reports[split].to_json(folder / evaluation_file_name(split))
    return folder, reports


@pytest.fixture
def app_env(saved_models_dir, monkeypatch, tmp_path):
    folder, reports = saved_models_dir
    isolate_app(monkeypatch, tmp_path, models_dir=folder)
    return reports


def test_model_comparison_shows_the_saved_table_and_chart(app_env):
    app = open_page("model_comparison")
    table = app.dataframe[0].value
    assert len(table) == 2 * len(MODEL_NAMES)
    expected = app_env["patient"].table()
    first = expected.iloc[0]
    assert table.loc[0, "AUC"] == f"{first['AUC']:.3f} ± {first['AUC_sd']:.3f}"
    assert "patient split" in texts(app)
    bars = plotly_figures(app)[0]
    assert [trace.name for trace in bars.data] == ["before selection (all features)",
                                                         "after feature selection"]
    assert list(bars.data[1].y) == pytest.approx(expected.loc[expected.stage == "after", "AUC"].tolist())
    app.segmented_control(key="comparison_saved_metric").set_value("Specificity").run()
    assert plotly_figures(app)[0].layout.title.text == "Specificity"
    selected = app.dataframe[1].value  # features kept by the selection, per model
    assert set(MODEL_NAMES) <= set(selected.columns) and "feature_0" in selected.iloc[:, 0].tolist()
    app.selectbox(key="comparison_report").set_value("saved: random split").run()
    assert "random split" in texts(app)


def test_roc_page_draws_each_model_with_auc_and_operating_point(app_env):
    app = open_page("roc_curves")
    figure = plotly_figures(app)[0]
    names = [trace.name for trace in figure.data]
    report = app_env["patient"]
    for model in MODEL_NAMES:
        auc = report.result(model, "after").pooled["AUC_pooled"]
        assert f"{model} merged, AUC {auc:.3f}" in names
        assert f"{model} operating point" in names
    merged = next(t for t in figure.data if t.name.startswith("SVM merged"))
    assert "threshold" in merged.hovertemplate and len(merged.customdata) == len(merged.x)
    app.toggle(key="roc_averaged").set_value(True)
    app.multiselect(key="roc_stages").set_value(["before", "after"]).run()
    names = [trace.name for trace in plotly_figures(app)[0].data]
    assert sum("averaged" in name for name in names) == 2 * len(MODEL_NAMES)
    assert any(name.startswith("kNN (before) merged") for name in names)


def test_confusion_page_shows_counts_and_proportions(app_env):
    app = open_page("confusion_matrices")
    figures = by_title(app)
    assert sorted(figures) == sorted(MODEL_NAMES)
    report = app_env["patient"]
    expected = report.result("SVM", "after").confusion["counts"]
    assert np.array(figures["SVM"].data[0].z).tolist() == np.array(expected, dtype=float).tolist()
    app.radio(key="confusion_view").set_value("proportion of actual").run()
    rows = np.array(by_title(app)["kNN"].data[0].z, dtype=float)
    assert rows.sum(axis=1) == pytest.approx([1.0, 1.0])
    app.radio(key="confusion_stage").set_value("before").run()
    before = report.result("Random Forest", "before").confusion["proportion_of_actual"]
    assert np.array(by_title(app)["Random Forest"].data[0].z, dtype=float) == pytest.approx(np.array(before))


def by_title(app) -> dict:
    return {figure.layout.title.text: figure for figure in plotly_figures(app)}


@pytest.mark.parametrize("page", ["model_comparison", "roc_curves", "confusion_matrices"])
def test_pages_without_reports_explain_how_to_make_them(page, monkeypatch, tmp_path):
    isolate_app(monkeypatch, tmp_path, models_dir=tmp_path / "no-models")
    app = open_page(page)
    assert "python -m core train" in texts(app)
    assert not plotly_figures(app)

