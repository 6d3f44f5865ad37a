"""Lung-zone severity of COVID-19 on a frontal chest X-ray: the corona score, six zone grades, and estimates of the
experts' geographic-extent and opacity scores (Cohen et al. 2020).

Corona score (0-100)
--------------------
How much of the lungs is affected and how densely, on one scale read at a glance::

    corona_score = 100 * (s_1 + ... + s_6) / 6

where ``s_z`` in [0, 1] is the severity of zone ``z`` (``core.lungs.ZONE_NAMES``: upper, middle and lower third of
each lung, found classically).  Each of 11 intensity/texture/size features of the zone (``zone_features``) is
expressed as a robust z-score against the same zone of the Normal images (median, 1.4826 x MAD), and
``s_z = clip(w . z, 0, 1)`` with weights ``w`` shared by all zones and *no intercept*: a zone that looks like the
median Normal zone scores 0.  ``w`` is fitted on the expert-scored COVID-19 images so that the six zone severities
add up to the experts' severity, ``sum_z s_z ~ 6 x (extent / 8 + opacity / 6) / 2`` (Cohen et al. 2020: extent 0-8
= share of each lung involved, opacity 0-6 = density from ground glass to white-out).  So ``s_z`` = 1 is a fully
involved, white zone; 100 = both lungs white; 0 = nothing that Normal lungs do not show.

Zone grades (0-3, Brixia-style, total 0-18) are ``s_z`` cut at fixed points: below 1/6 -> 0, below 1/2 -> 1, below
5/6 -> 2, else 3 (the nearest whole number of ``3 x s_z``), so the score is never high without high zone grades.

Expert-scale estimates: ``geographic_extent`` (0-8) and ``opacity`` (0-6) come from a regressor on all zone z-scores,
the zone severities and the lungs' geometry (ridge or gradient boosting, chosen by patient-grouped cross-validation),
*with* an intercept, i.e. calibrated on COVID-19 images: read them as "how severe, if this is COVID-19 pneumonia";
``affected_fraction`` = estimated extent / 8 (the share of the lung area involved).

Known limits: dense basal opacities can cut the classical lung outline short (lung area / width is a feature for
that reason); Normal films from the NIH set look hazier than the COVID-19 sources' films and score higher than Normal
films from the same sources (figures: the training report's ``severity`` section, ``/work/notes/severity.md``).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd
from scipy import optimize
from sklearn.base import BaseEstimator, clone
from sklearn.ensemble import GradientBoostingRegressor
from sklearn.linear_model import Ridge
from sklearn.model_selection import GroupKFold
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from core.lungs import ZONE_NAMES, LungFields, find_lung_fields
from core.progression import perturbation_noise, trend  # noqa: F401  (trend re-exported: the dashboard imports it)
from core.severity_features import (  # noqa: F401  (re-exported: the public API of the corona score)
    GEOMETRY_FEATURES,
    ZONE_FEATURES,
    severity_feature_names,
    zone_feature_table,
    zone_features,
)

SEVERITY_VERSION = "1"
ZONE_COUNT = len(ZONE_NAMES)
GRADE_CUTOFFS = (1 / 6, 1 / 2, 5 / 6)  # zone severity -> grade 0..3 (nearest whole number of 3 * s)
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

    def to_json(self) -> dict:
        """The fields merged into a ``predict --json`` record (also what ``python -m core score --json`` prints)."""
        return {"corona_score": round(self.corona_score, 1), "zones": dict(self.zone_grades),
                "zone_total": int(sum(self.zone_grades.values())),
                "geographic_extent": round(self.geographic_extent, 2), "opacity": round(self.opacity, 2),
                "affected_fraction": round(self.affected_fraction, 3)}


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
    selection_ : dict
        Grouped-CV mean absolute error of every candidate, per target, and the chosen one.
    noise_sd_ : float
        Measured noise of the corona score in points; set by :func:`fit_severity_model` (not by ``fit``).
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
            NaN where not scored — only scored rows train the zone weights and regressors).
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
        groups = np.asarray(groups)[scored] if groups is not None else np.arange(int(scored.sum()))
        self.selection_ = {}
        self.extent_model_ = self._choose(design, extent[scored], groups, "geographic_extent")
        self.opacity_model_ = self._choose(design, opacity[scored], groups, "opacity")
        return self

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
        candidates = {f"ridge(alpha={a:g})": make_pipeline(StandardScaler(), Ridge(alpha=a)) for a in self.ridge_alphas}
        if self.boosting:
            candidates["gradient boosting"] = GradientBoostingRegressor(
                n_estimators=100, max_depth=2, learning_rate=0.1, subsample=0.8, random_state=self.random_state)
        return candidates

    def _choose(self, design: np.ndarray, target: np.ndarray, groups: np.ndarray, name: str):
        """The candidate with the lowest patient-grouped CV mean absolute error, refitted on all scored rows."""
        splits = min(self.cv_splits, len(np.unique(groups)))
        folds = list(GroupKFold(n_splits=splits, shuffle=True, random_state=self.random_state).split(design,
                                                                                                     groups=groups))
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

    def predict(self, X: pd.DataFrame) -> pd.DataFrame:
        """Per row: ``corona_score``, ``geographic_extent``, ``opacity``, ``affected_fraction``, ``zone_total``, and
        ``severity_<zone>`` / ``grade_<zone>`` for the six zones."""
        values = X[severity_feature_names()].to_numpy(dtype=float)
        severity = self.zone_severity(values)
        design = self._design(values)
        extent = np.clip(self.extent_model_.predict(design), 0.0, EXTENT_MAX)
        grades = np.digitize(severity, GRADE_CUTOFFS)
        table = pd.DataFrame({"corona_score": 100.0 * severity.mean(axis=1), "geographic_extent": extent,
                              "opacity": np.clip(self.opacity_model_.predict(design), 0.0, OPACITY_MAX),
                              "affected_fraction": extent / EXTENT_MAX, "zone_total": grades.sum(axis=1)},
                             index=X.index)
        for k, zone in enumerate(ZONE_NAMES):
            table[f"severity_{zone}"] = severity[:, k]
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
            opacity=float(row["opacity"]), affected_fraction=float(row["affected_fraction"]))



# -- fitting on a data set, with the grouped cross-validated report ------------------------------------------------
def _label_group(labels: pd.Series) -> pd.Series:
    return labels.where(labels.isin(["COVID-19", "Normal"]), "other findings")


def _distribution(values: pd.Series) -> dict:
    q = values.quantile([0.1, 0.25, 0.5, 0.75, 0.9]).round(1).tolist()
    return {"n": int(values.size), "p10": q[0], "q1": q[1], "median": q[2], "q3": q[3], "p90": q[4]}


def _agreement(predicted: np.ndarray, expert: np.ndarray) -> dict:
    return {"pearson_r": float(np.corrcoef(predicted, expert)[0, 1]), "mae": float(np.mean(np.abs(predicted - expert)))}


def _summarise_repeats(per_repeat: list[dict]) -> dict:
    """Mean, min and max over the repeats of each figure, plus the figures of every repeat."""
    summary = {}
    for key in per_repeat[0]:
        values = np.array([figures[key] for figures in per_repeat])
        summary[key] = round(float(values.mean()), 3)
        summary[f"{key}_range"] = [round(float(values.min()), 3), round(float(values.max()), 3)]
    return {**summary, "per_repeat": [{k: round(v, 3) for k, v in figures.items()} for figures in per_repeat]}


def cross_validated_predictions(model: SeverityModel, X: pd.DataFrame, y: pd.DataFrame, groups: np.ndarray, *,
                                n_splits: int, seed: int) -> pd.DataFrame:
    """Out-of-fold ``corona_score``, ``geographic_extent`` and ``opacity`` of every row: each row is predicted by a
    clone of ``model`` fitted without the row's patient (patient-grouped folds; the regressor choice is nested)."""
    columns = ["corona_score", "geographic_extent", "opacity"]
    predictions = pd.DataFrame(index=X.index, columns=columns, dtype=float)
    for train, test in GroupKFold(n_splits=n_splits, shuffle=True, random_state=seed).split(X, groups=groups):
        fold_model = clone(model).fit(X.iloc[train], y.iloc[train], groups=groups[train])
        predictions.iloc[test] = fold_model.predict(X.iloc[test])[columns].to_numpy()
    return predictions


