"""Fit the four final models on a whole data set, calibrate their consensus, save and verify them.

``python -m core train --data DIR --out MODELS_DIR`` calls :func:`train`. The folder it writes holds one joblib
pickle per fitted object and ``report.json`` with the data set fingerprint, feature names, selected features,
metrics, the consensus threshold, the SHA-256 of every pickle and the library versions. :func:`load_artifacts` only
unpickles files listed in that report, inside that folder, whose SHA-256 matches, under the same versions.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import os
import platform
import shutil
import tempfile
import warnings
from collections.abc import Callable
from pathlib import Path

import joblib
import numpy as np
import pandas as pd
import sklearn
from joblib import Parallel, delayed
from sklearn.exceptions import ConvergenceWarning
from sklearn.metrics import roc_auc_score
from sklearn.model_selection import StratifiedGroupKFold

import core
from core.features import file_sha256
from core.consensus import ConsensusCalibrator, OutOfDistributionDetector, operating_point, \
    threshold_for_sensitivity
from core.models import MODEL_NAMES, make_pipeline

REPORT_NAME = "report.json"
Progress = Callable[[float, str], None]


class ModelLoadError(RuntimeError):
    """Saved models that cannot be trusted or used here, with the reason and what to do."""


def model_file_name(model_name: str) -> str:
    return model_name.lower().replace(" ", "-") + ".joblib"


def environment_versions() -> dict[str, str]:
    return {"python": platform.python_version(), "numpy": np.__version__, "scikit-learn": sklearn.__version__,
            "joblib": joblib.__version__, "core": core.__version__}


def data_fingerprint(shas: list[str], labels: list[str]) -> str:
    """SHA-256 over the sorted (image hash, label) pairs: the same images and labels give the same fingerprint."""
    digest = hashlib.sha256()
    for sha, label in sorted(zip(shas, labels)):
        digest.update(f"{sha}\t{label}\n".encode())
    return digest.hexdigest()


def out_of_fold_probabilities(X: pd.DataFrame, y: np.ndarray, groups: np.ndarray, *, preset: str = "tuned",
                              select_k: int | None = 10, n_splits: int = 5, random_state: int = 42,
                              n_jobs: int = 1) -> pd.DataFrame:
    """P(COVID-19) of every image from models that never saw its patient (patient-grouped K-fold).

    Returns a DataFrame (n_images, 4 models).
    """
    folds = list(StratifiedGroupKFold(n_splits=n_splits, shuffle=True, random_state=random_state)
                 .split(X, y, groups))
    tasks = (delayed(_fit_pipeline)(name, X.iloc[train], y[train], preset, select_k, random_state, X.iloc[test])
             for name in MODEL_NAMES for train, test in folds)
    keys = [(name, test) for name in MODEL_NAMES for _, test in folds]
    out = pd.DataFrame(np.nan, index=range(len(X)), columns=list(MODEL_NAMES))
    for (name, test), (_, probabilities) in zip(keys, Parallel(n_jobs=n_jobs)(tasks)):
        out.loc[test, name] = probabilities
    return out


def _fit_pipeline(name: str, X: pd.DataFrame, y: np.ndarray, preset: str, select_k: int | None,
                  random_state: int, X_test: pd.DataFrame | None = None):
    """Fit one model's pipeline; with ``X_test``, also its P(COVID-19) there (a joblib task)."""
    with warnings.catch_warnings():
        # The tuned MLP stops at its iteration cap with a flat loss (see core.models); the evaluation counts these.
        warnings.simplefilter("ignore", ConvergenceWarning)
        model = make_pipeline(name, preset=preset, select_k=select_k, random_state=random_state).fit(X, y)
    return model, (model.predict_proba(X_test)[:, 1] if X_test is not None else None)


