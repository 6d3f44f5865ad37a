"""Is this a frontal chest radiograph? The reasons an image is refused instead of scored.

A triage model answers for frontal chest X-rays only; a risk shown for a CT slice, a lateral film or a holiday
photograph would be wrong and could trigger a quarantine. The check is deliberately conservative: header facts
(modality, view, body part) and a genuinely coloured image refuse on their own; the image content refuses only when
two independent signs agree — the features are far from every training image *and* no plausible pair of lung
fields is found — because either alone also happens on real but unusual chest films, which get a warning instead.
"""

from __future__ import annotations

from core.io.dicom import CHEST_BODY_PARTS, LATERAL_VIEWS, RADIOGRAPH_MODALITIES
from core.io.images import XRayImage
from core.io.pixels import COLOUR_PHOTO_NOTE
from core.lungs.fields import LungFields

# Distance to the training images, in units of their own 99th-percentile distance, beyond which (with no lung
# fields found) an image is refused. Between 1 and this value it is only warned about.
REFUSAL_DISTANCE = 1.5


def refusal_reason(image: XRayImage, fields: LungFields, distance_ratio: float) -> str | None:
    """Why the image must not be scored, or None when it may be.

    Parameters
    ----------
    image : XRayImage
        The decoded image with its header metadata and reader warnings.
    fields : LungFields
        The lung localisation of the image (``quality["ok"]`` says whether it is plausible).
    distance_ratio : float
        :meth:`core.learn.consensus.OutOfDistributionDetector.distance_ratio` of the image's features (> 1: unusual).
    """
    meta = image.metadata
    if meta.get("modality") and meta["modality"] not in RADIOGRAPH_MODALITIES:
        return f"{meta['modality']} image, not a projection radiograph"
    if meta.get("view_position") in LATERAL_VIEWS:
        return f"lateral view ({meta['view_position']}); the models read frontal PA/AP films only"
    if meta.get("body_part") and meta["body_part"] not in CHEST_BODY_PARTS:
        return f"body part {meta['body_part']}, not a chest examination"
    if COLOUR_PHOTO_NOTE in image.warnings:
        return "a colour image (a photograph?), not a radiograph"
    if distance_ratio > REFUSAL_DISTANCE and not fields.quality.get("ok", True):
        return (f"the image is unlike every training chest X-ray (distance {distance_ratio:.1f}× the usual) and no "
                "plausible lung fields were found")
    return None
