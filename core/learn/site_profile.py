"""A site profile: the consensus risk recalibrated on one hospital's own films, and the flag threshold chosen there.

The tool is trained on public films from other hospitals; its risk and its threshold need not hold at a new site.
``python -m core calibrate`` (:mod:`core.validation.calibrate`) fits a profile on the site's labelled films. Applying
it is two steps on top of the models: the consensus risk goes through :class:`SiteRecalibrator` (a monotone map,
so the ranking of films — and the AUC — is unchanged), and the profile's :class:`~core.learn.flag.FlagRule` flags
the recalibrated risk.

A profile is a JSON file (no pickle: it can be read, audited and shared without running code). It names the models
it was made for (:func:`core.learn.artifacts.model_files_fingerprint`) and is refused by any other models; it carries its own content hash
(``id``), so a hand-edited file is refused too.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from scipy.optimize import minimize
from scipy.special import expit
from sklearn.base import BaseEstimator
from sklearn.isotonic import IsotonicRegression

from core.learn.flag import FlagRule

PROFILE_KIND = "cxr-triage site profile"
PROFILE_FORMAT = 1
NOT_VALIDATED = "not validated at this site"
RECALIBRATION_METHODS = ("platt", "isotonic")
_EPS = 1e-6


class SiteProfileError(ValueError):
    """A site profile that cannot be made or used here, with the reason and what to do."""


def _logit(p) -> np.ndarray:
    p = np.clip(np.asarray(p, dtype=float), _EPS, 1 - _EPS)
    return np.log(p / (1 - p))


class SiteRecalibrator(BaseEstimator):
    """A monotone map from the models' consensus risk to the risk observed at one site.

    Parameters
    ----------
    method : {"platt", "isotonic"}
        ``platt``: logistic regression on the logit of the risk, with Platt's smoothed targets (N₊+1)/(N₊+2) and
        1/(N₋+2), which keep the fit finite on small sets; the slope is held ≥ 0 so the map never reverses the
        ranking. ``isotonic``: a non-decreasing step function (needs many films of each class).
    """

    def __init__(self, method: str = "platt"):
        self.method = method

    def fit(self, risk: np.ndarray, y: np.ndarray) -> "SiteRecalibrator":
        """``risk``: (n_images,) consensus P(COVID-19); ``y``: (n_images,) 1 = COVID-19, 0 = Normal."""
        if self.method not in RECALIBRATION_METHODS:
            raise ValueError(f"unknown recalibration method {self.method!r}; "
                             f"choose {' or '.join(RECALIBRATION_METHODS)}")
        risk, y = np.asarray(risk, dtype=float), np.asarray(y, dtype=int)
        if self.method == "isotonic":
            iso = IsotonicRegression(y_min=0.0, y_max=1.0, increasing=True, out_of_bounds="clip").fit(risk, y)
            self.x_, self.y_ = iso.X_thresholds_.astype(float), iso.y_thresholds_.astype(float)
            return self
        self.slope_, self.intercept_ = _platt(_logit(risk), y)
        return self

    def predict_risk(self, risk) -> np.ndarray:
        """The site's calibrated P(COVID-19) for consensus risks, same shape as ``risk``."""
        risk = np.asarray(risk, dtype=float)
        if self.method == "isotonic":
            return np.interp(risk, self.x_, self.y_)
        return expit(self.slope_ * _logit(risk) + self.intercept_)

    def to_dict(self) -> dict:
        if self.method == "isotonic":
            return {"method": "isotonic", "x": self.x_.tolist(), "y": self.y_.tolist()}
        return {"method": "platt", "slope": float(self.slope_), "intercept": float(self.intercept_)}

    @classmethod
    def from_dict(cls, record: dict) -> "SiteRecalibrator":
        recalibrator = cls(record["method"])
        if record["method"] == "isotonic":
            recalibrator.x_ = np.asarray(record["x"], dtype=float)
            recalibrator.y_ = np.asarray(record["y"], dtype=float)
            if recalibrator.x_.shape != recalibrator.y_.shape or not len(recalibrator.x_):
                raise SiteProfileError("isotonic recalibration: x and y must be non-empty lists of equal length")
        elif record["method"] == "platt":
            recalibrator.slope_, recalibrator.intercept_ = float(record["slope"]), float(record["intercept"])
        else:
            raise SiteProfileError(f"unknown recalibration method {record['method']!r}")
        return recalibrator


def _platt(z: np.ndarray, y: np.ndarray) -> tuple[float, float]:
    """Slope ≥ 0 and intercept of Platt scaling on scores ``z`` (Platt 1999, smoothed targets)."""
    n_pos, n_neg = int(y.sum()), int(len(y) - y.sum())
    target = np.where(y == 1, (n_pos + 1) / (n_pos + 2), 1 / (n_neg + 2))

    def loss_and_gradient(params: np.ndarray) -> tuple[float, np.ndarray]:
        s = params[0] * z + params[1]
        residual = expit(s) - target
        return float(np.sum(np.logaddexp(0.0, s) - target * s)), np.array([residual @ z, residual.sum()])

    result = minimize(loss_and_gradient, x0=np.array([1.0, 0.0]), jac=True, method="L-BFGS-B",
                      bounds=[(0.0, None), (None, None)])
    return float(result.x[0]), float(result.x[1])


