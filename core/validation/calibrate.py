"""Site calibration: fit a :class:`~core.learn.site_profile.SiteProfile` on one hospital's labelled films.

The profile recalibrates the consensus risk on the site's films and chooses the flag threshold that reaches the
target sensitivity there. How much can be fitted depends on the number of films:

- the threshold needs enough COVID-19 **patients** that catching the target share is informative: the exact 95 %
  lower confidence bound of the sensitivity at the target must lie within :data:`SENSITIVITY_MARGIN` of it
  (:func:`core.validation.statistics.positives_needed`: 35 patients for 0.95);
- recalibration needs at least :data:`MIN_PATIENTS_PER_CLASS` patients of each class; Platt scaling (two
  parameters, Platt's smoothed targets) is used below :data:`ISOTONIC_MIN_FILES` films of the rarer class, isotonic
  regression from there (scikit-learn's guidance: isotonic overfits on small sets);
- a smaller set is refused, with the number of films it lacks.

Everything is patient-grouped: intervals are bootstrapped over patients, and the figures "on new films" come from a
patient-grouped cross-validation of the whole procedure (recalibrate + choose the threshold on the other patients).
"""

from __future__ import annotations

import numpy as np
from sklearn.model_selection import StratifiedGroupKFold

from core.labels import LABEL_COVID, LABEL_NORMAL
from core.learn.flag import FlagRule, is_flagged
from core.learn.site_profile import SiteProfile, SiteProfileError, SiteRecalibrator, utc_now
from core.validation.scoring import ScoredSet
from core.validation.statistics import (
    CONFIDENCE,
    N_BOOTSTRAP,
    patient_bootstrap_weights,
    percentile_interval,
    positives_needed,
    proportion,
    weighted_threshold_for_sensitivity,
)
from core.validation.validate import json_ready

SENSITIVITY_MARGIN = 0.10
MIN_PATIENTS_PER_CLASS = 10
ISOTONIC_MIN_FILES = 500
CV_FOLDS = 5


def films_needed(target_sensitivity: float) -> dict[str, int]:
    """The fewest patients of each class :func:`fit_site_profile` accepts for this target."""
    return {LABEL_COVID: max(positives_needed(target_sensitivity, SENSITIVITY_MARGIN), MIN_PATIENTS_PER_CLASS),
            LABEL_NORMAL: MIN_PATIENTS_PER_CLASS}


def check_size(positive_patients: int, negative_patients: int, target_sensitivity: float) -> None:
    """Refuse (:class:`SiteProfileError`) a set too small to set the threshold and recalibrate honestly."""
    needed = films_needed(target_sensitivity)
    short = []
    for label, have in ((LABEL_COVID, positive_patients), (LABEL_NORMAL, negative_patients)):
        if have < needed[label]:
            short.append(f"{needed[label]} {label} patients (this set has {have}: {needed[label] - have} more)")
    if short:
        raise SiteProfileError(
            "too few films to calibrate honestly: a threshold for "
            f"{target_sensitivity:.0%} sensitivity needs films of at least " + " and ".join(short)
            + f". With fewer, the {CONFIDENCE:.0%} lower confidence bound of the sensitivity at the threshold falls "
            f"more than {SENSITIVITY_MARGIN:.0%} below the target. One film per patient is enough; more films of "
            "the same patient do not count as more patients.")


def choose_method(n_positive: int, n_negative: int) -> tuple[str, str]:
    """Recalibration method for these numbers of films, and why."""
    rarer = min(n_positive, n_negative)
    if rarer >= ISOTONIC_MIN_FILES:
        return "isotonic", f"isotonic regression: {rarer} films of the rarer class (≥ {ISOTONIC_MIN_FILES})"
    return "platt", (f"Platt scaling: {rarer} films of the rarer class (isotonic regression needs "
                     f"≥ {ISOTONIC_MIN_FILES})")


def _fit(risk: np.ndarray, y: np.ndarray, method: str, target: float) -> tuple[SiteRecalibrator, FlagRule]:
    recalibrator = SiteRecalibrator(method).fit(risk, y)
    return recalibrator, FlagRule.for_sensitivity(recalibrator.predict_risk(risk), y, target)


def cross_validated(risk: np.ndarray, y: np.ndarray, groups: np.ndarray, method: str, target: float,
                    random_state: int = 0) -> dict:
    """The whole procedure (recalibrate, choose the threshold) fitted on the other patients, judged on each fold."""
    n_splits = int(min(CV_FOLDS, len(np.unique(groups[y == 1])), len(np.unique(groups[y == 0]))))
    if n_splits < 2:
        return {}
    folds = StratifiedGroupKFold(n_splits=n_splits, shuffle=True, random_state=random_state)
    flagged, recalibrated = np.zeros(len(y), bool), np.zeros(len(y))
    for train, test in folds.split(risk, y, groups):
        recalibrator, rule = _fit(risk[train], y[train], method, target)
        recalibrated[test] = recalibrator.predict_risk(risk[test])
        flagged[test] = rule.flags(recalibrated[test])
    positives = y == 1
    return {"folds": n_splits, "sensitivity": proportion(flagged[positives], groups[positives]),
            "specificity": proportion(~flagged[~positives], groups[~positives]),
            "brier_before": float(np.mean((risk - y) ** 2)), "brier_after": float(np.mean((recalibrated - y) ** 2))}


