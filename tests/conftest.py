"""Shared fixtures: the reference data set is read from ../shared (or $CXR_DATA), never copied."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import pandas as pd
import pytest
from validation_support import site_folder

from core.paths import default_data_dir

# The validation tests' shared fixtures (``model``: the default models; ``site``: six real Actualmed films); a
# test module that defines a fixture of the same name uses its own.
pytest_plugins = ("validation_support",)


# Weight of a test when ordering files: an end-to-end test starts a server and a browser.
_SLOW_WEIGHT = {"slow": 1, "e2e": 5}


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """The heaviest files (slow whole-pipeline and end-to-end tests) first: the test workers take files in this
    order, and the longest files must not be left for the end, when the other worker has nothing more to do."""
    weight: Counter = Counter()
    for item in items:
        weight[item.path] += sum(w for marker, w in _SLOW_WEIGHT.items() if item.get_closest_marker(marker))
    items.sort(key=lambda item: -weight[item.path])  # stable: each file keeps its own order


@pytest.fixture(scope="session")
def cxr_dir() -> Path:
    """The reference chest X-ray folder; skips with the reason when it is not there."""
    path = default_data_dir()
    if not (path / "manifest.csv").is_file():
        pytest.skip(f"reference data not found at {path} (set CXR_DATA to a folder with manifest.csv)")
    return path


@pytest.fixture(scope="session")
def cxr_manifest(cxr_dir: Path) -> pd.DataFrame:
    return pd.read_csv(cxr_dir / "manifest.csv")


@pytest.fixture(scope="session")
def sample_png(cxr_dir: Path, cxr_manifest: pd.DataFrame) -> Path:
    """One real COVID-19 image from the reference set."""
    name = cxr_manifest.loc[cxr_manifest.label == "COVID-19", "file"].iloc[0]
    return cxr_dir / "images" / name


# The small reference folder keeps this fraction of each (site, label)'s patients (at least a few), and a few
# patients with each kind of expert score.
SMALL_FRACTION, SMALL_MIN_PATIENTS, SMALL_SCORED_PATIENTS = 0.2, 4, 12


@pytest.fixture(scope="session")
def small_cxr_dir(cxr_dir: Path, cxr_manifest: pd.DataFrame, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A data set folder holding a fixed sample of the reference data (about a third): whole patients of every site
    and label, and patients with the experts' Cohen and Brixia scores for the corona score.

    Its ``manifest.csv`` lists the sample; ``images``, ``masks`` and ``severity`` link to the reference folder's own
    (nothing is copied). For the command-line runs that train and evaluate end to end: the same code paths as the
    full data at a fraction of the cost.
    """
    manifest = cxr_manifest.assign(patient_group=cxr_manifest["patient_group"].fillna(cxr_manifest["patient_id"]))
    patients = manifest.groupby(["site", "label"])["patient_group"].unique()
    chosen = {p for group in patients for p in pd.Series(group).sample(
        min(len(group), max(SMALL_MIN_PATIENTS, round(SMALL_FRACTION * len(group)))), random_state=0)}
    for column in ("geographic_extent", "brixia_senior_total"):
        scored = pd.Series(manifest.loc[manifest[column].notna(), "patient_group"].unique())
        chosen |= set(scored.sample(min(len(scored), SMALL_SCORED_PATIENTS), random_state=0))
    folder = site_folder(cxr_dir, cxr_manifest[manifest["patient_group"].isin(chosen)],
                         tmp_path_factory.mktemp("small-cxr"))
    for entry in ("masks", "severity"):  # site_folder links the images; the corona score needs these too
        if (cxr_dir / entry).exists():
            (folder / entry).symlink_to((cxr_dir / entry).resolve())
    return folder
