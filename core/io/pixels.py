"""Pixel helpers shared by the image readers: the error type, size limits, luma, colour test and scaling.

Both the Pillow reader (:mod:`core.io.images`) and the DICOM decoder (:mod:`core.io.dicom`) use these, so they
live below both and neither reader imports the other's internals.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

# The warning a genuinely coloured image gets (the acceptance check looks for it).
COLOUR_PHOTO_NOTE = "colour image whose channels differ (a photograph, not a radiograph?): converted to luma"


MIN_SIDE = 64
"""Smallest accepted side in pixels: below it no lung field or texture can be measured."""


MAX_PIXELS = 100_000_000
"""Decompression-bomb limit, checked on the declared size before any decoding.

The largest chest detectors (43 x 43 cm at 100 um pitch) give about 4300 x 4300 = 18.5 Mpx, so 100 Mpx leaves
5x headroom for any real radiograph while bounding memory: a tiny crafted file can declare 100 000 x 100 000
pixels, and 100 Mpx already costs 400 MB as float32.
"""


MAX_DECODED_SIDE = 1024
"""Longest side, in pixels, of the image that decoding keeps; larger images are reduced while they are decoded.

Everything downstream works on smaller copies (lung fields at 256 px, the embedding at 227 px) and the dashboard
draws at most this size, so nothing needs more. Reducing during decoding (JPEG in its DCT, the other formats by an
integer block average over bands of rows) means a 100-Mpx image never exists as a 100-Mpx float array: 1024 px as
float32 is 4 MB, whatever the file declared.
"""


COLOUR_SPREAD_LIMIT = 8 / 255
"""Mean per-pixel channel spread (max - min, as a fraction of full scale) above which a colour image is taken
for a photograph: JPEG chroma noise on a gray radiograph stays well below 8 levels of 255, a photo does not."""


class ImageReadError(ValueError):
    """One typed error for every unreadable input.

    Attributes
    ----------
    source : str
        The (sanitised) file name shown to the user.
    reason : str
        What is wrong, in words a radiologist can act on.
    """

    def __init__(self, source: str, reason: str):
        # one printable line whatever a decoder or a damaged header put in the text (logs, UI, CSV reports)
        reason = " ".join("".join(ch if ch.isprintable() else " " for ch in str(reason)).split())
        super().__init__(f"{source}: {reason}")
        self.source = source
        self.reason = reason

    def __reduce__(self):  # keep the two attributes across pickling (dask / joblib workers)
        return type(self), (self.source, self.reason)


def luma_601(rgb: np.ndarray) -> np.ndarray:
    """ITU-R 601 luma of an (H, W, 3) array, as Pillow's ``convert("L")`` computes it.

    uint8 input uses Pillow's integer formula (so a gray RGB image gives back its exact values); other dtypes
    give float64 ``0.299 R + 0.587 G + 0.114 B``.
    """
    if rgb.dtype == np.uint8:
        channels = rgb.astype(np.uint32)
        weighted = channels[..., 0] * 19595 + channels[..., 1] * 38470 + channels[..., 2] * 7471 + 0x8000
        return (weighted >> 16).astype(np.uint8)
    return rgb[..., :3].astype(np.float64) @ np.array([0.299, 0.587, 0.114])


def channels_differ(rgb: np.ndarray) -> bool:
    """Whether an (H, W, 3) image is genuinely coloured (a photograph) rather than gray stored as RGB."""
    full_scale = np.iinfo(rgb.dtype).max if np.issubdtype(rgb.dtype, np.integer) else max(float(np.ptp(rgb)), 1e-12)
    spread = rgb.max(axis=-1).astype(np.float64) - rgb.min(axis=-1)
    return bool(spread.mean() / full_scale > COLOUR_SPREAD_LIMIT)


def rescale_to_unit(values: np.ndarray, low: float | None = None, high: float | None = None,
                    full_scale: float | None = None) -> np.ndarray:
    """Map ``[low, high]`` linearly onto ``[0, 1]`` (clipped) as float32; defaults are the image min and max.

    A decreasing range (``low > high``) inverts. A constant image (``low == high``) keeps its brightness as a
    fraction of ``full_scale`` (default: the integer dtype's maximum, 1 for floats), so an all-white 16-bit image
    stays white instead of turning black.
    """
    values = np.asarray(values)
    if full_scale is None:
        full_scale = float(np.iinfo(values.dtype).max) if values.dtype.kind in "ui" else 1.0
    # float32 is exact for up to 16-bit integers and halves the memory of a 100 Mpx image; else float64
    small_int = values.dtype.kind in "uib" and values.dtype.itemsize <= 2
    values = values.astype(np.float32 if small_int or values.dtype == np.float32 else np.float64, copy=False)
    if not small_int and not np.isfinite(values).all():
        raise ValueError("pixel data contains NaN or infinite values")
    low = float(values.min()) if low is None else float(low)
    high = float(values.max()) if high is None else float(high)
    if high == low:
        return np.full(values.shape, np.clip(low / full_scale, 0.0, 1.0), dtype=np.float32)
    scaled = (values - values.dtype.type(low)) / values.dtype.type(high - low)
    return np.clip(scaled, 0.0, 1.0, out=scaled).astype(np.float32, copy=False)


def reduction_factor(width: int, height: int) -> int:
    """Smallest integer factor that brings the longest side to at most ``MAX_DECODED_SIDE`` pixels (1: keep)."""
    return max(1, -(-max(width, height) // MAX_DECODED_SIDE))


def block_mean(read_rows: Callable[[int, int], np.ndarray], height: int, width: int, factor: int) -> np.ndarray:
    """Mean of every ``factor`` x ``factor`` block of an image read in bands of rows, as float32.

    Parameters
    ----------
    read_rows : callable(start, stop) -> ndarray, shape (stop - start, width[, channels])
        The image's rows ``start:stop`` in any numeric dtype (a slice of an array, a crop of a Pillow image, a
        LUT applied to stored values ...). Only one band of about 4 Mpx is in memory at a time.
    height, width : int
        Size of the image in pixels.
    factor : int
        Block side in pixels. Blocks at the right and bottom edges average the pixels they hold.

    Returns
    -------
    ndarray of float32, shape (ceil(height / factor), ceil(width / factor)[, channels])
    """
    out_height = -(-height // factor)
    column_starts = np.arange(0, width, factor)
    column_counts = np.diff(np.append(column_starts, width)).astype(np.float64)
    band = max(1, (4 << 20) // (width * factor))  # output rows per band
    rows = []
    for first in range(0, out_height, band):
        start, stop = first * factor, min(height, (first + band) * factor)
        values = np.asarray(read_rows(start, stop), dtype=np.float64)
        row_starts = np.arange(0, stop - start, factor)
        row_counts = np.diff(np.append(row_starts, stop - start)).astype(np.float64)
        sums = np.add.reduceat(np.add.reduceat(values, row_starts, axis=0), column_starts, axis=1)
        counts = np.multiply.outer(row_counts, column_counts)
        rows.append((sums / counts.reshape(counts.shape + (1,) * (sums.ndim - 2))).astype(np.float32))
    return np.concatenate(rows, axis=0)


def check_dimensions(source: str, width: int, height: int) -> None:
    """Reject, before any decoding, images too small to analyse or large enough to be a decompression bomb."""
    if width * height > MAX_PIXELS:
        raise ImageReadError(source, f"image too large: {width}x{height} = {width * height:,} pixels exceeds the "
                                     f"{MAX_PIXELS:,}-pixel limit (possible decompression bomb)")
    if min(width, height) < MIN_SIDE:
        raise ImageReadError(source, f"image too small: {width}x{height} pixels "
                                     f"(each side must be at least {MIN_SIDE})")


def describe_error(err: BaseException, limit: int = 200) -> str:
    """``Type: message`` of an exception, shortened for display."""
    text = " ".join(str(err).split())
    text = text if len(text) <= limit else text[: limit - 3] + "..."
    return f"{type(err).__name__}: {text}" if text else type(err).__name__
