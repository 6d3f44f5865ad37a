"""Where things live: the reference data, the models folder, the app's data folder."""

from __future__ import annotations

import os
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent


def default_data_dir() -> Path:
    """The reference chest X-ray set: ``$CXR_DATA`` or ``../shared/data/cxr`` beside the checkout."""
    env = os.environ.get("CXR_DATA")
    return Path(env) if env else REPO_ROOT.parent / "shared" / "data" / "cxr"


def default_models_dir() -> Path:
    """Saved models: ``$CXR_MODELS`` or ``models/default`` in the repository."""
    env = os.environ.get("CXR_MODELS")
    return Path(env) if env else REPO_ROOT / "models" / "default"


def default_site_profile() -> Path | None:
    """The site profile to apply (``$CXR_SITE_PROFILE``), or None: verdicts then say "not validated at this site"."""
    env = os.environ.get("CXR_SITE_PROFILE", "").strip()
    return Path(env) if env else None


def app_data_dir() -> Path:
    """The app's writable folder (worklist DB, uploads, feature cache): ``$CXR_APP_DATA`` or ``./data``."""
    env = os.environ.get("CXR_APP_DATA")
    path = Path(env) if env else REPO_ROOT / "data"
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as err:  # the caller's one-line error handler shows this, never a traceback
        raise OSError(err.errno, f"the app's data folder {path} cannot be created ({err.strerror}); set "
                                 "CXR_APP_DATA to a writable folder") from err
    if not os.access(path, os.W_OK):
        raise PermissionError(f"the app's data folder {path} is not writable; set CXR_APP_DATA to a writable folder")
    return path


def default_cache_dir() -> Path:
    """Per-image feature cache: ``$CXR_CACHE`` or ``<app data>/feature-cache``."""
    env = os.environ.get("CXR_CACHE")
    return Path(env) if env else app_data_dir() / "feature-cache"


def portable_path(path: str | os.PathLike) -> str:
    """A path to record in a committed file: relative to the repository (``../shared/data/cxr``), never an
    absolute path of the machine that wrote it."""
    return Path(os.path.relpath(Path(path).resolve(), REPO_ROOT)).as_posix()
