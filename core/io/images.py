"""Read any supported X-ray file into the product's one image convention.

Every entry point (CLI, feature extraction, Streamlit upload) calls :func:`read_image`, which returns an
:class:`XRayImage`: a float32 ``(H, W)`` array in ``[0, 1]``, MONOCHROME2 (air dark, bone bright). 8-bit
sources map exactly as ``value / 255``, so :meth:`XRayImage.to_uint8` restores them bit for bit; deeper sources
(16-bit PNG/TIFF, 12/16-bit DICOM) keep their full depth until that final scaling. DICOM decoding lives in
:mod:`core.io.dicom`. Every unreadable input raises :class:`ImageReadError` naming the file, never a bare traceback.

Pillow's ``ImageFile.LOAD_TRUNCATED_IMAGES`` must stay ``False`` (its default): truncation detection relies on it.
"""

from __future__ import annotations

import hashlib
import io
import os
import unicodedata
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO

import numpy as np
from PIL import Image, UnidentifiedImageError

from core.io import jpeg, sources
from core.io.pixels import (
    COLOUR_PHOTO_NOTE,
    MAX_PIXELS,
    ImageReadError,
    block_mean,
    channels_differ,
    check_dimensions,
    describe_error,
    luma_601,
    reduction_factor,
    rescale_to_unit,
)

__all__ = ["ImageReadError", "XRayImage", "read_image", "sanitize_filename", "SUPPORTED_SUFFIXES"]


SUPPORTED_SUFFIXES = frozenset({".png", ".jpg", ".jpeg", ".jpe", ".tif", ".tiff", ".bmp", ".gif", ".webp",
                                ".jp2", ".j2k", ".dcm", ".dicom", ".dic"})
DICOM_SUFFIXES = frozenset({".dcm", ".dicom", ".dic"})

MAX_NAME_BYTES = 200
"""Longest sanitised name in UTF-8 bytes: under the 255-byte limit of common file systems, with room to spare."""


# Formats Pillow may open; an allow-list keeps plugins that shell out (EPS -> Ghostscript) or parse exotic
# containers out of reach of uploaded bytes. The JPEG plugin also opens MPO, the multi-picture JPEG of phones.
_PILLOW_FORMATS = ("PNG", "JPEG", "TIFF", "BMP", "GIF", "WEBP", "JPEG2000")
_DEEP_MODES = frozenset({"I;16", "I;16L", "I;16B", "I;16N", "I", "F"})
_MAGIC = ((b"\x89PNG\r\n\x1a\n", "PNG"), (b"\xff\xd8\xff", "JPEG"), (b"GIF87a", "GIF"), (b"GIF89a", "GIF"),
          (b"II*\x00", "TIFF"), (b"MM\x00*", "TIFF"), (b"BM", "BMP"), (b"\x00\x00\x00\x0cjP  ", "JPEG2000"),
          (b"\xff\x4f\xff\x51", "JPEG2000"))
_WINDOWS_RESERVED = frozenset({"CON", "PRN", "AUX", "NUL", *(f"COM{i}" for i in range(1, 10)),
                               *(f"LPT{i}" for i in range(1, 10))})
_FORBIDDEN_NAME_CHARS = frozenset('<>:"|?*')


@dataclass(eq=False)  # eq=False: element-wise ndarray comparison has no single truth value
class XRayImage:
    """A decoded radiograph in the product convention.

    Attributes
    ----------
    pixels : ndarray of float32, shape (H, W)
        Intensities in [0, 1], MONOCHROME2 (air dark, bone bright).
    source : str
        Display name (sanitised file name).
    format : str
        ``"PNG"``, ``"JPEG"``, ``"TIFF"``, ``"DICOM"`` or another Pillow format name.
    metadata : dict
        Only what is known, e.g. ``patient_id``, ``study_date`` (ISO), ``modality``, ``view_position``,
        ``body_part``, ``photometric``, ``bits_stored``, ``original_mode``, ``n_frames``.
    warnings : list of str
        Non-fatal notes (first frame of many used, CT modality, lateral view, colour photograph ...).
    sha256 : str
        Hex digest of the raw file bytes (image identity and cache key). Images built in memory without one get
        the digest of their float32 pixel buffer and shape, so two different arrays never share a key.
    """

    pixels: np.ndarray
    source: str
    format: str
    metadata: dict = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)
    sha256: str = ""

    def __post_init__(self) -> None:
        self.pixels = np.ascontiguousarray(self.pixels, dtype=np.float32)
        if self.pixels.ndim != 2:
            raise ValueError(f"pixels must be a 2-D (H, W) array, got shape {self.pixels.shape}")
        if not self.sha256:
            digest = hashlib.sha256(repr(self.pixels.shape).encode())
            digest.update(self.pixels.tobytes())
            self.sha256 = digest.hexdigest()

    def to_uint8(self) -> np.ndarray:
        """The image as (H, W) uint8, ``round(pixels * 255)``: exactly the original values of an 8-bit source."""
        return np.round(self.pixels * 255).astype(np.uint8)


