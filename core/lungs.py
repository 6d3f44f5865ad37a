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
from skimage import draw, morphology


WORK_SIZE = 256
ZONE_NAMES = ("right_upper", "right_middle", "right_lower", "left_upper", "left_middle", "left_lower")

# Plausible total lung area as a fraction of the working image; outside it the template is used.
_AREA_FRACTION_RANGE = (0.08, 0.60)
# Plausible ratio of the smaller to the larger lung area (the left lung is smaller: heart).
_MIN_SIDE_RATIO = 0.30
# A lung smaller than this fraction of the other one is completed by the other's mirror image.
_MIRROR_BELOW = 0.45


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
# Localisation runs on a small copy (longest side _SEG_SIZE px): lungs are large structures.
# The pixel sizes below are for that copy.
_SEG_SIZE = 128
_RIB_BRIDGE = morphology.disk(3).astype(bool)
_DRAIN_BAND = 0.03  # edge band (fraction of the size) through which dark regions drain
_N_RAYS = 72  # boundary rays per lung
_OUTER_WINDOW = 8  # px beyond a candidate boundary that must be brighter than the lung inside it
_MAX_STEP = 4  # px of radius change allowed between neighbouring rays
_STEP_PENALTY = 0.01  # boundary-score penalty per px of radius change (normalised grey levels)
_CORE_FRACTION = 0.15  # aerated core: basin depth above this fraction of the side's 99th percentile
_MAX_EXTENSION = 0.2  # the boundary may lie this fraction of the height beyond the aerated core


