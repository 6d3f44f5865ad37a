"""The lung network and its fallback: masks against the expert masks on real films, the mask files the ``lungs``
command writes, the mask-quality check, and the numpy building blocks of the forward pass."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
from PIL import Image

from core.cli import main
from core.io.images import read_image
from core.lungs import fields as fields_module
from core.lungs.fields import find_lung_fields, mask_at_size, network_lung_mask
from core.lungs.network import DEFAULT_WEIGHTS, LungNetwork, LungNetworkError, _max_pool2, _upsample_bilinear2
from core.lungs.quality import doubtful_measures, mask_measures
from core.lungs.zones import ZONE_NAMES
from core.severity.brixia import BRIXIA_LETTERS

# Expert-masked films: the shipped weights were trained on every expert mask, so this is a regression floor, not
# the validation (that is the patient-grouped cross-validation in models/lungs/lung-unet.json, Dice 0.93).
DICE_FLOOR = 0.85


def dice(a: np.ndarray, b: np.ndarray) -> float:
    return 2.0 * np.count_nonzero(a & b) / (np.count_nonzero(a) + np.count_nonzero(b))


@pytest.fixture(scope="module")
def masked_films(cxr_dir, cxr_manifest):
    rows = [cxr_manifest[cxr_manifest.lung_mask_source == source].iloc[:count]
            for source, count in (("v7labs", 4), ("lungVAE", 2))]
    return [(row.file, read_image(cxr_dir / "images" / row.file).pixels,
             np.asarray(Image.open(cxr_dir / "masks" / row.lung_mask)) > 127)
            for part in rows for row in part.itertuples()]


def test_network_masks_match_the_expert_masks(masked_films):
    scores = []
    for name, pixels, expert in masked_films:
        fields = find_lung_fields(pixels)
        assert fields.quality["method"] == "network", name
        scores.append(dice(mask_at_size(fields, expert.shape), expert))
    assert min(scores) >= DICE_FLOOR, scores
    assert np.mean(scores) >= 0.90, scores


def test_network_beats_the_classical_finder_on_the_same_films(masked_films):
    network = [dice(mask_at_size(find_lung_fields(p), e.shape), e) for _, p, e in masked_films]
    classical = [dice(mask_at_size(find_lung_fields(p, method="classical"), e.shape), e) for _, p, e in masked_films]
    assert np.mean(network) > np.mean(classical) + 0.03


def test_lungs_command_writes_masks_of_the_input_size(cxr_dir, cxr_manifest, tmp_path, capsys):
    name = cxr_manifest[cxr_manifest.site == "nih"].file.iloc[0]
    square = tmp_path / "square.png"
    shutil.copy(cxr_dir / "images" / name, square)
    wide = tmp_path / "wide.png"  # an odd, non-square size: the mask must still match it pixel for pixel
    Image.open(square).convert("L").resize((437, 301)).save(wide)
    broken = tmp_path / "broken.png"
    broken.write_bytes(b"not an image")
    out = tmp_path / "masks"
    code = main(["lungs", str(square), str(wide), str(broken), "--out", str(out), "--json"])
    records = json.loads(capsys.readouterr().out)
    assert code == 1  # the unreadable file is reported, the others are written
    for source in (square, wide):
        written = Image.open(out / f"{source.stem}.png")
        assert written.size == Image.open(source).size and written.mode == "L"
        values = set(np.unique(np.asarray(written)))
        assert values == {0, 255}
    assert [r["method"] for r in records[:2]] == ["network", "network"]
    assert "error" in records[2] and not (out / "broken.png").exists()


def test_missing_or_changed_weights_fall_back_to_the_classical_finder(tmp_path, monkeypatch, masked_films):
    with pytest.raises(LungNetworkError, match="not found"):
        LungNetwork.load(tmp_path / "none.npz")
    changed = tmp_path / "lung-unet.npz"
    shutil.copy(DEFAULT_WEIGHTS, changed)
    shutil.copy(DEFAULT_WEIGHTS.with_suffix(".json"), changed.with_suffix(".json"))
    with changed.open("ab") as handle:
        handle.write(b"\0")
    with pytest.raises(LungNetworkError, match="SHA-256"):
        LungNetwork.load(changed)
    monkeypatch.setattr(fields_module, "default_network", lambda: (None, "lung network unavailable: test"))
    fields = find_lung_fields(masked_films[0][1])
    assert fields.quality["method"] == "classical" and "unavailable" in fields.quality["fallback_reason"]
    with pytest.raises(LungNetworkError):
        find_lung_fields(masked_films[0][1], method="network")


def test_quality_check_flags_a_bad_mask_and_passes_a_good_one(masked_films):
    _, pixels, _ = masked_films[0]
    fields = find_lung_fields(pixels)
    assert fields.quality["ok"] and fields.quality["warning"] is None
    ranges = LungNetwork.load().meta["quality_ranges"]
    good = fields.mask
    assert doubtful_measures(mask_measures(good), ranges) == []
    one_lung = good & (np.arange(good.shape[1])[None, :] < fields.midline)  # a lung missing
    assert any("lung" in reason for reason in doubtful_measures(mask_measures(one_lung), ranges))
    cut = good.copy()
    cut[int(0.55 * good.shape[0]):, : fields.midline] = False  # one lung cut short by a "basal opacity"
    assert doubtful_measures(mask_measures(cut), ranges)
    blob = np.zeros_like(good)
    blob[40:200, 30:220] = True  # a box, not two lungs
    assert doubtful_measures(mask_measures(blob), ranges)


def test_network_mask_keeps_two_largest_parts_and_fills_holes():
    probability = np.zeros((60, 80), dtype=np.float32)
    probability[10:50, 5:35] = 0.9
    probability[10:50, 45:75] = 0.9
    probability[25:30, 15:20] = 0.1  # a hole
    probability[2:4, 2:4] = 0.9  # a speck
    mask = network_lung_mask(probability)
    assert mask[27, 17] and not mask[3, 3] and mask.sum() == 2 * 40 * 30


def test_bilinear_upsampling_matches_half_pixel_centres():
    x = np.arange(4, dtype=np.float32)[None, None, :].repeat(3, axis=1)  # a ramp along the columns
    up = _upsample_bilinear2(x)
    assert up.shape == (1, 6, 8)
    assert np.allclose(up[0, 0], [0.0, 0.25, 0.75, 1.25, 1.75, 2.25, 2.75, 3.0])
    assert np.allclose(_upsample_bilinear2(np.ones((2, 3, 5), np.float32)), 1.0)


def test_zone_order_is_brixia_a_to_f(masked_films):
    """A, B, C = right upper, middle, lower; D, E, F = left; the patient's right lung is on the image left."""
    assert [f"{z.split('_')[0]} {z.split('_')[1]}" for z in ZONE_NAMES] == [
        "right upper", "right middle", "right lower", "left upper", "left middle", "left lower"]
    assert BRIXIA_LETTERS == "ABCDEF"
    fields = find_lung_fields(masked_films[0][1])
    rows, cols = np.indices(fields.zones.shape)
    centre = {k: (rows[fields.zones == k].mean(), cols[fields.zones == k].mean()) for k in range(1, 7)}
    assert all(centre[k][1] < fields.midline < centre[k + 3][1] for k in (1, 2, 3))  # A-C image left
    for upper, middle, lower in ((1, 2, 3), (4, 5, 6)):
        assert centre[upper][0] < centre[middle][0] < centre[lower][0]


def test_max_pool_takes_the_largest_of_each_two_by_two_block():
    x = np.random.default_rng(0).normal(size=(3, 8, 6)).astype(np.float32)
    expected = x.reshape(3, 4, 2, 3, 2).max(axis=(2, 4))
    np.testing.assert_array_equal(_max_pool2(x), expected)


def test_thorax_region_is_the_convex_hull_of_the_lungs(masked_films):
    """The hull is computed inside the lungs' bounding box only: the same pixels as skimage's on the whole image."""
    from skimage.morphology import convex_hull_image

    masks = [find_lung_fields(pixels).mask for _, pixels, _ in masked_films]
    rng = np.random.default_rng(1)
    blobs = [rng.random((64, 80)) > 0.97 for _ in range(5)]  # scattered pixels: a hull with many vertices
    edge = np.zeros((40, 50), dtype=bool)
    edge[0, 3], edge[39, 49], edge[20, 0] = True, True, True  # touching the image border
    for mask in [*masks, *blobs, edge]:
        np.testing.assert_array_equal(fields_module._thorax_region(mask), convex_hull_image(mask))
