"""core.io against hostile inputs: files that never end, huge declared sizes, corrupt JPEG data (issue 13)."""

from __future__ import annotations

import io
import os
import struct
import threading
import tracemalloc
from pathlib import Path

import numpy as np
import pytest
from imaging_samples import dicom_bytes, dicom_dataset, encoded, texture
from PIL import Image

from core.io import pixels, sources
from core.io.images import ImageReadError, read_image


def _read_error(source, name: str | None = None) -> ImageReadError:
    with pytest.raises(ImageReadError) as caught:
        read_image(source, name=name)
    return caught.value


# --- Files that never end (item 5) ---------------------------------------------------------------------------


@pytest.mark.timeout(20)
def test_a_fifo_is_refused_without_waiting_for_a_writer(tmp_path: Path):
    fifo = tmp_path / "x.png"
    os.mkfifo(fifo)
    err = _read_error(fifo)
    assert err.source == "x.png" and "not a regular file" in err.reason and "named pipe" in err.reason


@pytest.mark.timeout(20)
def test_a_symlink_to_dev_zero_is_refused(tmp_path: Path):
    link = tmp_path / "scan.dcm"
    link.symlink_to("/dev/zero")
    err = _read_error(link)
    assert err.source == "scan.dcm" and "not a regular file" in err.reason and "device" in err.reason


def test_a_directory_is_refused(tmp_path: Path):
    folder = tmp_path / "study.png"
    folder.mkdir()
    assert "directory" in _read_error(folder).reason


def test_a_file_over_the_byte_limit_is_refused_before_it_is_read(tmp_path: Path, monkeypatch):
    monkeypatch.setattr(sources, "MAX_FILE_BYTES", 1 << 20)
    big = tmp_path / "huge.png"
    with open(big, "wb") as handle:  # sparse: 6 GB declared, nothing written
        handle.truncate(6 * 10**9)
    tracemalloc.start()
    err = _read_error(big)
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    assert "file too large" in err.reason and "6,000,000,000 bytes" in err.reason
    assert peak < 8 << 20  # refused from its size, not read


def test_bytes_and_uploads_over_the_byte_limit_are_refused(monkeypatch):
    monkeypatch.setattr(sources, "MAX_FILE_BYTES", 1000)
    content = encoded(Image.fromarray(texture(200, 200)), "PNG")
    assert len(content) > 1000
    assert "file too large" in _read_error(content, name="a.png").reason
    upload = io.BytesIO(content)
    upload.name = "b.png"
    assert "file too large" in _read_error(upload).reason


def test_a_growing_stream_is_cut_at_the_limit(monkeypatch):
    monkeypatch.setattr(sources, "MAX_FILE_BYTES", 1000)

    class Endless(io.RawIOBase):
        name = "stream.png"

        def readable(self):
            return True

        def readinto(self, buffer):
            buffer[:] = b"\0" * len(buffer)
            return len(buffer)

    assert "file too large" in _read_error(io.BufferedReader(Endless())).reason


# --- Memory: decode to a working size (item 1) ---------------------------------------------------------------