def fit_severity_model(table: pd.DataFrame, *, n_jobs: int = -1, random_state: int = 0, outer_splits: int = 8,
                       repeats: int = 5, n_perturbations: int = 4,
                       features: pd.DataFrame | None = None) -> tuple[SeverityModel, dict]:
    """Fit the severity model on a data set and report its patient-grouped cross-validated accuracy.

    Parameters
    ----------
    table : DataFrame
        Data set rows (``core.datasets.load_dataset(...).table``): ``path``, ``label``, ``patient_id``,
        ``geographic_extent`` and ``opacity`` (NaN where not scored), optionally ``file`` and ``origin_dataset``.
    n_jobs : int
        Workers for reading images, finding lungs and the noise measurement.
    random_state : int
    outer_splits, repeats : int
        Patient-grouped folds of the outer cross-validation, repeated with ``repeats`` different fold assignments
        (with 44 scored patients the figures move with the assignment, so their mean and range are reported).
    n_perturbations : int
        Perturbed copies per scored image for the noise measurement (0: skip).
    features : DataFrame, optional
        Precomputed :func:`zone_feature_table` rows aligned with ``table``.

    Returns
    -------
    model : SeverityModel
        Fitted on all readable rows; ``model.noise_sd_`` holds the measured noise (points) when measured.
    report : dict
        ``extent`` / ``opacity`` / ``corona_vs_experts`` (expert corona = 50 x (extent / 8 + opacity / 6)):
        out-of-fold Pearson r and MAE on the scored images, mean and range over the repeats; ``corona_by_label``
        and ``normal_by_source``: distributions of the out-of-fold corona score (averaged over the repeats);
        ``selection``: the final regressors' grouped-CV choice; ``noise``; ``out_of_fold``: per-image predictions.
    """
    missing = {"path", "label", "patient_id", "geographic_extent", "opacity"} - set(table.columns)
    if missing:
        raise ValueError(f"the severity model needs data set columns {', '.join(sorted(missing))} (expert scores)")
    errors = {}
    if features is None:
        features, errors = zone_feature_table(table["path"], n_jobs=n_jobs)
    readable = features.notna().any(axis=1).to_numpy()
    rows, X = table[readable].reset_index(drop=True), features[readable].reset_index(drop=True)
    y, groups = rows[["label", "geographic_extent", "opacity"]], rows["patient_id"].to_numpy()
    model = SeverityModel(random_state=random_state)

    scored = (rows["geographic_extent"].notna() & rows["opacity"].notna()).to_numpy()
    experts = {"extent": rows["geographic_extent"].to_numpy(), "opacity": rows["opacity"].to_numpy()}
    experts["corona_vs_experts"] = 50.0 * (experts["extent"] / EXTENT_MAX + experts["opacity"] / OPACITY_MAX)
    predicted_column = {"extent": "geographic_extent", "opacity": "opacity", "corona_vs_experts": "corona_score"}
    runs, figures = [], {name: [] for name in experts}
    for repeat in range(repeats):
        run = cross_validated_predictions(model, X, y, groups, n_splits=outer_splits, seed=random_state + repeat)
        runs.append(run)
        for name, expert in experts.items():
            figures[name].append(_agreement(run[predicted_column[name]].to_numpy()[scored], expert[scored]))
    out_of_fold = sum(runs) / len(runs)
    model.fit(X, y, groups=groups)

    group = _label_group(rows["label"])
    report = {
        "version": SEVERITY_VERSION, "n_images": int(len(rows)), "n_scored": int(scored.sum()),
        "n_scored_patients": int(rows.loc[scored, "patient_id"].nunique()), "unreadable": errors,
        "validation": f"out-of-fold, {outer_splits} patient-grouped folds x {repeats} fold assignments "
                      "(the regressor choice nested inside each training fold)",
        **{name: _summarise_repeats(values) for name, values in figures.items()},
        "corona_by_label": {name: _distribution(out_of_fold.loc[group == name, "corona_score"])
                            for name in ("COVID-19", "Normal", "other findings") if (group == name).any()},
        "selection": model.selection_,
    }
    if "origin_dataset" in rows:
        normal = group == "Normal"
        report["normal_by_source"] = {str(source): _distribution(out_of_fold.loc[normal & (rows["origin_dataset"]
                                      == source), "corona_score"]) for source in rows.loc[normal, "origin_dataset"]
                                      .dropna().unique()}
    if n_perturbations > 0:
        report["noise"] = perturbation_noise(model, rows.loc[scored, "path"].tolist(),
                                             n_perturbations=n_perturbations, random_state=random_state,
                                             n_jobs=n_jobs)
        model.noise_sd_ = report["noise"]["noise_sd"]
    identity = [c for c in ("file", "label", "patient_id") if c in rows]
    report["out_of_fold"] = pd.concat([rows[identity], out_of_fold.round(3)], axis=1).to_dict(orient="records")
    return model, report