def fit_site_profile(scored_set: ScoredSet, *, models_fingerprint: str, name: str, target_sensitivity: float = 0.95,
                     n_boot: int = N_BOOTSTRAP, random_state: int = 0) -> SiteProfile:
    """Recalibrate the consensus and choose the threshold on a site's films (scored *without* a site profile).

    Raises :class:`SiteProfileError` when the set is too small (saying how many films it needs), was scored
    with a profile already, or when the risk does not rise with COVID-19 at this site.
    """
    if not 0.5 <= target_sensitivity < 1.0:
        raise SiteProfileError(f"target sensitivity must be in [0.5, 1), got {target_sensitivity}")
    rows, y = scored_set.binary()
    if rows["site_profile"].notna().any() if "site_profile" in rows else False:
        raise SiteProfileError("the films were scored with a site profile applied; calibrate on the models' own "
                               "risk (load the models without a profile, and unset CXR_SITE_PROFILE)")
    groups = rows["patient"].to_numpy()
    positive_patients, negative_patients = (len(np.unique(groups[y == 1])), len(np.unique(groups[y == 0])))
    check_size(positive_patients, negative_patients, target_sensitivity)
    risk = rows["risk"].astype(float).to_numpy()
    method, reason = choose_method(int(y.sum()), int(len(y) - y.sum()))
    recalibrator, rule = _fit(risk, y, method, target_sensitivity)
    if method == "platt" and recalibrator.slope_ <= 1e-6:
        raise SiteProfileError("at this site the models' risk does not rise with COVID-19 (Platt slope 0): the models "
                               "do not discriminate here, and no threshold can be trusted. Do not use them here.")
    site_risk = recalibrator.predict_risk(risk)
    weights = patient_bootstrap_weights(groups, n_boot, random_state)
    thresholds = weighted_threshold_for_sensitivity(site_risk[y == 1], weights[:, y == 1], target_sensitivity)
    flagged = is_flagged(site_risk, rule.threshold)
    n_images = int(len(y))
    evidence = {
        "method_reason": reason,
        "threshold_ci": percentile_interval(thresholds),
        "model_risk_at_threshold": float(np.min(risk[y == 1][site_risk[y == 1] >= rule.threshold])),
        "on_calibration_films": {
            "sensitivity": proportion(flagged[y == 1], groups[y == 1]),
            "specificity": proportion(~flagged[y == 0], groups[y == 0]),
            "flag_rate": proportion(flagged, groups)},
        "cross_validated": cross_validated(risk, y, groups, method, target_sensitivity, random_state),
        "confidence": CONFIDENCE, "n_bootstrap": n_boot,
        "needed_patients": films_needed(target_sensitivity),
        "notes": [
            f"The recalibrated risk matches this set's case mix ({y.mean():.0%} {LABEL_COVID} among its "
            f"{LABEL_COVID}/{LABEL_NORMAL} films); where the share of COVID-19 differs, the risk is off by that "
            "much, while the threshold's sensitivity does not depend on it.",
            "Sensitivity on the calibration films is met by construction; the cross-validated figures (threshold "
            "chosen on the other patients) are what to expect on new films of this site.",
        ],
    }
    data = {"fingerprint": scored_set.fingerprint(), "root": scored_set.dataset.root.name, "n_images": n_images,
            "n_patients": int(len(np.unique(groups))), "n_covid": int(y.sum()), "n_normal": int(n_images - y.sum()),
            "covid_patients": positive_patients, "normal_patients": negative_patients,
            "not_scored": int(scored_set.records["error"].notna().sum())}
    return SiteProfile(name=name, created=utc_now(), models_fingerprint=models_fingerprint,
                       recalibrator=recalibrator, flag_rule=rule, data=json_ready(data), evidence=json_ready(evidence))


def format_profile(profile: SiteProfile) -> str:
    """What ``calibrate`` prints about the profile it wrote."""
    ev, data = profile.evidence, profile.data
    low, high = ev["threshold_ci"]

    def pct(figure: dict) -> str:
        if not figure or figure.get("value") is None:
            return "—"
        lo, hi = figure["ci"]
        return f"{100 * figure['value']:.1f}% ({100 * lo:.1f}–{100 * hi:.1f}%)"

    cv = ev.get("cross_validated") or {}
    lines = [f"{profile.label()}: {data['n_images']} films ({data['n_covid']} {LABEL_COVID} from "
             f"{data['covid_patients']} patients, {data['n_normal']} {LABEL_NORMAL} from {data['normal_patients']})",
             f"  {ev['method_reason']}",
             f"  threshold {100 * profile.flag_rule.threshold:.1f}% for {profile.flag_rule.target_sensitivity:.0%} "
             f"sensitivity (95% CI {100 * low:.1f}–{100 * high:.1f}%; models' own risk ≥ "
             f"{100 * ev['model_risk_at_threshold']:.1f}%)",
             f"  on these films: sensitivity {pct(ev['on_calibration_films']['sensitivity'])}, specificity "
             f"{pct(ev['on_calibration_films']['specificity'])}"]
    if cv:
        lines.append(f"  cross-validated ({cv['folds']} patient-grouped folds): sensitivity {pct(cv['sensitivity'])}, "
                     f"specificity {pct(cv['specificity'])}; Brier {cv['brier_before']:.3f} → {cv['brier_after']:.3f}")
    return "\n".join(lines)
