"""Score one chest X-ray with the saved models: per-model probabilities, calibrated consensus, flag, warnings.

:class:`TriageModel` is what the command line (``predict``, ``validate``) and the dashboard's Review page use. With a
site profile (:mod:`core.learn.site_profile`) the risk is the site's recalibrated risk and the flag its threshold;
every prediction says which profile produced it, or that the tool is not validated at this site.
"""

from __future__ import annotations

import copy
import os
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO

import numpy as np
import pandas as pd

from core.features.acquisition import acquisition_signature
from core.features.blocks import compute_image_features
from core.features.threads import available_threads, map_threaded, single_threaded
from core.io.images import ImageReadError, XRayImage, read_image
from core.io.pixels import describe_error
from core.labels import LABEL_COVID, LABEL_NORMAL, TRIAGE_CLASSES, reading_in_words
from core.learn.artifacts import (
    CONSENSUS_FILE,
    ORIENTATION_FILE,
    SEVERITY_FILE,
    ModelLoadError,
    load_artifacts,
    model_file_name,
    model_files_fingerprint,
    read_report,
)
from core.learn.flag import FlagRule
from core.learn.models import ALL_MODELS
from core.learn.orientation import OrientationCheck
from core.learn.site_profile import NOT_VALIDATED, SiteProfile, load_site_profile
from core.learn.site_shift import BATCH_SHIFT_WARNING, SITE_SHIFT_WARNING
from core.learn.training import class_probabilities
from core.lungs.fields import LungFields, find_lung_fields
from core.paths import default_models_dir, default_site_profile
from core.progress import Progress
from core.severity.model import SeverityModel
from core.triage.acceptance import acceptance

Source = str | os.PathLike | bytes | BinaryIO


