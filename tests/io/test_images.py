"""core.io.images: raster formats, conversions, names and every bad input (all generated in tmp_path)."""

from __future__ import annotations

import hashlib
import io
import pickle
import struct
import zlib
from pathlib import Path

import numpy as np
import pytest
from imaging_samples import encoded, texture
from PIL import Image, ImageFile

from core.io import images as imaging
from core.io import pixels
from core.io.images import (
    MAX_NAME_BYTES,
    ImageReadError,
    XRayImage,
    read_image,
    sanitize_filename,
)
from core.io.pixels import MIN_SIDE, luma_601

RNG = np.random.default_rng(7)


def _save(image: Image.Image, path: Path, **options) -> Path:
    image.save(path, **options)
    return path


def _with_png_size(png: bytes, width: int, height: int) -> bytes:
    """A PNG whose IHDR declares another size, with a valid CRC (a decompression-bomb header)."""
    ihdr = png[12:29]  # b"IHDR" + 13 data bytes
    patched = b"IHDR" + struct.pack(">II", width, height) + ihdr[12:]
    return png[:12] + patched + struct.pack(">I", zlib.crc32(patched)) + png[33:]


def _read_error(source, name: str | None = None) -> ImageReadError:
    with pytest.raises(ImageReadError) as caught:
        read_image(source, name=name)
    return caught.value


# --- 8-bit exactness, sources, identity -----------------------------------------------------------------------


def test_reference_png_round_trips_exactly(sample_png: Path):
    image = read_image(sample_png)
    original = np.asarray(Image.open(sample_png).convert("L"))
    assert image.pixels.dtype == np.float32 and image.pixels.shape == original.shape
    assert 0.0 <= image.pixels.min() and image.pixels.max() <= 1.0
    np.testing.assert_array_equal(image.to_uint8(), original)
    np.testing.assert_array_equal(image.pixels, original.astype(np.float32) / np.float32(255))
    assert image.sha256 == hashlib.sha256(sample_png.read_bytes()).hexdigest()
    assert (image.format, image.source, image.warnings) == ("PNG", sample_png.name, [])


def test_every_8bit_level_maps_to_value_over_255(tmp_path: Path):
    levels = np.tile(np.arange(256, dtype=np.uint8), (64, 1))
    image = read_image(_save(Image.fromarray(levels), tmp_path / "levels.png"))
    np.testing.assert_array_equal(image.pixels[0], np.arange(256, dtype=np.float32) / np.float32(255))
    np.testing.assert_array_equal(image.to_uint8(), levels)


def test_path_bytes_and_file_objects_give_the_same_image(tmp_path: Path):
    path = _save(Image.fromarray(texture()), tmp_path / "scan.png")
    from_path = read_image(path)
    from_str = read_image(str(path))
    from_bytes = read_image(path.read_bytes(), name="scan.png")
    upload = io.BytesIO(path.read_bytes())
    upload.name = "scan.png"
    upload.read()  # an upload another widget already consumed: getvalue() still has every byte
    from_upload = read_image(upload)
    with open(path, "rb") as handle:
        from_handle = read_image(handle)
    for other in (from_str, from_bytes, from_upload, from_handle):
        np.testing.assert_array_equal(other.pixels, from_path.pixels)
        assert (other.sha256, other.source) == (from_path.sha256, "scan.png")
    assert read_image(path.read_bytes()).source == "upload"


def test_in_memory_image_gets_a_pixel_identity():
    first = XRayImage(np.zeros((64, 64)), source="a", format="PNG")
    second = XRayImage(np.ones((64, 64)), source="a", format="PNG")
    assert first.pixels.dtype == np.float32 and len(first.sha256) == 64 and first.sha256 != second.sha256
    with pytest.raises(ValueError, match="2-D"):
        XRayImage(np.zeros((8, 8, 3)), source="a", format="PNG")


def test_pillow_truncation_tolerance_stays_off():
    assert ImageFile.LOAD_TRUNCATED_IMAGES is False


def test_error_pickles_with_its_attributes():
    err = pickle.loads(pickle.dumps(ImageReadError("scan 3.png", "empty file (0 bytes)")))
    assert (err.source, err.reason, str(err)) == ("scan 3.png", "empty file (0 bytes)", "scan 3.png: empty file (0 bytes)")


# --- colour modes ---------------------------------------------------------------------------------------------


def test_luma_matches_pillow_convert_L():
    rgb = RNG.integers(0, 256, (50, 70, 3), dtype=np.uint8)
    np.testing.assert_array_equal(luma_601(rgb), np.asarray(Image.fromarray(rgb).convert("L")))


def test_gray_stored_as_rgb_is_exact_and_not_flagged(tmp_path: Path):
    gray = texture()
    image = read_image(_save(Image.fromarray(np.dstack([gray] * 3)), tmp_path / "rgb.png"))
    np.testing.assert_array_equal(image.to_uint8(), gray)
    assert image.warnings == [] and image.metadata["original_mode"] == "RGB"


