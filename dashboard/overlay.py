"""Drawing the lung outline, the zone boundaries and zone tints over an X-ray (display only)."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from PIL import Image
from scipy import ndimage as ndi
from skimage.segmentation import find_boundaries

from core.lungs.fields import LungFields
from core.lungs.zones import ZONE_NAMES

_OUTLINE_RGB = (255, 220, 0)
_ZONE_LINE_RGB = (0, 200, 255)
_TINT_RGB = np.array([255.0, 40.0, 0.0])


def overlay_rgb(
    pixels: np.ndarray,
    fields: LungFields,
    zone_values: Sequence[float] | None = None,
    vmax: float | None = None,
) -> np.ndarray:
    """Draw the lung outline and zone boundaries (optionally zones tinted by value) over the X-ray.

    Parameters
    ----------
    pixels : ndarray of float, shape (H, W)
        The original image in [0, 1] that ``fields`` was computed from.
    fields : LungFields
    zone_values : sequence of 6 floats, optional
        One value per zone in ``ZONE_NAMES`` order (e.g. a severity score); NaN leaves a zone untinted.
    vmax : float, optional
        Value drawn with the strongest tint; by default ``max(1, max(zone_values))``.

    Returns
    -------
    ndarray of uint8, shape (H, W, 3)
        RGB picture at the original resolution.
    """
    pixels = np.clip(np.asarray(pixels, dtype=np.float32), 0.0, 1.0)
    height, width = pixels.shape
    zones_image = Image.fromarray(fields.zones.astype(np.uint8)).resize((width, height), Image.Resampling.NEAREST)
    zones = np.asarray(zones_image)
    rgb = np.repeat(pixels[:, :, None] * 255.0, 3, axis=2)
    if zone_values is not None:
        values = np.asarray(zone_values, dtype=float)
        if values.shape != (len(ZONE_NAMES),):
            raise ValueError(f"zone_values needs {len(ZONE_NAMES)} values, got shape {values.shape}")
        top = vmax if vmax is not None else max(1.0, float(np.nanmax(values)) if np.isfinite(values).any() else 1.0)
        alpha = np.r_[0.0, np.clip(np.nan_to_num(values, nan=0.0) / top, 0.0, 1.0) * 0.6][zones][:, :, None]
        rgb = rgb * (1 - alpha) + _TINT_RGB * alpha
    thickness = max(1, round(max(height, width) / 400))
    zone_lines = ndi.binary_dilation(_inner_edges(zones), iterations=max(1, thickness - 1)) & (zones > 0)
    outline = ndi.binary_dilation(_inner_edges(zones > 0), iterations=thickness)
    rgb[zone_lines & ~outline] = _ZONE_LINE_RGB
    rgb[outline] = _OUTLINE_RGB
    return np.round(rgb).astype(np.uint8)


def _inner_edges(labels: np.ndarray) -> np.ndarray:
    """Pixels of a labelled image whose label differs from a 4-neighbour's (label > 0 side only)."""
    return find_boundaries(labels, connectivity=1, mode="inner") & (labels > 0)
