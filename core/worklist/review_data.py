"""What the review workflow stores with a case: a downscaled copy of the film, how the reviewer was identified,
and the radiologist's zone grades when they differ from the model's (the columns are :mod:`.migration_4`).

Corrected grades become training labels: they are exported beside the model's grades (see
:mod:`core.worklist.export`), and every correction is an audited change of the case.
"""

from __future__ import annotations

import io
import json
import numbers
from collections.abc import Mapping
from typing import Any

import numpy as np
from PIL import Image

from core.lungs.zones import ZONE_NAMES
from core.worklist.migration_4 import IDENTITY_SOURCES
from core.worklist.schema import WorklistError

THUMBNAIL_MAX_SIDE = 256       # px, longest side of the stored copy: enough to recognise the film in a list
MAX_THUMBNAIL_BYTES = 256_000  # a 256-px 8-bit PNG is 20-80 kB; anything larger is not one of ours
MAX_ZONE_GRADE = 3             # Brixia: 0 none, 1 interstitial, 2 interstitial + alveolar, 3 alveolar predominant
_PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def thumbnail_png(pixels: np.ndarray, max_side: int = THUMBNAIL_MAX_SIDE) -> bytes:
    """A downscaled 8-bit grey PNG of the film for the worklist: pixels only, no metadata.

    Parameters
    ----------
    pixels : ndarray of float, shape (H, W)
        The image in [0, 1], MONOCHROME2.
    max_side : int
        Longest side of the thumbnail in pixels (smaller images are kept at their size).

    Returns
    -------
    bytes
        PNG file content (no text chunks: neither file name nor header travel with it).
    """
    values = np.clip(np.asarray(pixels, dtype=np.float32), 0.0, 1.0)
    if values.ndim != 2:
        raise ValueError(f"pixels must be a 2-D (H, W) array, got shape {values.shape}")
    picture = Image.fromarray(np.round(values * 255).astype(np.uint8), mode="L")
    picture.thumbnail((max_side, max_side), Image.Resampling.LANCZOS)
    buffer = io.BytesIO()
    picture.save(buffer, format="PNG", optimize=True)
    return buffer.getvalue()


def check_thumbnail(value: Any) -> bytes | None:
    """PNG bytes within the size limit, or None."""
    if value is None:
        return None
    if not isinstance(value, (bytes, bytearray)) or not bytes(value).startswith(_PNG_SIGNATURE):
        raise WorklistError("thumbnail must be PNG bytes (see core.worklist.review_data.thumbnail_png)")
    if len(value) > MAX_THUMBNAIL_BYTES:
        raise WorklistError(f"thumbnail is {len(value)} bytes, the limit is {MAX_THUMBNAIL_BYTES}")
    return bytes(value)


def check_identity_source(value: Any) -> str:
    if value not in IDENTITY_SOURCES:
        raise WorklistError(f"identity source must be one of {IDENTITY_SOURCES}, got {value!r}")
    return value


def check_zone_grades(grades: Any) -> dict[str, int]:
    """All six zones (``core.lungs.zones.ZONE_NAMES``) graded 0-3 by the radiologist."""
    if not isinstance(grades, Mapping):
        raise WorklistError(f"zone grades must be a dict of zone name -> grade 0-{MAX_ZONE_GRADE}, got {grades!r}")
    unknown = sorted(set(map(str, grades)) - set(ZONE_NAMES))
    missing = [name for name in ZONE_NAMES if name not in grades]
    if unknown or missing:
        raise WorklistError(f"zone grades need exactly the six zones {', '.join(ZONE_NAMES)}"
                            + (f"; unknown: {', '.join(unknown)}" if unknown else "")
                            + (f"; missing: {', '.join(missing)}" if missing else ""))
    checked = {}
    for name in ZONE_NAMES:
        grade = grades[name]
        if isinstance(grade, (bool, np.bool_)) or not isinstance(grade, numbers.Integral) \
                or not 0 <= grade <= MAX_ZONE_GRADE:
            raise WorklistError(f"zone grade of {zone_label(name)} must be an integer 0-{MAX_ZONE_GRADE}, "
                                f"got {grade!r}")
        checked[name] = int(grade)
    return checked


def zone_grades_json(grades: Any) -> str:
    return json.dumps(check_zone_grades(grades))


def zone_label(name: str) -> str:
    """``right_lower`` -> ``right lower``."""
    return name.replace("_", " ")


def describe_grade_changes(before: Mapping[str, int] | None, after: Mapping[str, int]) -> str:
    """The audit note of a correction, e.g. ``zone grades corrected: right lower 1 → 2``.

    ``before`` is what was shown to the radiologist (the model's grades or an earlier correction).
    """
    before = before or {}
    changes = [f"{zone_label(name)} {before.get(name, '?')} → {after[name]}" for name in ZONE_NAMES
               if before.get(name) != after[name]]
    return "zone grades corrected: " + ("; ".join(changes) if changes else "confirmed unchanged")