def test_colour_photograph_is_converted_to_luma_with_a_warning(tmp_path: Path):
    rgb = RNG.integers(0, 256, (80, 90, 3), dtype=np.uint8)
    image = read_image(_save(Image.fromarray(rgb), tmp_path / "photo.png"))
    np.testing.assert_array_equal(image.to_uint8(), np.asarray(Image.fromarray(rgb).convert("L")))
    assert any("colour image" in note and "photograph" in note for note in image.warnings)


def test_palette_image_is_exact(tmp_path: Path):
    gray = texture()
    image = read_image(_save(Image.fromarray(gray).convert("P"), tmp_path / "palette.png"))
    assert image.metadata["original_mode"] == "P"
    np.testing.assert_array_equal(image.to_uint8(), gray)
    assert image.warnings == []


def test_rgba_transparency_composites_on_black(tmp_path: Path):
    gray = texture()
    alpha = np.full(gray.shape, 255, np.uint8)
    alpha[:, :20] = 0
    rgba = np.dstack([gray, gray, gray, alpha])
    image = read_image(_save(Image.fromarray(rgba, "RGBA"), tmp_path / "rgba.png"))
    np.testing.assert_array_equal(image.to_uint8()[:, 20:], gray[:, 20:])
    assert not image.to_uint8()[:, :20].any()
    assert "transparent pixels composited on black" in image.warnings


def test_la_mode_opaque_is_exact(tmp_path: Path):
    gray = texture()
    la = Image.merge("LA", [Image.fromarray(gray), Image.new("L", (gray.shape[1], gray.shape[0]), 255)])
    image = read_image(_save(la, tmp_path / "la.png"))
    np.testing.assert_array_equal(image.to_uint8(), gray)
    assert image.warnings == []


def test_cmyk_jpeg_reads_as_its_gray_content(tmp_path: Path):
    gray = np.tile(np.linspace(0, 255, 128).astype(np.uint8), (96, 1))  # smooth: little JPEG loss
    path = _save(Image.fromarray(gray).convert("CMYK"), tmp_path / "cmyk.jpg", quality=95)
    image = read_image(path)
    assert (image.format, image.metadata["original_mode"]) == ("JPEG", "CMYK")
    assert np.abs(image.to_uint8().astype(int) - gray).max() <= 4
    assert image.warnings == []


# --- depth, frames, orientation -------------------------------------------------------------------------------


@pytest.mark.parametrize("suffix", [".png", ".tif"])
def test_16bit_keeps_full_depth_until_minmax(tmp_path: Path, suffix: str):
    deep = (1000 + 7 * np.arange(96 * 80)).astype(np.uint16).reshape(96, 80)  # 7680 distinct levels
    image = read_image(_save(Image.fromarray(deep), tmp_path / f"deep{suffix}"))
    expected = (deep - deep.min()) / float(deep.max() - deep.min())
    np.testing.assert_allclose(image.pixels, expected, atol=1e-6)
    assert len(np.unique(image.pixels)) == deep.size  # no 8-bit quantisation on the way
    assert image.metadata["bits_stored"] == 16


def test_multiframe_tiff_uses_first_frame(tmp_path: Path):
    frames = [Image.fromarray(texture(seed=seed)) for seed in range(3)]
    path = _save(frames[0], tmp_path / "stack.tif", save_all=True, append_images=frames[1:])
    image = read_image(path)
    np.testing.assert_array_equal(image.to_uint8(), np.asarray(frames[0]))
    assert image.metadata["n_frames"] == 3
    assert any(note.startswith("multi-frame TIFF: first frame used") for note in image.warnings)


def test_animated_gif_uses_first_frame(tmp_path: Path):
    first, second = np.zeros((64, 64), np.uint8), np.full((64, 64), 200, np.uint8)
    first[10:30, 10:50] = 255
    frames = [Image.fromarray(first), Image.fromarray(second)]
    path = _save(frames[0], tmp_path / "cine.gif", save_all=True, append_images=frames[1:], duration=100)
    image = read_image(path)
    assert image.format == "GIF"
    np.testing.assert_array_equal(image.to_uint8(), first)
    assert any(note.startswith("multi-frame GIF: first frame used") for note in image.warnings)


@pytest.mark.parametrize(("orientation", "turn"), [(3, lambda a: np.rot90(a, 2)), (6, lambda a: np.rot90(a, -1)),
                                                   (8, lambda a: np.rot90(a, 1))])
def test_exif_orientation_is_applied(tmp_path: Path, orientation: int, turn):
    stored = texture(96, 80)
    exif = Image.Exif()
    exif[0x0112] = orientation
    image = read_image(_save(Image.fromarray(stored), tmp_path / "rotated.png", exif=exif))
    np.testing.assert_array_equal(image.to_uint8(), turn(stored))
    assert image.metadata["exif_orientation"] == orientation


# --- bad input ------------------------------------------------------------------------------------------------


def test_random_bytes_with_image_extension(tmp_path: Path):
    path = tmp_path / "scan 3.png"
    path.write_bytes(RNG.bytes(4000))
    err = _read_error(path)
    assert err.source == "scan 3.png" and str(err).startswith("scan 3.png: not an image")