def sanitize_filename(name: str) -> str:
    """A safe display / storage name from an untrusted file name.

    Directories (``/`` or ``\\``, as browsers on Windows may send) are dropped, control and bidi-override
    characters removed (they can disguise an extension), characters illegal on Windows replaced by ``_``,
    leading dots stripped (no hidden files, no ``..``), reserved device names prefixed. Non-ASCII letters are
    kept (NFC-normalised). The result is never empty and at most ``MAX_NAME_BYTES`` UTF-8 bytes, keeping the
    extension when it is shortened.
    """
    text = unicodedata.normalize("NFC", str(name)).replace("\\", "/").rsplit("/", 1)[-1]
    text = "".join("_" if ch in _FORBIDDEN_NAME_CHARS else ch for ch in text
                   if not unicodedata.category(ch).startswith("C"))
    text = text.strip().lstrip(".").strip()
    stem, dot, suffix = text.rpartition(".")
    if not dot or len(suffix) > 16 or not stem:
        stem, suffix = text, ""
    if stem.upper() in _WINDOWS_RESERVED:
        stem = "_" + stem
    tail = f".{suffix}" if suffix else ""
    while stem and len((stem + tail).encode("utf-8")) > MAX_NAME_BYTES:
        stem = stem[:-1]
    stem = stem.rstrip(" .")
    return (stem + tail) if stem else "image" + tail


def read_image(source: str | os.PathLike | bytes | BinaryIO, name: str | None = None) -> XRayImage:
    """Read a radiograph from a path, raw bytes or a file-like object (e.g. a Streamlit ``UploadedFile``).

    Parameters
    ----------
    source : str, PathLike, bytes or binary file-like
        The file. A file-like is read whole (``getvalue()`` when it has one, so a consumed upload still works).
    name : str, optional
        Display name; defaults to the path's or the file object's name. Always passed through
        :func:`sanitize_filename`.

    Returns
    -------
    XRayImage
        ``pixels`` float32 (H, W) in [0, 1], MONOCHROME2.

    Raises
    ------
    ImageReadError
        For every unreadable input (missing, empty, not an image, truncated, corrupt, too small, too large,
        DICOM without pixel data ...), with the sanitised file name and the reason.
    """
    data, display = _read_source(source, name)
    digest = hashlib.sha256(data).hexdigest()
    if not data:
        raise ImageReadError(display, "empty file (0 bytes)")
    try:
        if _looks_like_dicom(data, display):
            from core.io import (
                dicom as dicom_io,  # imported on demand: pydicom is only loaded when a DICOM arrives
            )

            pixels, metadata, notes = dicom_io.decode_dicom(data, display)
            image_format = "DICOM"
        else:
            pixels, image_format, metadata, notes = _decode_pillow(data, display)
    except ImageReadError:
        raise
    except MemoryError as err:
        raise ImageReadError(display, "not enough memory to decode this image") from err
    except Exception as err:  # any decoder failure must reach the user as a named, readable error
        raise ImageReadError(display, f"could not decode image ({describe_error(err)})") from err
    if pixels.size and pixels.min() == pixels.max():
        notes.append("uniform image: every pixel has the same value")
    return XRayImage(pixels=pixels, source=display, format=image_format, metadata=metadata, warnings=notes,
                     sha256=digest)


