"""What the viewer draws on the film (display only): window/level, the lung outline, zone boundaries and zone tints
blended at a chosen opacity, and the colours of the zone-grade legend."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from PIL import Image
from scipy import ndimage as ndi
from skimage.segmentation import find_boundaries

from core.lungs.fields import LungFields
from core.lungs.zones import ZONE_NAMES

_OUTLINE_RGB = np.array([255.0, 220.0, 0.0])
_ZONE_LINE_RGB = np.array([0.0, 200.0, 255.0])
_TINT_RGB = np.array([255.0, 40.0, 0.0])
_MAX_TINT = 0.6  # a grade at vmax covers the film with 60 % tint at full opacity: the film stays readable
DISPLAY_MAX_SIDE = 1024  # px: the viewer works on a copy this size (the full image stays on the server)


def display_copy(pixels: np.ndarray, max_side: int = DISPLAY_MAX_SIDE) -> np.ndarray:
    """A float32 copy of the film whose longest side is at most ``max_side`` px (area-averaged), for drawing.

    A 3000-px DICOM is redrawn on every Window/Level change; the browser shows at most ``max_side`` px anyway.
    """
    pixels = np.asarray(pixels, dtype=np.float32)
    height, width = pixels.shape
    factor = max(height, width) / max_side
    if factor <= 1:
        return pixels
    size = (max(1, round(width / factor)), max(1, round(height / factor)))
    return np.asarray(Image.fromarray(pixels, mode="F").resize(size, Image.Resampling.BOX), dtype=np.float32)


def apply_window(pixels: np.ndarray, window: float, level: float) -> np.ndarray:
    """Window/level on the display scale: values in ``level ± window / 2`` are stretched to [0, 1], others clipped.

    Parameters
    ----------
    pixels : ndarray of float, shape (H, W)
        The film in [0, 1] (MONOCHROME2; a DICOM has had its own VOI window applied when read).
    window : float
        Width of the displayed range, in (0, 1]; 1 with level 0.5 shows the film unchanged.
    level : float
        Centre of the displayed range, in [0, 1].

    Returns
    -------
    ndarray of float32, shape (H, W), in [0, 1]
    """
    window = float(np.clip(window, 1e-3, 1.0))
    low = float(level) - window / 2
    return np.clip((np.asarray(pixels, dtype=np.float32) - low) / window, 0.0, 1.0)


def grade_colour(grade: float, vmax: float, opacity: float = 1.0, under: float = 0.5) -> str:
    """The colour a zone of ``grade`` takes over a mid-grey film, as ``#rrggbb`` (for the legend)."""
    alpha = np.clip(grade / vmax, 0.0, 1.0) * _MAX_TINT * opacity
    rgb = (1 - alpha) * 255.0 * under + alpha * _TINT_RGB
    return "#" + "".join(f"{int(round(c)):02x}" for c in rgb)


def overlay_rgb(
    pixels: np.ndarray,
    fields: LungFields,
    zone_values: Sequence[float] | None = None,
    vmax: float | None = None,
    opacity: float = 1.0,
) -> np.ndarray:
    """Draw the lung outline and zone boundaries (optionally zones tinted by value) over the X-ray.

    Parameters
    ----------
    pixels : ndarray of float, shape (H, W)
        The image in [0, 1] (any resolution, e.g. a display copy after window/level) of the film that ``fields``
        was computed from.
    fields : LungFields
    zone_values : sequence of 6 floats, optional
        One value per zone in ``ZONE_NAMES`` order (e.g. a zone grade); NaN leaves a zone untinted.
    vmax : float, optional
        Value drawn with the strongest tint; by default ``max(1, max(zone_values))``.
    opacity : float
        0 (overlay invisible) to 1 (tint and lines at full strength).

    Returns
    -------
    ndarray of uint8, shape (H, W, 3)
        RGB picture at the resolution of ``pixels``.
    """
    pixels = np.clip(np.asarray(pixels, dtype=np.float32), 0.0, 1.0)
    opacity = float(np.clip(opacity, 0.0, 1.0))
    height, width = pixels.shape
    zones_image = Image.fromarray(fields.zones.astype(np.uint8)).resize((width, height), Image.Resampling.NEAREST)
    zones = np.asarray(zones_image)
    rgb = np.repeat(pixels[:, :, None] * 255.0, 3, axis=2)
    if zone_values is not None:
        values = np.asarray(zone_values, dtype=float)
        if values.shape != (len(ZONE_NAMES),):
            raise ValueError(f"zone_values needs {len(ZONE_NAMES)} values, got shape {values.shape}")
        top = vmax if vmax is not None else max(1.0, float(np.nanmax(values)) if np.isfinite(values).any() else 1.0)
        strength = np.clip(np.nan_to_num(values, nan=0.0) / top, 0.0, 1.0) * _MAX_TINT * opacity
        alpha = np.r_[0.0, strength][zones][:, :, None]
        rgb = rgb * (1 - alpha) + _TINT_RGB * alpha
    thickness = max(1, round(max(height, width) / 400))
    zone_lines = ndi.binary_dilation(_inner_edges(zones), iterations=max(1, thickness - 1)) & (zones > 0)
    outline = ndi.binary_dilation(_inner_edges(zones > 0), iterations=thickness)
    for mask, colour in ((zone_lines & ~outline, _ZONE_LINE_RGB), (outline, _OUTLINE_RGB)):
        rgb[mask] = (1 - opacity) * rgb[mask] + opacity * colour
    return np.round(rgb).astype(np.uint8)


def grey_rgb(pixels: np.ndarray) -> np.ndarray:
    """(H, W) float in [0, 1] -> (H, W, 3) uint8."""
    grey = np.round(np.clip(pixels, 0.0, 1.0) * 255).astype(np.uint8)
    return np.repeat(grey[:, :, None], 3, axis=2)


def _inner_edges(labels: np.ndarray) -> np.ndarray:
    """Pixels of a labelled image whose label differs from a 4-neighbour's (label > 0 side only)."""
    return find_boundaries(labels, connectivity=1, mode="inner") & (labels > 0)
