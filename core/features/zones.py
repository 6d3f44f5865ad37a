"""Zone features for the corona score: intensity, texture and size of each of the six lung zones, and the lungs'
geometry, computed on ``core.lungs.LungFields`` (see ``core.severity.model`` for how they are scored)."""

from __future__ import annotations

import numpy as np
from scipy import ndimage as ndi

from core.lungs.fields import LungFields
from core.lungs.zones import ZONE_NAMES

# Bump when zone_features changes: it is part of the feature-cache key of the ``zones`` block.
ZONES_VERSION = "1"
ZONE_FEATURES = ("p10", "p25", "p50", "p75", "p90", "mean", "sd", "fine", "mid", "edge", "area")
GEOMETRY_FEATURES = ("lung_area_per_width2", "lung_height_per_width", "mirrored")
_MIN_ZONE_PIXELS = 10
_EDGE_GRADIENT = 0.02  # normalised grey levels per working pixel: an edge between a vessel/opacity and its surround


def severity_feature_names() -> list[str]:
    """Column names of :func:`zone_features`: ``sev_<zone>_<feature>`` for the six zones, then ``sev_<geometry>``."""
    return [f"sev_{zone}_{name}" for zone in ZONE_NAMES for name in ZONE_FEATURES] + \
        [f"sev_{name}" for name in GEOMETRY_FEATURES]


def zone_features(fields: LungFields) -> dict[str, float]:
    """Intensity, texture and size of each lung zone, and the lungs' geometry.

    Parameters
    ----------
    fields : LungFields
        From :func:`core.lungs.find_lung_fields`; ``fields.image`` (working image normalised inside the thorax,
        values in [0, 1]) and ``fields.zones`` are used.

    Returns
    -------
    dict of str to float
        Keys :func:`severity_feature_names`.  Per zone, on the image smoothed by a 1 px Gaussian: the 10/25/50/75/90th
        percentiles, mean and sd of the grey level; ``fine`` = mean |image - smoothed| (1 px detail), ``mid`` = mean
        |1 px - 3 px smoothing| (vessel-sized detail), ``edge`` = fraction of pixels whose gradient on the 3 px
        smoothing exceeds 0.02 per pixel, ``area`` = zone pixels / (lung width)^2.  Geometry: lung area / width^2,
        lung height / width (both fall when opacities cut the aerated lung short), and whether a lung was completed
        from its partner's mirror image.  A zone with fewer than 10 pixels gives NaN.
    """
    image = fields.image.astype(np.float32)
    fine_blur = ndi.gaussian_filter(image, 1.0)
    coarse_blur = ndi.gaussian_filter(image, 3.0)
    fine, mid = np.abs(image - fine_blur), np.abs(fine_blur - coarse_blur)
    gradient = np.hypot(ndi.sobel(coarse_blur, 0), ndi.sobel(coarse_blur, 1)) / 8.0  # Sobel gain is 8
    edge = gradient > _EDGE_GRADIENT
    values = dict.fromkeys(severity_feature_names(), np.nan)
    rows, cols = np.nonzero(fields.zones)
    if rows.size == 0:
        return values
    width, height = float(np.ptp(cols) + 1), float(np.ptp(rows) + 1)
    for index, zone in enumerate(ZONE_NAMES, start=1):
        region = fields.zones == index
        count = int(np.count_nonzero(region))
        if count < _MIN_ZONE_PIXELS:
            continue
        inside = fine_blur[region]
        row = [*np.percentile(inside, [10, 25, 50, 75, 90]), inside.mean(), inside.std(),
               fine[region].mean(), mid[region].mean(), edge[region].mean(), count / width**2]
        values.update({f"sev_{zone}_{name}": float(v) for name, v in zip(ZONE_FEATURES, row)})
    values["sev_lung_area_per_width2"] = rows.size / width**2
    values["sev_lung_height_per_width"] = height / width
    values["sev_mirrored"] = float(bool(fields.quality.get("mirrored", False)))
    return values