def _read_source(source: str | os.PathLike | bytes | BinaryIO, name: str | None) -> tuple[bytes, str]:
    """The raw bytes (at most ``sources.MAX_FILE_BYTES``) and the sanitised display name of any accepted source."""
    if isinstance(source, (bytes, bytearray, memoryview)):
        display = sanitize_filename(name or "upload")
        return sources.check_size(bytes(source), display), display
    if isinstance(source, (str, os.PathLike)):
        display = sanitize_filename(name or sources.display_name_of(source))
        return sources.read_path(source, display), display
    if hasattr(source, "read"):
        display = sanitize_filename(name or sources.display_name_of(source))
        return sources.read_upload(source, display), display
    raise TypeError(f"read_image expects a path, bytes or a binary file object, not {type(source).__name__}")


def _sniff_format(data: bytes) -> str | None:
    """Format named by the file's magic number, whatever its extension says."""
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return "WEBP"
    return next((fmt for magic, fmt in _MAGIC if data.startswith(magic)), None)


def _looks_like_dicom(data: bytes, display: str) -> bool:
    """DICOM by its 'DICM' preamble; without one, by a DICOM suffix or a raw data set's first group (0002/0008)."""
    if data[128:132] == b"DICM":
        return True
    if _sniff_format(data) is not None:  # a misnamed PNG/JPEG is still decoded as what it is
        return False
    # a raw data set starts with group 0002 or 0008, little- or big-endian (Explicit VR Big Endian, retired but met)
    return Path(display).suffix.lower() in DICOM_SUFFIXES or data[:2] in (b"\x02\x00", b"\x08\x00", b"\x00\x02",
                                                                          b"\x00\x08")


