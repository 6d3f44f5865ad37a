"""Helpers for the site validation tests: small labelled site folders cut from the reference data (a manifest of
chosen rows and a link to the reference images: nothing is copied), and site profiles for given models."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from dashboard_support import require_default_model

from core.io.datasets import Dataset
from core.learn.flag import FlagRule
from core.learn.site_profile import SiteProfile, SiteRecalibrator
from core.triage.model import TriageModel
from core.validation.scoring import ScoredSet


def site_folder(cxr_dir: Path, rows: pd.DataFrame, folder: Path) -> Path:
    """A data set folder holding ``rows`` of the reference manifest (images linked, not copied)."""
    folder.mkdir(parents=True, exist_ok=True)
    rows.to_csv(folder / "manifest.csv", index=False)
    (folder / "images").symlink_to(cxr_dir / "images", target_is_directory=True)
    return folder


def one_film_per_patient(manifest: pd.DataFrame, label: str, n: int, site: str | None = None) -> pd.DataFrame:
    rows = manifest[(manifest["label"] == label) & (manifest["site"] == site if site else True)]
    return rows.drop_duplicates("patient_group").head(n)


def small_site(cxr_dir: Path, manifest: pd.DataFrame, folder: Path, n_per_label: int = 3) -> Path:
    """``n_per_label`` COVID-19 and Normal films of distinct actualmed patients (a real hospital with both)."""
    rows = pd.concat([one_film_per_patient(manifest, label, n_per_label, "actualmed")
                      for label in ("COVID-19", "Normal")])
    return site_folder(cxr_dir, rows, folder)


def identity_profile(models_fingerprint: str, threshold: float, name: str = "test hospital") -> SiteProfile:
    """A profile that keeps the models' risk as it is (Platt slope 1, intercept 0) and flags at ``threshold``."""
    recalibrator = SiteRecalibrator.from_dict({"method": "platt", "slope": 1.0, "intercept": 0.0})
    return SiteProfile(name=name, created="2026-01-01T00:00:00+00:00", models_fingerprint=models_fingerprint,
                       recalibrator=recalibrator, flag_rule=FlagRule(threshold, 0.95), data={"n_images": 120},
                       evidence={})


def synthetic_risks(n_pos: int, n_neg: int, films_per_patient: int = 1, separation: float = 2.0,
                    random_state: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Risks of a model that separates the classes by ``separation`` logits: (risk, y, patient)."""
    rng = np.random.default_rng(random_state)
    y = np.r_[np.ones(n_pos, int), np.zeros(n_neg, int)]
    logits = separation * (y - 0.5) + rng.normal(0, 1, len(y))
    patients = np.array([f"p{i // films_per_patient}" if y[i] else f"n{i // films_per_patient}" for i in range(len(y))])
    return 1 / (1 + np.exp(-logits)), y, patients


def scored_set(tmp_path, risk, y, patients, threshold: float = 0.3) -> ScoredSet:
    """Scored films as :func:`core.validation.scoring.score_dataset` returns them (one row per film)."""
    labels = np.where(y == 1, "COVID-19", "Normal")
    files = [f"film{i}.png" for i in range(len(y))]
    records = pd.DataFrame({
        "file": files, "label": labels, "patient": patients, "patient_known": True, "risk": risk,
        "flagged": risk >= threshold, "threshold": threshold, "out_of_distribution": 0.5,
        "warnings": [[] for _ in files], "site_profile": None, "calibration": "not validated at this site",
        "error": None, "sha256": [f"{i:064x}" for i in range(len(y))]})
    table = pd.DataFrame({"path": [str(tmp_path / f) for f in files], "file": files, "label": labels,
                          "patient_id": patients, "patient_known": True})
    return ScoredSet(records, Dataset(tmp_path, table, "manifest"))


# Fixtures shared by the validation tests (import them by name into a test module).
@pytest.fixture(scope="module")
def model() -> TriageModel:
    """The default models, without any site profile."""
    require_default_model()
    return TriageModel.load(use_environment=False)


@pytest.fixture(scope="module")
def site(cxr_dir, cxr_manifest, tmp_path_factory):
    """Six real Actualmed films (3 COVID-19, 3 Normal) as a labelled site folder."""
    return small_site(cxr_dir, cxr_manifest, tmp_path_factory.mktemp("site") / "actualmed-6")
