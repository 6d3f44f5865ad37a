"""Score one chest X-ray with the saved models: per-model probabilities, calibrated consensus, flag, warnings.

:class:`TriageModel` is what the command line (``predict``, ``validate``) and the dashboard's Review page use. With a
site profile (:mod:`core.learn.site_profile`) the risk is the site's recalibrated risk and the flag its threshold;
every prediction says which profile produced it, or that the tool is not validated at this site.
"""

from __future__ import annotations

import copy
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO

import numpy as np
import pandas as pd
from threadpoolctl import threadpool_limits

from core.features.blocks import compute_image_features
from core.io.images import ImageReadError, XRayImage, read_image
from core.learn.artifacts import load_artifacts, model_file_name, read_report
from core.learn.flag import FlagRule
from core.learn.models import MODEL_NAMES
from core.learn.site_profile import NOT_VALIDATED, SiteProfile, load_site_profile, models_fingerprint
from core.lungs.fields import LungFields, find_lung_fields
from core.paths import default_models_dir, default_site_profile
from core.progress import Progress
from core.triage.acceptance import refusal_reason

Source = str | os.PathLike | bytes | BinaryIO


@dataclass
class Prediction:
    """What the tool says about one image (or why it could not say anything)."""

    file: str
    risk: float | None = None                 # calibrated consensus P(COVID-19), 0–1 (the site's, with a profile)
    flagged: bool | None = None               # risk >= operating threshold
    threshold: float | None = None
    # The site profile behind risk and threshold (SiteProfile.summary(): name, id, ...); None = not validated at this
    # site. Worded by calibration_statement() / core.triage.reliability.validation_status.
    site_profile: dict | None = None
    model_risk: float | None = None           # consensus risk before the site recalibration (with a profile only)
    per_model: dict[str, float] = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)
    error: str | None = None
    top_features: list[dict] = field(default_factory=list)
    out_of_distribution: float | None = None  # distance to the training images / usual distance (> 1: unusual)
    sha256: str | None = None
    metadata: dict = field(default_factory=dict)
    severity: dict | None = None               # corona score, zone grades, extent/opacity estimates
    image: XRayImage | None = field(default=None, repr=False)
    lung_fields: LungFields | None = field(default=None, repr=False)

    def to_json(self) -> dict:
        """The ``predict --json`` record."""
        if self.error is not None:
            return {"file": self.file, "error": self.error}
        record = {"file": self.file, "risk": round(self.risk, 4), "flagged": bool(self.flagged),
                  "threshold": round(self.threshold, 4),
                  "per_model": {k: round(v, 4) for k, v in self.per_model.items()},
                  "warnings": list(self.warnings),
                  "out_of_distribution": round(self.out_of_distribution, 3),
                  "top_features": self.top_features,
                  "site_profile": self.site_profile, "calibration": self.calibration_statement()}
        if self.model_risk is not None:
            record["model_risk"] = round(self.model_risk, 4)
        if self.severity is not None:
            record.update(self.severity)
        return record

    def calibration_statement(self) -> str:
        """Which site profile produced the verdict, or "not validated at this site"."""
        if self.site_profile is None:
            return NOT_VALIDATED
        return f'site profile "{self.site_profile["name"]}" (id {self.site_profile["id"]})'


CONSENSUS_FILE = "consensus.joblib"
SEVERITY_FILE = "severity.joblib"


