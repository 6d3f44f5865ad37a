"""Lung-field localisation and zones: synthetic phantoms with known lungs (the classical finder's geometry), plus
real images (both finders).  The network against the expert masks: tests/lungs/test_lung_network.py."""

from __future__ import annotations

import numpy as np
import pytest
from chest_phantom import chest_phantom
from PIL import Image

from core.io.images import read_image
from core.lungs.fields import (
    WORK_SIZE,
    find_lung_fields,
    normalise_intensity,
    to_working_size,
)
from core.lungs.zones import ZONE_NAMES, zone_masks


def at_working_size(mask: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    resized = Image.fromarray(mask.astype(np.uint8) * 255).resize(shape[::-1], Image.Resampling.BILINEAR)
    return np.asarray(resized) > 127


def dice(a: np.ndarray, b: np.ndarray) -> float:
    return 2.0 * np.count_nonzero(a & b) / (np.count_nonzero(a) + np.count_nonzero(b))


@pytest.mark.parametrize("shape", [(256, 256), (512, 512), (300, 200), (200, 300), (64, 64), (64, 100)])
def test_phantom_lungs_found_at_any_size_and_aspect(shape):
    pixels, (image_left, image_right) = chest_phantom(*shape)
    fields = find_lung_fields(pixels, method="classical")  # phantom lungs are ellipses, not anatomy: classical
    assert max(fields.mask.shape) == WORK_SIZE
    assert fields.mask.shape[0] / fields.mask.shape[1] == pytest.approx(shape[0] / shape[1], rel=0.03)
    assert fields.scale == pytest.approx(max(shape) / WORK_SIZE)
    for truth, zone_ids in ((image_left, (1, 2, 3)), (image_right, (4, 5, 6))):
        found = np.isin(fields.zones, zone_ids)
        assert dice(found, at_working_size(truth, fields.mask.shape)) >= 0.8
    assert fields.quality["ok"] and not (fields.quality["mirrored"] or fields.quality["template"])
    assert fields.quality["n_components"] == 2 and fields.quality["method"] == "classical"


@pytest.mark.parametrize("method", ["auto", "classical"])
def test_burned_in_text_is_never_lung(method):
    pixels, _ = chest_phantom(300, 260)
    fields = find_lung_fields(pixels, method=method)
    text = np.zeros(pixels.shape, dtype=bool)
    text[int(0.03 * 300) : int(0.08 * 300), int(0.04 * 260) : int(0.22 * 260)] = True
    assert not (fields.mask & at_working_size(text, fields.mask.shape)).any()


def test_zones_sides_order_and_partition():
    pixels, _ = chest_phantom(320, 280)
    fields = find_lung_fields(pixels)
    zones = fields.zones
    assert zones.dtype == np.int8 and set(np.unique(zones)) == set(range(7))
    assert np.array_equal(zones > 0, fields.mask)  # the zones partition the mask
    rows, cols = np.indices(zones.shape)
    mean_col = {k: cols[zones == k].mean() for k in range(1, 7)}
    mean_row = {k: rows[zones == k].mean() for k in range(1, 7)}
    # radiological convention: patient's right lung (right_* zones) on the image left
    assert max(mean_col[k] for k in (1, 2, 3)) < fields.midline < min(mean_col[k] for k in (4, 5, 6))
    for upper, middle, lower in ((1, 2, 3), (4, 5, 6)):
        assert mean_row[upper] < mean_row[middle] < mean_row[lower]
        assert rows[zones == upper].max() < rows[zones == middle].min() + 1
        assert rows[zones == middle].max() < rows[zones == lower].min() + 1
    assert ZONE_NAMES[0].startswith("right") and ZONE_NAMES[3].startswith("left")


def test_zone_masks_thirds_of_each_lung_and_default_midline():
    mask = np.zeros((90, 100), dtype=bool)
    mask[10:70, 10:40] = True  # image-left lung: 60 rows -> thirds of 20
    mask[20:50, 60:90] = True  # image-right lung: 30 rows -> thirds of 10
    zones = zone_masks(mask)
    assert np.all(zones[10:30, 10:40] == 1) and np.all(zones[30:50, 10:40] == 2) and np.all(zones[50:70, 10:40] == 3)
    assert np.all(zones[20:30, 60:90] == 4) and np.all(zones[30:40, 60:90] == 5) and np.all(zones[40:50, 60:90] == 6)
    assert np.array_equal(zones > 0, mask)
    assert np.array_equal(zone_masks(mask, midline=50), zones)
    assert not zone_masks(np.zeros((40, 40), dtype=bool)).any()


def test_deterministic():
    pixels, _ = chest_phantom(280, 240, seed=3)
    first, second = find_lung_fields(pixels), find_lung_fields(pixels.copy())
    assert np.array_equal(first.mask, second.mask) and np.array_equal(first.zones, second.zones)
    assert np.array_equal(first.image, second.image) and first.quality == second.quality


def test_normalisation_is_invariant_to_exposure():
    pixels, _ = chest_phantom(200, 200, seed=1)
    normalised = normalise_intensity(pixels)
    assert normalised.dtype == np.float32 and normalised.min() >= 0.0 and normalised.max() <= 1.0
    np.testing.assert_allclose(normalise_intensity(pixels * 0.6 + 0.3), normalised, atol=1e-5)
    fields, rescaled = find_lung_fields(pixels), find_lung_fields(pixels * 0.6 + 0.3)
    assert np.array_equal(fields.mask, rescaled.mask)
    np.testing.assert_allclose(fields.image, rescaled.image, atol=1e-4)


def test_to_working_size_keeps_aspect():
    resized, scale = to_working_size(np.zeros((100, 400), dtype=np.float32))
    assert resized.shape == (64, 256) and scale == pytest.approx(400 / 256)
    with pytest.raises(ValueError):
        to_working_size(np.zeros((4, 4, 3)))


def _real_images(cxr_dir, cxr_manifest, per_label: int = 3):
    """The first ``per_label`` Normal and COVID-19 images of the reference set."""
    names = [name for label in ("Normal", "COVID-19")
             for name in cxr_manifest.loc[cxr_manifest.label == label, "file"][:per_label]]
    return [(name, read_image(cxr_dir / "images" / name).pixels) for name in names]


def test_real_images_have_plausible_lungs(cxr_dir, cxr_manifest):
    for index, (name, pixels) in enumerate(_real_images(cxr_dir, cxr_manifest)):
        fields = find_lung_fields(pixels)
        quality = fields.quality
        assert fields.mask.shape == to_working_size(pixels)[0].shape, name
        assert 0.08 <= quality["lung_area_fraction"] <= 0.6, name
        assert quality["ok"] == (quality["warning"] is None), name
        if index < 3:  # the Normal films; two of the COVID-19 ones (a decubitus film, cut-short bases) are doubtful
            assert quality["ok"] and quality["method"] == "network", name
        height = fields.mask.shape[0]
        for zone_ids in ((1, 2, 3), (4, 5, 6)):
            side = np.isin(fields.zones, zone_ids)
            rows = np.flatnonzero(side.any(axis=1))
            assert side.sum() >= 0.3 * fields.mask.sum() / 2, name
            assert rows[-1] - rows[0] >= 0.25 * height, name
        assert fields.image.dtype == np.float32 and 0.0 <= fields.image.min() and fields.image.max() <= 1.0
