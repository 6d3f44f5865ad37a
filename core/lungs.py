"""Classical lung-field localisation on frontal chest X-rays and the six Brixia-style zones.

Why: public COVID-19 and Normal images mostly come from different hospitals, so anything computed outside
the lungs (burned-in text, markers, collimation borders, exposure) can identify the hospital rather than
the disease.  Interpretable features are therefore computed on the lung fields only, on a per-image
normalised intensity scale.  No pretrained segmentation network is available (offline), and no lung-mask
ground truth exists here, so localisation is classical: intensity, morphology and anatomical priors.

Conventions
-----------
* Working image: the input is resized with its aspect ratio kept so that its longest side is
  ``WORK_SIZE`` pixels (no padding, small images are upsampled); ``LungFields.scale`` converts working
  pixels back to original pixels.
* Radiological convention: the image is viewed as if facing the patient, so the patient's RIGHT lung is on
  the IMAGE LEFT (small column indices).  ``right_*`` zones are therefore on the image-left side.
* Zones are numbered 1..6 in ``ZONE_NAMES`` order, 0 = outside the lungs.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
from PIL import Image
from scipy import ndimage as ndi
from skimage import filters, measure, morphology


WORK_SIZE = 256
ZONE_NAMES = ("right_upper", "right_middle", "right_lower", "left_upper", "left_middle", "left_lower")

# Plausible total lung area as a fraction of the working image; outside it the template is used.
_AREA_FRACTION_RANGE = (0.08, 0.60)
# Plausible ratio of the smaller to the larger lung area (the left lung is smaller: heart).
_MIN_SIDE_RATIO = 0.30


@dataclass
class LungFields:
    """Lung fields of one image at working resolution.

    Attributes
    ----------
    mask : ndarray of bool, shape (h, w)
        Both lung fields.
    zones : ndarray of int8, shape (h, w)
        0 outside the lungs, ``k + 1`` inside zone ``ZONE_NAMES[k]``.
    image : ndarray of float32, shape (h, w)
        The working image, normalised per image (features are computed on it).
    quality : dict
        ``lung_area_fraction``, ``left_right_ratio`` (image-left / image-right area), ``n_components``,
        ``fallback_used`` and ``ok`` (mask plausible without the template fallback).
    scale : float
        Original pixels per working pixel.
    midline : int
        Column of the midline (mediastinum) in working pixels.
    """

    mask: np.ndarray
    zones: np.ndarray
    image: np.ndarray
    quality: dict = field(default_factory=dict)
    scale: float = 1.0
    midline: int = 0


def to_working_size(pixels: np.ndarray, size: int = WORK_SIZE) -> tuple[np.ndarray, float]:
    """Resize an image so that its longest side is ``size`` pixels, aspect ratio kept.

    Parameters
    ----------
    pixels : ndarray of float, shape (H, W)
    size : int
        Longest side of the result in pixels.

    Returns
    -------
    resized : ndarray of float32, shape (h, w)
        Bilinear (area-aware when shrinking) resampling of ``pixels``.
    scale : float
        ``max(H, W) / size``: original pixels per resized pixel.
    """
    pixels = np.asarray(pixels, dtype=np.float32)
    if pixels.ndim != 2:
        raise ValueError(f"expected a 2-D grayscale image, got shape {pixels.shape}")
    height, width = pixels.shape
    scale = max(height, width) / size
    new_shape = (max(1, round(height / scale)), max(1, round(width / scale)))
    if new_shape == pixels.shape:
        return pixels.copy(), 1.0
    resized = Image.fromarray(pixels, mode="F").resize(new_shape[::-1], Image.Resampling.BILINEAR)
    return np.asarray(resized, dtype=np.float32), scale


def normalise_intensity(
    pixels: np.ndarray, region: np.ndarray | None = None, low: float = 1.0, high: float = 99.0
) -> np.ndarray:
    """Map an image linearly so that two robust percentiles become 0 and 1, then clip to [0, 1].

    Percentile scaling (rather than CLAHE or histogram equalisation) is used because it is exactly
    invariant to any increasing affine change of the input grey levels (exposure, window, bit depth)
    while keeping the disease signal that opacities are *brighter than the rest of the thorax*;
    local equalisation would flatten exactly that.

    Parameters
    ----------
    pixels : ndarray of float, shape (H, W)
    region : ndarray of bool, shape (H, W), optional
        Pixels whose percentiles define the scale, e.g. the thorax.  By default all pixels except those
        equal to the image minimum or maximum (padding, saturated burned-in text).
    low, high : float
        Percentiles (0-100) mapped to 0 and 1.

    Returns
    -------
    ndarray of float32, shape (H, W), values in [0, 1].
    """
    pixels = np.asarray(pixels, dtype=np.float32)
    if region is None:
        region = (pixels > pixels.min()) & (pixels < pixels.max())
    values = pixels[region] if np.count_nonzero(region) >= 16 else pixels.ravel()
    lo, hi = np.percentile(values, [low, high])
    if hi - lo < 1e-6:
        return np.zeros_like(pixels)
    return np.clip((pixels - lo) / (hi - lo), 0.0, 1.0).astype(np.float32)


# --- localisation ------------------------------------------------------------------------------------
# All localisation runs on a small copy (longest side _SEG_SIZE px): the lungs are large structures,
# and the flooding below is the slow step.  Pixel sizes below are for that copy.
_SEG_SIZE = 128


def _midline(smooth: np.ndarray) -> int:
    """Column of the spine/mediastinum: the brightest column band in the central part of the thorax."""
    height, width = smooth.shape
    profile = smooth[int(0.2 * height) : int(0.7 * height)].mean(axis=0)
    profile = ndi.uniform_filter1d(profile, max(3, width // 25))
    lo, hi = int(0.3 * width), int(0.7 * width)
    return lo + int(np.argmax(profile[lo:hi]))


def _side_columns(width: int, midline: int, side: int, inner: float, outer: float) -> slice:
    """Columns of one hemithorax between ``inner`` and ``outer`` (fractions of the width) from the midline."""
    if side == 0:  # image left = patient's right
        return slice(max(0, midline - int(outer * width)), max(1, midline - int(inner * width)))
    return slice(min(width - 1, midline + int(inner * width) + 1), min(width, midline + int(outer * width) + 1))


def _largest_component(mask: np.ndarray) -> np.ndarray:
    labels, count = ndi.label(mask)
    if count <= 1:
        return labels > 0
    sizes = np.bincount(labels.ravel())
    sizes[0] = 0
    return labels == int(np.argmax(sizes))


def _aerated_side(smooth: np.ndarray, gradient: np.ndarray, midline: int, side: int) -> np.ndarray:
    """Aerated (dark) lung of one hemithorax, grown from its darkest core.

    The darkest connected core of the hemithorax is flooded upwards in grey level (morphological
    reconstruction by erosion gives, for every pixel, the level at which it joins the core).  The level is
    capped before the region leaks into the mediastinum, the neck/abdomen borders or along a whole side
    border (outside air), and among the remaining levels the one whose region boundary has the strongest
    mean gradient is chosen: the lung edge is the strongest closed edge around the core.
    """
    height, width = smooth.shape
    rows = slice(int(0.15 * height), int(0.65 * height))
    cols = _side_columns(width, midline, side, 0.05, 0.40)
    window = smooth[rows, cols]
    seed = np.zeros_like(smooth, dtype=bool)
    if window.size == 0:
        return seed
    seed[rows, cols] = window < np.quantile(window, 0.2)
    seed = _largest_component(seed)
    if not seed.any():
        return seed
    marker = np.where(seed, smooth, smooth.max())
    flood = morphology.reconstruction(marker, smooth, method="erosion")

    strip = slice(max(0, midline - max(1, width // 50)), midline + max(1, width // 50) + 1)
    lateral = flood[:, 0] if side == 0 else flood[:, -1]
    leak = min(
        flood[:, strip].min(),
        np.sort(flood[0])[max(1, int(0.1 * width))],
        np.sort(flood[-1])[max(1, int(0.1 * width))],
        np.sort(lateral)[max(1, int(0.4 * height))],
    )
    start = float(smooth[seed].max())
    if leak <= start:
        return seed
    levels = np.linspace(start, leak, 48, endpoint=False)[1:]
    # Pixel p lies on the boundary of {flood < T} for levels flood[p] < T <= max(flood of 4-neighbours).
    neighbour_max = ndi.grey_dilation(flood, footprint=ndi.generate_binary_structure(2, 1))
    first = np.searchsorted(levels, flood.ravel(), side="right")
    last = np.searchsorted(levels, neighbour_max.ravel(), side="right")
    on_edge = first < last
    n_levels = len(levels) + 1
    grad = gradient.ravel()[on_edge]
    edge_sum = np.cumsum(np.bincount(first[on_edge], grad, n_levels) - np.bincount(last[on_edge], grad, n_levels))
    edge_count = np.cumsum(np.bincount(first[on_edge], None, n_levels) - np.bincount(last[on_edge], None, n_levels))
    area = np.cumsum(np.bincount(first, None, n_levels))
    score = np.where((edge_count[:-1] > 0) & (area[:-1] < 0.3 * height * width),
                     edge_sum[:-1] / np.maximum(edge_count[:-1], 1), -1.0)
    best = int(np.argmax(score))
    return flood < levels[best]


def _row_filled(evidence: np.ndarray) -> np.ndarray:
    """Lung field from aerated evidence: each row filled between its outermost evidence pixels.

    Filling rows bridges the rib shadows and small opacities; the row extents are median-filtered along
    the height so that a single stray row cannot make a spike.  Medial concavities (the heart) are kept.
    """
    field_mask = np.zeros_like(evidence, dtype=bool)
    rows = np.flatnonzero(evidence.any(axis=1))
    if rows.size < 3:
        return field_mask
    ys = np.arange(rows[0], rows[-1] + 1)
    has = evidence[ys].any(axis=1)
    width = evidence.shape[1]
    left = np.where(has, np.argmax(evidence[ys], axis=1), np.nan)
    right = np.where(has, width - 1 - np.argmax(evidence[ys, ::-1], axis=1), np.nan)
    known = np.flatnonzero(has)
    left = np.interp(np.arange(ys.size), known, left[known])
    right = np.interp(np.arange(ys.size), known, right[known])
    size = max(3, (ys.size // 12) | 1)
    left = ndi.median_filter(left, size, mode="nearest")
    right = ndi.median_filter(right, size, mode="nearest")
    cols = np.arange(width)
    field_mask[ys] = (cols[None, :] >= left[:, None]) & (cols[None, :] <= right[:, None])
    return field_mask


def _template_side(shape: tuple[int, int], midline: int, side: int) -> np.ndarray:
    """Anatomical prior for one lung: an ellipse in the usual place of a hemithorax (fallback only)."""
    height, width = shape
    yy, xx = np.mgrid[0:height, 0:width]
    centre_x = midline + (-1 if side == 0 else 1) * 0.2 * width
    return ((yy - 0.45 * height) / (0.28 * height)) ** 2 + ((xx - centre_x) / (0.13 * width)) ** 2 <= 1.0


def _side_plausible(side_mask: np.ndarray) -> bool:
    height, width = side_mask.shape
    fraction = side_mask.sum() / (height * width)
    if not 0.03 <= fraction <= 0.35:
        return False
    rows = np.flatnonzero(side_mask.any(axis=1))
    return (rows[-1] - rows[0]) >= 0.25 * height
