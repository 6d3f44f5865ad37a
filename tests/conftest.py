"""Shared fixtures: the reference data set is read from ../shared (or $CXR_DATA), never copied."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from core.paths import default_data_dir

# The validation tests' shared fixtures (``model``: the default models; ``site``: six real Actualmed films); a
# test module that defines a fixture of the same name uses its own.
pytest_plugins = ("validation_support",)


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
