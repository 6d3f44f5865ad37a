"""The site-shift warning: quiet on films like the training sites, fires on a synthetic site."""

from __future__ import annotations

import numpy as np
import pytest

from core.features.acquisition import ACQUISITION_COLUMNS, acquisition_signature
from core.io.images import read_image
from core.learn.site_shift import SiteShiftDetector


def _another_intensity_pipeline(pixels: np.ndarray) -> np.ndarray:
    """A hospital whose export lifts the blacks, compresses the range and applies gamma 0.5."""
    return (0.25 + 0.5 * np.asarray(pixels, dtype=np.float32) ** 0.5).astype(np.float32)


def test_signature_has_its_documented_length_and_sees_the_pipeline():
    rng = np.random.default_rng(0)
    image = rng.uniform(0, 1, (128, 96)).astype(np.float32)
    signature = acquisition_signature(image)
    assert signature.shape == (len(ACQUISITION_COLUMNS),) and np.isfinite(signature).all()
    assert not np.allclose(signature, acquisition_signature(_another_intensity_pipeline(image)))
    with pytest.raises(ValueError, match="2-D"):
        acquisition_signature(np.zeros((4, 4, 3)))


def test_detector_on_synthetic_cells():
    rng = np.random.default_rng(1)
    X = np.vstack([rng.normal(loc, 1.0, (60, 6)) for loc in (0.0, 3.0)])
    sites = np.repeat(["a", "b"], 60)
    detector = SiteShiftDetector(n_components=4).fit(X, sites)
    assert detector.is_shifted(X).mean() <= 0.02
    far = rng.normal(12.0, 1.0, (10, 6))
    assert detector.is_shifted(far).all() and detector.batch_is_shifted(detector.distance_ratio(far))
    assert not detector.batch_is_shifted(detector.distance_ratio(rng.normal(0.0, 1.0, (30, 6))))
    with pytest.raises(ValueError, match="no site x class cell"):
        SiteShiftDetector(min_cell_size=100).fit(X, sites)


@pytest.mark.slow
def test_warning_fires_on_a_synthetic_site_of_reference_films(cxr_dir, cxr_manifest):
    sample = cxr_manifest.sample(160, random_state=0).reset_index(drop=True)
    pixels = [read_image(cxr_dir / "images" / name).pixels for name in sample["file"]]
    signatures = np.array([acquisition_signature(p) for p in pixels])
    train, test = slice(0, 120), slice(120, 160)
    detector = SiteShiftDetector().fit(signatures[train], sample["site"][train], sample["label"][train])
    known = detector.distance_ratio(signatures[test])
    shifted = detector.distance_ratio(np.array([acquisition_signature(_another_intensity_pipeline(p))
                                                for p in pixels[test]]))
    assert (known > 1).mean() <= 0.10            # held-out films of known sites: (almost) silent
    assert (shifted > 1).mean() >= 0.75          # the same films through another pipeline: warned
    assert detector.batch_is_shifted(shifted) and not detector.batch_is_shifted(known)
