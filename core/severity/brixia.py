"""Zone grades on the Brixia scale, fitted to a senior radiologist's zone scores.

Brixia score (Borghesi & Maroldi 2020; BS-Net, Signoroni et al. 2021): each lung is cut into three zones — A/B/C
right upper/middle/lower, D/E/F left — and each zone is graded 0 (no lung abnormality), 1 (interstitial
infiltrates), 2 (interstitial and alveolar, interstitial predominant) or 3 (alveolar predominant); the total is
0–18. ``core.lungs.zones.ZONE_NAMES`` lists the zones in exactly this A–F order.

The grade of a zone is regressed (one model shared by the six zones) on the zone's own opacity z-scores, those of
the same zone of the other lung, the mean over all zones, the lungs' geometry and the zone's identity
(:func:`zone_design`). The regressor is chosen by patient-grouped cross-validation on the error of the total;
grades are the regressed values rounded to whole grades, so ``brixia_total`` is always the sum of the six shown.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd
from sklearn.base import BaseEstimator, clone
from sklearn.ensemble import GradientBoostingRegressor
from sklearn.linear_model import Ridge
from sklearn.metrics import cohen_kappa_score
from sklearn.model_selection import GroupKFold
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from core.lungs.zones import ZONE_NAMES

BRIXIA_LETTERS = "ABCDEF"  # ZONE_NAMES order: right upper, middle, lower, left upper, middle, lower
GRADE_MAX = 3
SENIOR_COLUMNS = tuple(f"brixia_senior_{letter}" for letter in BRIXIA_LETTERS)
JUNIOR_COLUMNS = tuple(f"brixia_junior_{letter}" for letter in BRIXIA_LETTERS)
BRIXIA_FILE = Path("severity") / "brixia-scores.csv"


def brixia_zone_scores(data_dir: str | os.PathLike) -> pd.DataFrame:
    """The senior's and junior's zone scores of a data set (``severity/brixia-scores.csv``), one row per ``file``.

    Returns an empty frame with the ``file`` and score columns when the data set has no such file.
    """
    path = Path(data_dir) / BRIXIA_FILE
    columns = ["file", *SENIOR_COLUMNS, *JUNIOR_COLUMNS]
    if not path.is_file():
        return pd.DataFrame(columns=columns)
    table = pd.read_csv(path)
    missing = set(columns) - set(table.columns)
    if missing:
        raise ValueError(f"{path}: missing column(s) {', '.join(sorted(missing))}")
    return table[columns]


def zone_design(zone_z: np.ndarray, geometry_z: np.ndarray) -> np.ndarray:
    """Design rows of the six zones of each image.

    Parameters
    ----------
    zone_z : ndarray, shape (n_images, 6, n_zone_features)
        Robust z-scores of each zone's features against the same zone of Normal films (``ZONE_NAMES`` order).
    geometry_z : ndarray, shape (n_images, n_geometry_features)

    Returns
    -------
    ndarray, shape (n_images, 6, 3 * n_zone_features + n_geometry_features + 6)
        Per zone: its z-scores, those of the same zone of the other lung, the mean over the six zones, the
        geometry, and a one-hot zone identity.
    """
    n_images, n_zones, _ = zone_z.shape
    mirror = [(k + 3) % n_zones for k in range(n_zones)]
    identity = np.broadcast_to(np.eye(n_zones), (n_images, n_zones, n_zones))
    mean = np.broadcast_to(zone_z.mean(axis=1, keepdims=True), zone_z.shape)
    geometry = np.broadcast_to(geometry_z[:, None, :], (n_images, n_zones, geometry_z.shape[1]))
    return np.concatenate([zone_z, zone_z[:, mirror], mean, geometry, identity], axis=2)


def grades_from_values(values: np.ndarray) -> np.ndarray:
    """Whole grades 0–3 from regressed zone values (nearest whole grade)."""
    return np.clip(np.rint(values), 0, GRADE_MAX).astype(int)


def regressor_candidates(ridge_alphas: Sequence[float], boosting: bool, random_state: int, *,
                         n_estimators: int, learning_rate: float) -> dict:
    """The regressors a severity target is chosen from: ridge on the standardised design for each penalty, and
    (``boosting``) depth-2 gradient boosting, by name."""
    candidates = {f"ridge(alpha={a:g})": make_pipeline(StandardScaler(), Ridge(alpha=a)) for a in ridge_alphas}
    if boosting:
        candidates["gradient boosting"] = GradientBoostingRegressor(
            n_estimators=n_estimators, max_depth=2, learning_rate=learning_rate, subsample=0.8,
            random_state=random_state)
    return candidates


def grouped_folds(X: np.ndarray, groups: np.ndarray, n_splits: int, random_state: int) -> list:
    """Patient-grouped (train, test) folds for choosing a regressor: at most one fold per patient."""
    splits = min(n_splits, len(np.unique(groups)))
    return list(GroupKFold(n_splits=splits, shuffle=True, random_state=random_state).split(X, groups=groups))


class ZoneGradeRegressor(BaseEstimator):
    """One regressor for the six zones' Brixia grades, chosen by patient-grouped cross-validation.

    Parameters
    ----------
    ridge_alphas : sequence of float
        Ridge penalties tried (standardised design).
    boosting : bool
        Also try gradient boosting (depth-2 trees).
    cv_splits : int
        Patient-grouped folds of the choice.
    random_state : int

    Attributes
    ----------
    estimator_ : fitted regressor on the flattened (image, zone) rows
    selection_ : dict
        ``cv_total_mae`` of every candidate (total 0–18 of the rounded grades) and the ``chosen`` one.
    """

    def __init__(self, ridge_alphas: Sequence[float] = (10.0, 30.0, 100.0, 300.0), boosting: bool = True,
                 cv_splits: int = 5, random_state: int = 0):
        self.ridge_alphas = ridge_alphas
        self.boosting = boosting
        self.cv_splits = cv_splits
        self.random_state = random_state

    def _candidates(self) -> dict:
        return regressor_candidates(self.ridge_alphas, self.boosting, self.random_state, n_estimators=150,
                                    learning_rate=0.05)

    def fit(self, design: np.ndarray, grades: np.ndarray, groups: Sequence | None = None) -> "ZoneGradeRegressor":
        """Fit on ``design`` (n_images, 6, n_features) and the senior's ``grades`` (n_images, 6)."""
        design, grades = np.asarray(design, dtype=float), np.asarray(grades, dtype=float)
        n_images = design.shape[0]
        groups = np.asarray(groups) if groups is not None else np.arange(n_images)
        folds = grouped_folds(design, groups, self.cv_splits, self.random_state)
        flat = design.reshape(-1, design.shape[2])
        errors = {}
        for name, candidate in self._candidates().items():
            totals = np.empty(n_images)
            for train, test in folds:
                fitted = clone(candidate).fit(design[train].reshape(-1, flat.shape[1]), grades[train].ravel())
                predicted = fitted.predict(design[test].reshape(-1, flat.shape[1])).reshape(-1, len(ZONE_NAMES))
                totals[test] = grades_from_values(predicted).sum(axis=1)
            errors[name] = float(np.mean(np.abs(totals - grades.sum(axis=1))))
        chosen = min(errors, key=errors.get)
        self.selection_ = {"cv_total_mae": errors, "chosen": chosen}
        self.estimator_ = clone(self._candidates()[chosen]).fit(flat, grades.ravel())
        return self

    def predict(self, design: np.ndarray) -> np.ndarray:
        """Regressed zone values in [0, 3], shape (n_images, 6) (round with :func:`grades_from_values`)."""
        design = np.asarray(design, dtype=float)
        values = self.estimator_.predict(design.reshape(-1, design.shape[2])).reshape(-1, len(ZONE_NAMES))
        return np.clip(values, 0.0, GRADE_MAX)


def agreement_with_senior(grades: np.ndarray, senior: np.ndarray) -> dict:
    """How a reader's (or the model's) zone grades agree with the senior radiologist's on the same films.

    Parameters
    ----------
    grades, senior : ndarray of int, shape (n_images, 6)
        Zone grades 0–3 in ``ZONE_NAMES`` (Brixia A–F) order.

    Returns
    -------
    dict
        ``kappa_linear`` per zone letter (linearly weighted Cohen's kappa), their mean, and for the total (0–18)
        ``total_mae`` and ``total_pearson_r``; ``n_images``.
    """
    grades, senior = np.asarray(grades), np.asarray(senior)
    kappas = {letter: float(cohen_kappa_score(senior[:, k], grades[:, k], weights="linear", labels=range(4)))
              for k, letter in enumerate(BRIXIA_LETTERS)}
    total, senior_total = grades.sum(axis=1), senior.sum(axis=1)
    return {"n_images": int(len(grades)), "kappa_linear": kappas, "kappa_linear_mean": float(np.mean(list(kappas.values()))),
            "total_mae": float(np.mean(np.abs(total - senior_total))),
            "total_pearson_r": float(np.corrcoef(total, senior_total)[0, 1])}
