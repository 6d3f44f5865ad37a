"""Per-image check of a lung mask: is it shaped, sized and placed like two lungs, and do the two finders agree?

Each measure has a plausible range; a mask outside any range is *doubtful* and gets a warning that says which
measure and by how much, so a radiologist knows to check the outline before trusting the zone grades. The ranges
were set on the network's out-of-fold masks of the reference data (``models/lungs/lung-unet.json`` →
``quality_ranges``, with the figures that justify them); :data:`DEFAULT_RANGES` is used for the classical finder
alone (no network) and for any measure the file does not give.
"""

from __future__ import annotations

import numpy as np
from skimage.measure import label, regionprops

# measure -> (lowest, highest) plausible value; None = no bound on that side.
DEFAULT_RANGES: dict[str, tuple[float | None, float | None]] = {
    "area_fraction": (0.10, 0.55),      # both lungs / working image
    "side_ratio": (0.45, None),         # smaller / larger lung area (the heart makes the left one smaller)
    "height_ratio": (0.75, None),       # shorter / taller lung (a basal opacity cut short shows here)
    "solidity": (0.80, None),           # lung area / its convex hull area (ragged, holed or branching masks)
    "top_offset": (None, 0.15),         # apices' vertical offset / thorax height
    "uncertain_fraction": (None, 0.25), # pixels with network probability 0.2-0.8 / lung area
    "agreement": (0.60, None),          # Dice between the network's and the classical finder's masks
}
_DESCRIPTIONS = {
    "area_fraction": "lungs cover {value:.0%} of the image",
    "side_ratio": "one lung is {value:.0%} of the other's area",
    "height_ratio": "one lung is {value:.0%} of the other's height",
    "solidity": "an outline is ragged (solidity {value:.2f})",
    "top_offset": "the apices are offset by {value:.0%} of the thorax height",
    "uncertain_fraction": "the network is unsure of {value:.0%} of the lung area",
    "agreement": "the two lung finders agree on only {value:.0%} (Dice)",
}


def mask_measures(mask: np.ndarray, probability: np.ndarray | None = None,
                  other: np.ndarray | None = None) -> dict[str, float]:
    """Shape, size, symmetry and agreement measures of a two-lung mask.

    Parameters
    ----------
    mask : ndarray of bool, shape (h, w)
        Both lungs at working size.
    probability : ndarray of float, shape (h, w), optional
        The network's lung probability (gives ``uncertain_fraction``).
    other : ndarray of bool, shape (h, w), optional
        A second finder's mask (gives ``agreement``, the Dice coefficient of the two).

    Returns
    -------
    dict of str to float
        ``area_fraction``, ``n_lungs`` (connected parts; the two largest are taken as the lungs), ``side_ratio``,
        ``height_ratio``, ``solidity`` (the lower of the two lungs), ``top_offset``, and when given
        ``uncertain_fraction`` and ``agreement``. With fewer than two lungs the pair measures are 0 (or 1 for
        ``top_offset``), i.e. out of range.
    """
    mask = np.asarray(mask, dtype=bool)
    parts = sorted(regionprops(label(mask)), key=lambda part: -part.area)
    measures = {"area_fraction": float(mask.mean()), "n_lungs": float(len(parts))}
    if len(parts) >= 2:
        first, second = parts[:2]
        first_height, second_height = (p.bbox[2] - p.bbox[0] for p in (first, second))
        thorax_height = max(first.bbox[2], second.bbox[2]) - min(first.bbox[0], second.bbox[0])
        measures.update(side_ratio=second.area / first.area,
                        height_ratio=min(first_height, second_height) / max(first_height, second_height),
                        solidity=float(min(first.solidity, second.solidity)),
                        top_offset=abs(first.bbox[0] - second.bbox[0]) / thorax_height)
    else:
        measures.update(side_ratio=0.0, height_ratio=0.0, solidity=float(parts[0].solidity) if parts else 0.0,
                        top_offset=1.0)
    if probability is not None:
        uncertain = (probability > 0.2) & (probability < 0.8)
        measures["uncertain_fraction"] = float(np.count_nonzero(uncertain) / max(np.count_nonzero(mask), 1))
    if other is not None:
        other = np.asarray(other, dtype=bool)
        total = np.count_nonzero(mask) + np.count_nonzero(other)
        measures["agreement"] = float(2 * np.count_nonzero(mask & other) / total) if total else 0.0
    return measures


def doubtful_measures(measures: dict[str, float],
                      ranges: dict[str, tuple[float | None, float | None]] | None = None) -> list[str]:
    """Plain-language reasons (one per measure outside its plausible range); empty when the mask looks right."""
    ranges = {**DEFAULT_RANGES, **(ranges or {})}
    reasons = []
    for name, (low, high) in ranges.items():
        value = measures.get(name)
        if value is None or not np.isfinite(value):
            continue
        if (low is not None and value < low) or (high is not None and value > high):
            reasons.append(_DESCRIPTIONS[name].format(value=value))
    return reasons


def quality_warning(reasons: list[str], method: str) -> str | None:
    """The one warning shown to the reader, or None when the mask looks right."""
    if not reasons:
        return None
    return (f"lung outline doubtful ({method} finder): " + "; ".join(reasons)
            + " — check the outline before trusting the zone grades and the corona score")
