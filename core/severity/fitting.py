"""Fitting the corona-score model on a data set, with its patient-grouped cross-validated report.

The report compares the out-of-fold estimates with the experts' scores (Pearson r, MAE; mean and range over fold
assignments), gives the score's distribution per label and for Normals per source, and the score's noise.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from sklearn.base import clone
from sklearn.model_selection import GroupKFold

from core.features.zones import zone_feature_table
from core.labels import LABEL_COVID, LABEL_NORMAL
from core.severity.model import EXTENT_MAX, OPACITY_MAX, SEVERITY_VERSION, SeverityModel
from core.severity.noise import perturbation_noise


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
        Data set rows (``core.io.datasets.load_dataset(...).table``): ``path``, ``label``, ``patient_id``,
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
                            for name in (LABEL_COVID, LABEL_NORMAL, "other findings") if (group == name).any()},
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
