"""Scores of a repeated evaluation, COVID-19 (label 1) being the positive class.

Conventions (as Orange's *Test & Score* with repeated random sampling):

- AUC is computed on each repeat and averaged;
- CA, F1, Precision, Recall (and Sensitivity/Specificity) are computed on the predictions pooled
  over all repeats; their per-repeat values give the spread (sample SD, ddof=1);
- ``*_weighted`` = average over both classes weighted by class support (Orange's
  "(Average over classes)", scikit-learn's ``average="weighted"``);
- a ratio with a zero denominator (e.g. precision without positive predictions) is 0.

Confusion matrices have rows = actual, columns = predicted, order [Normal, COVID-19].
"""

from __future__ import annotations

from typing import Sequence

import numpy as np
from scipy.stats import rankdata
from sklearn.metrics import confusion_matrix, precision_recall_fscore_support, roc_auc_score, roc_curve

from core.labels import BINARY_LABELS

__all__ = ["METRICS", "WEIGHTED_METRICS", "classification_scores", "confusion_matrices", "roc_auc", "patient_bootstrap", "fast_auc",
           "roc_summary", "summarise_repeats", "mean_sd"]

#: Metrics reported for the COVID-19 class (Recall and Sensitivity coincide by definition).
METRICS = ("AUC", "CA", "F1", "Precision", "Recall", "Sensitivity", "Specificity")
#: Class-weighted averages.
WEIGHTED_METRICS = ("F1_weighted", "Precision_weighted", "Recall_weighted")
_ROC_GRID_POINTS = 101


def _ratio(numerator: float, denominator: float) -> float:
    return float(numerator / denominator) if denominator > 0 else 0.0


def _confusion_counts(y_true, y_pred) -> np.ndarray:
    """2 x 2 counts, rows actual [0, 1], columns predicted [0, 1]."""
    return confusion_matrix(np.asarray(y_true).astype(int), np.asarray(y_pred).astype(int), labels=[0, 1])


def classification_scores(y_true, y_pred) -> dict[str, float]:
    """CA, F1, Precision, Recall, Sensitivity, Specificity (COVID-19) and weighted averages.

    Parameters
    ----------
    y_true, y_pred : array-like of {0, 1}, shape (n,)

    Returns
    -------
    scores : dict
        Keys ``CA``, ``F1``, ``Precision``, ``Recall``, ``Sensitivity``, ``Specificity``,
        ``F1_weighted``, ``Precision_weighted``, ``Recall_weighted``.
    """
    y_true, y_pred = np.asarray(y_true).astype(int), np.asarray(y_pred).astype(int)
    precision, recall, f1, support = precision_recall_fscore_support(y_true, y_pred, labels=[0, 1],
                                                                     zero_division=0.0)
    n = int(support.sum())

    def weighted(values: np.ndarray) -> float:
        return _ratio(float(values @ support), n)

    return {
        "CA": _ratio(float((y_true == y_pred).sum()), n),
        "F1": float(f1[1]),
        "Precision": float(precision[1]),
        "Recall": float(recall[1]),
        "Sensitivity": float(recall[1]),
        "Specificity": float(recall[0]),
        "F1_weighted": weighted(f1),
        "Precision_weighted": weighted(precision),
        "Recall_weighted": weighted(recall),
    }


def confusion_matrices(y_true, y_pred) -> dict[str, list[list[float]]]:
    """Counts, proportion of predicted (columns sum to 1) and proportion of actual (rows sum to 1).

    A row or column without any image gives NaN proportions (scikit-learn's ``normalize=`` writes 0 there, which
    would read as a measured proportion).
    """
    counts = _confusion_counts(y_true, y_pred).astype(float)
    with np.errstate(divide="ignore", invalid="ignore"):
        of_predicted = counts / counts.sum(axis=0, keepdims=True)
        of_actual = counts / counts.sum(axis=1, keepdims=True)
    return {"labels": list(BINARY_LABELS), "counts": counts.astype(int).tolist(),
            "proportion_of_predicted": of_predicted.tolist(), "proportion_of_actual": of_actual.tolist()}


def fast_auc(y_true, score) -> float:
    """ROC AUC by the rank-sum (Mann-Whitney) formula, ties counted one half; NaN with a single class.

    Same value as :func:`sklearn.metrics.roc_auc_score`, without its input checks: for bootstrap loops.
    """
    y_true = np.asarray(y_true).astype(bool)
    n_positive = int(y_true.sum())
    n_negative = len(y_true) - n_positive
    if n_positive == 0 or n_negative == 0:
        return float("nan")
    ranks = rankdata(score)
    return float((ranks[y_true].sum() - n_positive * (n_positive + 1) / 2) / (n_positive * n_negative))


def roc_auc(y_true, proba) -> float:
    """ROC AUC, NaN when ``y_true`` holds a single class."""
    y_true = np.asarray(y_true).astype(int)
    if len(np.unique(y_true)) < 2:
        return float("nan")
    return float(roc_auc_score(y_true, proba))


