"""CXR triage core: everything scientific and data-related.

Modules (one topic each):

- ``imaging``      read PNG/JPEG/TIFF/DICOM into a normalised grayscale array
- ``datasets``     manifest / class-folder data sets and their summary
- ``embedding``    SqueezeNet embedding as Orange computes it (fast numpy forward)
- ``lungs``        classical lung-field localisation and the six Brixia zones
- ``radiomic``     intensity / texture / edge features on the lung fields
- ``features``     feature-set orchestration, parallel extraction, content-hash cache
- ``preprocessing`` Orange-faithful transformers (missing-value filter, info-gain selection)
- ``models``       the four classifiers as scikit-learn pipelines (Orange and tuned presets)
- ``evaluation``   repeated sampling (random / patient-grouped / source), metrics, ROC, confusion
- ``severity``     corona score (lung-zone severity) and patient progression
- ``training``     fit, calibrate, save and verify the default models
- ``worklist``     SQLAlchemy store of flagged cases with an audit trail
- ``cli``          ``python -m core ...``
"""

__version__ = "0.1.0"
