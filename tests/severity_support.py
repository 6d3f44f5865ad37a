"""Severity test support: chest phantoms with known basal opacities and their "expert" scores, and a severity
model fitted on part of the reference data."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
from chest_phantom import chest_phantom

from core.features.blocks import zone_feature_table
from core.features.zones import zone_features
from core.lungs.fields import find_lung_fields
from core.severity.model import SeverityModel

MAX_DENSITY = 0.35  # grey levels added by the densest phantom opacity (lungs 0.28, soft tissue 0.65)


def phantom_fields(pixels: np.ndarray):
    """Lung fields of a phantom by the classical finder: phantom lungs are ellipses, not the anatomy the lung
    network learned, and these tests are about the severity model, not the lung finder."""
    return find_lung_fields(pixels, method="classical")


def opacified_phantom(seed: int, involved: tuple[float, float] = (0.0, 0.0), density: tuple[float, float] = (0.0, 0.0),
                      shape: tuple[int, int] = (256, 256)) -> tuple[np.ndarray, float, float]:
    """A phantom whose lungs are opacified from the base up.

    ``involved`` is the fraction of each lung's height covered (patient right = image left first) and ``density``
    the grey level added there.  Returns the image and its scores on the experts' scales: extent = 4 x involved
    fraction per lung (0-8), opacity = 3 x density / MAX_DENSITY per involved lung (0-6).
    """
    pixels, lungs = chest_phantom(*shape, seed=seed, text=False)
    rows = np.arange(shape[0])[:, None]
    extent = opacity = 0.0
    for lung, fraction, grey in zip(lungs, involved, density):
        if fraction <= 0 or grey <= 0:
            continue
        lung_rows = np.flatnonzero(lung.any(axis=1))
        top = lung_rows[-1] - fraction * (lung_rows[-1] - lung_rows[0] + 1)
        pixels[lung & (rows > top)] += grey
        extent += 4 * fraction
        opacity += 3 * grey / MAX_DENSITY
    return np.clip(pixels, 0.0, 1.0), extent, opacity


def phantom_training_set(n_normal: int = 12, n_scored: int = 20, seed: int = 0) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Zone features and targets: clean phantoms labelled Normal, opacified ones labelled COVID-19 with scores."""
    rng = np.random.default_rng(seed)
    rows, targets = [], []
    for index in range(n_normal):
        pixels, _, _ = opacified_phantom(seed=1000 + index)
        rows.append(zone_features(phantom_fields(pixels)))
        targets.append({"label": "Normal", "geographic_extent": np.nan, "opacity": np.nan})
    for index in range(n_scored):
        involved = tuple(rng.uniform(0.0, 0.7, size=2) * (rng.uniform(size=2) < 0.8))
        density = tuple(rng.uniform(0.05, MAX_DENSITY, size=2))
        pixels, extent, opacity = opacified_phantom(2000 + index, involved, density)
        rows.append(zone_features(phantom_fields(pixels)))
        targets.append({"label": "COVID-19", "geographic_extent": extent, "opacity": opacity})
    return pd.DataFrame(rows), pd.DataFrame(targets)


def fitted_phantom_model(random_state: int = 0) -> SeverityModel:
    features, targets = phantom_training_set()
    return SeverityModel(random_state=random_state, cv_splits=4).fit(features, targets)


def reference_model(cxr_dir: Path, manifest: pd.DataFrame) -> SeverityModel:
    """Fitted on the 64 expert-scored images and 40 Normal images of the reference set (about 5 s)."""
    scored = manifest[manifest.geographic_extent.notna()]
    normal = manifest[manifest.label == "Normal"].sample(40, random_state=0)
    rows = pd.concat([scored, normal], ignore_index=True)
    features, errors = zone_feature_table([cxr_dir / "images" / f for f in rows.file], n_jobs=2)
    assert not errors
    return SeverityModel(random_state=0).fit(features, rows, groups=rows.patient_id)