def _midline(smooth: np.ndarray) -> int:
    """Column of the spine/mediastinum: the brightest column band in the central 40 % of the width."""
    height, width = smooth.shape
    profile = smooth[int(0.2 * height) : int(0.7 * height)].mean(axis=0)
    profile = ndi.uniform_filter1d(profile, max(3, width // 25))
    lo, hi = int(0.3 * width), int(0.7 * width)
    return lo + int(np.argmax(profile[lo:hi]))


def _basin_depth(smooth: np.ndarray, lateral_open: bool = True) -> np.ndarray:
    """Depth of every pixel below the lowest rim separating it from the image border.

    Grey-level hole filling (reconstruction by erosion from the border): the lungs are dark basins
    enclosed by the brighter chest wall, mediastinum and diaphragm and get a large depth, while air
    outside the body, burned-in text on it and collimation borders reach the border and get none.
    The drain is a band of ``_DRAIN_BAND`` of the size along the edges, not just the outermost pixels,
    so that a thin bright collimation frame cannot enclose the air outside the body.  With
    ``lateral_open=False`` only the top and bottom bands drain, for lungs cut by a side border.
    """
    band = max(1, round(_DRAIN_BAND * max(smooth.shape)))
    marker = smooth.copy()
    marker[band:-band, band if lateral_open else 0 : -band if lateral_open else None] = smooth.max()
    return morphology.reconstruction(marker, smooth, method="erosion") - smooth


def _largest_component(mask: np.ndarray) -> np.ndarray:
    labels, count = ndi.label(mask)
    if count <= 1:
        return labels > 0
    sizes = np.bincount(labels.ravel())
    sizes[0] = 0
    return labels == int(np.argmax(sizes))


def _aerated_core(depth: np.ndarray, own_side: np.ndarray) -> np.ndarray:
    """The largest deep basin of one hemithorax at lung height: the aerated part of that lung.

    Basins starting below 55 % of the height (stomach or bowel gas) or centred outside 15-75 % of the
    height (labels, neck, abdomen) are not lungs.
    """
    side_depth = np.where(own_side, depth, 0.0)
    positive = side_depth[side_depth > 0]
    core = np.zeros(depth.shape, dtype=bool)
    if positive.size < 20:
        return core
    deep = side_depth > _CORE_FRACTION * np.percentile(positive, 99)
    # closing bridges the ribs that split a lung into intercostal basins; opening drops thin leaks
    deep = ndi.binary_opening(ndi.binary_closing(deep, _RIB_BRIDGE, border_value=0) & own_side)
    labels, count = ndi.label(deep)
    if count == 0:
        return core
    index = np.arange(1, count + 1)
    rows = np.arange(depth.shape[0], dtype=float)[:, None] * np.ones((1, depth.shape[1]))
    areas = ndi.sum_labels(np.ones(depth.shape), labels, index)
    centre = ndi.mean(rows, labels, index) / depth.shape[0]
    top = ndi.minimum(rows, labels, index) / depth.shape[0]
    valid = (top < 0.55) & (centre >= 0.15) & (centre <= 0.75) & (areas >= 0.005 * depth.size)
    if not valid.any():
        return core
    return labels == index[valid][np.argmax(areas[valid])]


def _lung_cores(smooth: np.ndarray, own_side: tuple[np.ndarray, np.ndarray]) -> list[np.ndarray]:
    """Aerated core of each lung; a lung cut by the image side border is recovered from a second depth map.

    A lung touching a side border of a tightly cropped image drains through it and gets little depth.
    Its core from the depth map that drains through the top and bottom rows only is used instead when
    it is much larger, lies at lung height and is not much darker than the other lung (air outside the
    body, which that map can also enclose, is darker than lung).
    """
    height = smooth.shape[0]
    open_depth = _basin_depth(smooth)
    cores = [_aerated_core(open_depth, side) for side in own_side]
    closed_depth = _basin_depth(smooth, lateral_open=False)
    chosen = list(cores)
    for side in (0, 1):
        closed = _aerated_core(closed_depth, own_side[side])
        other = cores[1 - side]
        if not closed.any() or not other.any() or closed.sum() < 2 * cores[side].sum():
            continue
        centre_row = ndi.center_of_mass(closed)[0] / height
        if 0.2 <= centre_row <= 0.75 and smooth[closed].mean() >= smooth[other].mean() - 0.12:
            chosen[side] = closed
    return chosen


def _best_circular_path(score: np.ndarray) -> np.ndarray:
    """Radius index per ray maximising the summed score with small radius steps between neighbours.

    Dynamic programming over the rays taken twice round the circle; the second turn, which starts from
    the best state of the first, is returned (closes the contour in practice).
    """
    n_rays, n_radii = score.shape
    offsets = np.arange(-_MAX_STEP, _MAX_STEP + 1)
    order = np.argsort(np.abs(offsets), kind="stable")  # ties go to the smallest step
    steps, penalty = offsets[order], _STEP_PENALTY * np.abs(offsets[order])
    tiled = np.concatenate([score, score])
    total = tiled[0].copy()
    back = np.zeros(tiled.shape, dtype=np.int64)
    padded = np.full(n_radii + 2 * _MAX_STEP, -np.inf)
    windows = np.lib.stride_tricks.sliding_window_view(padded, offsets.size)  # row i: radii i-S .. i+S
    for k in range(1, tiled.shape[0]):
        padded[_MAX_STEP:-_MAX_STEP] = total
        candidates = windows[:, order] - penalty
        choice = np.argmax(candidates, axis=1)
        back[k] = np.arange(n_radii) + steps[choice]
        total = candidates[np.arange(n_radii), choice] + tiled[k]
    path = np.empty(tiled.shape[0], dtype=np.int64)
    path[-1] = int(np.argmax(total))
    for k in range(tiled.shape[0] - 1, 0, -1):
        path[k - 1] = back[k, path[k]]
    return path[n_rays:]


def _lung_contour(smooth: np.ndarray, core: np.ndarray, midline: int, side: int) -> tuple[np.ndarray, np.ndarray]:
    """Outline of one lung field as a star-shaped polygon around its aerated core.

    Rays are cast from the depth-weighted centre of the core.  A boundary at radius r scores the mean
    grey level of the next ``_OUTER_WINDOW`` px minus the mean of the whole ray inside r: the lung edge
    is where a sustained brighter band (chest wall, diaphragm, mediastinum) begins.  Averaging the whole
    inside makes single ribs and small opacities weak candidates.  The boundary may not cross the midline,
    must enclose most of the core and may extend at most ``_MAX_EXTENSION`` of the height beyond it
    (this is what lets it reach lung bases that are bright under soft tissue or opacities).
    """
    height, width = smooth.shape
    centre_y, centre_x = ndi.center_of_mass(core)
    n_radii = int(0.8 * max(height, width))
    angles = np.linspace(0.0, 2 * np.pi, _N_RAYS, endpoint=False)
    radii = np.arange(n_radii)
    ys = centre_y + np.sin(angles)[:, None] * radii[None, :]
    xs = centre_x + np.cos(angles)[:, None] * radii[None, :]
    allowed = (ys >= 0) & (ys <= height - 1) & (xs >= 0) & (xs <= width - 1)
    allowed &= (xs <= midline) if side == 0 else (xs >= midline)
    allowed = np.cumprod(allowed, axis=1).astype(bool)  # a ray ends at its first exit
    coords = np.stack([ys.ravel(), xs.ravel()])
    profile = ndi.map_coordinates(smooth, coords, order=1, mode="nearest").reshape(ys.shape)
    on_core = ndi.map_coordinates(core.astype(np.float32), coords, order=0).reshape(ys.shape) > 0.5
    core_radius = np.where((on_core & allowed).any(axis=1), n_radii - 1 - np.argmax((on_core & allowed)[:, ::-1], axis=1), 0)

    cumulative = np.concatenate([np.zeros((_N_RAYS, 1)), np.cumsum(profile, axis=1)], axis=1)
    outer_end = np.minimum(radii + 1 + _OUTER_WINDOW, n_radii)
    inside_mean = cumulative[:, radii + 1] / (radii + 1)
    outside_mean = (cumulative[:, outer_end] - cumulative[:, radii + 1]) / np.maximum(outer_end - radii - 1, 1)
    score = outside_mean - inside_mean
    score[:, :3] = -1.0
    score[radii[None, :] < 0.9 * core_radius[:, None]] -= 0.2
    score[radii[None, :] > core_radius[:, None] + _MAX_EXTENSION * height] = -1.0
    score[~allowed] = -1.0
    # Where a ray leaves the image (a tightly cropped lung), ending at the image edge is acceptable.
    last = allowed.sum(axis=1) - 1
    at_image_edge = last < n_radii - 1
    rays = np.arange(_N_RAYS)
    score[rays, last] = np.where(at_image_edge, np.maximum(score[rays, last], 0.05), score[rays, last])
    radius = _best_circular_path(score)
    return centre_y + np.sin(angles) * radius, centre_x + np.cos(angles) * radius


def _template_side(shape: tuple[int, int], midline: int, side: int) -> np.ndarray:
    """Anatomical prior for one lung: an ellipse in the usual place of a hemithorax (fallback only)."""
    height, width = shape
    yy, xx = np.mgrid[0:height, 0:width]
    centre_x = midline + (-1 if side == 0 else 1) * 0.2 * width
    return ((yy - 0.45 * height) / (0.28 * height)) ** 2 + ((xx - centre_x) / (0.13 * width)) ** 2 <= 1.0


def _side_plausible(side_mask: np.ndarray) -> bool:
    height, width = side_mask.shape
    if not 0.03 <= side_mask.mean() <= 0.35:
        return False
    rows = np.flatnonzero(side_mask.any(axis=1))
    return (rows[-1] - rows[0]) >= 0.25 * height


def _resize_mask(mask: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """Smoothly resample a boolean mask to ``shape`` (bilinear, threshold one half)."""
    if mask.shape == shape:
        return mask.copy()
    image = Image.fromarray(mask.astype(np.uint8) * 255).resize(shape[::-1], Image.Resampling.BILINEAR)
    return np.asarray(image) > 127


def _content_box(small: np.ndarray) -> tuple[slice, slice]:
    """Rows and columns inside black padding and bright collimation frames.

    Edge rows/columns mostly at the image minimum (letterbox, at most a quarter of a side) or mostly
    brighter than the 90th percentile (a frame, at most a tenth) are dropped: a letterbox would shift the
    midline search and a frame would enclose the air outside the body as if it were a lung.
    """
    lo, hi = float(small.min()), float(small.max())
    black = small <= lo + 0.02 * (hi - lo)
    bright = small >= np.percentile(small, 90)
    spans = []
    for axis in (1, 0):
        fractions = (black.mean(axis=axis), bright.mean(axis=axis))
        size = fractions[0].size
        cut = [0, 0]
        for end in (0, 1):
            for fraction, limit in zip(fractions, (size // 4, size // 10)):
                ordered = fraction if end == 0 else fraction[::-1]
                k = cut[end]
                while k < limit and ordered[k] >= 0.6:
                    k += 1
                cut[end] = k
        spans.append(slice(cut[0], size - cut[1]))
    return spans[0], spans[1]


def _segment(small: np.ndarray) -> tuple[np.ndarray, int, bool, bool]:
    """Both lung fields on the normalised small image: (mask, midline, mirrored, template)."""
    smooth = ndi.gaussian_filter(small, 1.0)
    midline = _midline(smooth)
    cols = np.arange(small.shape[1])[None, :]
    own_side = (cols < midline, cols > midline)
    sides, plausible = [], []
    for side, core in enumerate(_lung_cores(smooth, own_side)):
        side_mask = np.zeros(small.shape, dtype=bool)
        if core.any():
            contour_y, contour_x = _lung_contour(smooth, core, midline, side)
            side_mask[draw.polygon(contour_y, contour_x, small.shape)] = True
            side_mask = (side_mask | core) & own_side[side]
        sides.append(side_mask)
        plausible.append(_side_plausible(side_mask))
    # A lung much smaller than its partner is usually opacified or missed, not absent: the hemithorax is
    # then completed by the mirror image of the other lung about the midline (Brixia scores the field).
    found = [side_mask.copy() for side_mask in sides]
    areas = [int(side_mask.sum()) for side_mask in found]
    mirrored = template = False
    for side in (0, 1):
        other = 1 - side
        if plausible[other] and (not plausible[side] or areas[side] < _MIRROR_BELOW * areas[other]):
            ys, xs = np.nonzero(found[other])
            xs = 2 * midline - xs
            keep = (xs >= 0) & (xs < small.shape[1])
            reflection = np.zeros_like(found[other])
            reflection[ys[keep], xs[keep]] = True
            sides[side] = (found[side] | ndi.binary_closing(reflection)) & own_side[side]
            mirrored = True
        elif not plausible[side] and not plausible[other]:
            sides[side] = _template_side(small.shape, midline, side)
            template = True
    return sides[0] | sides[1], midline, mirrored, template


def find_lung_fields(pixels: np.ndarray) -> LungFields:
    """Locate both lung fields and their six zones on a frontal chest X-ray.

    Parameters
    ----------
    pixels : ndarray of float32, shape (H, W)
        Grayscale image in [0, 1], MONOCHROME2 (air dark).  Any size >= 64 px, any aspect ratio.

    Returns
    -------
    LungFields
        At working resolution (longest side ``WORK_SIZE``).

    Notes
    -----
    Pipeline (deterministic, no learned parameters), on a copy with longest side 128 px:

    1. percentile normalisation of the non-extreme pixels (padding, saturated text excluded), Gaussian
       smoothing, midline = brightest column band (spine, mediastinum) in the central 40 % of the width;
    2. basin depth by grey-level hole filling: the lungs are dark basins closed by brighter tissue, while
       air outside the body, collimation borders and burned-in text reach the image border and are never
       part of a lung; the deepest basin on each side of the midline is that lung's aerated core;
    3. each lung outline is the best star-shaped contour around its core (dynamic programming over 72
       rays, see ``_lung_contour``), which bridges ribs and opacities and reaches the fainter bases;
    4. a side with implausible area or height is replaced by the mirror image of the other lung, or by an
       ellipse prior if both fail (``quality["fallback_used"]``);
    5. the mask is resampled to the working size and split into zones (``zone_masks``); the working image
       is renormalised by percentiles inside the thorax box (lungs' bounding box plus a margin), so its
       scale does not depend on how much air, text or border surrounds the body;
    6. small saturated blobs inside the lungs (ECG electrodes, markers, wires' crossings: brighter than
       the thorax's 99th percentile and smaller than 1 % of the lung area) are removed from the mask.
    """
    work, scale = to_working_size(pixels)
    small = to_working_size(work, _SEG_SIZE)[0]
    rows, cols = _content_box(small)
    lungs_small = np.zeros(small.shape, dtype=bool)
    lungs_small[rows, cols], midline, mirrored, template = _segment(normalise_intensity(small[rows, cols]))
    midline += cols.start
    mask = _resize_mask(lungs_small, work.shape)
    work_midline = int(round((midline + 0.5) * work.shape[1] / small.shape[1] - 0.5))
    zones = zone_masks(mask, work_midline)

    image = normalise_intensity(work, region=_thorax_box(mask))
    mask &= ~_small_bright_blobs(image, mask)
    zones[~mask] = 0
    image_left = int(np.count_nonzero(zones[zones > 0] <= 3))
    image_right = int(np.count_nonzero(zones > 3))
    quality = {
        "lung_area_fraction": float(mask.mean()),
        "left_right_ratio": image_left / image_right if image_right else float("nan"),
        "n_components": int(ndi.label(mask)[1]),
        "mirrored": bool(mirrored),
        "template": bool(template),
        "fallback_used": bool(mirrored or template),
    }
    quality["ok"] = bool(
        not template
        and _AREA_FRACTION_RANGE[0] <= quality["lung_area_fraction"] <= _AREA_FRACTION_RANGE[1]
        and min(image_left, image_right) >= _MIN_SIDE_RATIO * max(image_left, image_right)
    )
    return LungFields(mask=mask, zones=zones, image=image, quality=quality, scale=scale, midline=work_midline)


def _small_bright_blobs(image: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """Saturated blobs inside the lungs smaller than 1 % of the lung area (electrodes, markers), dilated."""
    labels, count = ndi.label(mask & (image >= 1.0))
    if count == 0:
        return np.zeros_like(mask)
    sizes = np.bincount(labels.ravel())
    small = (sizes < 0.01 * mask.sum()) & (np.arange(sizes.size) > 0)
    return ndi.binary_dilation(small[labels])


def _thorax_box(mask: np.ndarray, margin: float = 0.1) -> np.ndarray:
    """Bounding box of the lungs enlarged by ``margin`` of its size on every side (bool image)."""
    box = np.zeros_like(mask, dtype=bool)
    rows, cols = np.flatnonzero(mask.any(axis=1)), np.flatnonzero(mask.any(axis=0))
    if rows.size == 0:
        box[:] = True
        return box
    dy, dx = int(margin * (rows[-1] - rows[0] + 1)), int(margin * (cols[-1] - cols[0] + 1))
    box[max(0, rows[0] - dy) : rows[-1] + dy + 1, max(0, cols[0] - dx) : cols[-1] + dx + 1] = True
    return box


def zone_masks(mask: np.ndarray, midline: int | None = None) -> np.ndarray:
    """Split a two-lung mask into the six Brixia-style zones.

    Each lung (the mask pixels on one side of the midline) is cut into thirds of its own vertical
    extent.  This approximates the Brixia landmarks: the upper zone lies above the inferior wall of the
    aortic arch and the lower zone below the inferior wall of the right inferior pulmonary vein (hilum),
    which on a normal PA film fall close to one and two thirds of the lung height.

    Parameters
    ----------
    mask : ndarray of bool, shape (h, w)
        Both lungs.
    midline : int, optional
        Column separating the lungs; by default the emptiest column of the mask between 25 % and 75 %
        of the width (the mediastinum).

    Returns
    -------
    ndarray of int8, shape (h, w)
        0 outside, ``k + 1`` for ``ZONE_NAMES[k]``; patient right = image left.
    """
    mask = np.asarray(mask, dtype=bool)
    height, width = mask.shape
    if midline is None:
        counts = ndi.uniform_filter1d(mask.sum(axis=0).astype(float), 3)
        lo, hi = width // 4, max(width // 4 + 1, (3 * width) // 4)
        central = counts[lo:hi]
        lowest = np.flatnonzero(central <= central.min())
        midline = lo + int(lowest[len(lowest) // 2])
    zones = np.zeros((height, width), dtype=np.int8)
    cols = np.arange(width)[None, :]
    for side, side_mask in enumerate((mask & (cols < midline), mask & (cols >= midline))):
        rows = np.flatnonzero(side_mask.any(axis=1))
        if rows.size == 0:
            continue
        third = np.clip((3 * (np.arange(height) - rows[0])) // (rows[-1] - rows[0] + 1), 0, 2)
        zones[side_mask] = (1 + 3 * side + third[:, None].repeat(width, axis=1))[side_mask]
    return zones


# --- drawing -----------------------------------------------------------------------------------------
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
    zone_lines = ndi.binary_dilation(_inner_edges(zones), iterations=thickness - 1 or 1) & (zones > 0)
    outline = ndi.binary_dilation(_inner_edges(zones > 0), iterations=thickness)
    rgb[zone_lines & ~outline] = _ZONE_LINE_RGB
    rgb[outline] = _OUTLINE_RGB
    return np.round(rgb).astype(np.uint8)


def _inner_edges(labels: np.ndarray) -> np.ndarray:
    """Pixels of a labelled image whose label differs from a 4-neighbour's (label > 0 side only)."""
    edges = np.zeros(labels.shape, dtype=bool)
    edges[:-1] |= labels[:-1] != labels[1:]
    edges[1:] |= labels[1:] != labels[:-1]
    edges[:, :-1] |= labels[:, :-1] != labels[:, 1:]
    edges[:, 1:] |= labels[:, 1:] != labels[:, :-1]
    return edges & (labels > 0)
