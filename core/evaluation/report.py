"""The result of :func:`core.evaluation.evaluate`: plain dataclasses that round-trip through JSON.

Non-finite floats are written as the strings ``"NaN"``, ``"Infinity"`` and ``"-Infinity"`` so
the file stays strict JSON (readable outside Python); they are restored on loading.
Out-of-fold predictions are kept in memory for calibration and written only on request.
"""

from __future__ import annotations

import json
import math
from collections import Counter
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from core.evaluation.metrics import METRICS, WEIGHTED_METRICS, mean_sd
from core.labels import POSITIVE_LABEL

__all__ = ["OutOfFold", "ModelResult", "EvaluationReport", "TARGET", "count_selections"]

TARGET = POSITIVE_LABEL
_NONFINITE = {"NaN": float("nan"), "Infinity": float("inf"), "-Infinity": float("-inf")}


def _encode(value: Any) -> Any:
    """JSON-safe copy: numpy -> Python, non-finite floats -> marker strings."""
    if isinstance(value, dict):
        return {str(key): _encode(item) for key, item in value.items()}
    if isinstance(value, (list, tuple, np.ndarray)):
        return [_encode(item) for item in (value.tolist() if isinstance(value, np.ndarray) else value)]
    if isinstance(value, (bool, np.bool_)):
        return bool(value)
    if isinstance(value, (int, np.integer)):
        return int(value)
    if isinstance(value, (float, np.floating)):
        value = float(value)
        if math.isnan(value):
            return "NaN"
        return value if math.isfinite(value) else ("Infinity" if value > 0 else "-Infinity")
    return value


def _decode_numbers(value: Any) -> Any:
    """Inverse of :func:`_encode` for numeric sub-trees (never applied to names)."""
    if isinstance(value, dict):
        return {key: _decode_numbers(item) for key, item in value.items()}
    if isinstance(value, list):
        return [_decode_numbers(item) for item in value]
    if isinstance(value, str) and value in _NONFINITE:
        return _NONFINITE[value]
    return value


@dataclass
class OutOfFold:
    """Test-set predictions of one repeat (for calibration and error analysis).

    Attributes
    ----------
    repeat : int
    test_index : ndarray of int
        Rows of the evaluated ``X``.
    y_true : ndarray of int
        1 = COVID-19.
    proba : ndarray of float
        P(COVID-19).
    y_pred : ndarray of int
        The model's predicted labels.
    """

    repeat: int
    test_index: np.ndarray
    y_true: np.ndarray
    proba: np.ndarray
    y_pred: np.ndarray

    def to_dict(self) -> dict:
        return _encode({"repeat": self.repeat, "test_index": self.test_index, "y_true": self.y_true,
                        "proba": self.proba, "y_pred": self.y_pred})

    @classmethod
    def from_dict(cls, data: dict) -> "OutOfFold":
        data = _decode_numbers(data)
        return cls(repeat=int(data["repeat"]), test_index=np.asarray(data["test_index"], dtype=np.intp),
                   y_true=np.asarray(data["y_true"], dtype=int), proba=np.asarray(data["proba"], dtype=float),
                   y_pred=np.asarray(data["y_pred"], dtype=int))


@dataclass
class ModelResult:
    """Scores of one model at one stage ("before" / "after" feature selection).

    Attributes
    ----------
    model, stage : str
    pooled : dict of str -> float
        Scores of the predictions pooled over repeats (see :mod:`core.evaluation.metrics`); ``AUC`` is the mean
        of the per-repeat AUCs, ``AUC_pooled`` the AUC of the merged scores.
    per_repeat : dict of str -> list of float
        Every metric on every repeat.
    confusion : dict
        Pooled ``counts``, ``proportion_of_predicted``, ``proportion_of_actual`` (rows actual).
    roc : dict
        ``merged``, ``averaged`` and ``operating_point`` curves/points.
    selected_features : list of list of str, optional
        Stage "after": features kept in each repeat, best first.
    selection_counts : dict of str -> int, optional
        Stage "after": in how many repeats each feature was kept (most frequent first).
    fit_seconds : float
        Total fit + predict time over the repeats.
    n_convergence_warnings : int
        Solver convergence warnings (Orange preset: SVM iteration cap, MLP ``max_iter``).
    out_of_fold : list of OutOfFold
        Per-repeat predictions; serialised only with ``include_predictions=True``.
    """

    model: str
    stage: str
    pooled: dict[str, float]
    per_repeat: dict[str, list[float]]
    confusion: dict
    roc: dict
    selected_features: list[list[str]] | None = None
    selection_counts: dict[str, int] | None = None
    fit_seconds: float = 0.0
    n_convergence_warnings: int = 0
    out_of_fold: list[OutOfFold] = field(default_factory=list, repr=False, compare=False)

    def mean(self, metric: str) -> float:
        """Mean of the per-repeat values of ``metric``."""
        return mean_sd(self.per_repeat[metric])[0]

    def sd(self, metric: str) -> float:
        """Sample SD of the per-repeat values of ``metric`` (NaN for a single repeat)."""
        return mean_sd(self.per_repeat[metric])[1]

    def to_dict(self, include_predictions: bool = False) -> dict:
        data = {f.name: getattr(self, f.name) for f in fields(self) if f.name != "out_of_fold"}
        if include_predictions:
            data["out_of_fold"] = [fold.to_dict() for fold in self.out_of_fold]
        return _encode(data)

    @classmethod
    def from_dict(cls, data: dict) -> "ModelResult":
        numeric = ("pooled", "per_repeat", "confusion", "roc", "fit_seconds")
        kwargs = {f.name: data[f.name] for f in fields(cls) if f.name in data and f.name != "out_of_fold"}
        kwargs.update({name: _decode_numbers(data[name]) for name in numeric if name in data})
        kwargs["out_of_fold"] = [OutOfFold.from_dict(fold) for fold in data.get("out_of_fold", [])]
        return cls(**kwargs)


