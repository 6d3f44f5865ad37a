"""Is this a frontal chest radiograph, upright and exposed? The reasons an image is refused instead of scored.

A triage model answers for frontal chest X-rays only; a risk shown for a CT slice, a lateral film, a blank film, a
film on its side or a holiday photograph would be wrong and could trigger a quarantine. Every command (``predict``,
``score``) and every dashboard page reach a verdict through :meth:`core.triage.model.TriageModel.predict_image`,
which asks :func:`acceptance` first. The check is deliberately conservative: header facts (modality, view, body
part), a genuinely coloured image, a blank film and a film the orientation check is sure is turned refuse on their
own; the image content refuses only when two independent signs agree — the features are far from every training
image *and* no plausible pair of lung fields is found — because either alone also happens on real but unusual chest
films, which get a warning instead.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from core.io.dicom import CHEST_BODY_PARTS, LATERAL_VIEWS, RADIOGRAPH_MODALITIES
from core.io.images import XRayImage
from core.io.pixels import COLOUR_PHOTO_NOTE
from core.learn.orientation import OrientationVerdict
from core.lungs.fields import LungFields

# Distance to the training images, in units of their own 99th-percentile distance, beyond which (with no lung
# fields found) an image is refused. Between 1 and this value it is only warned about.
REFUSAL_DISTANCE = 1.5

# A film whose 1st-99th percentile span is below this share of full scale shows nothing: blank, unexposed or a
# flat test image. The 800 reference films span at least 0.29 (median 0.83).
BLANK_SPAN = 0.05


@dataclass
class Acceptance:
    """Why an image must not be scored (``refusal``), and what to say about it if it may (``warnings``)."""

    refusal: str | None = None
    warnings: list[str] = field(default_factory=list)


def blank_film_reason(pixels: np.ndarray) -> str | None:
    """Why the film shows nothing (uniform or almost), or None. ``pixels``: float (H, W) in [0, 1]."""
    sample = pixels[:: max(1, pixels.shape[0] // 512), :: max(1, pixels.shape[1] // 512)]
    low, high = np.percentile(sample, [1, 99])
    if pixels.min() == pixels.max():
        return "a blank film: every pixel has the same value"
    if high - low < BLANK_SPAN:
        return (f"a blank film: almost no contrast (1st to 99th percentile span {high - low:.1%} of full scale, "
                f"real films span at least {BLANK_SPAN:.0%})")
    return None


def acceptance(image: XRayImage, fields: LungFields, distance_ratio: float,
               orientation: OrientationVerdict | None) -> Acceptance:
    """The verdict of every check on one image.

    Parameters
    ----------
    image : XRayImage
        The decoded image with its header metadata and reader warnings.
    fields : LungFields
        The lung localisation of the image (``quality["ok"]`` says whether it is plausible).
    distance_ratio : float
        :meth:`core.learn.consensus.OutOfDistributionDetector.distance_ratio` of the image's features (> 1: unusual).
    orientation : OrientationVerdict or None
        :meth:`core.learn.orientation.OrientationCheck.assess` of the image (None: no check is available).
    """
    verdict = Acceptance()
    if distance_ratio > 1.0:
        verdict.warnings.append(f"image unlike the training images (distance {distance_ratio:.1f}× the usual): "
                                "the risk may not be reliable — is this a frontal chest X-ray?")
    if fields.quality.get("warning"):  # the mask-quality check's own words (core.lungs.quality)
        verdict.warnings.append(fields.quality["warning"])
    elif not fields.quality.get("ok", True):
        verdict.warnings.append("lung fields not found where expected (" + _quality_reason(fields.quality)
                                + "): check that this is a frontal chest X-ray")
    if orientation is not None and orientation.warning:
        verdict.warnings.append(orientation.warning)
    verdict.refusal = _refusal(image, fields, distance_ratio, orientation)
    return verdict


def _refusal(image: XRayImage, fields: LungFields, distance_ratio: float,
             orientation: OrientationVerdict | None) -> str | None:
    meta = image.metadata
    if meta.get("modality") and meta["modality"] not in RADIOGRAPH_MODALITIES:
        return f"{meta['modality']} image, not a projection radiograph"
    if meta.get("view_position") in LATERAL_VIEWS:
        return f"lateral view ({meta['view_position']}); the models read frontal PA/AP films only"
    if meta.get("body_part") and meta["body_part"] not in CHEST_BODY_PARTS:
        return f"body part {meta['body_part']}, not a chest examination"
    if COLOUR_PHOTO_NOTE in image.warnings:
        return "a colour image (a photograph?), not a radiograph"
    blank = blank_film_reason(image.pixels)
    if blank is not None:
        return blank
    if orientation is not None and orientation.refusal:
        return orientation.refusal
    if distance_ratio > REFUSAL_DISTANCE and not fields.quality.get("ok", True):
        return (f"the image is unlike every training chest X-ray (distance {distance_ratio:.1f}× the usual) and no "
                "plausible lung fields were found")
    return None


def _quality_reason(quality: dict) -> str:
    parts = [f"{k} {v:.2f}" if isinstance(v, float) else f"{k} {v}" for k, v in quality.items() if k != "ok"]
    return ", ".join(parts) or "implausible shape"

