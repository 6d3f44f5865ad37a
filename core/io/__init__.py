"""File -> image: read PNG/JPEG/TIFF/DICOM into one pixel convention, and read labelled data sets.

``images`` (the reader and :class:`~core.io.images.XRayImage`), ``dicom`` (DICOM decoding), ``pixels`` (helpers
both readers share), ``datasets`` (manifest and class-folder layouts).
"""
