"""evaluate(): repeated fitting inside splits, the report, its JSON round trip, reproducibility."""

from __future__ import annotations

import json
import warnings

import numpy as np
import pandas as pd
import pytest
from sklearn.datasets import make_classification

from core.evaluation.evaluate import (
    EvaluationReport,
    as_binary_target,
    evaluate,
    format_table,
)
from core.evaluation.metrics import METRICS, WEIGHTED_METRICS, classification_scores
from core.evaluation.splits import make_splits
from core.learn.models import MODEL_NAMES
from core.learn.preprocessing import InformationGainSelector, MissingValueFilter

FAST = ("kNN", "SVM")


@pytest.fixture(scope="module")
def data():
    X, y = make_classification(n_samples=120, n_features=30, n_informative=5, n_redundant=5, random_state=0)
    X[::10, 4] = np.nan  # 10 % missing: filtered out in every training split
    X[::40, 7] = np.nan  # 2.5 %: kept, imputed
    frame = pd.DataFrame(X, columns=[f"f{i:02d}" for i in range(30)])
    groups = np.repeat(np.arange(60), 2)  # two images per patient, same label
    y = np.repeat(y[::2], 2)
    sources = np.where(np.arange(120) < 40, "site A", np.where(np.arange(120) < 80, "site B", "site C"))
    return frame, y, groups, sources


@pytest.fixture(scope="module")
def report(data):
    X, y, groups, _ = data
    return evaluate(X, y, groups=groups, repeats=3, preset="orange", models=FAST, select_k=5)


def test_report_has_one_result_per_model_and_stage(report):
    assert [(r.model, r.stage) for r in report.results] == [("kNN", "before"), ("SVM", "before"),
                                                            ("kNN", "after"), ("SVM", "after")]
    assert (report.split, report.repeats, report.n_images, report.n_patients) == ("patient", 3, 120, 60)
    assert report.target == "COVID-19"
    for result in report.results:
        assert all(len(values) == 3 for values in result.per_repeat.values())
        assert 0.5 < result.pooled["AUC"] <= 1.0


def test_table_columns_and_values(report):
    table = report.table()
    expected = ["model", "stage"] + [c for m in METRICS + WEIGHTED_METRICS for c in (m, f"{m}_sd")]
    assert list(table.columns) == expected
    assert len(table) == 4
    knn_after = report.result("kNN", "after")
    row = table[(table.model == "kNN") & (table.stage == "after")].iloc[0]
    assert row["AUC"] == pytest.approx(np.mean(knn_after.per_repeat["AUC"]))
    assert row["CA_sd"] == pytest.approx(np.std(knn_after.per_repeat["CA"], ddof=1))
    assert "kNN" in format_table(report)


def test_one_repeat_prints_values_without_a_spread(data):
    X, y, groups, _ = data
    single = evaluate(X, y, groups=groups, repeats=1, preset="orange", models=FAST, select_k=5)
    text = format_table(single)
    assert "nan" not in text.lower() and "±" not in text
    assert f"{single.result('kNN', 'after').pooled['CA']:.3f}" in text


def test_pooled_scores_are_the_scores_of_the_out_of_fold_predictions(report):
    result = report.result("SVM", "after")
    y_true = np.concatenate([fold.y_true for fold in result.out_of_fold])
    y_pred = np.concatenate([fold.y_pred for fold in result.out_of_fold])
    for name, value in classification_scores(y_true, y_pred).items():
        assert result.pooled[name] == pytest.approx(value)
    assert all(0 <= p <= 1 for fold in result.out_of_fold for p in fold.proba)


def test_summary_json(report):
    summary = report.summary_json()
    assert set(summary) == {"split", "repeats", "train_size", "target", "n_images", "n_patients", "results"}
    assert summary["target"] == "COVID-19"
    assert set(summary["results"][0]) == {"model", "stage", *METRICS}
    json.dumps(summary, allow_nan=False)


def test_selection_happens_inside_each_training_split(data, report):
    X, y, groups, _ = data
    plan = make_splits(y, groups=groups, split="patient", repeats=3)
    result = report.result("kNN", "after")
    for (train, _), selected in zip(plan.folds, result.selected_features):
        kept = MissingValueFilter().fit(X.iloc[train])
        assert "f04" not in kept.get_feature_names_out()
        selector = InformationGainSelector(k=5).fit(kept.transform(X.iloc[train]), y[train])
        assert selected == [kept.get_feature_names_out()[i] for i in selector.selected_indices_]
    assert sum(result.selection_counts.values()) == 15
    assert list(result.selection_counts.values()) == sorted(result.selection_counts.values(), reverse=True)


def test_patient_split_keeps_patients_apart(data, report):
    _, _, groups, _ = data
    assert all(fold["n_shared_patients"] == 0 for fold in report.split_description["folds"])
    for fold in report.result("SVM", "before").out_of_fold:
        test_patients = set(groups[fold.test_index])
        train_patients = set(groups[np.setdiff1d(np.arange(len(groups)), fold.test_index)])
        assert not test_patients & train_patients


def test_json_round_trip(report, tmp_path):
    path = report.to_json(tmp_path / "report.json")
    text = path.read_text()
    json.loads(text, parse_constant=lambda name: pytest.fail(f"non-strict JSON constant {name}"))
    loaded = EvaluationReport.from_json(path)
    assert loaded.to_dict() == report.to_dict()
    pd.testing.assert_frame_equal(loaded.table(), report.table())
    assert loaded.result("SVM", "after").roc["merged"]["thresholds"][0] == np.inf
    assert loaded.result("SVM", "after").out_of_fold == []  # not written by default
    full = EvaluationReport.from_dict(json.loads(json.dumps(report.to_dict(include_predictions=True))))
    for mine, theirs in zip(report.result("kNN", "after").out_of_fold, full.result("kNN", "after").out_of_fold):
        np.testing.assert_array_equal(mine.test_index, theirs.test_index)
        np.testing.assert_allclose(mine.proba, theirs.proba)