class TriageModel:
    """The four fitted pipelines, their calibrated consensus, the out-of-distribution check and the corona score.

    Load with :meth:`load`; it verifies the files against the training report first. A model loaded for the
    corona score only (``risk=False``) has no classifiers: its predictions carry ``severity`` and no ``risk``,
    but go through the same reading and acceptance checks. ``site_profile`` (see :meth:`with_site_profile`)
    recalibrates the risk and replaces the threshold.
    """

    def __init__(self, artifacts: dict, report: dict, models_dir: Path, site_profile: SiteProfile | None = None):
        names = [model_file_name(name) for name in MODEL_NAMES]
        self.models = ({name: artifacts[file] for name, file in zip(MODEL_NAMES, names)}
                       if all(file in artifacts for file in names) else None)
        consensus = artifacts.get(CONSENSUS_FILE)
        self.calibrator = consensus["calibrator"] if consensus else None
        self.model_flag_rule = (FlagRule(float(consensus["threshold"]),
                                         report["consensus"].get("target_sensitivity")) if consensus else None)
        self.detector = consensus["detector"] if consensus else None
        self.feature_medians: pd.Series | None = consensus["feature_medians"] if consensus else None
        self.severity_model = artifacts.get(SEVERITY_FILE)
        self.report = report
        self.models_dir = models_dir
        self.feature_set: str = report["feature_set"]
        self.feature_names: list[str] = report.get("feature_names", [])
        self.fingerprint = models_fingerprint(report)
        self.site_profile: SiteProfile | None = None
        if site_profile is not None:
            site_profile.check_models(self.fingerprint, f"the models in {models_dir}")
            self.site_profile = site_profile

    @property
    def flag_rule(self) -> FlagRule | None:
        """The rule in use: the site profile's when one is applied, else the one chosen at training time."""
        return self.site_profile.flag_rule if self.site_profile is not None else self.model_flag_rule

    def with_site_profile(self, profile: SiteProfile | str | os.PathLike | None) -> "TriageModel":
        """The same models with ``profile`` applied (None: none); refuses a profile made for other models."""
        if isinstance(profile, (str, os.PathLike)):
            profile = load_site_profile(profile)
        if profile is not None:
            profile.check_models(self.fingerprint, f"the models in {self.models_dir}")
        applied = copy.copy(self)
        applied.site_profile = profile
        return applied

    @classmethod
    def load(cls, models_dir: str | os.PathLike | None = None, *, risk: bool = True,
             site_profile: SiteProfile | str | os.PathLike | None = None,
             use_environment: bool = True) -> "TriageModel":
        """Load the saved models; with ``risk=False`` only what the corona score and the acceptance check need.

        ``site_profile`` (a profile or its file) is applied to the risk; without one, ``$CXR_SITE_PROFILE`` is used
        when set (``use_environment=False`` ignores it). A profile for other models raises ``SiteProfileError``.
        """
        models_dir = Path(models_dir) if models_dir is not None else default_models_dir()
        listed = read_report(models_dir).get("files", {})
        if risk:
            wanted = [model_file_name(name) for name in MODEL_NAMES] + [CONSENSUS_FILE]
            wanted += [SEVERITY_FILE] if SEVERITY_FILE in listed else []
        else:
            wanted = [name for name in (SEVERITY_FILE, CONSENSUS_FILE) if name in listed]
        artifacts, report = load_artifacts(models_dir, names=wanted)
        model = cls(artifacts, report, Path(models_dir).resolve())
        if site_profile is None and use_environment and risk:
            site_profile = default_site_profile()
        return model.with_site_profile(site_profile) if site_profile is not None else model

    def selected_features(self) -> list[str]:
        """Union of the features the four classifiers use, in the report's order."""
        chosen = {f for names in self.report["consensus"]["selected_features"].values() for f in names}
        return [f for f in self.feature_names if f in chosen]

    def _risks(self, X: pd.DataFrame) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Per-model P(COVID-19), the consensus risk, and the risk in use (the site's, with a profile)."""
        per_model = np.column_stack([self.models[name].predict_proba(X)[:, 1] for name in MODEL_NAMES])
        consensus = self.calibrator.predict_risk(per_model)
        return per_model, consensus, (self.site_profile.risk(consensus) if self.site_profile else consensus)

    def predict_image(self, image: XRayImage) -> Prediction:
        """Score an image already read by :func:`core.io.images.read_image`."""
        # One image is too little work to share between BLAS/OpenMP threads: with threads, a busy second core
        # makes every small matrix product wait (measured 6 ms → 260 ms for the embedding under load).
        with threadpool_limits(limits=1):
            return self._predict_image(image)

    def _predict_image(self, image: XRayImage) -> Prediction:
        fields = find_lung_fields(image.pixels)
        warnings = list(image.warnings)
        X, ood = None, float("nan")
        if self.detector is not None:
            values = compute_image_features(image, self.feature_set, fields)
            X = pd.DataFrame([values], columns=self.feature_names)
            ood = float(self.detector.distance_ratio(X.to_numpy())[0])
            if ood > 1.0:
                warnings.append(f"image unlike the training images (distance {ood:.1f}× the usual): "
                                "the risk may not be reliable — is this a frontal chest X-ray?")
        if not fields.quality.get("ok", True):
            warnings.append("lung fields not found where expected (" + _quality_reason(fields.quality)
                            + "): check that this is a frontal chest X-ray")
        refusal = refusal_reason(image, fields, ood)
        if refusal is not None:  # no risk at all rather than a number that means nothing
            return Prediction(file=image.source, error=f"{image.source}: not scored — {refusal}", warnings=warnings,
                              out_of_distribution=ood, sha256=image.sha256, metadata=dict(image.metadata),
                              image=image, lung_fields=fields)
        prediction = Prediction(file=image.source, warnings=warnings, out_of_distribution=ood, sha256=image.sha256,
                                metadata=dict(image.metadata), image=image, lung_fields=fields)
        if self.models is not None:
            self._add_risk(prediction, X)
        if self.severity_model is not None:
            prediction.severity = self.severity_model.assess(image.pixels, fields).to_json()
        return prediction

    def _add_risk(self, prediction: Prediction, X: pd.DataFrame) -> None:
        """Risk, flag, per-model probabilities and the features that moved the risk most."""
        # one batch: the image itself, then the image with each selected feature set to the training median
        selected = self.selected_features()
        probe = pd.concat([X] * (len(selected) + 1), ignore_index=True)
        for row, name in enumerate(selected, start=1):
            probe.loc[row, name] = self.feature_medians[name]
        per_model, consensus, risks = self._risks(probe)
        risk = float(risks[0])
        effects = [{"feature": name, "value": float(X.at[0, name]), "training_median": float(self.feature_medians[name]),
                    "effect": round(risk - float(risks[row]), 4)} for row, name in enumerate(selected, start=1)]
        effects.sort(key=lambda e: -abs(e["effect"]))
        prediction.risk, prediction.flagged = risk, self.flag_rule.flags(risk)
        prediction.threshold = self.flag_rule.threshold
        if self.site_profile is not None:
            prediction.site_profile = self.site_profile.summary()
            prediction.model_risk = float(consensus[0])
        prediction.per_model = dict(zip(MODEL_NAMES, map(float, per_model[0])))
        prediction.top_features = effects[:5]

    def predict(self, source: Source, name: str | None = None) -> Prediction:
        """Read and score one file; an unreadable file gives a Prediction with ``error`` set, never an exception."""
        display = name or (Path(source).name if isinstance(source, (str, os.PathLike)) else "upload")
        try:
            image = read_image(source, name=name)
        except ImageReadError as exc:
            return Prediction(file=exc.source or display, error=str(exc))
        return self.predict_image(image)

    def predict_many(self, sources: Sequence[Source], names: Sequence[str] | None = None,
                     progress: Progress | None = None) -> list[Prediction]:
        results = []
        for index, source in enumerate(sources):
            results.append(self.predict(source, names[index] if names else None))
            if progress is not None:
                progress((index + 1) / len(sources), f"scored {index + 1}/{len(sources)}")
        return results


def _quality_reason(quality: dict) -> str:
    parts = [f"{k} {v:.2f}" if isinstance(v, float) else f"{k} {v}" for k, v in quality.items() if k != "ok"]
    return ", ".join(parts) or "implausible shape"
