"""How the three-class triage model holds up at a hospital it has never seen.

:func:`evaluate_sites` measures a :class:`core.learn.models.Recipe` on a data set with a ``site`` per image:

- **leave-one-site-out** (LOSO): every site in turn is left out, the models are trained on the other sites (minus
  any patient with an image at the left-out site) and predict it; each task's AUC is computed on the pooled
  left-out predictions, and per site;
- **within-site contrasts**: AUC over pairs of images from the *same* site only (pneumonia vs Normal inside NIH,
  COVID-19 vs Normal inside Actualmed, COVID-19 vs other pneumonia inside each publisher that has both) -- a
  shortcut that recognises the site cannot score here -- on LOSO and on patient-held-out predictions;
- **flag rates** per label and per site, with the flag rule chosen as in training (patient-held-out), and the
  same rule applied to the LOSO predictions;
- the **site-shift check**'s firing rate on left-out sites vs held-out patients of known sites.

Every figure carries its n and a 95 % bootstrap CI over patients (:func:`core.evaluation.metrics.patient_bootstrap`).
Task scores from the three class probabilities: covid-vs-normal P(COVID-19); pneumonia-vs-normal 1 - P(Normal);
covid-vs-pneumonia P(COVID-19) / (P(COVID-19) + P(other pneumonia)).
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from joblib import Parallel, delayed

from core.evaluation.metrics import fast_auc, patient_bootstrap
from core.evaluation.splits import site_splits
from core.labels import LABEL_COVID, LABEL_NORMAL, TASKS, TRIAGE_CLASSES
from core.learn.consensus import ConsensusCalibrator
from core.learn.flag import FlagRule
from core.learn.models import RECIPES, Recipe
from core.learn.site_shift import SiteShiftDetector
from core.learn.training import COVID_INDEX, fold_probabilities, patient_folds
from core.progress import Progress

__all__ = ["evaluate_sites", "task_score", "within_site_auc", "TARGETS", "NIH_SITE"]

NIH_SITE = "nih"
#: Minimum images of each class for a site to count in a within-site contrast.
MIN_PER_CLASS = 3
#: Issue 10's targets: (key, description, threshold, direction).
TARGETS = (
    ("loso_covid_vs_normal", "leave-one-site-out COVID-19 vs Normal AUC", 0.80, ">="),
    ("within_pneumonia_vs_normal", "pneumonia vs Normal within one hospital (NIH), hospital never seen, AUC",
     0.85, ">="),
    ("within_covid_vs_pneumonia", "COVID-19 vs other pneumonia from the same publishers, publisher never seen, AUC",
     0.70, ">="),
    ("loso_covid_flagged", "COVID-19 at a hospital never trained on, flagged", 0.85, ">="),
    ("loso_other_normals_flagged", "Normals from hospitals other than NIH, never trained on, flagged", 0.30, "<="),
)


def task_score(probabilities: np.ndarray, task: str) -> np.ndarray:
    """The score of ``task`` from three-class probabilities (n_images, 3) ordered as TRIAGE_CLASSES."""
    p = np.asarray(probabilities, dtype=float)
    normal, other, covid = (p[:, TRIAGE_CLASSES.index(name)] for name in TRIAGE_CLASSES)
    if task == "covid-vs-normal":
        return covid
    if task == "pneumonia-vs-normal":
        return 1.0 - normal
    if task == "covid-vs-pneumonia":
        return covid / np.clip(covid + other, 1e-12, None)
    raise ValueError(f"unknown task {task!r}; choose one of {', '.join(TASKS)}")


def within_site_auc(y: np.ndarray, score: np.ndarray, sites: np.ndarray, keep: np.ndarray | None = None) -> float:
    """AUC over (positive, negative) pairs from the same site only; sites with < MIN_PER_CLASS of a class skipped.

    ``y`` is 1 / 0 for the two classes of the task (rows of other classes must be excluded by the caller or by
    ``keep``).
    """
    keep = np.ones(len(y), bool) if keep is None else keep
    wins = pairs = 0.0
    for site in np.unique(sites[keep]):
        in_site = keep & (sites == site)
        positive, negative = score[in_site & (y == 1)], score[in_site & (y == 0)]
        if len(positive) < MIN_PER_CLASS or len(negative) < MIN_PER_CLASS:
            continue
        difference = positive[:, None] - negative[None, :]
        wins += (difference > 0).sum() + 0.5 * (difference == 0).sum()
        pairs += difference.size
    return float(wins / pairs) if pairs else float("nan")


def _figure(value: float, ci: tuple[float, float], n_images: int, n_patients: int, **extra) -> dict:
    def number(x):
        return None if x is None or not np.isfinite(x) else round(float(x), 4)
    return {"value": number(value), "ci95": [number(ci[0]), number(ci[1])], "n_images": int(n_images),
            "n_patients": int(n_patients), **extra}


class _Data:
    """The rows of one evaluation, with the bootstrap settings."""

    def __init__(self, y, groups, sites, n_boot, random_state):
        self.y, self.groups, self.sites = y, np.asarray(groups).astype(str), np.asarray(sites).astype(str)
        self.n_boot, self.random_state = n_boot, random_state

    def task_rows(self, task: str) -> tuple[np.ndarray, np.ndarray]:
        positive, negative = (TRIAGE_CLASSES.index(name) for name in TASKS[task])
        rows = np.isin(self.y, (positive, negative))
        return rows, (self.y == positive).astype(int)

    def statistic(self, rows: np.ndarray, function, **extra) -> dict:
        """``function(index)`` on ``rows`` with its patient-bootstrap CI."""
        index = np.flatnonzero(rows)
        if not len(index):
            return _figure(float("nan"), (float("nan"), float("nan")), 0, 0, **extra)
        value = function(index)
        ci = patient_bootstrap(function, index, self.groups, n_boot=self.n_boot, random_state=self.random_state)
        return _figure(value, ci, len(index), len(set(self.groups[index])), **extra)


def _task_figures(data: _Data, probabilities: np.ndarray) -> dict:
    figures = {}
    for task in TASKS:
        rows, target = data.task_rows(task)
        score = task_score(probabilities, task)
        figures[task] = data.statistic(rows, lambda i: fast_auc(target[i], score[i]), n_positive=int(target[rows].sum()))
    return figures


def _per_site(data: _Data, probabilities: np.ndarray) -> list[dict]:
    records = []
    for task in TASKS:
        rows, target = data.task_rows(task)
        score = task_score(probabilities, task)
        for site in np.unique(data.sites[rows]):
            in_site = rows & (data.sites == site)
            n_positive = int(target[in_site].sum())
            auc = fast_auc(target[in_site], score[in_site])
            records.append({"task": task, "site": site, "n_images": int(in_site.sum()), "n_positive": n_positive,
                            "AUC": None if not np.isfinite(auc) else round(auc, 4)})
    return records


def _within_site(data: _Data, probabilities: np.ndarray) -> dict:
    out = {}
    for task in TASKS:
        rows, target = data.task_rows(task)
        score = task_score(probabilities, task)
        sites = []
        for site in np.unique(data.sites[rows]):
            in_site = rows & (data.sites == site)
            if min(target[in_site].sum(), (1 - target[in_site]).sum()) < MIN_PER_CLASS:
                continue
            sites.append(data.statistic(in_site, lambda i: fast_auc(target[i], score[i]), site=site,
                                        n_positive=int(target[in_site].sum())))
        contrast_rows = rows & np.isin(data.sites, [s["site"] for s in sites])
        pooled = data.statistic(contrast_rows, lambda i: within_site_auc(target[i], score[i], data.sites[i]),
                                n_positive=int(target[contrast_rows].sum()))
        out[task] = {"pooled_within_site": pooled, "per_site": sites}
    return out


def _flag_rates(data: _Data, risk: np.ndarray, rule: FlagRule) -> dict:
    flagged = rule.flags(risk).astype(float)
    kinds = np.array(TRIAGE_CLASSES)[data.y]
    per_label = {label: data.statistic(kinds == label, lambda i: flagged[i].mean()) for label in TRIAGE_CLASSES}
    normal = kinds == LABEL_NORMAL
    per_label["Normal (NIH)"] = data.statistic(normal & (data.sites == NIH_SITE), lambda i: flagged[i].mean())
    per_label["Normal (other hospitals)"] = data.statistic(normal & (data.sites != NIH_SITE),
                                                           lambda i: flagged[i].mean())
    per_site = [{"site": site, "label": label, "n_images": int(cell.sum()), "rate": round(float(flagged[cell].mean()), 4)}
                for site in np.unique(data.sites) for label in TRIAGE_CLASSES
                if (cell := (data.sites == site) & (kinds == label)).any()]
    return {"threshold": rule.threshold, "per_label": per_label, "per_site": per_site}


def _site_shift(data: _Data, signatures: np.ndarray, loso_folds, loso_names, pat_folds, n_jobs: int) -> dict:
    def ratios(folds):
        out = np.full(len(data.y), np.nan)
        fitted = Parallel(n_jobs=n_jobs)(delayed(lambda tr: SiteShiftDetector().fit(
            signatures[tr], data.sites[tr], data.y[tr]))(train) for train, _ in folds)
        for detector, (_, test) in zip(fitted, folds):
            out[test] = detector.distance_ratio(signatures[test])
        return out, fitted[0]

    loso, detector = ratios(loso_folds)
    patient, _ = ratios(pat_folds)
    fires_loso, fires_patient = (loso > 1).astype(float), (patient > 1).astype(float)
    known = np.isfinite(loso)
    batches = {"left_out_site": [], "known_site_held_out_patients": []}
    for site in np.unique(data.sites):
        in_site = data.sites == site
        if in_site.sum() >= 8 and known[in_site].all():
            batches["left_out_site"].append(detector.batch_is_shifted(loso[in_site]))
            batches["known_site_held_out_patients"].append(detector.batch_is_shifted(patient[in_site]))
    return {
        "per_image": {
            "left_out_site": data.statistic(known, lambda i: fires_loso[i].mean()),
            "known_site_held_out_patients": data.statistic(np.ones(len(data.y), bool),
                                                           lambda i: fires_patient[i].mean()),
        },
        "per_site_left_out": {site: round(float(fires_loso[data.sites == site].mean()), 4)
                              for site in loso_names},
        "batch_of_one_site": {key: {"rate": float(np.mean(values)) if values else None, "n_batches": len(values)}
                              for key, values in batches.items()},
        "detector": "Mahalanobis distance of the acquisition signature to the nearest training site x class cell",
    }


def _targets(loso_tasks: dict, within: dict, loso_flags: dict) -> list[dict]:
    values = {
        "loso_covid_vs_normal": loso_tasks["covid-vs-normal"],
        "within_pneumonia_vs_normal": within["pneumonia-vs-normal"]["pooled_within_site"],
        "within_covid_vs_pneumonia": within["covid-vs-pneumonia"]["pooled_within_site"],
        "loso_covid_flagged": loso_flags["per_label"][LABEL_COVID],
        "loso_other_normals_flagged": loso_flags["per_label"]["Normal (other hospitals)"],
    }
    out = []
    for key, description, threshold, direction in TARGETS:
        figure = values[key]
        value = figure["value"]
        met = value is not None and (value >= threshold if direction == ">=" else value <= threshold)
        out.append({"key": key, "target": f"{direction} {threshold:.2f}", "description": description,
                    "value": value, "ci95": figure["ci95"], "n_images": figure["n_images"],
                    "n_patients": figure["n_patients"], "met": bool(met)})
    return out


def selection_score(result: dict) -> float:
    """What the default model is chosen by: the mean of the LOSO pooled AUCs and the within-site AUCs
    (site never seen and patient held out) over the three tasks."""
    values = [result["site_held_out"]["tasks"][t]["value"] for t in TASKS]
    for split in ("site_held_out", "patient_held_out"):
        values += [result[split]["within_site"][t]["pooled_within_site"]["value"] for t in TASKS]
    return float(np.nanmean([np.nan if v is None else v for v in values]))


def evaluate_sites(X: pd.DataFrame, y: np.ndarray, groups, sites, *, recipe: Recipe | str = "linear",
                   signatures: np.ndarray | None = None, target_sensitivity: float = 0.95, n_boot: int = 1000,
                   random_state: int = 42, n_jobs: int = 1, progress: Progress | None = None) -> dict:
    """Leave-one-site-out and patient-held-out evaluation of a recipe's three-class model (JSON-ready dict).

    Parameters
    ----------
    X : DataFrame (n_images, n_features)
    y : ndarray of int (n_images,)
        Three-class target (0 Normal, 1 other pneumonia, 2 COVID-19).
    groups, sites : array-like (n_images,)
        Patient group and site of every image.
    recipe : Recipe or str
    signatures : ndarray (n_images, n_signature), optional
        Acquisition signatures; with them the site-shift check is measured too.
    target_sensitivity : float
        Of the flag rule, chosen on the patient-held-out COVID-19 probability as in training.
    n_boot : int
        Bootstrap resamples of patients for the 95 % CIs.
    """
    recipe = RECIPES[recipe] if isinstance(recipe, str) else recipe
    say = progress or (lambda fraction, message: None)
    y = np.asarray(y).astype(int)
    data = _Data(y, groups, sites, n_boot, random_state)
    loso_folds, loso_names, skipped = site_splits(y, data.sites, data.groups)
    for (train, _), name in zip(loso_folds, loso_names):  # the promise of the split, asserted on every fold
        assert name not in set(data.sites[train])
    say(0.05, f"leave-one-site-out: {len(loso_folds)} sites")
    loso_models = fold_probabilities(recipe, X, y, loso_folds, random_state=random_state, n_jobs=n_jobs)
    say(0.6, "patient-held-out predictions")
    pat_folds = patient_folds(y, data.groups, random_state=random_state)
    patient_models = fold_probabilities(recipe, X, y, pat_folds, random_state=random_state, n_jobs=n_jobs)
    calibrator = ConsensusCalibrator(n_classes=len(TRIAGE_CLASSES)).fit(patient_models, y)
    patient = calibrator.predict_proba(patient_models)
    covered = np.isfinite(loso_models).all(axis=(1, 2))
    loso = np.full_like(patient, np.nan)
    loso[covered] = calibrator.predict_proba(loso_models[covered])
    rule = FlagRule.for_sensitivity(patient[:, COVID_INDEX], (y == COVID_INDEX).astype(int), target_sensitivity)
    say(0.9, "scores and bootstrap intervals")
    loso_data = _Data(y[covered], data.groups[covered], data.sites[covered], n_boot, random_state)
    result = {
        "recipe": recipe.to_dict(),
        "n_images": int(len(y)), "n_patients": int(len(set(data.groups))), "n_sites": int(len(set(data.sites))),
        "images_per_class": {label: int((y == i).sum()) for i, label in enumerate(TRIAGE_CLASSES)},
        "site_held_out": {"tasks": _task_figures(loso_data, loso[covered]),
                          "per_site": _per_site(loso_data, loso[covered]),
                          "within_site": _within_site(loso_data, loso[covered]),
                          "flags": _flag_rates(loso_data, loso[covered, COVID_INDEX], rule),
                          "skipped_sites": skipped},
        "patient_held_out": {"tasks": _task_figures(data, patient), "within_site": _within_site(data, patient),
                             "flags": _flag_rates(data, patient[:, COVID_INDEX], rule)},
        "flag_rule": rule.to_dict(),
        "n_boot": int(n_boot),
    }
    result["targets"] = _targets(result["site_held_out"]["tasks"], result["site_held_out"]["within_site"],
                                 result["site_held_out"]["flags"])
    if signatures is not None:
        result["site_shift"] = _site_shift(data, np.asarray(signatures, float), loso_folds, loso_names, pat_folds,
                                           n_jobs)
    result["selection_score"] = selection_score(result)
    say(1.0, "done")
    return result
