"""How far a verdict can be trusted, in words a reader can check: the validation status for this site, the
known limits of the models, the spread of the four models around the risk, and the normal range and test–retest
uncertainty of the corona score.

Everything comes from the prediction and the training report (``report.json``); nothing here is tuned by hand.
The Review page shows these next to every verdict; the command line can print them too.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from core.evaluation.consensus import CONSENSUS
from core.evaluation.report import EvaluationReport
from core.labels import LABEL_COVID, LABEL_OTHER_PNEUMONIA, TRIAGE_CLASSES
from core.learn.models import MODEL_NAMES
from core.learn.site_profile import NOT_VALIDATED
from core.triage.model import Prediction, TriageModel

# Below this AUC on a hospital the models never saw, the cross-hospital check is reported as failed.
CROSS_HOSPITAL_PASS_AUC = 0.70


def validation_status(prediction: Prediction) -> str:
    """The one line that says which validation covers this verdict.

    ``Prediction.site_profile`` names the site profile (:mod:`core.learn.site_profile`) whose local validation
    produced the operating point; it is None until a profile is active, and the verdict is then "not validated
    at this site".
    """
    profile = prediction.site_profile
    return NOT_VALIDATED if not profile else f"validated at this site ({prediction.calibration_statement()})"


@dataclass(frozen=True)
class CrossHospitalCheck:
    """Trained on the other hospitals, tested on one held-out hospital (the ``source`` evaluation split)."""

    auc: float
    test_source: str
    n_test_images: int | None
    by: str  # "consensus" or "mean of the four models"

    @property
    def passed(self) -> bool:
        return bool(np.isfinite(self.auc) and self.auc >= CROSS_HOSPITAL_PASS_AUC)

    def describe(self) -> str:
        verdict = "passed" if self.passed else "failed"
        size = f", {self.n_test_images} films" if self.n_test_images else ""
        return (f"{verdict} the cross-hospital check: AUC {self.auc:.2f} ({self.by}) on a hospital it never saw "
                f"({self.test_source}{size})")


def cross_hospital_check(source_evaluation: EvaluationReport | None) -> CrossHospitalCheck | None:
    """The source-split evaluation summarised (consensus AUC when the report has it), or None when not run."""
    if source_evaluation is None or source_evaluation.split != "source":
        return None
    stage = "after" if source_evaluation.select_k else "before"
    results = [r for r in source_evaluation.results if r.stage == stage]
    consensus = [r.mean("AUC") for r in results if r.model == CONSENSUS]
    values = consensus or [r.mean("AUC") for r in results if r.model in MODEL_NAMES]
    values = [v for v in values if np.isfinite(v)]
    if not values:
        return None
    description = source_evaluation.split_description
    folds = description.get("folds") or [{}]
    return CrossHospitalCheck(
        auc=float(np.mean(values)), test_source=str(description.get("test_source") or "a held-out source"),
        n_test_images=folds[0].get("n_test"), by="consensus" if consensus else "mean of the four models")


def known_limits(report: dict, source_evaluation: EvaluationReport | None = None) -> str:
    """The models' known limits in one line, from the training report and the saved source-split evaluation."""
    data = report.get("data", {})
    sources = data.get("summary", {}).get("images_per_origin_dataset", {})
    parts = [f"trained on {data.get('n_images', '?')} films from {len(sources) or '?'} public collections"]
    check = cross_hospital_check(source_evaluation)
    if check is not None:
        parts.append(check.describe())
    if LABEL_OTHER_PNEUMONIA not in report.get("classes", ()):
        parts.append("trained on COVID-19 and Normal films only: another pneumonia can get any risk")
    parts.append("frontal adult chest films only")
    return "Known limits: " + "; ".join(parts) + "."


@dataclass(frozen=True)
class RiskSpread:
    """The risk each model alone would give through the same calibration as the consensus (0–1)."""

    low: float
    high: float
    per_model: dict[str, float]
    threshold: float

    @property
    def straddles_threshold(self) -> bool:
        """Some models alone would flag the film and others not."""
        return self.low < self.threshold <= self.high

    def describe(self) -> str:
        text = f"the {len(self.per_model)} models alone give {100 * self.low:.0f}–{100 * self.high:.0f}%"
        if self.straddles_threshold:
            text += " — they disagree about the flag"
        return text


def risk_spread(model: TriageModel, prediction: Prediction) -> RiskSpread | None:
    """Uncertainty of the consensus risk as the spread of the models on the calibrated risk scale (None with one
    model: there is no spread to show)."""
    if prediction.risk is None or len(prediction.per_model) < 2 or model.calibrator is None:
        return None
    names = list(prediction.per_model)
    if prediction.per_model_classes:  # three classes: each model's class probabilities through the calibration
        classes = np.array([[prediction.per_model_classes[n]] for n in names], dtype=float)  # (models, 1, 3)
        alone = model.calibrator.predict_proba(classes)[:, TRIAGE_CLASSES.index(LABEL_COVID)]
    else:
        alone = model.calibrator.predict_risk(np.array([[prediction.per_model[n]] for n in names], dtype=float))
    per_model = dict(zip(names, map(float, alone)))
    return RiskSpread(low=min(per_model.values()), high=max(per_model.values()), per_model=per_model,
                      threshold=float(prediction.threshold))


@dataclass(frozen=True)
class ScoreReference:
    """Where the corona score of Normal films falls, and how much the score of one film moves on a retake."""

    normal_low: float      # 10th percentile of Normal films
    normal_median: float
    normal_high: float     # 90th percentile
    n_normal: int
    n_sites: int
    noise_sd: float | None  # test–retest SD of the score (0–100 points)

    @property
    def uncertainty(self) -> float | None:
        """Half-width of the 95 % test–retest interval (points)."""
        return None if self.noise_sd is None else 1.96 * self.noise_sd

    def describe(self) -> str:
        text = (f"Normal films ({self.n_normal} from {self.n_sites} sites): 80 % score between "
                f"{self.normal_low:.0f} and {self.normal_high:.0f} (median {self.normal_median:.0f})")
        if self.uncertainty is not None:
            text += f"; a retake of the same film moves the score by up to ±{self.uncertainty:.0f} (95 %)"
        return text


def score_reference(report: dict) -> ScoreReference | None:
    """The corona score's normal range and test–retest uncertainty from the training report, if recorded."""
    severity = report.get("severity") or {}
    normal = (severity.get("corona_by_label") or {}).get("Normal")
    if not normal:
        return None
    noise = (severity.get("noise") or {}).get("noise_sd")
    return ScoreReference(normal_low=float(normal["p10"]), normal_median=float(normal["median"]),
                          normal_high=float(normal["p90"]), n_normal=int(normal["n"]),
                          n_sites=len(severity.get("normal_by_source") or {}) or 1,
                          noise_sd=None if noise is None else float(noise))
