"""Classical outline of both lung fields on a small copy of a frontal chest X-ray (used by ``core.lungs.fields``).

No pretrained network and no lung-mask ground truth are available, so the outline is built from
intensity, morphology and anatomical priors only:

1. black padding and bright collimation frames at the edges are cropped (``content_box``);
2. midline = brightest column band (spine, mediastinum) in the central 40 % of the width;
3. basin depth by grey-level hole filling: the lungs are dark basins closed by brighter tissue, while air
   outside the body, collimation borders and burned-in text drain to the image edge; the largest deep
   basin at lung height on each side of the midline is that lung's aerated core (``_lung_cores``);
4. each lung outline is the best star-shaped contour around its core (dynamic programming over rays,
   ``_lung_contour``), which bridges ribs and small opacities and reaches the fainter bases; thin tails
   (down the chest wall, into the gastric bubble) are cut by a morphological opening;
5. a lung much smaller than its partner, or implausible, is completed by the partner's mirror image about
   the midline, and a lung ending much higher than its partner gets the mirrored base (an opacified base
   stops the outline); if both lungs are implausible an ellipse prior is used.

Patient right = image left (radiological convention): side 0 is the image-left (patient's right) lung.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from PIL import Image, ImageDraw
from scipy import ndimage as ndi
from skimage import morphology

# All sizes are in pixels of the small copy (longest side SEG_SIZE): lungs are large structures.
SEG_SIZE = 128
_RIB_BRIDGE = morphology.disk(3).astype(bool)
_TAIL_CUT = morphology.disk(4).astype(bool)
_DRAIN_BAND = 0.03  # edge band (fraction of the size) through which dark regions drain
_N_RAYS = 72  # boundary rays per lung
_OUTER_WINDOW = 8  # px beyond a candidate boundary that must be brighter than the lung inside it
_MAX_STEP = 4  # px of radius change allowed between neighbouring rays
_STEP_PENALTY = 0.01  # boundary-score penalty per px of radius change (normalised grey levels)
_CORE_FRACTION = 0.15  # aerated core: basin depth above this fraction of the side's 99th percentile
_MAX_EXTENSION = 0.2  # the boundary may lie this fraction of the height beyond the aerated core
_MIRROR_BELOW = 0.45  # a lung smaller than this fraction of the other is completed by its mirror image
_SHORTER_BY = 0.12  # a lung ending this fraction of the height above the other gets the mirrored base


@dataclass
class LungOutline:
    """Both lung fields on the small copy.

    Attributes
    ----------
    mask : ndarray of bool, shape (h, w)
    midline : int
        Column separating the lungs.
    mirrored : bool
        A lung was completed with the mirror image of the other one.
    template : bool
        Both lungs were implausible and the ellipse prior was used.
    """

    mask: np.ndarray
    midline: int
    mirrored: bool
    template: bool


def outline_lungs(small: np.ndarray) -> LungOutline:
    """Outline both lung fields.

    Parameters
    ----------
    small : ndarray of float32, shape (h, w)
        The image resized to longest side ``SEG_SIZE``, any grey-level scale (MONOCHROME2).

    Returns
    -------
    LungOutline
    """
    rows, cols = content_box(small)
    inner = small[rows, cols]
    low, high = np.percentile(_unsaturated(_central(inner)), [1, 99])
    inner = np.clip((inner - low) / max(high - low, 1e-6), 0.0, 1.0)
    mask = np.zeros(small.shape, dtype=bool)
    mask[rows, cols], midline, mirrored, template = _segment(inner.astype(np.float32))
    return LungOutline(mask=mask, midline=midline + cols.start, mirrored=mirrored, template=template)


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

    Dynamic programming over the rays taken twice round the circle; the second turn, whose start is
    conditioned on the first, is returned (the contour closes in practice).
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

    Rays are cast from the centroid of the core.  A boundary at radius r scores the mean
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
    on_core &= allowed
    core_radius = np.where(on_core.any(axis=1), n_radii - 1 - np.argmax(on_core[:, ::-1], axis=1), 0)

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
    """Area 3-35 % of the image and height at least a quarter of it."""
    height = side_mask.shape[0]
    if not 0.03 <= side_mask.mean() <= 0.35:
        return False
    rows = np.flatnonzero(side_mask.any(axis=1))
    return (rows[-1] - rows[0]) >= 0.25 * height


def _central(image: np.ndarray) -> np.ndarray:
    """The central 80 % x 80 % of an image: grey-level statistics ignore the corners, where labels live."""
    height, width = image.shape
    return image[height // 10 : height - height // 10, width // 10 : width - width // 10]


def _unsaturated(image: np.ndarray) -> np.ndarray:
    """Pixel values strictly between the image extremes (padding and burned-in text are at the extremes)."""
    values = image[(image > image.min()) & (image < image.max())]
    return values if values.size >= 16 else image.ravel()


def content_box(small: np.ndarray) -> tuple[slice, slice]:
    """Rows and columns inside black padding and bright collimation frames.

    Edge rows/columns mostly at the image minimum (letterbox, at most a quarter of a side) or mostly
    brighter than the 90th percentile (a frame, at most a tenth) are dropped: a letterbox would shift the
    midline search and a frame would enclose the air outside the body as if it were a lung.
    """
    lo, hi = float(small.min()), float(small.max())
    black = small <= lo + 0.02 * (hi - lo)
    bright = small >= np.percentile(_unsaturated(_central(small)), 90)
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
            side_mask = (_polygon_mask(contour_y, contour_x, small.shape) | core) & own_side[side]
            # lungs have no thin protrusions: cut tails running down the chest wall or into the stomach
            side_mask = _largest_component(ndi.binary_opening(side_mask, _TAIL_CUT))
        sides.append(side_mask)
        plausible.append(_side_plausible(side_mask))
    # A lung much smaller or shorter than its partner is usually opacified or missed, not absent: the
    # hemithorax is completed by the partner's mirror image about the midline (Brixia scores the field).
    # A shorter lung only gets the mirrored part below its own last third and within its own columns
    # (an opacified base).
    found = [side_mask.copy() for side_mask in sides]
    areas = [int(side_mask.sum()) for side_mask in found]
    bottoms = [_bottom_row(side_mask) for side_mask in found]
    rows, columns = np.arange(small.shape[0])[:, None], np.arange(small.shape[1])[None, :]
    mirrored = template = False
    for side in (0, 1):
        other = 1 - side
        if plausible[other] and (not plausible[side] or areas[side] < _MIRROR_BELOW * areas[other]):
            sides[side] = (found[side] | _mirrored(found[other], midline)) & own_side[side]
            mirrored = True
        elif plausible[other] and bottoms[side] < bottoms[other] - _SHORTER_BY * small.shape[0]:
            tops = np.flatnonzero(found[side].any(axis=1))
            below = rows >= tops[0] + 2 * (bottoms[side] - tops[0]) // 3
            spanned = np.flatnonzero(found[side].any(axis=0))  # never wider than the lung already is
            within = (columns >= spanned[0]) & (columns <= spanned[-1])
            base = _mirrored(found[other], midline) & below & within
            sides[side] = (found[side] | base) & own_side[side]
            mirrored = True
        elif not plausible[side] and not plausible[other]:
            sides[side] = _template_side(small.shape, midline, side)
            template = True
    sides = [_largest_component(side_mask) for side_mask in sides]  # one lung per side, no stray pieces
    return sides[0] | sides[1], midline, mirrored, template


def _bottom_row(mask: np.ndarray) -> int:
    rows = np.flatnonzero(mask.any(axis=1))
    return int(rows[-1]) if rows.size else -1


def _mirrored(mask: np.ndarray, midline: int) -> np.ndarray:
    """Mirror image of a mask about a column (closed, so that rounding leaves no holes)."""
    ys, xs = np.nonzero(mask)
    xs = 2 * midline - xs
    keep = (xs >= 0) & (xs < mask.shape[1])
    reflection = np.zeros_like(mask)
    reflection[ys[keep], xs[keep]] = True
    return ndi.binary_closing(reflection)


def _polygon_mask(rows: np.ndarray, cols: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """Filled polygon (vertices in pixel coordinates) as a boolean image.

    Pillow's fill, not ``skimage.draw.polygon2mask``: Pillow also fills the pixels the edges cross, and the outline
    finder's thresholds were set with that rule (polygon2mask leaves 4–5 % of a lung's pixels out and moved the
    corona score of a clean phantom by 7 points).
    """
    canvas = Image.new("1", (shape[1], shape[0]), 0)
    ImageDraw.Draw(canvas).polygon(list(zip(cols.tolist(), rows.tolist())), fill=1)
    return np.asarray(canvas, dtype=bool)
