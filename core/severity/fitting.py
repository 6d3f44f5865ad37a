"""Fitting the corona-score model on a data set, with its patient-grouped cross-validated report.

The report compares the out-of-fold estimates with the experts' scores (Pearson r, MAE; mean and range over fold
assignments): Cohen's extent and opacity, the senior radiologist's Brixia zone grades (with the junior radiologist
on the same films beside them), and the trend verdict against the experts' own trend; it gives the score's
distribution per label, for Normals per source and site (the normal range), and the score's test–retest noise.
"""

from __future__ import annotations

import os
from collections.abc import Sequence

import numpy as np
import pandas as pd
from joblib import Parallel, delayed
from sklearn.base import clone
from sklearn.model_selection import GroupKFold

from core.features.blocks import zone_feature_table
from core.labels import LABEL_COVID, LABEL_NORMAL
from core.lungs.zones import ZONE_NAMES
from core.severity.brixia import JUNIOR_COLUMNS, SENIOR_COLUMNS, agreement_with_senior
from core.severity.model import EXTENT_MAX, OPACITY_MAX, SEVERITY_VERSION, SeverityModel
from core.severity.noise import perturbation_noise
from core.severity.progression import NOISE_SD, trend_agreement

GRADE_COLUMNS = tuple(f"grade_{zone}" for zone in ZONE_NAMES)
PREDICTED_COLUMNS = ["corona_score", "geographic_extent", "opacity", *GRADE_COLUMNS, "brixia_total"]
# Experts' trend: a least-squares change (0-100 scale) within ±10 points is stable — about the junior-senior Brixia
# disagreement (MAE 1.8 of 18 points on the reference films) and 1.3 points of Cohen's extent + opacity (0-14).
EXPERT_STABLE_BAND = 10.0


# -- fitting on a data set, with the grouped cross-validated report ------------------------------------------------
def _label_group(labels: pd.Series) -> pd.Series:
    return labels.where(labels.isin([LABEL_COVID, LABEL_NORMAL]), "other findings")


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


def _fold_predictions(model: SeverityModel, X: pd.DataFrame, y: pd.DataFrame, groups: np.ndarray,
                      train: np.ndarray, test: np.ndarray) -> np.ndarray:
    fold_model = clone(model).fit(X.iloc[train], y.iloc[train], groups=groups[train])
    return fold_model.predict(X.iloc[test])[PREDICTED_COLUMNS].to_numpy()


def cross_validated_predictions(model: SeverityModel, X: pd.DataFrame, y: pd.DataFrame, groups: np.ndarray, *,
                                n_splits: int, seeds: Sequence[int], n_jobs: int = 1) -> list[pd.DataFrame]:
    """Out-of-fold ``corona_score``, ``geographic_extent``, ``opacity``, zone grades ``grade_<zone>`` and
    ``brixia_total`` of every row, once per fold assignment (seed): each row is predicted by a clone of ``model``
    fitted without the row's patient (patient-grouped folds; the regressor choices are nested).

    Every fold of every assignment is one task for ``n_jobs`` workers; the numbers do not depend on ``n_jobs``.
    """
    assignments = [GroupKFold(n_splits=n_splits, shuffle=True, random_state=seed).split(X, groups=groups)
                   for seed in seeds]
    tasks = [(repeat, train, test) for repeat, folds in enumerate(assignments) for train, test in folds]
    fold_values = Parallel(n_jobs=n_jobs)(delayed(_fold_predictions)(model, X, y, groups, train, test)
                                          for _, train, test in tasks)
    runs = [pd.DataFrame(index=X.index, columns=PREDICTED_COLUMNS, dtype=float) for _ in seeds]
    for (repeat, _, test), values in zip(tasks, fold_values):
        runs[repeat].iloc[test] = values
    return runs


def _flat_brixia(figures: dict) -> dict:
    return {**{f"kappa_{k}": v for k, v in figures["kappa_linear"].items()},
            **{k: v for k, v in figures.items() if k not in ("kappa_linear", "n_images")}}


def _normal_range(scores: pd.Series) -> tuple[float, float]:
    return float(scores.quantile(0.05)), float(scores.quantile(0.95))


