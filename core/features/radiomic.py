"""Interpretable radiomic features computed on the lung fields only.

Every feature is computed on ``LungFields.image`` (the working image normalised inside the thorax) and restricted
to the lung mask or one of its six zones, so nothing outside the lungs (text, markers, borders) can identify the
hospital. Columns are ``rad_<region>_<feature>`` (region ``lung`` or a zone of ``core.lungs.zones.ZONE_NAMES``):
intensity statistics and an 8-bin histogram, GLCM properties (16 levels, distances 1–2 px, four angles), Sobel
and Canny edge density; ``rad_pattern_*`` (basal, peripheral and left/right differences within one image) and
``rad_global_*`` (mask shape, quality flag). A feature is NaN only when undefined (empty region, no pixel pair).
Pixel sizes refer to the working image. Why some features are left out: README, "Method".
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage as ndi
from skimage import feature, filters, morphology

from core.lungs.fields import LungFields, find_lung_fields
from core.lungs.zones import ZONE_NAMES

RADIOMIC_VERSION = "2"

REGIONS = ("lung", *ZONE_NAMES)
_HIST_BINS = 8
_GLCM_LEVELS = 16
_GLCM_DISTANCES = (1, 2)
_GLCM_ANGLES = (0.0, np.pi / 4, np.pi / 2, 3 * np.pi / 4)
_GLCM_PROPERTIES = ("contrast", "homogeneity", "energy", "correlation", "dissimilarity")
_EDGE_MARGIN = 2  # px eroded from a region before edge features
_CROP_MARGIN = 8  # px kept around the lungs' bounding box (> 3 Canny sigmas + edge margin)
_CANNY_SIGMA = 2.0
_CANNY_THRESHOLDS = (0.02, 0.05)  # gradient magnitude on the normalised scale (low, high)

_REGION_FEATURES = (
    "mean", "sd", "p10", "p50", "p90", "skewness", "kurtosis",
    *(f"hist{k}" for k in range(_HIST_BINS)),
    *(f"glcm_{name}" for name in _GLCM_PROPERTIES),
    "sobel_mean", "canny_density",
)  # fmt: skip
_PATTERN_FEATURES = (
    "lower_minus_upper_right", "lower_minus_upper_left", "periphery_minus_centre_right",
    "periphery_minus_centre_left", "asymmetry_upper", "asymmetry_middle", "asymmetry_lower",
)  # fmt: skip
_GLOBAL_FEATURES = ("left_right_ratio", "quality_ok")


def radiomic_feature_names() -> list[str]:
    """All column names in their fixed order (regions ``lung`` then the six zones, pattern, globals)."""
    names = [f"rad_{region}_{name}" for region in REGIONS for name in _REGION_FEATURES]
    names += [f"rad_pattern_{name}" for name in _PATTERN_FEATURES]
    return names + [f"rad_global_{name}" for name in _GLOBAL_FEATURES]


def radiomic_features(pixels: np.ndarray, fields: LungFields | None = None) -> dict[str, float]:
    """Intensity, texture and edge features of the lung fields and their six zones.

    Parameters
    ----------
    pixels : ndarray of float32, shape (H, W)
        Grayscale image in [0, 1], MONOCHROME2.
    fields : LungFields, optional
        ``find_lung_fields(pixels)``; computed when omitted.  Features use ``fields.image`` and
        ``fields.zones``, so the fields must belong to these pixels.

    Returns
    -------
    dict of str to float
        Keys ``radiomic_feature_names()`` in that order.
    """
    if fields is None:
        fields = find_lung_fields(pixels)
    values = dict.fromkeys(radiomic_feature_names()[: -len(_GLOBAL_FEATURES)], np.nan)
    if fields.mask.any():
        values.update(_lung_region_features(fields.image, fields.zones))
        values.update(_pattern_features(fields.image, fields.zones, fields.midline))
    quality = fields.quality
    values["rad_global_left_right_ratio"] = float(quality.get("left_right_ratio", np.nan))
    values["rad_global_quality_ok"] = float(bool(quality.get("ok", False)))
    return values


def _lung_region_features(image: np.ndarray, zones: np.ndarray) -> dict[str, float]:
    """Region features of the whole lung and each zone, computed on the lungs' bounding box only."""
    rows, cols = np.nonzero(zones.any(axis=1))[0], np.nonzero(zones.any(axis=0))[0]
    margin = _CROP_MARGIN
    box = (
        slice(max(0, rows[0] - margin), rows[-1] + margin + 1),
        slice(max(0, cols[0] - margin), cols[-1] + margin + 1),
    )
    image, zones = image[box].astype(np.float64), zones[box]
    sobel = filters.sobel(image)
    canny = feature.canny(
        image, sigma=_CANNY_SIGMA, low_threshold=_CANNY_THRESHOLDS[0], high_threshold=_CANNY_THRESHOLDS[1]
    )
    glcm_levels = 1 + np.minimum((image * _GLCM_LEVELS).astype(np.intp), _GLCM_LEVELS - 1)
    # Edge features skip _EDGE_MARGIN px at every region border (lung border and zone borders alike).
    footprint = morphology.diamond(_EDGE_MARGIN)
    uniform = ndi.minimum_filter(zones, footprint=footprint) == ndi.maximum_filter(zones, footprint=footprint)
    lung_core = ndi.binary_erosion(zones > 0, structure=footprint)

    regions = [zones > 0] + [zones == k for k in range(1, len(ZONE_NAMES) + 1)]
    cores = [lung_core] + [uniform & region for region in regions[1:]]
    glcm = _glcm_properties(glcm_levels, regions)
    values: dict[str, float] = {}
    for name, region, core, glcm_row in zip(REGIONS, regions, cores, glcm):
        if not region.any():
            continue
        if not core.any():  # a thin region: use it whole rather than report nothing
            core = region
        row = _region_features(image, region, glcm_row) + [sobel[core].mean(), canny[core].mean()]
        values.update({f"rad_{name}_{feature_name}": float(v) for feature_name, v in zip(_REGION_FEATURES, row)})
    return values