@pytest.mark.parametrize("fmt", ["PNG", "JPEG"])
def test_truncated_files(tmp_path: Path, fmt: str):
    data = encoded(Image.fromarray(texture(200, 200)), fmt)
    path = tmp_path / f"cut.{fmt.lower()}"
    path.write_bytes(data[: len(data) // 2])
    assert str(_read_error(path)) == f"cut.{fmt.lower()}: truncated {fmt} file (image data ends early)"


def test_png_missing_its_end_is_truncated_even_when_pixels_inflate():
    data = encoded(Image.fromarray(texture()), "PNG")
    err = _read_error(data[:-12], name="no-iend.png")  # the IEND chunk is the last 12 bytes
    assert err.source == "no-iend.png" and "truncated PNG" in err.reason


def test_png_with_a_damaged_chunk_is_corrupt():
    data = bytearray(encoded(Image.fromarray(texture()), "PNG"))
    data[-20] ^= 0xFF  # inside IDAT: its CRC no longer matches
    err = _read_error(bytes(data), name="flip.png")
    assert err.reason.startswith(("corrupt PNG", "truncated PNG"))


def test_empty_file(tmp_path: Path):
    path = tmp_path / "empty.jpg"
    path.write_bytes(b"")
    assert str(_read_error(path)) == "empty.jpg: empty file (0 bytes)"


def test_missing_file(tmp_path: Path):
    assert str(_read_error(tmp_path / "gone.png")) == "gone.png: file not found"


@pytest.mark.parametrize("size", [(1, 1), (2000, 3), (MIN_SIDE - 1, 500)])
def test_too_small(size: tuple[int, int]):
    err = _read_error(encoded(Image.new("L", size), "PNG"), name="tiny.png")
    assert err.source == "tiny.png" and err.reason.startswith(f"image too small: {size[0]}x{size[1]} pixels")


@pytest.mark.parametrize("side", [12_000, 30_000])  # above our limit; above Pillow's own error threshold
def test_decompression_bomb_rejected_before_decoding(side: int):
    bomb = _with_png_size(encoded(Image.new("L", (64, 64)), "PNG"), side, side)
    err = _read_error(bomb, name="bomb.png")
    assert err.source == "bomb.png" and "too large" in err.reason and "decompression bomb" in err.reason


def test_pixel_limit_is_the_module_constant(monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setattr(pixels, "MAX_PIXELS", 64 * 64 - 1)
    assert "too large: 64x64 = 4,096 pixels" in _read_error(encoded(Image.new("L", (64, 64)), "PNG")).reason


def test_unexpected_decoder_failure_becomes_a_named_error(monkeypatch: pytest.MonkeyPatch):
    def broken(*_args):
        raise RuntimeError("codec exploded")

    monkeypatch.setattr(imaging, "_pillow_to_unit", broken)
    err = _read_error(encoded(Image.fromarray(texture()), "PNG"), name="x.png")
    assert str(err) == "x.png: could not decode image (RuntimeError: codec exploded)"


def test_not_a_path_bytes_or_file_is_a_type_error():
    with pytest.raises(TypeError):
        read_image(12345)  # type: ignore[arg-type]


# --- names ----------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(("raw", "clean"), [
    ("C:\\Users\\dr\\Thorax_Müller 3.png", "Thorax_Müller 3.png"),
    ("../../etc/passwd", "passwd"),
    ("scan\u202egnp.exe", "scangnp.exe"),  # right-to-left override disguising the extension
    ("a\x00b\nc.png", "abc.png"),
    ("胸部 X線.dcm", "胸部 X線.dcm"),
    ("what?<>|.png", "what____.png"),
    ("..", "image"),
    ("", "image"),
    ("/", "image"),
    (".hidden.png", "hidden.png"),
    ("CON.png", "_CON.png"),
    ("e\u0301.png", "\u00e9.png"),  # NFD (macOS) -> NFC
])
def test_sanitize_filename(raw: str, clean: str):
    assert sanitize_filename(raw) == clean


def test_sanitize_filename_caps_length_and_keeps_the_extension():
    clean = sanitize_filename("ж" * 500 + ".png")
    assert clean.endswith(".png") and len(clean.encode("utf-8")) <= MAX_NAME_BYTES and clean.startswith("ж")


def test_non_ascii_path_and_upload_names(tmp_path: Path):
    path = _save(Image.fromarray(texture()), tmp_path / "Ärztin_胸部.png")
    assert read_image(path).source == "Ärztin_胸部.png"
    err = _read_error(b"not an image at all", name="uploads/../é\tvil.png")
    assert str(err).startswith("évil.png: not an image")


@pytest.mark.parametrize("level", [65535, 0, 32768])
def test_a_uniform_16bit_image_keeps_its_brightness(tmp_path: Path, level: int):
    flat = Image.fromarray(np.full((80, 80), level, np.uint16))
    image = read_image(_save(flat, tmp_path / "flat.png"))
    np.testing.assert_allclose(image.pixels, level / 65535, rtol=1e-6)
    assert "uniform image" in " ".join(image.warnings)
