"""Lung fields of a frontal chest X-ray: the lung mask, its six Brixia zones and the per-image normalised image.

Why: public COVID-19 and Normal images mostly come from different hospitals, so anything computed outside
the lungs (burned-in text, markers, collimation borders, exposure) can identify the hospital rather than
the disease.  Interpretable features are therefore computed on the lung fields only, on a per-image
normalised intensity scale.

Two finders: the lung network (:mod:`core.lungs.network`, a small U-Net trained on the expert masks of the reference
data; cross-validated Dice in ``models/lungs/lung-unet.json``) and, as the fallback, the classical outline
(:mod:`core.lungs.outline`: intensity, morphology and anatomical priors). Both run; ``quality["method"]`` says which
one gave the mask, and their agreement is one of the mask-quality measures (:mod:`core.lungs.quality`).

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
from functools import lru_cache

import numpy as np
from PIL import Image
from scipy import ndimage as ndi
from skimage.morphology import convex_hull_image

from core.lungs.network import DEFAULT_WEIGHTS, LungNetwork, LungNetworkError
from core.lungs.outline import SEG_SIZE, outline_lungs
from core.lungs.quality import doubtful_measures, mask_measures, quality_warning
from core.lungs.zones import zone_masks

WORK_SIZE = 256
# Bump when the lung localisation changes: it is part of the feature-cache key of everything computed on the lungs.
LUNGS_VERSION = "4"

# Total lung area (fraction of the working image) outside which a network mask is not used at all.
_AREA_FRACTION_RANGE = (0.08, 0.60)


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
        ``method`` (``network`` or ``classical``: the finder that gave the mask), ``fallback_reason``,
        ``measures`` (:func:`core.lungs.quality.mask_measures`), ``reasons`` (plain-language, one per measure out
        of range), ``ok`` and ``warning`` (the mask-quality check),
        ``lung_area_fraction``, ``left_right_ratio`` (image-left / image-right area), ``n_components``,
        ``mirrored`` / ``template`` (classical mask completed by a mirror image / an ellipse prior) and
        ``fallback_used`` (classical finder, mirror or template).
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


def find_lung_fields(pixels: np.ndarray, method: str = "auto", network: LungNetwork | None = None) -> LungFields:
    """Locate both lung fields and their six zones on a frontal chest X-ray.

    Parameters
    ----------
    pixels : ndarray of float32, shape (H, W)
        Grayscale image in [0, 1], MONOCHROME2 (air dark).  Any size >= 64 px, any aspect ratio.
    method : {"auto", "network", "classical"}
        ``auto``: the lung network's mask, unless the network is unavailable or its mask is not two lungs of a
        plausible size, then the classical outline's; ``network`` / ``classical``: that finder only (the other
        still runs for the agreement measure when available).
    network : LungNetwork, optional
        Weights to use instead of the shipped ones (e.g. a cross-validation fold's, to measure it).

    Returns
    -------
    LungFields
        At working resolution (longest side ``WORK_SIZE``).  ``quality`` holds ``method`` (the finder that gave
        the mask), ``fallback_reason`` (why the network's mask was not used, else None), the mask-quality
        ``measures``, ``ok`` (no measure out of its plausible range) and ``warning`` (the text shown to the reader,
        None when ok), plus ``lung_area_fraction``, ``left_right_ratio``, ``n_components``, ``mirrored`` and
        ``template`` (classical mask completed by a mirror image / ellipse prior) and ``fallback_used``.

    Notes
    -----
    1. the classical outline is found on a copy with longest side 128 px (``core.lungs.outline.outline_lungs``:
       grey-level basins, star-shaped contours, mirror/ellipse fallbacks);
    2. the lung network gives a probability per working pixel (:class:`core.lungs.network.LungNetwork`); its
       mask is the probability above one half, holes filled, keeping the two largest parts;
    3. the chosen mask is split into zones (``zone_masks``); the working image is normalised by its 1st and 99th
       percentiles inside the convex hull of the lungs, so its scale does not depend on how much air, text,
       markers or border surround the thorax; small saturated specks inside the lungs (ECG electrodes, markers:
       at the top of both the thorax's and the whole image's range, smaller than 1 % of the lung area) are
       removed from the mask;
    4. the mask-quality measures (:func:`core.lungs.quality.mask_measures`) are compared with their plausible
       ranges.
    """
    if method not in ("auto", "network", "classical"):
        raise ValueError(f"unknown lung finder {method!r}; choose auto, network or classical")
    work, scale = to_working_size(pixels)
    outline = outline_lungs(to_working_size(work, SEG_SIZE)[0])
    classical_mask = _resize_mask(outline.mask, work.shape)
    classical_midline = int(round((outline.midline + 0.5) * work.shape[1] / outline.mask.shape[1] - 0.5))

    if method == "classical":
        network, fallback_reason = None, "classical finder requested"
    elif network is not None:
        fallback_reason = None
    else:
        network, fallback_reason = default_network()
    probability = network_mask = None
    if network is not None:
        probability = network.probability(work)
        network_mask = network_lung_mask(probability)
        if method == "auto":
            fallback_reason = _implausible(network_mask)
    if method == "network" and network is None:
        raise LungNetworkError(fallback_reason)
    use_network = network_mask is not None and (method == "network" or fallback_reason is None)
    if use_network:
        mask, midline, finder, other = network_mask, None, "network", classical_mask
    else:
        mask, midline, finder, other = classical_mask, classical_midline, "classical", network_mask
    zones = zone_masks(mask, midline)
    midline = _midline_of(zones) if midline is None else midline

    image = _normalised_in_thorax(work, mask)
    mask = mask & ~_saturated_specks(work, image, mask)
    zones[~mask] = 0
    measures = mask_measures(mask, probability if use_network else None, other)
    ranges = network.meta.get("quality_ranges") if network is not None else None
    reasons = doubtful_measures(measures, ranges)
    if outline.template and not use_network:
        reasons.append("no lung outline was found, an average lung shape stands in")
    image_left = int(np.count_nonzero(zones[zones > 0] <= 3))
    image_right = int(np.count_nonzero(zones > 3))
    quality = {
        "method": finder,
        "fallback_reason": None if use_network else fallback_reason,
        "lung_area_fraction": float(mask.mean()),
        "left_right_ratio": image_left / image_right if image_right else float("nan"),
        "n_components": int(ndi.label(mask)[1]),
        "mirrored": bool(outline.mirrored and not use_network),
        "template": bool(outline.template and not use_network),
        "measures": {k: round(float(v), 4) for k, v in measures.items()},
        "reasons": reasons,
        "ok": not reasons,
        "warning": quality_warning(reasons, finder),
    }
    quality["fallback_used"] = bool(quality["mirrored"] or quality["template"] or not use_network)
    return LungFields(mask=mask, zones=zones, image=image, quality=quality, scale=scale, midline=midline)


@lru_cache(maxsize=1)
def default_network() -> tuple[LungNetwork | None, str | None]:
    """The shipped lung network, loaded once per process, or (None, why not)."""
    try:
        return LungNetwork.load(DEFAULT_WEIGHTS), None
    except (LungNetworkError, OSError, ValueError, KeyError) as exc:
        return None, f"lung network unavailable: {exc}"


def network_lung_mask(probability: np.ndarray) -> np.ndarray:
    """The network's lung mask: probability above one half, holes filled, the two largest parts kept (a part
    smaller than a tenth of the largest is noise)."""
    labels, count = ndi.label(probability > 0.5)
    if count == 0:
        return np.zeros(probability.shape, dtype=bool)
    sizes = np.bincount(labels.ravel())[1:]
    largest = np.argsort(sizes)[::-1][:2]
    keep = [k + 1 for k in largest if sizes[k] >= 0.1 * sizes[largest[0]]]
    return ndi.binary_fill_holes(np.isin(labels, keep))


def _implausible(mask: np.ndarray) -> str | None:
    """Why a network mask cannot be two lungs (then the classical outline is used), or None."""
    parts = ndi.label(mask)[1]
    fraction = float(mask.mean())
    if parts < 2:
        return f"the lung network found {parts} lung(s)"
    if not _AREA_FRACTION_RANGE[0] <= fraction <= _AREA_FRACTION_RANGE[1]:
        return f"the lung network's lungs cover {fraction:.0%} of the image"
    return None


def _midline_of(zones: np.ndarray) -> int:
    """Column halfway between the innermost columns of the two lungs."""
    cols = np.nonzero(zones)[1]
    right_lung, left_lung = cols[zones[zones > 0] <= 3], cols[zones[zones > 0] > 3]
    if right_lung.size == 0 or left_lung.size == 0:
        return zones.shape[1] // 2
    return int(round((right_lung.max() + left_lung.min()) / 2))


def mask_at_size(fields: LungFields, shape: tuple[int, int]) -> np.ndarray:
    """The lung mask resampled to ``shape`` (the original image's (H, W)): bilinear, threshold one half.

    Returns
    -------
    ndarray of bool, shape ``shape``
    """
    return _resize_mask(fields.mask, tuple(shape))


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
    # The hull lies within the lungs' bounding box: testing only its pixels gives the same region (the hull's
    # corners are whole or half pixels, so shifting them by whole pixels changes no inside / outside test) at a
    # fraction of the cost of testing every pixel of the image.
    top, bottom, left, right = rows.min(), rows.max() + 1, cols.min(), cols.max() + 1
    region = np.zeros_like(mask, dtype=bool)
    region[top:bottom, left:right] = convex_hull_image(mask[top:bottom, left:right])
    return region