def fit_final_models(X: pd.DataFrame, y: np.ndarray, groups: np.ndarray, *, preset: str = "tuned",
                     select_k: int | None = 10, target_sensitivity: float = 0.95, random_state: int = 42,
                     n_jobs: int = 1, progress: Progress | None = None) -> tuple[dict, dict]:
    """Fit the four pipelines on all rows, calibrate the consensus out of fold, choose the flag threshold.

    Returns ``(artifacts, summary)``: the fitted objects by file name, and what the report says about them.
    """
    say = progress or (lambda fraction, message: None)
    say(0.05, "out-of-fold predictions for calibration")
    oof = out_of_fold_probabilities(X, y, groups, preset=preset, select_k=select_k,
                                    random_state=random_state, n_jobs=n_jobs)
    calibrator = ConsensusCalibrator().fit(oof.to_numpy(), y)
    oof_risk = calibrator.predict_risk(oof.to_numpy())
    threshold = threshold_for_sensitivity(oof_risk, y, target_sensitivity)
    say(0.6, "fitting the final models on all images")
    fitted = Parallel(n_jobs=n_jobs)(delayed(_fit_pipeline)(name, X, y, preset, select_k, random_state)
                                     for name in MODEL_NAMES)
    models = {name: model for name, (model, _) in zip(MODEL_NAMES, fitted)}
    detector = OutOfDistributionDetector(random_state=random_state).fit(X.to_numpy())
    medians = X.median(numeric_only=True)
    artifacts = {model_file_name(name): model for name, model in models.items()}
    artifacts["consensus.joblib"] = {"calibrator": calibrator, "threshold": threshold, "detector": detector,
                                     "feature_medians": medians}
    summary = {
        "method": "mean of the four P(COVID-19), Platt-scaled on patient-grouped 5-fold out-of-fold predictions",
        "threshold": threshold,
        "target_sensitivity": target_sensitivity,
        "out_of_fold": {"AUC": float(roc_auc_score(y, oof_risk)), **operating_point(oof_risk, y, threshold),
                        "per_model_AUC": {n: float(roc_auc_score(y, oof[n])) for n in MODEL_NAMES}},
        "selected_features": {name: selected_feature_names(model) for name, model in models.items()},
    }
    return artifacts, summary


def selected_feature_names(pipeline) -> list[str]:
    """Names of the features the fitted pipeline's classifier sees (after filtering and selection)."""
    return [str(n) for n in pipeline[:-1].get_feature_names_out()]


def save_artifacts(out_dir: str | os.PathLike, artifacts: dict, report: dict,
                   side_files: dict[str, str] | None = None) -> Path:
    """Write the pickles, ``report.json`` and text side files (evaluation reports) into a fresh folder, then swap
    it into place, so a crash never leaves a half-written models folder behind.
    """
    out_dir = Path(out_dir).resolve()
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}-", dir=out_dir.parent))
    try:
        files = {}
        for name, obj in artifacts.items():
            joblib.dump(obj, staging / name, compress=3)
            files[name] = file_sha256(staging / name)
        for name, text in (side_files or {}).items():
            (staging / name).write_text(text)
        report = {**report, "files": files, "versions": environment_versions()}
        (staging / REPORT_NAME).write_text(json.dumps(report, indent=2, default=_json_default))
        if out_dir.exists():
            old = out_dir.with_name(f".{out_dir.name}-old")
            shutil.rmtree(old, ignore_errors=True)
            out_dir.rename(old)
            staging.rename(out_dir)
            shutil.rmtree(old, ignore_errors=True)
        else:
            staging.rename(out_dir)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return out_dir


def _json_default(value):
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, (pd.Timestamp, dt.datetime, dt.date)):
        return value.isoformat()
    raise TypeError(f"not JSON-serialisable: {type(value).__name__}")


def read_report(models_dir: str | os.PathLike) -> dict:
    path = Path(models_dir) / REPORT_NAME
    if not path.is_file():
        raise ModelLoadError(f"no trained model in {models_dir}: {REPORT_NAME} is missing. Create one with "
                             f"`python -m core train --data ../shared/data/cxr --out {models_dir}`")
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError as exc:
        raise ModelLoadError(f"{path}: not valid JSON ({exc}); retrain the models") from exc


def load_artifacts(models_dir: str | os.PathLike, *, check_versions: bool = True) -> tuple[dict, dict]:
    """Unpickle the saved objects after checking they are the ones the training run wrote.

    Refuses (``ModelLoadError``) a file not listed in the report, outside the folder (links included), whose
    SHA-256 differs from the report, or saved under other versions of Python/numpy/scikit-learn.
    """
    root = Path(models_dir).resolve()
    report = read_report(root)
    if check_versions:
        here = environment_versions()
        saved = report.get("versions", {})
        mismatched = [f"{k} {saved.get(k)} (here {here[k]})" for k in ("numpy", "scikit-learn")
                      if saved.get(k) != here[k]]
        if saved.get("python", "").rsplit(".", 1)[0] != here["python"].rsplit(".", 1)[0]:
            mismatched.append(f"python {saved.get('python')} (here {here['python']})")
        if mismatched:
            raise ModelLoadError(f"models in {root} were saved with " + ", ".join(mismatched)
                                 + "; install the pinned requirements or retrain with `python -m core train`")
    artifacts = {}
    for name, expected in report.get("files", {}).items():
        path = (root / name).resolve()
        if path.parent != root or not path.is_file():
            raise ModelLoadError(f"{name}: listed in {REPORT_NAME} but not a file inside {root}; refusing to load")
        actual = file_sha256(path)
        if actual != expected:
            raise ModelLoadError(f"{path}: SHA-256 {actual[:12]}… does not match the training report "
                                 f"({expected[:12]}…); the file was changed after training — refusing to load it")
        artifacts[name] = joblib.load(path)
    return artifacts, report
