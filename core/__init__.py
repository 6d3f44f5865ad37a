"""CXR triage core: everything scientific and data-related.

Modules (one topic each):

- ``imaging``      read PNG/JPEG/TIFF/DICOM into a normalised grayscale array
- ``datasets``     manifest / class-folder data sets and their summary
- ``embedding``    SqueezeNet embedding as Orange computes it (fast numpy forward)
- ``lungs``        classical lung-field localisation and the six Brixia zones (outline internals: ``lung_outline``)
- ``radiomic``     intensity / texture / edge features on the lung fields
- ``features``     feature-set orchestration, parallel extraction, content-hash cache
- ``preprocessing`` Orange-faithful transformers (missing-value filter, info-gain selection)
- ``models``       the four classifiers as scikit-learn pipelines (Orange and tuned presets)
- ``splits``       repeated random, patient-grouped and source splits
- ``metrics``      AUC, CA, F1, precision, recall, sensitivity/specificity, confusion matrices, ROC points
- ``evaluation``   the four models × before/after over repeated splits (report dataclasses: ``evaluation_report``)
- ``consensus``    calibrated consensus risk, flag threshold, out-of-distribution check
- ``workflow``     data set → features → evaluation / saved models (shared by CLI and dashboard)
- ``inference``    one image → risk, flag, per-model probabilities, warnings, corona score
- ``bench``        speed and memory figures (``python -m core bench``)
- ``dicom_io``     DICOM decoding (modality LUT, VOI LUT/window, MONOCHROME1)
- ``severity``     corona score (lung-zone severity) and patient progression
- ``training``     fit, calibrate, save and verify the default models
- ``worklist``     SQLAlchemy store of flagged cases with an audit trail
- ``cli``          ``python -m core ...``
"""

__version__ = "0.1.0"
