"""Dashboard Model comparison, ROC curves and Confusion matrices pages (AppTest).

The saved reports are made by the real ``core.evaluation.evaluate`` on a small synthetic feature table (a few
seconds), so these pages are tested without the trained default model.
"""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
from dashboard_support import isolate_app, open_page, plotly_figures, texts

from core.evaluation.consensus import CONSENSUS, with_consensus
from core.evaluation.evaluate import evaluate
from core.learn.consensus import ConsensusCalibrator
from core.learn.flag import FlagRule
from core.evaluation.report_sites import targets_not_met
from core.evaluation.sites import evaluate_sites
from core.learn.models import MODEL_NAMES
from core.workflow import SITE_EVALUATION_FILE, evaluation_file_name

FLAG_RULE = FlagRule(0.3, 0.95)


@pytest.fixture(scope="module")
def saved_models_dir(tmp_path_factory) -> tuple:
    """A models folder holding evaluation-patient.json and evaluation-random.json (with the consensus at a flag
    threshold) and evaluation-source.json (no signal across sources: a failed cross-hospital check)."""
    rng = np.random.default_rng(0)
    n_images = 48
    y = (np.arange(n_images) // 2) % 2                      # two images per patient, one label per patient
    signal = np.r_[np.ones(3), np.zeros(7)]
    X = pd.DataFrame(rng.normal(size=(n_images, 10)) + 1.5 * y[:, None] * signal,
                     columns=[f"feature_{i}" for i in range(10)])
    groups = np.arange(n_images) // 2
    folder = tmp_path_factory.mktemp("models")
    calibrator = ConsensusCalibrator().fit(rng.uniform(size=(n_images, 4)) * 0.5 + 0.5 * y[:, None], y)
    reports = {}
    for split in ("patient", "random"):
        report = evaluate(X, y, groups=groups, split=split, repeats=2, select_k=4, n_jobs=1, random_state=1,
                          preset="orange")  # the study's fixed models: what is drawn matters here, not tuning
        reports[split] = with_consensus(report, calibrator, FLAG_RULE)
        reports[split].to_json(folder / evaluation_file_name(split))
    noise = pd.DataFrame(rng.normal(size=(n_images, 10)), columns=X.columns)
    sources = np.array(["hospital A", "hospital B", "hospital C"])[np.arange(n_images) // 4 % 3]
    reports["source"] = evaluate(noise, y, groups=groups, sources=sources, split="source", test_source="hospital C",
                                 repeats=2, select_k=4, n_jobs=1, random_state=1, preset="orange")
    reports["source"].to_json(folder / evaluation_file_name("source"))
    sites = np.repeat(["nih", "a", "b"], 40)                 # three classes at three sites (site evaluation)
    three = rng.integers(0, 3, len(sites))
    X3 = pd.DataFrame(rng.normal(size=(len(sites), 6)) + 2.0 * np.eye(3)[three] @ np.eye(3, 6),
                      columns=[f"feature_{i}" for i in range(6)])
    site = evaluate_sites(X3, three, np.arange(len(sites)) // 2, sites, recipe="linear", n_boot=20)
    (folder / SITE_EVALUATION_FILE).write_text(json.dumps(site))
    reports["site"] = site
    return folder, reports


@pytest.fixture
def app_env(saved_models_dir, monkeypatch, tmp_path):
    folder, reports = saved_models_dir
    isolate_app(monkeypatch, tmp_path, models_dir=folder)
    return reports


def test_model_comparison_leads_with_the_unseen_hospital(app_env):
    app = open_page("model_comparison")
    assert not app.exception, [e.value for e in app.exception]
    headers = [h.value for h in app.header]
    assert headers[0] == "How it holds up at a hospital it has never seen"
    assert headers.index("How it holds up at a hospital it has never seen") < headers.index(
        "Random and patient splits (hospitals known)")
    assert "Within-site contrasts" in texts(app) and "study's reproduction" in texts(app)
    missed = targets_not_met(app_env["site"])
    if missed:   # said plainly, at the top
        assert "Targets not met" in app.error[0].value and missed[0] in app.error[0].value
    targets = app.dataframe[0].value
    assert len(targets) == len(app_env["site"]["targets"]) and "met" in targets.columns


def test_model_comparison_shows_the_saved_table_and_chart(app_env):
    app = open_page("model_comparison")
    table = next(d.value for d in app.dataframe if "stage" in d.value.columns)   # after the site section
    assert len(table) == 2 * len(MODEL_NAMES) + 1 and table["model"].tolist()[-1] == CONSENSUS
    expected = app_env["patient"].table()
    first = expected.iloc[0]
    assert table.loc[0, "AUC"] == f"{first['AUC']:.3f} ± {first['AUC_sd']:.3f}"
    assert {"Accuracy", "Sensitivity (recall)"} <= set(table.columns)      # words, and one column for the two
    assert not {"CA", "Recall", "Sensitivity"} & set(table.columns)
    assert "patient split" in texts(app)
    bars = plotly_figures(app)[0]
    assert [trace.name for trace in bars.data] == ["before selection (all features)",
                                                         "after feature selection"]
    assert list(bars.data[1].y) == pytest.approx(expected.loc[expected.stage == "after", "AUC"].tolist())
    app.segmented_control(key="comparison_saved_metric").set_value("CA").run()
    assert plotly_figures(app)[0].layout.title.text == "Accuracy"
    selected = next(d.value for d in app.dataframe  # features kept by the selection, per model
                    if str(d.value.columns[0]).startswith("feature (repeats kept"))
    assert set(MODEL_NAMES) <= set(selected.columns) and "feature_0" in selected.iloc[:, 0].tolist()
    app.selectbox(key="comparison_report").set_value("saved: random split").run()
    assert "random split" in texts(app)


def test_roc_page_shows_the_consensus_at_its_threshold_and_the_cross_hospital_check(app_env):
    app = open_page("roc_curves")
    assert "Cross-hospital check" in app.warning[0].value and "hospital C" in app.warning[0].value
    figure = plotly_figures(app)[0]
    names = [trace.name for trace in figure.data]
    report = app_env["patient"]
    consensus = report.result(CONSENSUS, "after")
    assert f"Consensus merged, AUC {consensus.pooled['AUC_pooled']:.3f}" in names
    star = next(trace for trace in figure.data if trace.name == "Consensus at the flag threshold")
    assert (star.x[0], star.y[0]) == pytest.approx((consensus.roc["operating_point"]["fpr"],
                                                    consensus.roc["operating_point"]["tpr"]))
    assert "flag threshold 30%" in star.hovertemplate
    for model in MODEL_NAMES:
        auc = report.result(model, "after").pooled["AUC_pooled"]
        assert f"{model} merged, AUC {auc:.3f}" in names
        assert f"{model} operating point" in names
    merged = next(t for t in figure.data if t.name.startswith("SVM merged"))
    assert "threshold" in merged.hovertemplate and len(merged.customdata) == len(merged.x)
    app.toggle(key="roc_averaged").set_value(True)
    app.multiselect(key="roc_stages").set_value(["before", "after"]).run()
    names = [trace.name for trace in plotly_figures(app)[0].data]
    assert sum("averaged" in name for name in names) == 2 * len(MODEL_NAMES) + 1  # the consensus: saved stage only
    assert any(name.startswith("kNN (before) merged") for name in names)


def test_confusion_page_shows_counts_and_proportions(app_env):
    app = open_page("confusion_matrices")
    figures = by_title(app)
    consensus_title = "Consensus at the flag threshold 30% (the app)"
    assert sorted(figures) == sorted([consensus_title] + [f"{name} (probability 0.5)" for name in MODEL_NAMES])
    report = app_env["patient"]
    expected = report.result(CONSENSUS, "after").confusion["counts"]
    assert np.array(figures[consensus_title].data[0].z).tolist() == np.array(expected, dtype=float).tolist()
    expected = report.result("SVM", "after").confusion["counts"]
    assert np.array(figures["SVM (probability 0.5)"].data[0].z).tolist() == np.array(expected, dtype=float).tolist()
    app.radio(key="confusion_view").set_value("proportion of actual").run()
    rows = np.array(by_title(app)["kNN (probability 0.5)"].data[0].z, dtype=float)
    assert rows.sum(axis=1) == pytest.approx([1.0, 1.0])
    app.radio(key="confusion_stage").set_value("before").run()
    before = report.result("Random Forest", "before").confusion["proportion_of_actual"]
    figure = by_title(app)["Random Forest (probability 0.5)"]
    assert np.array(figure.data[0].z, dtype=float) == pytest.approx(np.array(before))


def by_title(app) -> dict:
    return {figure.layout.title.text: figure for figure in plotly_figures(app)}


@pytest.mark.parametrize("page", ["model_comparison", "roc_curves", "confusion_matrices"])
def test_pages_without_reports_explain_how_to_make_them(page, monkeypatch, tmp_path):
    isolate_app(monkeypatch, tmp_path, models_dir=tmp_path / "no-models")
    app = open_page(page)
    assert "python -m core train" in texts(app)
    assert not plotly_figures(app)

