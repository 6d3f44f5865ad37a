"""Lung-zone severity on a frontal chest X-ray: the corona score, six zone grades and expert-scale estimates.

- Zone severity ``s_z`` in [0, 1]: the zone's opacity features (:mod:`core.features.zones`) as robust z-scores
  against the same zone of Normal films, weighted by weights shared by all zones and without intercept, so a zone
  that looks like the median Normal zone scores 0 and a fully involved white zone scores 1.
- Corona score (0–100) = ``100 * mean(s_z)``: a continuous summary anchored at Normal lungs (0).
- Zone grades 0–3 on the Brixia scale (A–F = ``ZONE_NAMES`` order), regressed on the zone features and fitted to a
  senior radiologist's zone scores (:mod:`core.severity.brixia`); ``brixia_total`` (0–18) is their sum. A model
  fitted without Brixia scores falls back to the nearest whole number of ``3 * s_z``.
- ``geographic_extent`` (0–8) and ``opacity`` (0–6), the expert scales of the reference data, from a regressor on
  the zone z-scores and lung geometry chosen by patient-grouped cross-validation; ``affected_fraction`` =
  extent / 8. Read them as "how severe, if this is COVID-19 pneumonia".
Fitting on a data set and its report: :mod:`core.severity.fitting`. Figures and known limits: README.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd
from scipy import optimize
from sklearn import config_context
from sklearn.base import BaseEstimator, clone
from sklearn.linear_model import Ridge

from core.features.zones import ZONE_FEATURES, severity_feature_names, zone_features
from core.lungs.fields import LungFields, find_lung_fields
from core.lungs.zones import ZONE_NAMES
from core.severity.brixia import (
    SENIOR_COLUMNS,
    ZoneGradeRegressor,
    grades_from_values,
    grouped_folds,
    regressor_candidates,
    zone_design,
)

SEVERITY_VERSION = "2"
ZONE_COUNT = len(ZONE_NAMES)
GRADE_CUTOFFS = (1 / 6, 1 / 2, 5 / 6)  # without Brixia scores: zone severity -> grade 0..3 (nearest of 3 * s)
MIN_GRADED = 10  # Brixia-graded images needed to fit the zone-grade regressor
EXTENT_MAX, OPACITY_MAX = 8.0, 6.0
Z_CAP = 6.0


@dataclass
class SeverityResult:
    """Severity of one image: zone severities (0-1) and grades (0-3), corona score and expert-scale estimates."""

    zone_severity: dict[str, float]
    zone_grades: dict[str, int]
    corona_score: float
    geographic_extent: float
    opacity: float
    affected_fraction: float
    corona_score_sd: float | None = None      # test-retest noise of the score (points), measured at fitting
    normal_range: tuple[float, float] | None = None  # corona scores of Normal films of several sites (p5, p95)
    lung_finder: str | None = None            # "network" or "classical": which finder gave the lung mask
    mask_warning: str | None = None           # the mask-quality warning, None when the mask looks right

    @property
    def brixia_total(self) -> int:
        """Sum of the six zone grades, 0–18."""
        return int(sum(self.zone_grades.values()))

    def to_json(self) -> dict:
        """The fields merged into a ``predict --json`` record (also what ``python -m core score --json`` prints)."""
        return {"corona_score": round(self.corona_score, 1), "zones": dict(self.zone_grades),
                "brixia_total": self.brixia_total,
                "corona_score_sd": None if self.corona_score_sd is None else round(self.corona_score_sd, 2),
                "normal_range": None if self.normal_range is None else [round(v, 1) for v in self.normal_range],
                "geographic_extent": round(self.geographic_extent, 2), "opacity": round(self.opacity, 2),
                "affected_fraction": round(self.affected_fraction, 3), "lung_finder": self.lung_finder,
                "mask_warning": self.mask_warning}


class SeverityModel(BaseEstimator):
    """Normal reference per zone, zone severities, corona score, and the extent/opacity regressors.

    Parameters
    ----------
    zone_alpha : float
        Ridge penalty of the shared zone-severity weights (on robust z-scores; 66 zone values feed 11 weights).
    ridge_alphas : sequence of float
        Ridge penalties tried for each expert-score regressor.
    boosting : bool
        Also try gradient boosting (depth-2 trees) for the regressors.
    cv_splits : int
        Patient-grouped folds used to choose each regressor (mean absolute error).
    random_state : int
        Seeds the fold assignment and the boosting.

    Attributes
    ----------
    reference_median_, reference_scale_ : ndarray, shape (n_features,)
        Robust location and scale of every feature over the Normal images (``severity_feature_names`` order).
    zone_weights_ : ndarray, shape (len(ZONE_FEATURES),)
        Shared by the six zones, applied to the zone's z-scores (no intercept: Normal medians -> severity 0).
    extent_model_, opacity_model_ : fitted regressors
    grade_model_ : ZoneGradeRegressor or None
        Brixia zone grades fitted to the senior radiologist (None without >= MIN_GRADED graded images).
    selection_ : dict
        Grouped-CV mean absolute error of every candidate, per target, and the chosen one.
    noise_sd_ : float
        Measured noise of the corona score in points; set by :func:`fit_severity_model` (not by ``fit``).
    normal_range_ : tuple of float
        5th and 95th percentile of the out-of-fold corona score of Normal films (several sites); set by
        :func:`fit_severity_model`.
    """

    def __init__(self, zone_alpha: float = 100.0, ridge_alphas: Sequence[float] = (3.0, 10.0, 30.0, 100.0, 300.0),
                 boosting: bool = True, cv_splits: int = 5, random_state: int = 0):
        self.zone_alpha = zone_alpha
        self.ridge_alphas = ridge_alphas
        self.boosting = boosting
        self.cv_splits = cv_splits
        self.random_state = random_state

    # -- fitting -------------------------------------------------------------------------------------------------
    def fit(self, X: pd.DataFrame, y: pd.DataFrame, groups: Sequence | None = None) -> "SeverityModel":
        """Learn the Normal reference, the zone-severity weights and the two regressors.

        Parameters
        ----------
        X : DataFrame, shape (n_images, n_features)
            :func:`zone_feature_table` rows.
        y : DataFrame
            ``label`` (``Normal`` rows define the reference), ``geographic_extent`` and ``opacity`` (expert scores;
            NaN where not scored — only scored rows train the zone weights and regressors), optionally the senior
            radiologist's Brixia zone grades ``brixia_senior_A`` … ``_F`` (NaN where not graded).
        groups : sequence, optional
            Patient of each row, for the grouped model choice (each row its own patient by default).
        """
        values = X[severity_feature_names()].to_numpy(dtype=float)
        normal = (y["label"] == "Normal").to_numpy()
        extent, opacity = (y[c].to_numpy(dtype=float) for c in ("geographic_extent", "opacity"))
        scored = np.isfinite(extent) & np.isfinite(opacity)
        if normal.sum() < 5 or scored.sum() < 10:
            raise ValueError(f"the severity model needs >= 5 Normal and >= 10 expert-scored images, got "
                             f"{int(normal.sum())} and {int(scored.sum())}")
        reference = values[normal]
        self.reference_median_ = np.nanmedian(reference, axis=0)
        scale = 1.4826 * np.nanmedian(np.abs(reference - self.reference_median_), axis=0)
        spread = np.nanstd(reference, axis=0)  # for near-constant (e.g. binary) features the MAD is 0
        self.reference_scale_ = np.where(scale > 1e-9, scale, np.where(spread > 1e-9, spread, 1.0))

        target = (ZONE_COUNT / 2) * (extent[scored] / EXTENT_MAX + opacity[scored] / OPACITY_MAX)
        self.zone_weights_ = self._fit_zone_weights(self._zone_z_scores(values[scored]), target)

        design = self._design(values[scored])
        groups_all = groups
        groups = np.asarray(groups)[scored] if groups is not None else np.arange(int(scored.sum()))
        self.selection_ = {}
        # The boosted candidates fit thousands of small trees; sklearn's per-tree parameter checks cost a tenth of it.
        with config_context(skip_parameter_validation=True):
            self.extent_model_ = self._choose(design, extent[scored], groups, "geographic_extent")
            self.opacity_model_ = self._choose(design, opacity[scored], groups, "opacity")
            self.grade_model_ = self._fit_grade_model(values, y, groups_all)
        if self.grade_model_ is not None:
            self.selection_["brixia_grades"] = self.grade_model_.selection_
        return self

    def _fit_grade_model(self, values: np.ndarray, y: pd.DataFrame, groups: Sequence | None):
        """The Brixia zone-grade regressor fitted to the senior's grades, or None without >= MIN_GRADED graded rows."""
        if not set(SENIOR_COLUMNS) <= set(y.columns):
            return None
        senior = y[list(SENIOR_COLUMNS)].to_numpy(dtype=float)
        graded = np.isfinite(senior).all(axis=1)
        if graded.sum() < MIN_GRADED:
            return None
        groups = np.asarray(groups) if groups is not None else np.arange(len(values))
        return ZoneGradeRegressor(random_state=self.random_state).fit(
            self._grade_design(values[graded]), senior[graded], groups[graded])

    def _fit_zone_weights(self, zones: np.ndarray, target: np.ndarray) -> np.ndarray:
        """Shared weights ``w`` minimising sum_images (sum_z clip(w . z_z, 0, 1) - target)^2 + alpha |w|^2.

        No intercept, on purpose: a zone whose features equal the Normal medians (all z = 0) has severity 0, so the
        score is anchored at Normal lungs rather than at the scored COVID-19 images.  Started from the ridge solution
        of the unclipped sum, then refined with the clipping taken into account (L-BFGS).
        """
        start = Ridge(alpha=self.zone_alpha, fit_intercept=False).fit(zones.sum(axis=1), target).coef_

        def loss(weights: np.ndarray) -> tuple[float, np.ndarray]:
            linear = zones @ weights
            residual = np.clip(linear, 0.0, 1.0).sum(axis=1) - target
            active = (linear > 0) & (linear < 1)  # the clip passes gradients only between its bounds
            gradient = 2 * np.einsum("n,nzf,nz->f", residual, zones, active) + 2 * self.zone_alpha * weights
            return float(residual @ residual + self.zone_alpha * weights @ weights), gradient

        return optimize.minimize(loss, start, jac=True, method="L-BFGS-B").x

    def _candidates(self) -> dict:
        return regressor_candidates(self.ridge_alphas, self.boosting, self.random_state, n_estimators=100,
                                    learning_rate=0.1)

    def _choose(self, design: np.ndarray, target: np.ndarray, groups: np.ndarray, name: str):
        """The candidate with the lowest patient-grouped CV mean absolute error, refitted on all scored rows."""
        folds = grouped_folds(design, groups, self.cv_splits, self.random_state)
        errors = {}
        for label, estimator in self._candidates().items():
            absolute = [np.abs(clone(estimator).fit(design[train], target[train]).predict(design[test]) - target[test])
                        for train, test in folds]
            errors[label] = float(np.concatenate(absolute).mean())
        best = min(errors, key=errors.get)
        self.selection_[name] = {"cv_mae": errors, "chosen": best}
        return clone(self._candidates()[best]).fit(design, target)

    # -- prediction ----------------------------------------------------------------------------------------------
    def _z_scores(self, values: np.ndarray) -> np.ndarray:
        """Robust z-scores against the Normal reference, capped at ±Z_CAP; a missing value counts as Normal (0)."""
        z_scores = np.nan_to_num((values - self.reference_median_) / self.reference_scale_, nan=0.0)
        return np.clip(z_scores, -Z_CAP, Z_CAP)  # one broken feature (a failed outline) must not dominate

    def _zone_z_scores(self, values: np.ndarray) -> np.ndarray:
        """Shape (n, 6 zones, len(ZONE_FEATURES))."""
        return self._z_scores(values)[:, :ZONE_COUNT * len(ZONE_FEATURES)].reshape(-1, ZONE_COUNT, len(ZONE_FEATURES))

    def zone_severity(self, values: np.ndarray) -> np.ndarray:
        """Zone severities ``s_z`` in [0, 1], shape (n, 6), from feature rows in ``severity_feature_names`` order."""
        return np.clip(self._zone_z_scores(values) @ self.zone_weights_, 0.0, 1.0)

    def _design(self, values: np.ndarray) -> np.ndarray:
        return np.column_stack([self._z_scores(values), self.zone_severity(values)])

    def _grade_design(self, values: np.ndarray) -> np.ndarray:
        return zone_design(self._zone_z_scores(values), self._z_scores(values)[:, ZONE_COUNT * len(ZONE_FEATURES):])

    def zone_grades(self, values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Brixia zone values (continuous, 0–3) and whole grades, each (n, 6) in ``ZONE_NAMES`` (A–F) order."""
        if getattr(self, "grade_model_", None) is None:
            continuous = 3.0 * self.zone_severity(values)
            return continuous, np.digitize(continuous / 3.0, GRADE_CUTOFFS)
        continuous = self.grade_model_.predict(self._grade_design(values))
        return continuous, grades_from_values(continuous)

    def predict(self, X: pd.DataFrame) -> pd.DataFrame:
        """Per row: ``corona_score``, ``geographic_extent``, ``opacity``, ``affected_fraction``, ``brixia_total``, and
        ``severity_<zone>`` / ``grade_value_<zone>`` (continuous 0–3) / ``grade_<zone>`` for the six zones."""
        values = X[severity_feature_names()].to_numpy(dtype=float)
        severity = self.zone_severity(values)
        design = self._design(values)
        extent = np.clip(self.extent_model_.predict(design), 0.0, EXTENT_MAX)
        continuous, grades = self.zone_grades(values)
        table = pd.DataFrame({"corona_score": 100.0 * severity.mean(axis=1), "geographic_extent": extent,
                              "opacity": np.clip(self.opacity_model_.predict(design), 0.0, OPACITY_MAX),
                              "affected_fraction": extent / EXTENT_MAX, "brixia_total": grades.sum(axis=1)},
                             index=X.index)
        for k, zone in enumerate(ZONE_NAMES):
            table[f"severity_{zone}"] = severity[:, k]
            table[f"grade_value_{zone}"] = continuous[:, k]
            table[f"grade_{zone}"] = grades[:, k]
        return table

    def assess(self, pixels: np.ndarray, fields: LungFields | None = None) -> SeverityResult:
        """Severity of one image.

        Parameters
        ----------
        pixels : ndarray of float32, shape (H, W)
            Grayscale image in [0, 1], MONOCHROME2.
        fields : LungFields, optional
            ``find_lung_fields(pixels)`` (computed when omitted).
        """
        if fields is None:
            fields = find_lung_fields(pixels)
        row = self.predict(pd.DataFrame([zone_features(fields)])).iloc[0]
        return SeverityResult(
            zone_severity={zone: float(row[f"severity_{zone}"]) for zone in ZONE_NAMES},
            zone_grades={zone: int(row[f"grade_{zone}"]) for zone in ZONE_NAMES},
            corona_score=float(row["corona_score"]), geographic_extent=float(row["geographic_extent"]),
            opacity=float(row["opacity"]), affected_fraction=float(row["affected_fraction"]),
            corona_score_sd=getattr(self, "noise_sd_", None), normal_range=getattr(self, "normal_range_", None),
            lung_finder=fields.quality.get("method"), mask_warning=fields.quality.get("warning"))


