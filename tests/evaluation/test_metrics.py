"""Metric definitions against scikit-learn, confusion proportions, ROC summaries."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.metrics import (
    accuracy_score,
    confusion_matrix,
    f1_score,
    precision_score,
    recall_score,
    roc_auc_score,
    roc_curve,
)

from core.evaluation.metrics import (
    classification_scores,
    confusion_matrices,
    mean_sd,
    roc_auc,
    roc_summary,
    summarise_repeats,
)

# 12 images, 5 COVID-19: TP = 3, FN = 2, FP = 2, TN = 5.
Y_TRUE = np.array([1, 1, 1, 1, 1, 0, 0, 0, 0, 0, 0, 0])
Y_PRED = np.array([1, 1, 1, 0, 0, 1, 1, 0, 0, 0, 0, 0])
PROBA = np.array([0.9, 0.8, 0.7, 0.4, 0.3, 0.6, 0.55, 0.45, 0.2, 0.1, 0.35, 0.05])


def test_scores_match_scikit_learn_on_a_constructed_example():
    scores = classification_scores(Y_TRUE, Y_PRED)
    assert scores["CA"] == pytest.approx(accuracy_score(Y_TRUE, Y_PRED)) == pytest.approx(8 / 12)
    assert scores["Precision"] == pytest.approx(precision_score(Y_TRUE, Y_PRED)) == pytest.approx(3 / 5)
    assert scores["Recall"] == pytest.approx(recall_score(Y_TRUE, Y_PRED)) == pytest.approx(3 / 5)
    assert scores["F1"] == pytest.approx(f1_score(Y_TRUE, Y_PRED))
    assert scores["Sensitivity"] == scores["Recall"]
    assert scores["Specificity"] == pytest.approx(recall_score(Y_TRUE, Y_PRED, pos_label=0)) == pytest.approx(5 / 7)
    for name, metric in [("F1", f1_score), ("Precision", precision_score), ("Recall", recall_score)]:
        assert scores[f"{name}_weighted"] == pytest.approx(metric(Y_TRUE, Y_PRED, average="weighted"))


def test_zero_denominators_give_zero_like_scikit_learn_zero_division_0():
    y_true, y_pred = np.array([1, 1, 0, 0]), np.zeros(4, dtype=int)
    scores = classification_scores(y_true, y_pred)
    assert scores["Precision"] == precision_score(y_true, y_pred, zero_division=0) == 0.0
    assert scores["F1"] == f1_score(y_true, y_pred, zero_division=0) == 0.0
    assert scores["Precision_weighted"] == pytest.approx(
        precision_score(y_true, y_pred, average="weighted", zero_division=0))


def test_confusion_counts_and_proportions():
    matrices = confusion_matrices(Y_TRUE, Y_PRED)
    counts = np.array(matrices["counts"])
    np.testing.assert_array_equal(counts, confusion_matrix(Y_TRUE, Y_PRED, labels=[0, 1]))
    np.testing.assert_array_equal(counts, [[5, 2], [2, 3]])  # rows actual Normal, COVID-19
    of_predicted = np.array(matrices["proportion_of_predicted"])
    of_actual = np.array(matrices["proportion_of_actual"])
    np.testing.assert_allclose(of_predicted.sum(axis=0), [1, 1])  # columns = predicted class
    np.testing.assert_allclose(of_actual.sum(axis=1), [1, 1])  # rows = actual class
    np.testing.assert_allclose(of_actual, confusion_matrix(Y_TRUE, Y_PRED, normalize="true"))
    np.testing.assert_allclose(of_predicted, confusion_matrix(Y_TRUE, Y_PRED, normalize="pred"))
    assert matrices["labels"] == ["Normal", "COVID-19"]


def test_empty_predicted_column_gives_nan_not_a_fake_proportion():
    matrices = confusion_matrices([0, 1, 1], [0, 0, 0])
    assert np.isnan(np.array(matrices["proportion_of_predicted"])[:, 1]).all()


def test_auc_matches_scikit_learn_and_is_nan_for_one_class():
    assert roc_auc(Y_TRUE, PROBA) == pytest.approx(roc_auc_score(Y_TRUE, PROBA))
    assert np.isnan(roc_auc([1, 1], [0.2, 0.9]))


def _repeats():
    rng = np.random.default_rng(0)
    truths = [rng.permutation(np.repeat([0, 1], [12, 8])) for _ in range(4)]
    probas = [np.clip(t * 0.35 + rng.uniform(0, 0.65, t.size), 0, 1) for t in truths]
    preds = [(p > 0.5).astype(int) for p in probas]
    return truths, probas, preds


def test_summary_averages_auc_per_repeat_and_pools_the_rest():
    truths, probas, preds = _repeats()
    summary = summarise_repeats(truths, probas, preds)
    per_repeat_auc = [roc_auc_score(t, p) for t, p in zip(truths, probas)]
    assert summary["pooled"]["AUC"] == pytest.approx(np.mean(per_repeat_auc))
    np.testing.assert_allclose(summary["per_repeat"]["AUC"], per_repeat_auc)
    pooled_true, pooled_pred = np.concatenate(truths), np.concatenate(preds)
    assert summary["pooled"]["AUC_pooled"] == pytest.approx(roc_auc_score(pooled_true, np.concatenate(probas)))
    assert summary["pooled"]["CA"] == pytest.approx(accuracy_score(pooled_true, pooled_pred))
    assert summary["pooled"]["F1"] == pytest.approx(f1_score(pooled_true, pooled_pred))
    np.testing.assert_allclose(summary["per_repeat"]["Recall"], [recall_score(t, p) for t, p in zip(truths, preds)])
    assert np.array(summary["confusion"]["counts"]).sum() == 80


def test_roc_summary_curves():
    truths, probas, preds = _repeats()
    roc = roc_summary(truths, probas, preds)
    fpr, tpr, thresholds = roc_curve(np.concatenate(truths), np.concatenate(probas))
    np.testing.assert_allclose(roc["merged"]["fpr"], fpr)
    np.testing.assert_allclose(roc["merged"]["tpr"], tpr)
    np.testing.assert_allclose(roc["merged"]["thresholds"], thresholds)
    averaged = roc["averaged"]
    assert len(averaged["fpr"]) == len(averaged["tpr_mean"]) == len(averaged["tpr_sd"]) == 101
    mean = np.array(averaged["tpr_mean"])
    assert np.all(np.diff(mean) >= -1e-12) and mean[-1] == pytest.approx(1.0)
    np.testing.assert_allclose(mean[50], np.mean([np.interp(0.5, *roc_curve(t, p)[:2])
                                                  for t, p in zip(truths, probas)]))
    scores = classification_scores(np.concatenate(truths), np.concatenate(preds))
    assert roc["operating_point"]["tpr"] == scores["Sensitivity"]
    assert roc["operating_point"]["fpr"] == pytest.approx(1 - scores["Specificity"])


def test_mean_sd_uses_sample_sd_and_nan_for_one_value():
    assert mean_sd([1.0, 2.0, 3.0]) == (2.0, 1.0)
    mean, sd = mean_sd([0.7])
    assert mean == 0.7 and np.isnan(sd)
    assert mean_sd([np.nan, 1.0, 3.0])[0] == 2.0
