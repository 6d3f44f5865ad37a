"""Local validation: how the tool, as it is, does on one site's labelled films.

:func:`validation_report` turns the per-film records of :func:`core.validation.scoring.score_dataset` into the
figures ``python -m core validate`` prints, writes as JSON and draws in the HTML report: AUC with a bootstrap CI over
patients, the flag threshold in use with sensitivity and specificity (CIs), Brier score, calibration bins, flag
rate per label, risk distributions per label, the share of films with site-shift / out-of-distribution warnings, and
the same figures for pneumonia when the predictions carry a ``pneumonia`` probability.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
from sklearn.metrics import roc_auc_score, roc_curve

from core.labels import LABEL_COVID, LABEL_NORMAL, LABEL_PNEUMONIA
from core.learn.flag import is_flagged
from core.learn.site_profile import NOT_VALIDATED
from core.triage.model import TriageModel
from core.validation.scoring import ScoredSet
from core.validation.statistics import (
    CONFIDENCE,
    N_BOOTSTRAP,
    calibration_bins,
    distribution,
    patient_bootstrap_weights,
    percentile_interval,
    proportion,
    weighted_auc,
)
from core.validation.tables import number, percent

OOD_RATIO = 1.0  # out_of_distribution above this: the film is unlike the training films (the warning's rule)
_ROC_POINTS = 200


def binary_figures(y: np.ndarray, score: np.ndarray, groups: np.ndarray, *, threshold: float | None = None,
                   n_boot: int = N_BOOTSTRAP, random_state: int = 0) -> dict:
    """Discrimination, calibration and (with ``threshold``) the operating point of one binary question.

    Parameters
    ----------
    y : (n_films,) 1 = positive
    score : (n_films,) predicted probability of the positive class
    groups : (n_films,) patient of each film (bootstrap unit)
    threshold : float, optional
        Flag threshold on ``score``; adds sensitivity, specificity and flag rate with their intervals.
    """
    y, score, groups = np.asarray(y, dtype=int), np.asarray(score, dtype=float), np.asarray(groups)
    positives, negatives = y == 1, y == 0
    figures: dict = {
        "n_images": int(len(y)), "n_patients": int(pd.unique(groups).size),
        "n_positive": int(positives.sum()), "n_negative": int(negatives.sum()),
        "positive_patients": int(pd.unique(groups[positives]).size),
        "negative_patients": int(pd.unique(groups[negatives]).size),
        "AUC": {"value": None, "ci": [None, None]}, "brier": {"value": None, "ci": [None, None]},
        "calibration": calibration_bins(y, score), "roc": None,
    }
    if not len(y):
        return figures
    weights = patient_bootstrap_weights(groups, n_boot, random_state)
    squared = (score - y) ** 2
    figures["brier"] = {"value": float(squared.mean()),
                        "ci": percentile_interval((weights @ squared) / np.maximum(weights.sum(axis=1), 1))}
    if positives.any() and negatives.any():
        figures["AUC"] = {"value": float(roc_auc_score(y, score)),
                          "ci": percentile_interval(weighted_auc(y, score, weights))}
        fpr, tpr, cut = roc_curve(y, score)
        keep = np.unique(np.linspace(0, len(fpr) - 1, min(len(fpr), _ROC_POINTS)).round().astype(int))
        figures["roc"] = {"fpr": fpr[keep].tolist(), "tpr": tpr[keep].tolist(),
                          "thresholds": np.minimum(cut[keep], 1.0).tolist()}
    if threshold is not None:
        flagged = is_flagged(score, threshold)
        figures["operating_point"] = {
            "threshold": float(threshold),
            "sensitivity": proportion(flagged[positives], groups[positives]),
            "specificity": proportion(~flagged[negatives], groups[negatives]),
            "flag_rate": proportion(flagged, groups),
            "counts": {"true_positive": int((flagged & positives).sum()),
                       "false_negative": int((~flagged & positives).sum()),
                       "false_positive": int((flagged & negatives).sum()),
                       "true_negative": int((~flagged & negatives).sum())},
        }
    return figures


def json_ready(value):
    """Strict-JSON copy: numpy scalars become Python numbers, NaN and infinities become None."""
    if isinstance(value, dict):
        return {str(k): json_ready(v) for k, v in value.items()}
    if isinstance(value, (list, tuple, np.ndarray)):
        return [json_ready(v) for v in value]
    if isinstance(value, (bool, np.bool_)):
        return bool(value)
    if isinstance(value, (int, np.integer)):
        return int(value)
    if isinstance(value, (float, np.floating)):
        return float(value) if math.isfinite(value) else None
    return value


def _warning_kind(text: str) -> str:
    """The kind of a warning: its words before the first parenthesis or colon."""
    for stop in (" (", ":"):
        text = text.split(stop, 1)[0]
    return text.strip()


def warning_summary(scored: pd.DataFrame) -> dict:
    """Share of scored films with an out-of-distribution (site-shift) warning, with any warning, and counts by kind."""
    n = len(scored)
    if not n:
        scored = pd.DataFrame({"out_of_distribution": [], "warnings": [], "patient": []})
    ood = scored["out_of_distribution"].astype(float).to_numpy() > OOD_RATIO if n else np.zeros(0, bool)
    any_warning = scored["warnings"].map(lambda w: bool(w)).to_numpy(bool) if n else np.zeros(0, bool)
    kinds: dict[str, int] = {}
    for warnings in scored.get("warnings", pd.Series(dtype=object)):
        for kind in {_warning_kind(w) for w in warnings or []}:
            kinds[kind] = kinds.get(kind, 0) + 1
    groups = scored["patient"].to_numpy()
    return {"out_of_distribution": proportion(ood, groups), "any_warning": proportion(any_warning, groups),
            "by_kind": dict(sorted(kinds.items(), key=lambda item: -item[1])),
            "rule": f"out_of_distribution > {OOD_RATIO}: the film is further from the training films than "
                    "99 % of them are from each other"}


def _per_label(scored: pd.DataFrame, column: str, threshold: float | None) -> tuple[dict, dict]:
    flag_rates, distributions = {}, {}
    for label, rows in scored.groupby("label", sort=True):
        values = rows[column].astype(float).to_numpy()
        distributions[label] = distribution(values)
        if threshold is not None:
            flag_rates[label] = proportion(is_flagged(values, threshold), rows["patient"].to_numpy())
    return flag_rates, distributions


def _single_threshold(scored: pd.DataFrame, column: str) -> float | None:
    if column not in scored or scored[column].isna().all():
        return None
    values = scored[column].dropna().astype(float).unique()
    if len(values) != 1:
        raise ValueError(f"the predictions use {len(values)} different {column} values; validate one model at a time")
    return float(values[0])


def pneumonia_figures(scored: pd.DataFrame, n_boot: int, random_state: int) -> dict:
    """Pneumonia (other than COVID-19) vs Normal, when the predictions carry a ``pneumonia`` probability."""
    if "pneumonia" not in scored or scored["pneumonia"].isna().all():
        return {"available": False, "reason": "these models give no pneumonia probability"}
    rows = scored[scored["label"].isin([LABEL_PNEUMONIA, LABEL_NORMAL]) & scored["pneumonia"].notna()]
    threshold = _single_threshold(scored, "pneumonia_threshold")
    flag_rates, distributions = _per_label(scored[scored["pneumonia"].notna()], "pneumonia", threshold)
    figures = {"available": True, "positive": LABEL_PNEUMONIA, "negative": LABEL_NORMAL,
               "flag_rate_per_label": flag_rates, "score_distributions": distributions}
    if rows["label"].nunique() < 2:
        figures["note"] = (f"the labels do not allow pneumonia discrimination figures: they need both "
                           f"{LABEL_PNEUMONIA} and {LABEL_NORMAL} films (found {sorted(rows['label'].unique())})")
    y = (rows["label"] == LABEL_PNEUMONIA).to_numpy(int)
    figures.update(binary_figures(y, rows["pneumonia"].astype(float).to_numpy(), rows["patient"].to_numpy(),
                                  threshold=threshold, n_boot=n_boot, random_state=random_state))
    return figures


def validation_report(scored_set: ScoredSet, model: TriageModel, *, n_boot: int = N_BOOTSTRAP,
                      random_state: int = 0) -> dict:
    """Every figure of a local validation (JSON-ready dict; see the module docstring)."""
    records, table = scored_set.records, scored_set.dataset.table
    scored = scored_set.scored
    refused = records[records["error"].notna()]
    threshold = _single_threshold(scored, "threshold")
    binary, y = scored_set.binary()
    covid = binary_figures(y, binary["risk"].astype(float).to_numpy(), binary["patient"].to_numpy(),
                           threshold=threshold, n_boot=n_boot, random_state=random_state)
    flag_rates, distributions = _per_label(scored, "risk", threshold)
    profile = model.site_profile
    report = {
        "data": {"root": scored_set.dataset.root.name, "layout": scored_set.dataset.layout,
                 "fingerprint": scored_set.fingerprint(), "n_images": int(len(records)),
                 "n_scored": int(len(scored)), "n_patients": int(pd.unique(records["patient"]).size),
                 "patient_ids_known": bool(table["patient_known"].any()),
                 "images_per_label": records["label"].value_counts().to_dict(),
                 "patients_per_label": records.groupby("label")["patient"].nunique().to_dict(),
                 "refused": [{"file": r.file, "label": r.label, "error": r.error} for r in refused.itertuples()]},
        "models": {"folder": model.models_dir.name, "fingerprint": model.fingerprint,
                   "created": model.report.get("created"), "training_data_fingerprint":
                       model.report.get("data", {}).get("fingerprint"),
                   "model_threshold": model.model_flag_rule.threshold if model.model_flag_rule else None},
        "site_profile": profile.summary() if profile else None,
        "calibration_statement": profile.label() if profile else NOT_VALIDATED,
        "confidence": CONFIDENCE, "n_bootstrap": n_boot,
        "threshold": threshold,
        "target_sensitivity": model.flag_rule.target_sensitivity if model.flag_rule else None,
        "covid": {"positive": LABEL_COVID, "negative": LABEL_NORMAL, **covid},
        "flag_rate_per_label": flag_rates,
        "score_distributions": distributions,
        "warnings": warning_summary(scored),
        "pneumonia": pneumonia_figures(scored, n_boot, random_state),
    }
    report["notes"] = validation_notes(report, scored_set)
    return report


def validation_notes(report: dict, scored_set: ScoredSet) -> list[str]:
    """What a reader must know before trusting the figures (honest caveats that depend on this data set)."""
    notes = []
    if report["data"]["fingerprint"] == report["models"]["training_data_fingerprint"]:
        notes.append("These are the films the models were trained on: the figures are optimistic and are not a "
                     "validation. Validate on films the models have never seen.")
    if not report["data"]["patient_ids_known"]:
        notes.append("No patient ids: every film counts as its own patient. If patients have several films, the "
                     "confidence intervals are too narrow.")
    covid = report["covid"]
    if covid["positive_patients"] == 0 or covid["negative_patients"] == 0:
        notes.append(f"The set does not hold both {LABEL_COVID} and {LABEL_NORMAL} films: no AUC, and only "
                     "the sensitivity or the specificity can be measured.")
    elif min(covid["positive_patients"], covid["negative_patients"]) < 30:
        notes.append(f"Few patients ({covid['positive_patients']} with {LABEL_COVID}, {covid['negative_patients']} "
                     f"{LABEL_NORMAL}): the confidence intervals are wide; read the intervals, not the point values.")
    if report["data"]["refused"]:
        notes.append(f"{len(report['data']['refused'])} film(s) were not scored (unreadable or not a frontal chest "
                     "X-ray); they are left out of every figure and listed in the report.")
    others = sorted(set(report["flag_rate_per_label"]) - {LABEL_COVID, LABEL_NORMAL})
    if others:
        notes.append("Films of other findings (" + ", ".join(others) + ") are not in the AUC, sensitivity or "
                     "specificity; their flag rate is shown per label.")
    return notes


def format_validation(report: dict) -> str:
    """The figures as lines of text (``validate`` without ``--json``)."""
    data, covid = report["data"], report["covid"]
    lines = [f"{data['root']}: {data['n_images']} films, {data['n_patients']} patients, {data['n_scored']} scored; "
             f"models {report['models']['folder']} ({report['models']['fingerprint'][:12]}); "
             f"{report['calibration_statement']}",
             f"  {LABEL_COVID} vs {LABEL_NORMAL}: {covid['n_positive']} / {covid['n_negative']} films "
             f"({covid['positive_patients']} / {covid['negative_patients']} patients); 95% CIs in brackets",
             f"  AUC {number(covid['AUC'])}   Brier {number(covid['brier'])}"]
    point = covid.get("operating_point")
    if point:
        lines.append(f"  threshold {100 * point['threshold']:.1f}%: sensitivity {percent(point['sensitivity'])}, "
                     f"specificity {percent(point['specificity'])}, flag rate {percent(point['flag_rate'])}")
    for label, rate in report["flag_rate_per_label"].items():
        lines.append(f"  flagged {label:<14} {rate['events']:>4}/{rate['n']:<4} {percent(rate)}")
    warn = report["warnings"]
    lines.append(f"  out-of-distribution warning: {percent(warn['out_of_distribution'])}; any warning: "
                 f"{percent(warn['any_warning'])}")
    pneumonia = report["pneumonia"]
    if pneumonia.get("available") and pneumonia["AUC"]["value"] is not None:
        lines.append(f"  pneumonia vs Normal: AUC {number(pneumonia['AUC'])}, Brier "
                     f"{number(pneumonia['brier'])}")
    else:
        lines.append(f"  pneumonia: {pneumonia.get('reason') or pneumonia.get('note')}")
    lines += [f"  note: {note}" for note in report["notes"]]
    return "\n".join(lines)
