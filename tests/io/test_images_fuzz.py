"""Fuzzing read_image: any byte string gives a valid XRayImage or an ImageReadError naming the file, nothing else."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image

from core.io.images import ImageReadError, XRayImage, read_image

pytest.importorskip("pydicom")
from imaging_samples import dicom_bytes, dicom_dataset, encoded  # noqa: E402
from pydicom.uid import RLELossless  # noqa: E402

# Pillow and pydicom warn about the damage they skip over (corrupt EXIF, odd VRs); that is expected here.
pytestmark = pytest.mark.filterwarnings("ignore::UserWarning")

FUZZ = settings(max_examples=200, deadline=2000, database=None, derandomize=True,
                suppress_health_check=[HealthCheck.too_slow])


def _dicom(pixels: np.ndarray, compress: bool) -> bytes:
    ds = dicom_dataset(pixels, "MONOCHROME2", 12, WindowCenter=2000, WindowWidth=3000, Modality="DX",
                       StudyDate="20200401")
    if compress:
        ds.compress(RLELossless)
    return dicom_bytes(ds)


def _seeds() -> dict[str, bytes]:
    """Small valid files of every supported kind: the starting points of the mutations."""
    rng = np.random.default_rng(0)
    gray = Image.fromarray(rng.integers(0, 256, (64, 72), dtype=np.uint8))
    deep = Image.fromarray((rng.integers(0, 4096, (64, 64))).astype(np.uint16))
    return {
        "seed.png": encoded(gray, "PNG"),
        "seed16.png": encoded(deep, "PNG"),
        "seed.jpg": encoded(gray.convert("RGB"), "JPEG", quality=80),
        "seed.tif": encoded(gray, "TIFF"),
        "seed.gif": encoded(gray.convert("P"), "GIF"),
        "seed.bmp": encoded(gray, "BMP"),
        "seed.dcm": _dicom(rng.integers(0, 4096, (64, 64)).astype(np.uint16), compress=False),
        "seed-rle.dcm": _dicom(rng.integers(0, 4096, (64, 64)).astype(np.uint16), compress=True),
    }


SEEDS = _seeds()


@st.composite
def mutated_files(draw) -> tuple[str, bytes]:
    """A seed file with flipped bytes, a cut, an inserted run, or a combination (sizes and headers included)."""
    name = draw(st.sampled_from(sorted(SEEDS)))
    data = bytearray(SEEDS[name])
    for _ in range(draw(st.integers(0, 6))):
        position = draw(st.integers(0, len(data) - 1))
        data[position] = draw(st.integers(0, 255))
    if draw(st.booleans()):
        position = draw(st.integers(0, len(data)))
        data[position:position] = draw(st.binary(min_size=1, max_size=16))
    if draw(st.booleans()):
        del data[draw(st.integers(0, len(data))):]
    return name, bytes(data)


def _assert_valid_or_named_error(data: bytes, name: str) -> None:
    try:
        image = read_image(data, name=name)
    except ImageReadError as err:
        assert err.source == name and err.reason and str(err) == f"{name}: {err.reason}"
        return
    assert isinstance(image, XRayImage)
    assert image.pixels.dtype == np.float32 and image.pixels.ndim == 2
    assert min(image.pixels.shape) >= 64
    assert np.isfinite(image.pixels).all() and image.pixels.min() >= 0.0 and image.pixels.max() <= 1.0
    assert len(image.sha256) == 64 and all(isinstance(note, str) for note in image.warnings)


def test_seeds_are_readable():
    for name, data in SEEDS.items():
        assert read_image(data, name=name).pixels.shape in {(64, 72), (64, 64)}


@FUZZ
@given(mutated_files())
def test_mutated_files_never_escape(case: tuple[str, bytes]):
    name, data = case
    _assert_valid_or_named_error(data, name)


@FUZZ
@given(st.binary(max_size=3000), st.sampled_from(["x.png", "x.jpg", "x.dcm", "x.tif", "noext"]),
       st.sampled_from([b"", bytes(128) + b"DICM", b"\x89PNG\r\n\x1a\n", b"\xff\xd8\xff", b"II*\x00", b"GIF89a"]))
def test_random_bytes_never_escape(payload: bytes, name: str, magic: bytes):
    _assert_valid_or_named_error(magic + payload, name)