def _decode_pillow(data: bytes, source: str) -> tuple[np.ndarray, str, dict, list[str]]:
    """Decode a raster file with Pillow: size checks before decoding, decode to at most ``MAX_DECODED_SIDE``,
    EXIF orientation, grayscale."""
    image = _open_pillow(data, source)
    with image:
        image_format = "JPEG" if image.format == "MPO" else str(image.format)
        check_dimensions(source, *image.size)
        original_size = image.size
        if image_format == "JPEG":  # Pillow hides libjpeg's warnings: a patched header decodes to garbage
            problem = jpeg.decoder_warning(data, *image.size, components=len(image.getbands()))
            if problem is not None:
                raise ImageReadError(source, problem)
        notes: list[str] = []
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", Image.DecompressionBombWarning)  # MAX_PIXELS was checked above
                n_frames = int(getattr(image, "n_frames", 1))
                if image_format == "PNG":  # chunk CRCs and the IEND marker: a cut or damaged PNG can still inflate
                    with Image.open(io.BytesIO(data), formats=("PNG",)) as check:
                        check.verify()
                factor = reduction_factor(*image.size)
                if image_format == "JPEG" and factor > 1:  # scaled in the DCT: the full size is never decoded
                    image.draft(image.mode, (-(-image.size[0] // factor), -(-image.size[1] // factor)))
                image.load()  # decode now, so truncation surfaces here and not in a later module
        except Exception as err:
            raise _decoding_error(source, image_format, err) from err
        if n_frames > 1:
            notes.append(f"multi-frame {image_format}: first frame used (of {n_frames})")
        metadata = {"original_mode": image.mode, "n_frames": n_frames}
        bits = {"1": 1, "I;16": 16, "I;16L": 16, "I;16B": 16, "I;16N": 16, "I": 32, "F": 32}.get(image.mode, 8)
        metadata["bits_stored"] = bits
        if reduction_factor(*original_size) > 1:
            metadata["original_size"] = list(original_size)
        try:
            orientation = int(image.getexif().get(0x0112, 1))
        except Exception as err:  # a damaged EXIF block must not cost the pixels
            notes.append(f"EXIF orientation unreadable and ignored ({describe_error(err)})")
            orientation = 1
        if orientation != 1:
            metadata["exif_orientation"] = orientation
        pixels = _pillow_to_unit(image, notes, reduction_factor(*image.size))
        return _exif_upright(pixels, orientation), image_format, metadata, notes


def _exif_upright(pixels: np.ndarray, orientation: int) -> np.ndarray:
    """Apply an EXIF orientation (1-8) to the decoded pixels, as ``ImageOps.exif_transpose`` would."""
    turned = {2: pixels[:, ::-1], 3: pixels[::-1, ::-1], 4: pixels[::-1], 5: pixels.T, 6: np.rot90(pixels, -1),
              7: np.rot90(pixels, 2).T, 8: np.rot90(pixels, 1)}.get(orientation, pixels)
    return np.ascontiguousarray(turned)


def _open_pillow(data: bytes, source: str) -> Image.Image:
    """Parse the header only (size, mode, format); nothing is decoded yet."""
    Image.init()  # register every plugin: an allow-list naming a not-yet-loaded one (TIFF, WEBP) raises KeyError
    sniffed = _sniff_format(data)
    try:
        with warnings.catch_warnings():
            # Pillow's own bomb warning fires from 89 Mpx; our MAX_PIXELS check replaces it. (The filter change
            # is process-wide while it lasts; a concurrent reader can at worst also miss that one warning.)
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            return Image.open(io.BytesIO(data), formats=_PILLOW_FORMATS)
    except Image.DecompressionBombError as err:
        raise ImageReadError(source, f"image too large (decompression bomb?): more than {MAX_PIXELS:,} pixels "
                                     "declared in the header") from err
    except UnidentifiedImageError as err:
        if sniffed:
            raise ImageReadError(source, f"corrupt {sniffed} file (header unreadable or truncated)") from err
        raise ImageReadError(source, "not an image: the content is not PNG, JPEG, TIFF, BMP, GIF, WebP, "
                                     "JPEG 2000 or DICOM") from err
    except Exception as err:  # a plugin may fail inside its header parser (BMP variants, short PNG chunks)
        raise _decoding_error(source, sniffed or "image", err) from err


def _decoding_error(source: str, image_format: str, err: Exception) -> ImageReadError:
    """Truncated or corrupt, from what the decoder said."""
    message = describe_error(err)
    if "truncated" in message.lower() or isinstance(err, EOFError):
        return ImageReadError(source, f"truncated {image_format} file (image data ends early)")
    return ImageReadError(source, f"corrupt {image_format} file ({message})")


def _pillow_to_unit(image: Image.Image, notes: list[str], factor: int = 1) -> np.ndarray:
    """Pillow image of any mode -> float32 (H, W) in [0, 1]; 8-bit exactly value/255, deeper modes min-max.

    ``factor`` > 1 averages ``factor`` x ``factor`` blocks first (8-bit modes in Pillow, deeper ones by bands of
    rows), so the full-size image is never converted to floats.
    """
    if image.mode in _DEEP_MODES:
        if factor == 1:
            return rescale_to_unit(np.asarray(image))  # full 16/32-bit depth up to this single scaling
        width, height = image.size
        return rescale_to_unit(block_mean(lambda top, bottom: np.asarray(image.crop((0, top, width, bottom))),
                                          height, width, factor))
    if factor > 1:
        if image.mode in ("1", "P", "PA"):  # bits and palette indices cannot be averaged: their colours can
            image = image.convert("L" if image.mode == "1" else "RGBA" if _has_alpha(image) else "RGB")
        image = image.reduce(factor)
    if image.mode in ("1", "L"):
        return np.asarray(image.convert("L"), dtype=np.float32) / np.float32(255)
    if _has_alpha(image):
        rgba = image.convert("RGBA")
        if rgba.getextrema()[3][0] < 255:
            # Transparent areas of an exported radiograph are outside the exposure: black is air/no signal
            # in MONOCHROME2, so composite on black rather than on a white page background.
            notes.append("transparent pixels composited on black")
        rgb = Image.alpha_composite(Image.new("RGBA", rgba.size, (0, 0, 0, 255)), rgba).convert("RGB")
    else:
        rgb = image.convert("RGB")  # palette, CMYK, YCbCr, LAB, HSV ...
    channels = np.asarray(rgb)
    if channels_differ(channels):
        notes.append(COLOUR_PHOTO_NOTE)
    return luma_601(channels).astype(np.float32) / np.float32(255)


def _has_alpha(image: Image.Image) -> bool:
    return "A" in image.mode or "a" in image.mode or "transparency" in image.info