def fit_severity_model(table: pd.DataFrame, *, n_jobs: int = -1, random_state: int = 0, outer_splits: int = 8,
                       repeats: int = 5, n_perturbations: int = 4, features: pd.DataFrame | None = None,
                       zone_scores: pd.DataFrame | None = None, cache_dir: str | os.PathLike | None = None,
                       ) -> tuple[SeverityModel, dict]:
    """Fit the severity model on a data set and report its patient-grouped cross-validated accuracy.

    Parameters
    ----------
    table : DataFrame
        Data set rows (``core.io.datasets.load_dataset(...).table``): ``path``, ``label``, ``patient_id``,
        ``geographic_extent`` and ``opacity`` (NaN where not scored), optionally ``file``, ``patient_group`` (used
        for grouping when present), ``site``, ``origin_dataset`` and ``offset_days``.
    n_jobs : int
        Workers for reading images, finding lungs and the noise measurement.
    random_state : int
    outer_splits, repeats : int
        Patient-grouped folds of the outer cross-validation, repeated with ``repeats`` different fold assignments
        (with few scored patients the figures move with the assignment, so their mean and range are reported).
    n_perturbations : int
        Perturbed copies per scored image for the noise measurement (0: skip).
    features : DataFrame, optional
        Precomputed :func:`zone_feature_table` rows aligned with ``table``.
    cache_dir : path, optional
        Feature cache of the zone features (:func:`core.features.blocks.zone_feature_table`); None: none.
    zone_scores : DataFrame, optional
        :func:`core.severity.brixia.brixia_zone_scores` of the data set, joined on ``file``: the senior's zone
        grades train the Brixia zone-grade regressor, the junior's are reported beside it.

    Returns
    -------
    model : SeverityModel
        Fitted on all readable rows; ``noise_sd_`` (points) and ``normal_range_`` (5th–95th percentile of the
        out-of-fold score of Normal films) are set when measurable.
    report : dict
        ``extent`` / ``opacity`` / ``corona_vs_experts`` (expert corona = 50 x (extent / 8 + opacity / 6)):
        out-of-fold Pearson r and MAE on the scored images, mean and range over the repeats; ``brixia`` and
        ``brixia_junior``: per-zone linear-weighted kappa, total MAE and r against the senior (out of fold, and the
        junior radiologist on the same films); ``trend``: trend-verdict agreement with the experts' own trend on
        dated series; ``corona_by_label``, ``normal_by_source``, ``normal_by_site``, ``normal_range``;
        ``selection``; ``noise``; ``out_of_fold``: per-image predictions.
    """
    missing = {"path", "label", "patient_id", "geographic_extent", "opacity"} - set(table.columns)
    if missing:
        raise ValueError(f"the severity model needs data set columns {', '.join(sorted(missing))} (expert scores)")
    if zone_scores is not None and len(zone_scores) and "file" in table:
        table = table.drop(columns=[c for c in zone_scores.columns if c != "file" and c in table])
        table = table.merge(zone_scores, on="file", how="left")
    errors = {}
    if features is None:
        features, errors = zone_feature_table(table["path"], n_jobs=n_jobs, cache_dir=cache_dir)
    readable = features.notna().any(axis=1).to_numpy()
    rows, X = table[readable].reset_index(drop=True), features[readable].reset_index(drop=True)
    target_columns = ["label", "geographic_extent", "opacity", *[c for c in SENIOR_COLUMNS if c in rows]]
    y = rows[target_columns]
    group_column = "patient_group" if "patient_group" in rows and rows["patient_group"].notna().all() else "patient_id"
    groups = rows[group_column].astype(str).to_numpy()
    model = SeverityModel(random_state=random_state)

    scored = (rows["geographic_extent"].notna() & rows["opacity"].notna()).to_numpy()
    experts = {"extent": rows["geographic_extent"].to_numpy(), "opacity": rows["opacity"].to_numpy()}
    experts["corona_vs_experts"] = 50.0 * (experts["extent"] / EXTENT_MAX + experts["opacity"] / OPACITY_MAX)
    predicted_column = {"extent": "geographic_extent", "opacity": "opacity", "corona_vs_experts": "corona_score"}
    graded = rows[list(SENIOR_COLUMNS)].notna().all(axis=1).to_numpy() if set(SENIOR_COLUMNS) <= set(rows) else \
        np.zeros(len(rows), dtype=bool)
    runs = cross_validated_predictions(model, X, y, groups, n_splits=outer_splits,
                                       seeds=[random_state + repeat for repeat in range(repeats)], n_jobs=n_jobs)
    figures, brixia = {name: [] for name in experts}, []
    for run in runs:
        for name, expert in experts.items():
            figures[name].append(_agreement(run[predicted_column[name]].to_numpy()[scored], expert[scored]))
        if graded.any():
            brixia.append(_flat_brixia(agreement_with_senior(run.loc[graded, list(GRADE_COLUMNS)].to_numpy(int),
                                                             rows.loc[graded, list(SENIOR_COLUMNS)].to_numpy(int))))
    out_of_fold = sum(runs) / len(runs)
    model.fit(X, y, groups=groups)

    group = _label_group(rows["label"])
    normal = (group == LABEL_NORMAL).to_numpy()
    report = {
        "version": SEVERITY_VERSION, "n_images": len(rows), "n_scored": int(scored.sum()),
        "n_scored_patients": int(rows.loc[scored, group_column].nunique()), "unreadable": errors,
        "validation": f"out-of-fold, {outer_splits} folds grouped by {group_column} x {repeats} fold assignments "
                      "(the regressor choices nested inside each training fold)",
        **{name: _summarise_repeats(values) for name, values in figures.items()},
        "corona_by_label": {name: _distribution(out_of_fold.loc[group == name, "corona_score"])
                            for name in (LABEL_COVID, LABEL_NORMAL, "other findings") if (group == name).any()},
        "selection": model.selection_,
    }
    if graded.any():
        report["brixia"] = {"n_images": int(graded.sum()), "n_patients": int(rows.loc[graded, group_column].nunique()),
                            **_summarise_repeats(brixia)}
        if set(JUNIOR_COLUMNS) <= set(rows) and rows.loc[graded, list(JUNIOR_COLUMNS)].notna().all(axis=None):
            report["brixia_junior"] = _flat_brixia(agreement_with_senior(
                rows.loc[graded, list(JUNIOR_COLUMNS)].to_numpy(int), rows.loc[graded, list(SENIOR_COLUMNS)].to_numpy(int)))
    for column, name in (("origin_dataset", "normal_by_source"), ("site", "normal_by_site")):
        if column in rows:
            report[name] = {str(value): _distribution(out_of_fold.loc[normal & (rows[column] == value), "corona_score"])
                            for value in rows.loc[normal, column].dropna().unique()}
    if normal.sum() >= 10:
        model.normal_range_ = _normal_range(out_of_fold.loc[normal, "corona_score"])
        report["normal_range"] = {"p5": round(model.normal_range_[0], 1), "p95": round(model.normal_range_[1], 1),
                                  "n_images": int(normal.sum()),
                                  "sites": sorted(map(str, rows.loc[normal, "site"].dropna().unique()))
                                  if "site" in rows else None}
    if n_perturbations > 0:
        report["noise"] = perturbation_noise(model, rows.loc[scored | graded, "path"].tolist(),
                                             n_perturbations=n_perturbations, random_state=random_state,
                                             n_jobs=n_jobs)
        model.noise_sd_ = report["noise"]["noise_sd"]
    if "offset_days" in rows:
        report["trend"] = _trend_report(rows, out_of_fold, group_column, getattr(model, "noise_sd_", None), graded)
    identity = [c for c in ("file", "label", "patient_id") if c in rows]
    report["out_of_fold"] = pd.concat([rows[identity], out_of_fold.round(3)], axis=1).to_dict(orient="records")
    return model, report


