"""CXR triage core: everything scientific and data-related, laid out along the path an image takes.

- ``paths``, ``progress``, ``labels``  configuration, the progress-callback type, the label vocabulary
- ``io/``          file -> image: PNG/JPEG/TIFF/DICOM readers, pixel helpers, labelled data sets
- ``lungs/``       image -> lung fields (outline, masks) and the six Brixia zones
- ``features/``    image + lungs -> features: SqueezeNet embedding, radiomic, zone features, blocks, cache
- ``learn/``       features -> the study's four models and the linear model, three-class training, consensus, flag rule,
                   site-shift check, artifacts
- ``evaluation/``  splits, metrics, repeated evaluation and its report
- ``severity/``    lungs + zone features -> corona score, fitting, noise, progression
- ``worklist/``    flagged cases in a database, with an audit trail
- ``triage/``      one image -> acceptance check, risk, flag, corona score (what CLI and dashboard call)
- ``workflow``     data set -> features -> evaluation / saved models (shared by CLI and dashboard)
- ``cli``, ``bench``  ``python -m core ...`` and its benchmarks

Imports only go from a later stage to an earlier one (``tests/architecture/test_layout.py`` checks it).
"""

__version__ = "0.2.0"