@dataclass
class Prediction:
    """What the tool says about one image (or why it could not say anything)."""

    file: str
    risk: float | None = None                 # calibrated consensus P(COVID-19), 0–1 (the site's, with a profile)
    pneumonia: float | None = None            # calibrated P(any pneumonia: COVID-19 or other) = 1 - P(Normal)
    reading: str | None = None                # the most probable class in words (core.labels.READING_WORDS)
    flagged: bool | None = None               # risk >= operating threshold
    threshold: float | None = None
    # The site profile behind risk and threshold (SiteProfile.summary(): name, id, ...); None = not validated at this
    # site. Worded by calibration_statement() / core.triage.reliability.validation_status.
    site_profile: dict | None = None
    model_risk: float | None = None           # consensus risk before the site recalibration (with a profile only)
    per_model: dict[str, float] = field(default_factory=dict)
    per_model_classes: dict[str, list[float]] = field(default_factory=dict, repr=False)  # each model's 3 classes
    warnings: list[str] = field(default_factory=list)
    error: str | None = None
    top_features: list[dict] = field(default_factory=list)
    out_of_distribution: float | None = None  # distance to the training images / usual distance (> 1: unusual)
    site_shift: float | None = None           # acquisition signature's distance to the nearest training site (> 1)
    sha256: str | None = None
    metadata: dict = field(default_factory=dict)
    severity: dict | None = None               # corona score, zone grades, extent/opacity estimates
    image: XRayImage | None = field(default=None, repr=False)
    lung_fields: LungFields | None = field(default=None, repr=False)

    def to_json(self) -> dict:
        """The ``predict --json`` record."""
        if self.error is not None:
            return {"file": self.file, "error": self.error}
        record = {"file": self.file, "risk": round(self.risk, 4),
                  "pneumonia": None if self.pneumonia is None else round(self.pneumonia, 4),
                  "reading": self.reading, "flagged": bool(self.flagged),
                  "threshold": round(self.threshold, 4),
                  "per_model": {k: round(v, 4) for k, v in self.per_model.items()},
                  "warnings": list(self.warnings),
                  "out_of_distribution": round(self.out_of_distribution, 3),
                  "site_shift": None if self.site_shift is None else round(self.site_shift, 3),
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


def _display_name(source: Source, name: str | None) -> str:
    """How a film is named in messages: the given name, else a path's file name, else "upload"."""
    return name or (Path(source).name if isinstance(source, (str, os.PathLike)) else "upload")


class TriageModel:
    """The fitted three-class pipelines, their calibrated consensus, the flag rule, the acceptance, out-of-distribution
    and site-shift checks, and the corona score.

    Load with :meth:`load`; it verifies the files against the training report first. A model loaded for the
    corona score only (``risk=False``) has no classifiers: its predictions carry ``severity`` and no ``risk``,
    but go through the same reading and acceptance checks (the out-of-distribution detector of the consensus file
    and the orientation check are loaded either way). ``site_profile`` (see :meth:`with_site_profile`)
    recalibrates the COVID-19 risk and replaces the threshold.
    """

    def __init__(self, artifacts: dict, report: dict, models_dir: Path, site_profile: SiteProfile | None = None):
        _check_artifacts(artifacts, report, models_dir)
        self.model_names: list[str] = list(report.get("consensus", {}).get("models", []))
        names = [model_file_name(name) for name in self.model_names]
        self.models = ({name: artifacts[file] for name, file in zip(self.model_names, names)}
                       if names and all(file in artifacts for file in names) else None)
        consensus = artifacts.get(CONSENSUS_FILE)
        self.calibrator = consensus["calibrator"] if consensus else None
        self.model_flag_rule = FlagRule.from_dict(consensus["flag_rule"]) if consensus else None
        self.detector = consensus["detector"] if consensus else None
        self.site_shift = consensus.get("site_shift") if consensus else None
        self.feature_medians: pd.Series | None = consensus["feature_medians"] if consensus else None
        self.severity_model = artifacts.get(SEVERITY_FILE)
        self.orientation_check = artifacts.get(ORIENTATION_FILE)
        self.report = report
        self.models_dir = models_dir
        self.feature_set: str = report["feature_set"]
        self.feature_names: list[str] = report.get("feature_names", [])
        self.fingerprint = model_files_fingerprint(report)
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
        report = read_report(models_dir)
        listed = report.get("files", {})
        if risk and "classes" not in report:
            raise ModelLoadError(f"the models in {models_dir} answer COVID-19 vs Normal only (trained before the "
                                 "three-class model); retrain them with `python -m core train`")
        wanted = [CONSENSUS_FILE, ORIENTATION_FILE]  # the acceptance checks: every command needs them
        if risk:
            wanted += [model_file_name(name) for name in report.get("consensus", {}).get("models", [])]
        wanted += [SEVERITY_FILE] if SEVERITY_FILE in listed or not risk else []
        artifacts, report = load_artifacts(models_dir, names=wanted, known=KNOWN_FILES)
        model = cls(artifacts, report, Path(models_dir).resolve())
        if site_profile is None and use_environment and risk:
            site_profile = default_site_profile()
        return model.with_site_profile(site_profile) if site_profile is not None else model

    def selected_features(self) -> list[str]:
        """Union of the features the classifiers use, in the report's order."""
        chosen = {f for names in self.report["consensus"]["selected_features"].values() for f in names}
        return [f for f in self.feature_names if f in chosen]

    def _probabilities(self, X: pd.DataFrame) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Per-model class probabilities (n, n_models, 3), the calibrated consensus (n, 3), and the COVID-19 risk
        in use (n,): the consensus's, or the site's with a profile."""
        per_model = np.stack([class_probabilities(self.models[name], X) for name in self.model_names], axis=1)
        consensus = self.calibrator.predict_proba(per_model)
        covid = consensus[:, TRIAGE_CLASSES.index(LABEL_COVID)]
        return per_model, consensus, (self.site_profile.risk(covid) if self.site_profile else covid)

    def predict_image(self, image: XRayImage) -> Prediction:
        """Score an image already read by :func:`core.io.images.read_image`."""
        # One image is too little work to share between BLAS/OpenMP threads: with threads, a busy second core
        # makes every small matrix product wait (measured 6 ms → 260 ms for the embedding under load).
        with single_threaded():
            return self._predict_image(image)

    def _predict_image(self, image: XRayImage) -> Prediction:
        fields = find_lung_fields(image.pixels)
        X, ood = None, float("nan")
        if self.detector is not None:
            values = compute_image_features(image, self.feature_set, fields)
            X = pd.DataFrame([values], columns=self.feature_names)
            ood = float(self.detector.distance_ratio(X.to_numpy())[0])
        shift = None
        if self.site_shift is not None:
            shift = float(self.site_shift.distance_ratio(acquisition_signature(image.pixels)[None, :])[0])
        orientation = self.orientation_check.assess(image.pixels) if self.orientation_check is not None else None
        verdict = acceptance(image, fields, ood, orientation)
        warnings = list(image.warnings) + verdict.warnings
        if shift is not None and shift > 1.0:
            warnings.append(SITE_SHIFT_WARNING)
        if verdict.refusal is not None:  # no risk at all rather than a number that means nothing
            return Prediction(file=image.source, error=f"{image.source}: not scored — {verdict.refusal}",
                              warnings=warnings, out_of_distribution=ood, sha256=image.sha256,
                              metadata=dict(image.metadata), image=image, lung_fields=fields)
        prediction = Prediction(file=image.source, warnings=warnings, out_of_distribution=ood, sha256=image.sha256,
                                metadata=dict(image.metadata), image=image, lung_fields=fields, site_shift=shift)
        if self.models is not None:
            self._add_risk(prediction, X)
        if self.severity_model is not None:
            prediction.severity = self.severity_model.assess(image.pixels, fields).to_json()
        return prediction

    def _add_risk(self, prediction: Prediction, X: pd.DataFrame) -> None:
        """Risk, flag, per-model probabilities and the features that moved the risk most."""
        # one batch: the image itself, then the image with each selected feature set to the training median (built
        # as one array: with every feature selected, 1,163 cell-by-cell DataFrame writes took 230 ms per film)
        selected = self.selected_features()
        columns = X.columns.get_indexer(selected)
        medians = self.feature_medians[selected].to_numpy(dtype=float)
        values = np.repeat(X.to_numpy(dtype=float), len(selected) + 1, axis=0)
        values[np.arange(1, len(selected) + 1), columns] = medians
        per_model, probabilities, risks = self._probabilities(pd.DataFrame(values, columns=X.columns))
        risk = float(risks[0])
        effects = [{"feature": name, "value": float(value), "training_median": float(median),
                    "effect": round(risk - float(changed), 4)}
                   for name, value, median, changed in zip(selected, values[0, columns], medians, risks[1:])]
        effects.sort(key=lambda e: -abs(e["effect"]))
        prediction.risk, prediction.flagged = risk, self.flag_rule.flags(risk)
        prediction.pneumonia = float(1.0 - probabilities[0, TRIAGE_CLASSES.index(LABEL_NORMAL)])
        prediction.reading = reading_in_words(prediction.pneumonia, risk)
        prediction.threshold = self.flag_rule.threshold
        if self.site_profile is not None:
            prediction.site_profile = self.site_profile.summary()
            prediction.model_risk = float(probabilities[0, TRIAGE_CLASSES.index(LABEL_COVID)])
        covid = TRIAGE_CLASSES.index(LABEL_COVID)
        prediction.per_model = {name: float(per_model[0, i, covid]) for i, name in enumerate(self.model_names)}
        prediction.per_model_classes = {name: per_model[0, i].tolist() for i, name in enumerate(self.model_names)}
        prediction.top_features = effects[:5]

    def predict(self, source: Source, name: str | None = None) -> Prediction:
        """Read and score one file; an unreadable file gives a Prediction with ``error`` set, never an exception."""
        try:
            image = read_image(source, name=name)
        except ImageReadError as exc:
            return Prediction(file=exc.source or _display_name(source, name), error=str(exc))
        return self.predict_image(image)

    def predict_groups(self, sources: Sequence[Source],
                       names: Sequence[str] | None = None) -> Iterator[list[Prediction]]:
        """Predictions in order, in groups of as many films as this process has threads, each group scored on
        threads (:mod:`core.features.threads`). A film that cannot be read or scored gets its error; the others
        are still answered."""
        def predict_one(index: int) -> Prediction:
            source, name = sources[index], names[index] if names else None
            try:
                return self.predict(source, name)
            except Exception as exc:  # an unforeseen failure on one file must not cost the batch its answers
                display = _display_name(source, name)
                return Prediction(file=display, error=f"{display}: could not be scored ({describe_error(exc)})")

        size = available_threads()
        for start in range(0, len(sources), size):
            yield map_threaded(predict_one, range(start, min(start + size, len(sources))), n_threads=size)

    def predict_many(self, sources: Sequence[Source], names: Sequence[str] | None = None,
                     progress: Progress | None = None) -> list[Prediction]:
        """One Prediction per source, in order (see :meth:`predict_groups`), then the batch's site-shift check."""
        results: list[Prediction] = []
        for group in self.predict_groups(sources, names):
            results.extend(group)
            if progress is not None:
                progress(len(results) / len(sources), f"scored {len(results)}/{len(sources)}")
        self.mark_batch_shift(results)
        return results

    def mark_batch_shift(self, predictions: Sequence[Prediction]) -> bool:
        """Warn every image of a batch whose share of unfamiliar films is more than the training sites explain."""
        ratios = [p.site_shift for p in predictions if p.site_shift is not None]
        if self.site_shift is None or len(ratios) < 2 or not self.site_shift.batch_is_shifted(np.array(ratios)):
            return False
        for prediction in predictions:
            if prediction.site_shift is not None and BATCH_SHIFT_WARNING not in prediction.warnings:
                prediction.warnings.append(BATCH_SHIFT_WARNING)
        return True



KNOWN_FILES = frozenset({*(model_file_name(name) for name in ALL_MODELS), CONSENSUS_FILE, SEVERITY_FILE,
                         ORIENTATION_FILE})
"""Every file a models folder of this version may list; a report naming anything else is refused."""


def _check_artifacts(artifacts: dict, report: dict, models_dir: Path) -> None:
    """Refuse (``ModelLoadError``) loaded objects or a report that are not what this version scores with."""
    where = Path(models_dir)
    for key in ("feature_set", "feature_names", "consensus"):
        if key not in report:
            raise ModelLoadError(f"{where / 'report.json'} has no {key!r}; retrain the models with `python -m core train`")
    expected = {CONSENSUS_FILE: (dict, "the consensus (a dict)"), SEVERITY_FILE: (SeverityModel, "a SeverityModel"),
                ORIENTATION_FILE: (OrientationCheck, "an OrientationCheck")}
    for name, obj in artifacts.items():
        kind, wanted = expected.get(name, (object, "a fitted classifier"))
        wrong = not isinstance(obj, kind) or (name == CONSENSUS_FILE and not {"calibrator", "flag_rule", "detector",
                                                                              "feature_medians"} <= set(obj)) or \
            (kind is object and not callable(getattr(obj, "predict_proba", None)))
        if wrong:
            raise ModelLoadError(f"{where / name} holds {type(obj).__name__}, not {wanted}; the models folder is "
                                 "damaged or was not written by `python -m core train` — retrain it")
