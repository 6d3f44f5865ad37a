"""Saved models: write a models folder atomically, read its report, and load only files that can be trusted.

The folder holds one ``skops.io`` file per fitted object (``*.skops``) and ``report.json`` (data set
fingerprint, feature names, metrics, the flag rule, the SHA-256 of every file, the library versions).

Why skops and not pickle/joblib: unpickling runs whatever code the file names, so a replaced model file is a
program. A skops file is JSON plus numpy arrays, and loading builds only the types on :data:`TRUSTED_TYPES` (an
explicit, reviewed list); anything else is refused before an object is made. :func:`save_artifacts` refuses to
write a type outside the list, so a new one is reviewed when it is added, not discovered by a user.

What the hashes in ``report.json`` do and do not do: they catch a damaged or half-replaced folder, but they sit in
the same folder, so whoever can write it can replace a model *and* its hash. The protection against that is
:data:`FINGERPRINT_ENV`: the SHA-256 of ``report.json`` (which lists every file's hash), pinned outside the folder
(the service's environment or configuration); when it is set, a folder whose report differs is refused.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import os
import platform
import re
import shutil
import tempfile
import zipfile
from collections.abc import Iterable, Sequence
from pathlib import Path

import joblib
import numpy as np
import pandas as pd
import sklearn
import skops
import skops.io as sio

import core
from core.features.cache import file_sha256, pairs_sha256

REPORT_NAME = "report.json"
ARTIFACT_SUFFIX = ".skops"
FINGERPRINT_ENV = "CXR_MODELS_FINGERPRINT"

# Types a models folder may contain beyond those skops trusts by default (builtins, numpy arrays, scikit-learn's
# public estimators). Each was reviewed: plain data containers or scikit-learn / project estimators whose state
# is arrays and numbers. Add a type here only after the same review.
TRUSTED_TYPES = (
    "numpy.dtype",
    "sklearn.calibration._CalibratedClassifier",
    "sklearn.calibration._SigmoidCalibration",
    "sklearn.metrics._dist_metrics.EuclideanDistance64",
    "sklearn.neighbors._kd_tree.KDTree",
    "sklearn.tree._tree.Tree",
    "core.learn.preprocessing.InformationGainSelector",
    "core.learn.preprocessing.MissingValueFilter",
    "core.learn.consensus.ConsensusCalibrator",
    "core.learn.consensus.OutOfDistributionDetector",
    "core.learn.site_shift.SiteShiftDetector",
    "core.severity.brixia.ZoneGradeRegressor",
    "core.learn.orientation.OrientationCheck",
    "core.severity.model.SeverityModel",
)

_SERIES_TAG = "__pandas_series__"  # skops cannot store a pandas Series: kept as its index and values
_HEX_DIGEST = re.compile(r"^[0-9a-f]{64}$")


class ModelLoadError(RuntimeError):
    """Saved models that cannot be trusted or used here, with the reason and what to do."""


def artifact_file(stem: str) -> str:
    """The file name of a saved object, e.g. ``consensus.skops``."""
    return stem + ARTIFACT_SUFFIX


def model_file_name(model_name: str) -> str:
    return artifact_file(model_name.lower().replace(" ", "-"))


CONSENSUS_FILE = artifact_file("consensus")
SEVERITY_FILE = artifact_file("severity")
ORIENTATION_FILE = artifact_file("orientation")


def environment_versions() -> dict[str, str]:
    return {"python": platform.python_version(), "numpy": np.__version__, "scikit-learn": sklearn.__version__,
            "joblib": joblib.__version__, "skops": skops.__version__, "core": core.__version__}


def models_fingerprint(models_dir: str | os.PathLike) -> str:
    """SHA-256 of the folder's ``report.json``: it lists every file's hash, so it stands for the whole folder (what
    ``CXR_MODELS_FINGERPRINT`` pins)."""
    return file_sha256(Path(models_dir) / REPORT_NAME)


def model_files_fingerprint(report: dict) -> str:
    """SHA-256 over the saved files' names and hashes (``report.json`` ``files``): the fitted models themselves,
    whatever else the report says. A site profile names the models it was made for by this; any retraining
    changes it."""
    return pairs_sha256((report.get("files") or {}).items())


def save_artifacts(out_dir: str | os.PathLike, artifacts: dict, report: dict,
                   side_files: dict[str, str] | None = None) -> Path:
    """Write the skops files, ``report.json`` and text side files (evaluation reports) into a fresh folder, then
    swap it into place, so a crash never leaves a half-written models folder behind.

    Raises ``ValueError`` when an object holds a type outside :data:`TRUSTED_TYPES` (it could not be loaded).
    """
    out_dir = Path(out_dir).resolve()
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}-", dir=out_dir.parent))
    try:
        files = {}
        for name, obj in artifacts.items():
            if not name.endswith(ARTIFACT_SUFFIX) or Path(name).name != name:
                raise ValueError(f"artifact name {name!r} must be a plain file name ending in {ARTIFACT_SUFFIX}")
            blob = sio.dumps(_storable(obj), compression=zipfile.ZIP_DEFLATED, compresslevel=6)
            untrusted = sorted(set(sio.get_untrusted_types(data=blob)) - set(TRUSTED_TYPES))
            if untrusted:
                raise ValueError(f"{name} holds types outside core.learn.artifacts.TRUSTED_TYPES ({', '.join(untrusted)}); "
                                 "review them and add them to the list, or the models could not be loaded")
            (staging / name).write_bytes(blob)
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


def _storable(obj):
    """``obj`` with every pandas Series (in dicts and lists) replaced by a tagged dict skops can store."""
    if isinstance(obj, pd.Series):
        return {_SERIES_TAG: True, "index": [str(i) for i in obj.index], "values": obj.to_numpy(), "name": obj.name}
    if isinstance(obj, dict):
        return {key: _storable(value) for key, value in obj.items()}
    if isinstance(obj, list):
        return [_storable(value) for value in obj]
    return obj


def _restored(obj):
    if isinstance(obj, dict) and obj.get(_SERIES_TAG) is True:
        return pd.Series(obj["values"], index=obj["index"], name=obj["name"])
    if isinstance(obj, dict):
        return {key: _restored(value) for key, value in obj.items()}
    if isinstance(obj, list):
        return [_restored(value) for value in obj]
    return obj


def read_report(models_dir: str | os.PathLike) -> dict:
    """``report.json``, checked against the pinned fingerprint (if any) and for a well-formed file list."""
    path = Path(models_dir) / REPORT_NAME
    if not path.is_file():
        raise ModelLoadError(f"no trained model in {models_dir}: {REPORT_NAME} is missing. Create one with "
                             f"`python -m core train --data ../shared/data/cxr --out {models_dir}`")
    content = path.read_bytes()
    pinned = os.environ.get(FINGERPRINT_ENV, "").strip().lower()
    if pinned and hashlib.sha256(content).hexdigest() != pinned:
        raise ModelLoadError(f"{path} does not match the fingerprint pinned in {FINGERPRINT_ENV} (report SHA-256 "
                             f"{hashlib.sha256(content).hexdigest()[:12]}…, pinned {pinned[:12]}…): the models "
                             "folder was changed since it was pinned — refusing to load it")
    try:
        report = json.loads(content)
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise ModelLoadError(f"{path}: not valid JSON ({exc}); retrain the models") from exc
    files = report.get("files") if isinstance(report, dict) else None
    if not isinstance(files, dict) or not all(isinstance(name, str) and isinstance(digest, str)
                                              and _HEX_DIGEST.match(digest) for name, digest in files.items()):
        raise ModelLoadError(f"{path} has no valid 'files' list (file name -> SHA-256); it was not written by "
                             "`python -m core train` — retrain the models")
    return report


def load_artifacts(models_dir: str | os.PathLike, *, names: Sequence[str] | None = None,
                   known: Iterable[str] | None = None, check_versions: bool = True) -> tuple[dict, dict]:
    """Load the saved objects after checking they are the ones the training run wrote.

    ``names`` limits loading to the files a command needs (default: every file the report lists); ``known`` is
    every file name the caller's version uses: a report listing anything else is refused whole. Refuses
    (``ModelLoadError``) a requested file the report does not list, one outside the folder (links included), whose
    SHA-256 differs from the report, that holds an untrusted type, or saved under other versions of
    Python/numpy/scikit-learn.
    """
    root = Path(models_dir).resolve()
    report = read_report(root)
    if check_versions:
        here = environment_versions()
        saved = report.get("versions", {}) if isinstance(report.get("versions"), dict) else {}
        mismatched = [f"{k} {saved.get(k)} (here {here[k]})" for k in ("numpy", "scikit-learn")
                      if saved.get(k) != here[k]]
        if str(saved.get("python", "")).rsplit(".", 1)[0] != here["python"].rsplit(".", 1)[0]:
            mismatched.append(f"python {saved.get('python')} (here {here['python']})")
        if mismatched:
            raise ModelLoadError(f"models in {root} were saved with " + ", ".join(mismatched)
                                 + "; install the pinned requirements or retrain with `python -m core train`")
    listed = report["files"]
    if known is not None:
        unknown = sorted(set(listed) - set(known))
        if unknown:
            raise ModelLoadError(f"{root / REPORT_NAME} lists files this version does not use "
                                 f"({', '.join(unknown)}); refusing the models folder — retrain it with "
                                 "`python -m core train`")
    missing = [name for name in (names or ()) if name not in listed]
    if missing:
        raise ModelLoadError(f"{root}: {', '.join(missing)} not in {REPORT_NAME}; retrain the models with "
                             "`python -m core train`")
    artifacts = {}
    for name in (names if names is not None else list(listed)):
        artifacts[name] = _load_one(root, name, listed[name])
    return artifacts, report


def _load_one(root: Path, name: str, expected: str):
    path = (root / name).resolve()
    if path.parent != root or not path.is_file() or not name.endswith(ARTIFACT_SUFFIX):
        raise ModelLoadError(f"{name}: listed in {REPORT_NAME} but not a {ARTIFACT_SUFFIX} file inside {root}; "
                             "refusing to load it")
    actual = file_sha256(path)
    if actual != expected:
        raise ModelLoadError(f"{path}: SHA-256 {actual[:12]}… does not match the training report "
                             f"({expected[:12]}…); the file was changed after training — refusing to load it")
    try:
        untrusted = sorted(set(sio.get_untrusted_types(file=path)) - set(TRUSTED_TYPES))
        if untrusted:
            raise ModelLoadError(f"{path} holds types outside the trusted list ({', '.join(untrusted)}); "
                                 "refusing to load it")
        return _restored(sio.load(path, trusted=list(TRUSTED_TYPES)))
    except ModelLoadError:
        raise
    except Exception as exc:  # not a skops file, damaged, or from an incompatible version
        raise ModelLoadError(f"{path}: not a readable skops model file ({type(exc).__name__}: {exc}); "
                             "retrain the models with `python -m core train`") from exc