def _region_features(image: np.ndarray, region: np.ndarray, glcm: list[float]) -> list[float]:
    """Intensity, histogram and GLCM features of one non-empty region, in ``_REGION_FEATURES`` order."""
    inside = image[region]
    sd = float(inside.std())
    p10, p50, p90 = np.percentile(inside, [10, 50, 90])
    if sd > 1e-8:  # the biased moment estimators of scipy.stats.skew / kurtosis, without their overhead
        centred = (inside - inside.mean()) / sd
        skewness, kurtosis = float(np.mean(centred**3)), float(np.mean(centred**4) - 3.0)
    else:  # a constant region has no defined shape moments
        skewness = kurtosis = np.nan
    hist = _unit_histogram(inside) / inside.size
    return [float(inside.mean()), sd, p10, p50, p90, skewness, kurtosis, *hist, *glcm]


def _unit_histogram(values: np.ndarray) -> np.ndarray:
    """``np.histogram(values, bins=_HIST_BINS, range=(0, 1))[0]`` for float64 values, without its edge search.

    Scaling by a power of two is exact, so ``floor(8 x)`` is exactly the bin of ``x`` (1.0 goes to the last bin and
    values outside [0, 1] are not counted, as in ``np.histogram``).
    """
    inside = values[(values >= 0.0) & (values <= 1.0)]
    bins = np.minimum((inside * _HIST_BINS).astype(np.intp), _HIST_BINS - 1)
    return np.bincount(bins, minlength=_HIST_BINS)


def _pattern_features(image: np.ndarray, zones: np.ndarray, midline: int) -> dict[str, float]:
    """Within-image contrasts of the lungs: basal, peripheral and left-right (see the module docstring)."""
    zone_mean = {
        name: float(image[zones == k + 1].mean()) if np.any(zones == k + 1) else np.nan
        for k, name in enumerate(ZONE_NAMES)
    }
    values = {}
    for side, zone_ids in (("right", (1, 2, 3)), ("left", (4, 5, 6))):
        values[f"lower_minus_upper_{side}"] = zone_mean[f"{side}_lower"] - zone_mean[f"{side}_upper"]
        lung = np.isin(zones, zone_ids)
        distance = np.abs(np.nonzero(lung)[1] - midline)  # column distance of the lung pixels, in mask order
        outer = distance > np.median(distance) if lung.any() else np.zeros(0, dtype=bool)
        inside = image[lung]
        values[f"periphery_minus_centre_{side}"] = (
            float(inside[outer].mean() - inside[~outer].mean()) if outer.any() and (~outer).any() else np.nan
        )
    for level in ("upper", "middle", "lower"):  # NaN (one lung missing) stays NaN
        values[f"asymmetry_{level}"] = abs(zone_mean[f"right_{level}"] - zone_mean[f"left_{level}"])
    return {f"rad_pattern_{name}": float(values[name]) for name in _PATTERN_FEATURES}


def _glcm_properties(glcm_levels: np.ndarray, regions: list[np.ndarray]) -> list[list[float]]:
    """GLCM properties of each region, averaged over distances and angles.

    Pixels outside a region get the reserved level 0, whose row and column are dropped, so only pairs of
    region pixels count.  The matrices of all regions are stacked so that ``graycoprops`` runs once per
    property.
    """
    matrices = []
    for region in regions:
        rows, cols = np.nonzero(region.any(axis=1))[0], np.nonzero(region.any(axis=0))[0]
        box = (slice(rows[0], rows[-1] + 1), slice(cols[0], cols[-1] + 1)) if rows.size else (slice(0, 1),) * 2
        quantised = np.where(region[box], glcm_levels[box], 0).astype(np.uint8)
        matrix = feature.graycomatrix(quantised, _GLCM_DISTANCES, _GLCM_ANGLES, levels=_GLCM_LEVELS + 1, symmetric=True)
        matrices.append(matrix[1:, 1:])
    stacked = np.concatenate(matrices, axis=2)  # (levels, levels, regions * distances, angles)
    counted = (stacked.sum(axis=(0, 1)) > 0).reshape(len(regions), -1)
    table = [feature.graycoprops(stacked, name).reshape(len(regions), -1) for name in _GLCM_PROPERTIES]
    return [
        [float(values[k][counted[k]].mean()) if counted[k].any() else np.nan for values in table]
        for k in range(len(regions))
    ]