def _trend_report(rows: pd.DataFrame, out_of_fold: pd.DataFrame, group_column: str, noise_sd: float | None,
                  graded: np.ndarray) -> dict:
    """Trend-verdict agreement with the experts' own trend (Cohen extent/opacity; Brixia senior) on dated series."""
    noise_sd = NOISE_SD if noise_sd is None else noise_sd
    base = pd.DataFrame({"patient": rows[group_column], "time": rows["offset_days"],
                         "corona_score": out_of_fold["corona_score"]})
    experts = {"cohen": 50.0 * (rows["geographic_extent"] / EXTENT_MAX + rows["opacity"] / OPACITY_MAX)}
    if graded.any():
        experts["brixia_senior"] = 100.0 * rows[list(SENIOR_COLUMNS)].sum(axis=1, min_count=6) / 18.0
    return {"expert_band": EXPERT_STABLE_BAND, "noise_sd": noise_sd,
            "rule": "tool: core.severity.progression.trend on the out-of-fold corona score; experts: least-squares "
                    f"change of their score (0-100) beyond ±{EXPERT_STABLE_BAND:g} points",
            **{name: trend_agreement(base.assign(expert=expert), noise_sd=noise_sd, expert_band=EXPERT_STABLE_BAND)
               for name, expert in experts.items()}}