def _png_declaring(width: int, height: int, mode: str = "L") -> bytes:
    """A small PNG of ``width`` x ``height`` pixels (mostly one value: compresses to a few hundred KB)."""
    image = Image.new(mode, (width, height), 0 if mode != "RGB" else (0, 0, 0))
    image.paste(Image.fromarray(texture(512, 512)).convert(mode).resize((width // 2, height // 2)),
                (width // 4, height // 4))
    return encoded(image, "PNG", compress_level=9)


def test_a_huge_png_is_reduced_while_decoding_and_never_held_as_floats():
    content = _png_declaring(9000, 8000)
    tracemalloc.start()
    image = read_image(content, name="huge.png")
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    assert max(image.pixels.shape) <= pixels.MAX_DECODED_SIDE
    assert image.pixels.dtype == np.float32 and 0 <= image.pixels.min() and image.pixels.max() <= 1
    assert image.metadata["original_size"] == [9000, 8000]
    # 72 Mpx as float32 alone would be 288 MB; Pillow's own 72 MB buffer is not traced by tracemalloc
    assert peak < 64 << 20, f"peak traced {peak / 2**20:.0f} MiB"


@pytest.mark.parametrize("mode, fmt", [("L", "JPEG"), ("RGB", "JPEG"), ("RGB", "PNG"), ("P", "PNG"), ("1", "PNG"),
                                       ("I;16", "PNG"), ("F", "TIFF"), ("RGBA", "PNG"), ("L", "TIFF")])
def test_every_mode_is_reduced_to_the_same_picture(mode: str, fmt: str):
    base = texture(96, 80).repeat(32, axis=0).repeat(32, axis=1)  # 3072 x 2560, blocks of 32 px
    if mode == "I;16":
        picture = Image.fromarray(base.astype(np.uint16) * 257)
    elif mode == "F":
        picture = Image.fromarray(base.astype(np.float32) * 3.5 - 7)
    elif mode == "P":
        picture = Image.fromarray(base).convert("RGB").convert("P", palette=Image.Palette.ADAPTIVE)
    else:
        picture = Image.fromarray(base).convert(mode)  # mode "1" is dithered: its block means approximate base
    image = read_image(encoded(picture, fmt), name=f"big.{fmt.lower()}")
    factor = -(-3072 // image.pixels.shape[0])  # JPEG: libjpeg's DCT scaling (1/2, 1/4, 1/8), then an integer factor
    assert factor >= pixels.reduction_factor(2560, 3072) and max(image.pixels.shape) <= pixels.MAX_DECODED_SIDE
    assert image.pixels.shape == (-(-3072 // factor), -(-2560 // factor))
    expected = base[::factor, ::factor][: image.pixels.shape[0], : image.pixels.shape[1]] / 255
    inner = (slice(1, -1), slice(1, -1))  # blocks straddle the 32-px squares only at the border
    tolerance = {"JPEG": 0.08, "1": 0.25}.get(fmt if fmt == "JPEG" else mode, 0.02)
    difference = np.abs(image.pixels - expected)[inner]
    assert np.median(difference) < tolerance


def test_a_small_image_is_not_reduced(sample_png: Path):
    image = read_image(sample_png)
    assert "original_size" not in image.metadata
    np.testing.assert_array_equal(image.to_uint8(), np.asarray(Image.open(sample_png).convert("L")))


def test_a_huge_dicom_is_reduced_through_its_lut():
    stored = (texture(96, 80).astype(np.uint16) * 16).repeat(32, axis=0).repeat(32, axis=1)
    dataset = dicom_dataset(stored, bits_stored=12, WindowCenter=2048, WindowWidth=4096, Modality="DX")
    image = read_image(dicom_bytes(dataset), name="big.dcm")
    factor = pixels.reduction_factor(stored.shape[1], stored.shape[0])
    assert image.pixels.shape == (-(-stored.shape[0] // factor), -(-stored.shape[1] // factor))
    assert image.metadata["original_size"] == [stored.shape[1], stored.shape[0]]
    expected = stored[::factor, ::factor][: image.pixels.shape[0], : image.pixels.shape[1]] / 4095
    assert np.median(np.abs(image.pixels - expected)[1:-1, 1:-1]) < 0.01


def test_reduction_factor_keeps_the_longest_side_within_the_limit():
    limit = pixels.MAX_DECODED_SIDE
    assert pixels.reduction_factor(limit, limit) == 1
    for side in (limit + 1, 2 * limit, 9999, 100_000):
        factor = pixels.reduction_factor(side, 64)
        assert -(-side // factor) <= limit  # the reduced side fits
        assert factor == 1 or -(-side // (factor - 1)) > limit  # and no smaller factor would do


# --- Corrupt JPEG data (item 8) ------------------------------------------------------------------------------


def _jpeg_with_size(content: bytes, width: int, height: int) -> bytes:
    """The JPEG with its frame header (SOF0) declaring another size: the entropy data no longer fits."""
    start = content.find(b"\xff\xc0")
    return content[: start + 5] + struct.pack(">HH", height, width) + content[start + 9:]


@pytest.fixture(scope="module")
def chest_jpeg(sample_png: Path) -> bytes:
    return encoded(Image.open(sample_png).convert("L"), "JPEG", quality=90)


@pytest.mark.parametrize("change", [(0, 16), (0, -64), (-16, 0), (64, 8)])
def test_a_jpeg_with_a_patched_size_is_refused(chest_jpeg: bytes, change):
    # (A patch that keeps the number of 8x8 blocks, e.g. twice as wide and half as high, decodes without any
    # decoder warning: only the acceptance checks can see that picture.)
    width, height = Image.open(io.BytesIO(chest_jpeg)).size
    err = _read_error(_jpeg_with_size(chest_jpeg, width + change[0], height + change[1]), name="patched.jpg")
    assert err.source == "patched.jpg" and "corrupt JPEG data" in err.reason


def test_a_jpeg_compressed_dicom_with_corrupt_data_is_refused_and_the_process_survives(chest_jpeg: bytes):
    from pydicom.encaps import encapsulate
    from pydicom.uid import JPEGBaseline8Bit

    width, height = Image.open(io.BytesIO(chest_jpeg)).size
    dataset = dicom_dataset(np.zeros((height, width), np.uint8), bits_stored=8, Modality="DX")
    dataset.file_meta.TransferSyntaxUID = JPEGBaseline8Bit
    for stream, fragment in ((_jpeg_with_size(chest_jpeg, width, height + 16), "corrupt JPEG data"),
                             (chest_jpeg[:5] + b"\x1f" + chest_jpeg[6:], "JPEG")):  # APP0 length overruns
        dataset.PixelData = encapsulate([stream])
        dataset["PixelData"].VR = "OB"
        # GDCM aborts the process on the second stream (std::terminate): it may only run in the isolated worker
        err = _read_error(dicom_bytes(dataset), name="study.dcm")
        assert err.source == "study.dcm" and fragment in err.reason


@pytest.mark.parametrize("options", [{}, {"progressive": True}, {"subsampling": 2}, {"restart_marker_rows": 1},
                                     {"optimize": True}])
def test_valid_jpegs_are_not_refused(sample_png: Path, options: dict):
    picture = Image.open(sample_png)
    for mode in ("L", "RGB", "CMYK"):
        image = read_image(encoded(picture.convert(mode), "JPEG", quality=85, **options), name="ok.jpg")
        assert image.pixels.shape == picture.size[::-1]


def test_the_jpeg_check_does_not_lose_other_output_on_stderr(chest_jpeg: bytes, capfd):
    stop = threading.Event()

    def chatter():
        while not stop.is_set():
            os.write(2, b"other thread\n")
            stop.wait(0.001)

    thread = threading.Thread(target=chatter)
    thread.start()
    try:
        for _ in range(5):
            read_image(chest_jpeg, name="ok.jpg")
            with pytest.raises(ImageReadError):
                read_image(_jpeg_with_size(chest_jpeg, 600, 600), name="bad.jpg")
    finally:
        stop.set()
        thread.join()
    err = capfd.readouterr().err
    assert "other thread" in err and "Corrupt JPEG data" not in err


def test_a_jpeg_too_large_to_check_is_refused_not_scored_unchecked(monkeypatch, chest_jpeg: bytes):
    from core.io import jpeg

    width, height = Image.open(io.BytesIO(chest_jpeg)).size
    monkeypatch.setattr(jpeg, "MAX_CHECKED_SAMPLES", width * height * 2)  # the grey film fits, in colour it would not
    read_image(chest_jpeg, name="grey.jpg")
    colour = encoded(Image.open(io.BytesIO(chest_jpeg)).convert("RGB"), "JPEG")
    err = _read_error(colour, name="colour.jpg")
    assert "too large to check for corrupt data" in err.reason and "grayscale JPEG or a PNG" in err.reason
