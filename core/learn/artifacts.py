"""Saved models: write a models folder atomically, read its report, and load only files that can be trusted.

The folder holds one file per fitted object and ``report.json`` (data set fingerprint, feature names, metrics,
the flag rule, the SHA-256 of every file, the library versions). :func:`load_artifacts` refuses anything that
is not what the training run wrote.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import platform
import shutil
import tempfile
from collections.abc import Sequence
from pathlib import Path

import joblib
import numpy as np
import pandas as pd
import sklearn

import core
from core.features.cache import file_sha256

REPORT_NAME = "report.json"


class ModelLoadError(RuntimeError):
    """Saved models that cannot be trusted or used here, with the reason and what to do."""


def model_file_name(model_name: str) -> str:
    return model_name.lower().replace(" ", "-") + ".joblib"


def environment_versions() -> dict[str, str]:
    return {"python": platform.python_version(), "numpy": np.__version__, "scikit-learn": sklearn.__version__,
            "joblib": joblib.__version__, "core": core.__version__}


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


def load_artifacts(models_dir: str | os.PathLike, *, names: Sequence[str] | None = None,
                   check_versions: bool = True) -> tuple[dict, dict]:
    """Unpickle the saved objects after checking they are the ones the training run wrote.

    ``names`` limits loading to the files a command needs (default: every file the report lists). Refuses
    (``ModelLoadError``) a requested file the report does not list, one outside the folder (links included), whose
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
    listed = report.get("files", {})
    missing = [name for name in (names or ()) if name not in listed]
    if missing:
        raise ModelLoadError(f"{root}: {', '.join(missing)} not in {REPORT_NAME}; retrain the models with "
                             "`python -m core train`")
    artifacts = {}
    for name in (names if names is not None else list(listed)):
        expected = listed[name]
        path = (root / name).resolve()
        if path.parent != root or not path.is_file():
            raise ModelLoadError(f"{name}: listed in {REPORT_NAME} but not a file inside {root}; refusing to load")
        actual = file_sha256(path)
        if actual != expected:
            raise ModelLoadError(f"{path}: SHA-256 {actual[:12]}… does not match the training report "
                                 f"({expected[:12]}…); the file was changed after training — refusing to load it")
        artifacts[name] = joblib.load(path)
    return artifacts, report
