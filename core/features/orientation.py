"""The orientation signature of a film, and the ways a chest film can reach us wrongly oriented.

Why a thumbnail: which way up a chest radiograph is shows in its coarse layout — dark lungs either side of a bright
mediastinum, the bright abdomen under the diaphragm, the heart to the patient's left, air dark outside the body. A
32 x 32 copy of what lies inside the film's black padding and bright frames (the lungs' own content box), scaled by
its 1st and 99th percentiles, keeps exactly that layout and no fine texture a hospital's processing could leave.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
from PIL import Image

from core.lungs.fields import to_working_size
from core.lungs.outline import SEG_SIZE, content_box

THUMBNAIL_SIDE = 32
UPRIGHT = "upright"
MIRRORED = "mirrored left to right"

# How a correctly oriented film (pixels, MONOCHROME2) becomes each wrong one. Names say what the user sees.
MISORIENTATIONS: dict[str, Callable[[np.ndarray], np.ndarray]] = {
    MIRRORED: lambda pixels: pixels[:, ::-1],
    "rotated 90° clockwise": lambda pixels: np.rot90(pixels, -1),
    "rotated 90° counter-clockwise": lambda pixels: np.rot90(pixels, 1),
    "upside down (rotated 180°)": lambda pixels: np.rot90(pixels, 2),
    "flipped top to bottom": lambda pixels: pixels[::-1],
    "inverted (a negative: bone dark, lungs bright)": lambda pixels: 1.0 - pixels,
}


def orientation_thumbnail(pixels: np.ndarray) -> np.ndarray:
    """The film's orientation signature.

    Parameters
    ----------
    pixels : ndarray of float, shape (H, W)
        The image in [0, 1], MONOCHROME2 (or a misoriented copy of it).

    Returns
    -------
    ndarray of float32, shape (THUMBNAIL_SIDE ** 2,)
        The content inside the film's borders, box-resampled to 32 x 32 (aspect ratio not kept), its 1st and 99th
        percentiles mapped to 0 and 1, clipped, row-major.
    """
    small = to_working_size(np.ascontiguousarray(pixels, dtype=np.float32), SEG_SIZE)[0]
    rows, cols = content_box(small)
    inner = np.ascontiguousarray(small[rows, cols])
    thumbnail = np.asarray(Image.fromarray(inner, mode="F").resize((THUMBNAIL_SIDE, THUMBNAIL_SIDE),
                                                                   Image.Resampling.BOX))
    low, high = np.percentile(thumbnail, [1, 99])
    return np.clip((thumbnail - low) / max(high - low, 1e-6), 0.0, 1.0).astype(np.float32).ravel()