def _comparable(report: EvaluationReport) -> dict:
    data = report.to_dict(include_predictions=True)
    data.pop("elapsed_seconds")
    for result in data["results"]:
        result.pop("fit_seconds")
    return data


def test_same_seed_same_report_and_parallel_equals_serial(data):
    X, y, groups, _ = data
    options = dict(groups=groups, repeats=2, models=("Random Forest", "Neural Network"), select_k=4,
                   preset="orange", random_state=3)
    first = evaluate(X, y, **options)
    assert _comparable(evaluate(X, y, **options)) == _comparable(first)
    assert _comparable(evaluate(X, y, n_jobs=2, **options)) == _comparable(first)
    assert _comparable(evaluate(X, y, **{**options, "random_state": 4})) != _comparable(first)


def test_all_four_models_tuned(data):
    X, y, groups, _ = data
    report = evaluate(X, y, groups=groups, repeats=2, select_k=5)
    assert [r.model for r in report.results] == list(MODEL_NAMES) * 2
    assert report.preset == "tuned"
    # The tuned SVM runs libsvm to convergence (the Orange preset caps it at 100 iterations).
    assert all(r.n_convergence_warnings == 0 for r in report.results if r.model == "SVM")


def test_source_split_tests_on_the_named_source(data):
    X, y, _, sources = data
    report = evaluate(X, y, sources=sources, split="source", test_source="site b", repeats=2, models=("kNN",),
                      select_k=None)
    assert report.split == "source" and [r.stage for r in report.results] == ["before"]
    assert report.split_description["test_source"] == "site B"
    assert report.train_size == pytest.approx(80 / 120)
    for fold in report.results[0].out_of_fold:
        np.testing.assert_array_equal(fold.test_index, np.arange(40, 80))
    with pytest.raises(ValueError, match="matches 3 sources"):
        evaluate(X, y, sources=sources, split="source", test_source="site", models=("kNN",))


def test_without_patient_ids_patient_split_falls_back_to_random(data):
    X, y, _, _ = data
    with pytest.warns(UserWarning, match="falling back to split='random'"):
        report = evaluate(X, y, repeats=2, models=("kNN",), select_k=None)
    assert report.split == "random" and report.n_patients is None


def test_progress_reports_every_fit(data):
    X, y, groups, _ = data
    calls = []
    evaluate(X, y, groups=groups, repeats=2, models=FAST, preset="orange", progress=lambda f, m: calls.append((f, m)))
    fractions = [fraction for fraction, _ in calls]
    assert len(calls) == 8 and fractions == sorted(fractions) and fractions[-1] == 1.0
    assert all(isinstance(message, str) and message for _, message in calls)


def test_orange_preset_counts_convergence_warnings_instead_of_printing_them(data):
    X, y, groups, _ = data
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # any leaked warning would fail the test
        report = evaluate(X, y, groups=groups, repeats=1, models=("Neural Network",), preset="orange",
                          select_k=None)
    assert report.results[0].n_convergence_warnings == 1  # adam stopped at max_iter=200


def test_labels():
    np.testing.assert_array_equal(as_binary_target(["COVID-19", "Normal", "COVID-19"]), [1, 0, 1])
    np.testing.assert_array_equal(as_binary_target([True, False]), [1, 0])
    with pytest.raises(ValueError, match="Pneumonia"):
        as_binary_target(["COVID-19", "Pneumonia"])
    with pytest.raises(ValueError, match="both classes"):
        as_binary_target([1, 1, 1])
    with pytest.raises(ValueError, match="0 \\(Normal\\) or 1"):
        as_binary_target([0, 2])


# Orange's preset with all four models (the faithful results); the tuned one without its 300-tree forest, which
# adds minutes to the suite and nothing to what the loop does.
@pytest.mark.parametrize("preset, models", [("orange", MODEL_NAMES), ("tuned", ("SVM", "Neural Network", "kNN"))])
def test_evaluate_gives_exactly_the_numbers_of_a_plain_fit_predict_loop(data, preset, models):
    """Guards every speed change to the shared fit/predict loop (scheduling, workers, any split): evaluate's
    out-of-fold probabilities and labels must be those of fitting each pipeline on its training rows and calling
    predict_proba / predict on the test rows, one by one."""
    from core.learn.models import make_pipeline

    X, y, groups, _ = data
    report = evaluate(X, y, groups=groups, repeats=2, preset=preset, models=models, select_k=5, n_jobs=2,
                      random_state=3)
    assert {result.model for result in report.results} == set(models)
    plan = make_splits(y, groups=groups, split="patient", repeats=2, random_state=3)
    values = X.to_numpy(dtype=np.float64)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for result in report.results:
            for fold, (train, test), seed in zip(result.out_of_fold, plan.folds, plan.model_seeds):
                pipeline = make_pipeline(result.model, preset=preset, random_state=seed,
                                         select_k=5 if result.stage == "after" else None)
                pipeline.fit(values[train], y[train])
                np.testing.assert_array_equal(fold.test_index, test)
                np.testing.assert_array_equal(fold.proba, pipeline.predict_proba(values[test])[:, 1])
                np.testing.assert_array_equal(fold.y_pred, pipeline.predict(values[test]))