@dataclass(frozen=True)
class SiteProfile:
    """What ``calibrate`` learnt at one site; applied by :class:`core.triage.model.TriageModel`.

    Attributes
    ----------
    name : str
        Human name of the site / profile (shown with every verdict).
    created : str
        UTC ISO time it was made.
    models_fingerprint : str
        :func:`core.learn.artifacts.model_files_fingerprint` of the models it was made for.
    recalibrator : SiteRecalibrator
        Consensus risk → the site's calibrated risk.
    flag_rule : FlagRule
        Threshold on the recalibrated risk, with the sensitivity it was chosen for.
    data : dict
        The calibration films: fingerprint, numbers of images and patients per label.
    evidence : dict
        Threshold CI, operating point with CIs, cross-validated figures, why this method.
    """

    name: str
    created: str
    models_fingerprint: str
    recalibrator: SiteRecalibrator
    flag_rule: FlagRule
    data: dict = field(default_factory=dict)
    evidence: dict = field(default_factory=dict)

    def risk(self, consensus_risk):
        """The site's calibrated risk (float in, float out; arrays keep their shape)."""
        value = self.recalibrator.predict_risk(consensus_risk)
        return float(value) if np.ndim(value) == 0 else value

    def _content(self) -> dict:
        return {"kind": PROFILE_KIND, "format": PROFILE_FORMAT, "name": self.name, "created": self.created,
                "models_fingerprint": self.models_fingerprint, "recalibration": self.recalibrator.to_dict(),
                "flag_rule": self.flag_rule.to_dict(), "data": self.data, "evidence": self.evidence}

    @property
    def id(self) -> str:
        """SHA-256 of the profile's content: which profile produced a verdict."""
        return hashlib.sha256(json.dumps(self._content(), sort_keys=True).encode()).hexdigest()

    @property
    def short_id(self) -> str:
        return self.id[:12]

    def label(self) -> str:
        """What a verdict says about its calibration: ``site profile "name" (id …)``."""
        return f'site profile "{self.name}" (id {self.short_id})'

    def summary(self) -> dict:
        """The ``site_profile`` record of a prediction."""
        return {"name": self.name, "id": self.short_id, "created": self.created,
                "threshold": round(float(self.flag_rule.threshold), 4),
                "target_sensitivity": self.flag_rule.target_sensitivity,
                "n_images": self.data.get("n_images")}

    def check_models(self, fingerprint: str, models_name: str = "these models") -> None:
        """Refuse (:class:`SiteProfileError`) to be used with models it was not made for."""
        if fingerprint != self.models_fingerprint:
            raise SiteProfileError(
                f"{self.label()} was made for other models (fingerprint {self.models_fingerprint[:12]}…), not for "
                f"{models_name} ({fingerprint[:12]}…): its threshold and calibration do not apply to them. Make a "
                "new profile for these models on the site's films: `python -m core calibrate --data DIR "
                "--models MODELS --out PROFILE.json`")

    def to_dict(self) -> dict:
        return {**self._content(), "id": self.id}

    def save(self, path: str | os.PathLike) -> Path:
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        temporary = path.with_name(f".{path.name}.tmp")
        temporary.write_text(json.dumps(self.to_dict(), indent=2))
        os.replace(temporary, path)
        return path

    @classmethod
    def from_dict(cls, record: dict, source: str = "site profile") -> "SiteProfile":
        if not isinstance(record, dict) or record.get("kind") != PROFILE_KIND:
            raise SiteProfileError(f"{source}: not a site profile (no \"kind\": \"{PROFILE_KIND}\")")
        if record.get("format") != PROFILE_FORMAT:
            raise SiteProfileError(f"{source}: site profile format {record.get('format')!r}; this program reads "
                                   f"format {PROFILE_FORMAT}. Recalibrate with `python -m core calibrate`")
        try:
            profile = cls(name=str(record["name"]), created=str(record["created"]),
                          models_fingerprint=str(record["models_fingerprint"]),
                          recalibrator=SiteRecalibrator.from_dict(record["recalibration"]),
                          flag_rule=FlagRule.from_dict(record["flag_rule"]), data=dict(record.get("data") or {}),
                          evidence=dict(record.get("evidence") or {}))
        except (KeyError, TypeError, ValueError) as exc:
            if isinstance(exc, SiteProfileError):
                raise SiteProfileError(f"{source}: {exc}") from exc
            raise SiteProfileError(f"{source}: incomplete or malformed site profile ({type(exc).__name__}: {exc})") \
                from exc
        if not 0.0 <= profile.flag_rule.threshold <= 1.0:
            raise SiteProfileError(f"{source}: threshold {profile.flag_rule.threshold} is not in [0, 1]")
        if record.get("id") != profile.id:
            raise SiteProfileError(f"{source}: the content does not match its id (the file was changed after it was "
                                   "made); refusing it. Recalibrate with `python -m core calibrate`")
        return profile

    @classmethod
    def from_json(cls, text: str, source: str = "site profile") -> "SiteProfile":
        try:
            record = json.loads(text)
        except json.JSONDecodeError as exc:
            raise SiteProfileError(f"{source}: not valid JSON ({exc})") from exc
        return cls.from_dict(record, source)


def load_site_profile(path: str | os.PathLike) -> SiteProfile:
    """Read a profile file; :class:`SiteProfileError` with the file name and the reason when it cannot be used."""
    path = Path(path)
    if not path.is_file():
        raise SiteProfileError(f"{path}: no such site profile file")
    try:
        text = path.read_text()
    except (OSError, UnicodeDecodeError) as exc:
        raise SiteProfileError(f"{path}: cannot be read ({exc})") from exc
    return SiteProfile.from_json(text, str(path))


def utc_now() -> str:
    return dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")
