"""The six Brixia lung zones: names, order, and the split of a two-lung mask into upper/middle/lower thirds.

Radiological convention: the image is viewed facing the patient, so the patient's RIGHT lung is on the IMAGE
LEFT (small column indices). Zones are numbered 1..6 in ``ZONE_NAMES`` order (Brixia A–F), 0 = outside.
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage as ndi

ZONE_NAMES = ("right_upper", "right_middle", "right_lower", "left_upper", "left_middle", "left_lower")


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
        zones[side_mask] = 1 + 3 * side + third[np.nonzero(side_mask)[0]]
    return zones