def roc_summary(y_true: Sequence[np.ndarray], proba: Sequence[np.ndarray], y_pred: Sequence[np.ndarray],
                grid_points: int = _ROC_GRID_POINTS) -> dict:
    """ROC curves of a repeated evaluation.

    Parameters
    ----------
    y_true, proba, y_pred : sequences (one entry per repeat) of 1-D arrays
        True labels, P(COVID-19) and predicted labels of each repeat's test images.
    grid_points : int
        Size of the common FPR grid for vertical averaging.

    Returns
    -------
    roc : dict
        ``merged``: fpr, tpr, thresholds of the pooled scores (threshold[0] = inf: nothing
        positive); ``averaged``: fpr grid, mean and SD of the per-repeat TPR interpolated on it
        (vertical averaging); ``operating_point``: pooled FPR/TPR of the models' own predictions
        (probability 0.5 -- for libsvm the decision function's sign) with ``threshold`` 0.5.
    """
    pooled_true = np.concatenate(y_true).astype(int)
    pooled_proba = np.concatenate(proba)
    pooled_pred = np.concatenate(y_pred).astype(int)
    merged: dict = {"fpr": [], "tpr": [], "thresholds": []}
    if len(np.unique(pooled_true)) == 2:
        fpr, tpr, thresholds = roc_curve(pooled_true, pooled_proba)
        merged = {"fpr": fpr.tolist(), "tpr": tpr.tolist(), "thresholds": thresholds.tolist()}
    grid = np.linspace(0.0, 1.0, grid_points)
    curves = []
    for truth, score in zip(y_true, proba):
        if len(np.unique(truth)) == 2:
            fpr, tpr, _ = roc_curve(np.asarray(truth).astype(int), score)
            curves.append(np.interp(grid, fpr, tpr))
    curves = np.array(curves).reshape(-1, grid_points)
    mean_tpr = sd_tpr = np.full(grid_points, np.nan)
    if len(curves):
        mean_tpr = curves.mean(axis=0)
        sd_tpr = curves.std(axis=0, ddof=1) if len(curves) > 1 else np.zeros(grid_points)
    scores = classification_scores(pooled_true, pooled_pred)
    return {
        "merged": merged,
        "averaged": {"fpr": grid.tolist(), "tpr_mean": mean_tpr.tolist(), "tpr_sd": sd_tpr.tolist()},
        "operating_point": {"threshold": 0.5, "fpr": 1.0 - scores["Specificity"], "tpr": scores["Sensitivity"]},
    }


def mean_sd(values: Sequence[float]) -> tuple[float, float]:
    """Mean (NaN-aware) and sample SD (ddof=1; NaN with fewer than two finite values)."""
    values = np.asarray(values, dtype=float)
    values = values[np.isfinite(values)]
    if values.size == 0:
        return float("nan"), float("nan")
    sd = float(values.std(ddof=1)) if values.size > 1 else float("nan")
    return float(values.mean()), sd


def summarise_repeats(y_true: Sequence[np.ndarray], proba: Sequence[np.ndarray],
                      y_pred: Sequence[np.ndarray]) -> dict:
    """All scores of one model x stage from its per-repeat test predictions.

    Returns
    -------
    summary : dict
        ``pooled`` (scores of the pooled predictions, plus ``AUC`` = mean of per-repeat AUCs and
        ``AUC_pooled`` = AUC of the merged scores), ``per_repeat`` (lists of every metric),
        ``confusion`` (see :func:`confusion_matrices`) and ``roc`` (see :func:`roc_summary`).
    """
    per_repeat: dict[str, list[float]] = {name: [] for name in METRICS + WEIGHTED_METRICS}
    for truth, score, predicted in zip(y_true, proba, y_pred):
        per_repeat["AUC"].append(roc_auc(truth, score))
        for name, value in classification_scores(truth, predicted).items():
            per_repeat[name].append(value)
    pooled_true = np.concatenate(y_true)
    pooled_pred = np.concatenate(y_pred)
    pooled = classification_scores(pooled_true, pooled_pred)
    pooled["AUC"] = mean_sd(per_repeat["AUC"])[0]
    pooled["AUC_pooled"] = roc_auc(pooled_true, np.concatenate(proba))
    return {
        "pooled": pooled,
        "per_repeat": per_repeat,
        "confusion": confusion_matrices(pooled_true, pooled_pred),
        "roc": roc_summary(y_true, proba, y_pred),
    }


def patient_bootstrap(statistic, rows: np.ndarray, groups: np.ndarray, *, n_boot: int = 1000,
                      random_state: int = 42, level: float = 0.95) -> tuple[float, float]:
    """Percentile bootstrap CI of ``statistic(row_index)`` resampling whole patients with replacement.

    Parameters
    ----------
    statistic : callable(ndarray of int) -> float
        Computed on the rows of a resample (a patient drawn twice brings its rows twice); NaN results (e.g. an AUC
        of a resample with one class) are left out.
    rows : ndarray of int
        The rows the statistic is about.
    groups : ndarray (n_all_rows,)
        Patient of every row (indexed by ``rows``).

    Returns
    -------
    (low, high) : tuple of float
        NaN when fewer than 10 resamples gave a finite value.
    """
    rows = np.asarray(rows)
    if len(rows) == 0:
        return float("nan"), float("nan")
    _, patient = np.unique(np.asarray(groups)[rows], return_inverse=True)
    n_patients = int(patient.max()) + 1
    rng = np.random.default_rng(random_state)
    values = []
    for _ in range(n_boot):
        # a patient drawn k times brings each of its rows k times
        times_drawn = np.bincount(rng.integers(0, n_patients, n_patients), minlength=n_patients)
        value = statistic(np.repeat(rows, times_drawn[patient]))
        if np.isfinite(value):
            values.append(value)
    if len(values) < 10:
        return float("nan"), float("nan")
    tail = 100 * (1 - level) / 2
    low, high = np.percentile(values, [tail, 100 - tail])
    return float(low), float(high)