def count_selections(selected_per_repeat: list[list[str]]) -> dict[str, int]:
    """How often each feature was selected, most frequent first (ties by name)."""
    counts = Counter(name for selected in selected_per_repeat for name in selected)
    return dict(sorted(counts.items(), key=lambda item: (-item[1], item[0])))


@dataclass
class EvaluationReport:
    """Everything one :func:`core.evaluation.evaluate` call measured.

    Attributes
    ----------
    split : str
        "random", "patient" or "source".
    repeats : int
    train_size : float
    preset : str
    select_k : int or None
    random_state : int
    n_images : int
    n_patients : int or None
    n_features : int
        Columns of the evaluated feature table.
    split_description : dict
        See :class:`core.evaluation.splits.SplitPlan`.
    results : list of ModelResult
        One per model x stage.
    elapsed_seconds : float
    target : str
        The positive class ("COVID-19", or "other pneumonia" for pneumonia-vs-normal).
    software : dict
        Library versions used.
    task : str or None
        The two-class question (:data:`core.labels.TASKS`); None for reports written before tasks existed.
    """

    split: str
    repeats: int
    train_size: float
    preset: str
    select_k: int | None
    random_state: int
    n_images: int
    n_patients: int | None
    n_features: int
    split_description: dict
    results: list[ModelResult]
    elapsed_seconds: float = 0.0
    target: str = TARGET
    software: dict = field(default_factory=dict)
    task: str | None = None

    def result(self, model: str, stage: str = "after") -> ModelResult:
        """The result of ``model`` at ``stage``."""
        for result in self.results:
            if result.model.casefold() == model.casefold() and result.stage == stage:
                return result
        raise KeyError(f"no result for model={model!r}, stage={stage!r}")

    def table(self) -> pd.DataFrame:
        """One row per model x stage: pooled scores (AUC: mean over repeats) and per-repeat SDs.

        Columns: model, stage, then for AUC, CA, F1, Precision, Recall, Sensitivity, Specificity,
        F1_weighted, Precision_weighted, Recall_weighted the value and ``<name>_sd``.
        """
        rows = []
        for result in self.results:
            row: dict[str, Any] = {"model": result.model, "stage": result.stage}
            for metric in METRICS + WEIGHTED_METRICS:
                row[metric] = result.pooled[metric]
                row[f"{metric}_sd"] = result.sd(metric)
            rows.append(row)
        return pd.DataFrame(rows)

    def summary_json(self) -> dict:
        """Compact, strict-JSON summary with the COVID-19 class scores (NaN -> None)."""

        def number(value: float) -> float | None:
            return float(value) if math.isfinite(value) else None

        summary = {
            "split": self.split,
            "repeats": self.repeats,
            "train_size": self.train_size,
            "target": self.target,
            "n_images": self.n_images,
            "n_patients": self.n_patients,
            "results": [{"model": r.model, "stage": r.stage, **{m: number(r.pooled[m]) for m in METRICS}}
                        for r in self.results],
        }
        if self.task is not None:
            summary["task"] = self.task
        if self.split == "site":
            summary["per_site"] = self.per_site()
        return summary

    def per_site(self) -> list[dict]:
        """Leave-one-site-out: one record per left-out site x model x stage (AUC None where a site has one class)."""
        if self.split != "site":
            raise ValueError(f"per-site results exist for split='site' only, this report is split={self.split!r}")

        def number(value: float) -> float | None:
            return round(float(value), 4) if math.isfinite(value) else None

        records = []
        for result in self.results:
            for index, (site, fold) in enumerate(zip(self.split_description["test_sites"],
                                                     self.split_description["folds"])):
                n_positive = int(fold["n_test_covid"])
                n_negative = int(fold["n_test"]) - n_positive
                records.append({
                    "site": site, "n_images": int(fold["n_test"]), "n_positive": n_positive, "model": result.model,
                    "stage": result.stage, "AUC": number(result.per_repeat["AUC"][index]),
                    "Sensitivity": number(result.per_repeat["Sensitivity"][index]) if n_positive else None,
                    "Specificity": number(result.per_repeat["Specificity"][index]) if n_negative else None,
                })
        return records

    def to_dict(self, include_predictions: bool = False) -> dict:
        """JSON-ready dict; ``include_predictions`` adds every repeat's out-of-fold predictions."""
        data = {f.name: getattr(self, f.name) for f in fields(self) if f.name != "results"}
        data["results"] = [result.to_dict(include_predictions) for result in self.results]
        return _encode(data)

    @classmethod
    def from_dict(cls, data: dict) -> "EvaluationReport":
        kwargs = {f.name: data[f.name] for f in fields(cls) if f.name in data}
        kwargs["results"] = [ModelResult.from_dict(result) for result in data["results"]]
        kwargs["split_description"] = _decode_numbers(data.get("split_description", {}))
        return cls(**kwargs)

    def to_json(self, path: str | Path, include_predictions: bool = False) -> Path:
        """Write the report as strict JSON (UTF-8) and return the path."""
        path = Path(path)
        path.write_text(json.dumps(self.to_dict(include_predictions), indent=1, allow_nan=False), encoding="utf-8")
        return path

    @classmethod
    def from_json(cls, path: str | Path) -> "EvaluationReport":
        return cls.from_dict(json.loads(Path(path).read_text(encoding="utf-8")))
