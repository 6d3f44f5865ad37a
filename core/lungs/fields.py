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

from dataclasses import dataclass, field

import numpy as np
from PIL import Image
from scipy import ndimage as ndi
from skimage.morphology import convex_hull_image

from core.lungs.outline import SEG_SIZE, outline_lungs
from core.lungs.zones import zone_masks

WORK_SIZE = 256
# Bump when the lung localisation changes: it is part of the feature-cache key of everything computed on the lungs.
LUNGS_VERSION = "2"

# Plausible total lung area as a fraction of the working image (quality["ok"]).
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
        ``mirrored`` (a lung completed by the other's mirror image), ``template`` (ellipse prior used),
        ``fallback_used`` (either) and ``ok`` (no template, plausible total area and side balance).
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


def _resize_mask(mask: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """Smoothly resample a boolean mask to ``shape`` (bilinear, threshold one half)."""
    if mask.shape == shape:
        return mask.copy()
    image = Image.fromarray(mask.astype(np.uint8) * 255).resize(shape[::-1], Image.Resampling.BILINEAR)
    return np.asarray(image) > 127


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
    Deterministic, no learned parameters:

    1. the lungs are outlined on a copy with longest side 128 px by ``core.lungs.outline.outline_lungs``
       (grey-level basins + star-shaped dynamic-programming contours + mirror/ellipse fallbacks); air
       outside the body, collimation frames and burned-in text drain to the image edge and are never
       part of a lung;
    2. the mask is resampled to the working size and split into zones (``zone_masks``);
    3. the working image is normalised by its 1st and 99th percentiles inside the convex hull of the lungs
       (darkest lung, brightest mediastinum/spine), so its scale does not depend on how much air, text,
       markers or border surround the thorax;
    4. small saturated specks inside the lungs (ECG electrodes, markers, crossing wires: at the top of
       both the thorax's and the whole image's range, smaller than 1 % of the lung area) are removed
       from the mask.
    """
    work, scale = to_working_size(pixels)
    outline = outline_lungs(to_working_size(work, SEG_SIZE)[0])
    mirrored, template = outline.mirrored, outline.template
    mask = _resize_mask(outline.mask, work.shape)
    work_midline = int(round((outline.midline + 0.5) * work.shape[1] / outline.mask.shape[1] - 0.5))
    zones = zone_masks(mask, work_midline)

    image = _normalised_in_thorax(work, mask)
    mask &= ~_saturated_specks(work, image, mask)
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


def thorax_normalised(pixels: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """The working image normalised inside the thorax of a lung mask (what ``LungFields.image`` holds).

    Parameters
    ----------
    pixels : ndarray of float, shape (H, W)
        The original image.
    mask : ndarray of bool, shape (h, w)
        Lung mask at working resolution (e.g. ``LungFields.mask``).

    Returns
    -------
    ndarray of float32, shape (h, w), values in [0, 1]
        ``pixels`` resized to the working size and scaled so that the 1st and 99th percentiles inside the
        convex hull of the lungs (darkest lung, brightest mediastinum/spine) become 0 and 1.
    """
    work = to_working_size(pixels)[0]
    if work.shape != mask.shape:
        raise ValueError(f"mask shape {mask.shape} does not match the working image {work.shape}")
    return _normalised_in_thorax(work, mask)


def _normalised_in_thorax(work: np.ndarray, mask: np.ndarray) -> np.ndarray:
    return normalise_intensity(work, region=_thorax_region(mask))


def _saturated_specks(work: np.ndarray, image: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """Saturated specks inside the lungs (electrodes, markers), slightly dilated.

    A speck is at or above both the thorax's 99th percentile (``image >= 1``) and the whole image's
    99.9th percentile (metal and burned-in text are the brightest things on a film), and smaller than
    1 % of the lung area, so dense opacities are never cut out.
    """
    saturated = mask & (image >= 1.0) & (work >= np.percentile(work, 99.9))
    labels, count = ndi.label(saturated)
    if count == 0:
        return np.zeros_like(mask)
    sizes = np.bincount(labels.ravel())
    small = (sizes < 0.01 * mask.sum()) & (np.arange(sizes.size) > 0)
    return ndi.binary_dilation(small[labels])


def _thorax_region(mask: np.ndarray) -> np.ndarray:
    """Convex hull of both lungs: lungs, mediastinum and heart, but not the corners where labels live."""
    rows, cols = np.nonzero(mask)
    if rows.size < 3 or np.ptp(rows) == 0 or np.ptp(cols) == 0:
        return np.ones_like(mask, dtype=bool)
    return convex_hull_image(mask)


