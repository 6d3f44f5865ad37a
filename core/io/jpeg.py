"""libjpeg's own warnings about a JPEG file (corrupt or truncated entropy data), which Pillow does not report.

A JPEG whose frame header was patched to another size still "decodes" in Pillow: libjpeg pads or drops the
entropy-coded data, warns ("Corrupt JPEG data: premature end of data segment", "... extraneous bytes before
marker 0xd9") and carries on, and Pillow's error manager discards the warning, so garbage pixels would be scored.
GDCM, installed for compressed DICOM, decodes with its own libjpeg whose warnings go to standard error.
:func:`decoder_warning` wraps the stream in a minimal DICOM file and decodes it once with GDCM in the isolated
worker process (:mod:`core.io.isolated`: a damaged stream can make GDCM abort), reading the worker's standard error.
"""

from __future__ import annotations

import io
import os
import re
import tempfile
import warnings

from core.io.isolated import WorkerCrashed, run_isolated

# libjpeg's warnings about damaged data (jerror.h: JWRN_HIT_MARKER, JWRN_EXTRANEOUS_DATA, JWRN_JPEG_EOF,
# JWRN_HUFF_BAD_CODE, JWRN_MUST_RESYNC, JWRN_ARITH_BAD_CODE, JWRN_BOGUS_PROGRESSION, JWRN_NOT_SEQUENTIAL).
MAX_CHECKED_SAMPLES = 100_000_000
"""Largest JPEG the corruption check decodes, in samples (pixels x colour components). GDCM decodes the whole
frame, about 4 bytes per sample: 100 M samples (a 100-Mpx grayscale or a 33-Mpx colour JPEG) keep its worker under
about 0.45 GB. A larger colour JPEG is refused rather than scored unchecked."""

_CORRUPTION = re.compile(r"^(Corrupt JPEG data:.*|Premature end of JPEG file|Inconsistent progression sequence.*"
                         r"|Invalid SOS parameters for sequential JPEG)$", re.MULTILINE)


def decoder_warning(data: bytes, width: int, height: int, components: int) -> str | None:
    """Why the JPEG stream must be refused (libjpeg reports corrupt or truncated data, ...), or None.

    Parameters
    ----------
    data : bytes
        The JPEG stream (a whole .jpg file, or one frame of a JPEG-compressed DICOM).
    width, height : int
        The size the frame header declares, in pixels.
    components : int
        1 (grayscale), 3 (YCbCr) or 4 (CMYK / YCCK).

    Returns
    -------
    str or None
        The reason to refuse the file, e.g. ``'corrupt JPEG data: the decoder reports "Corrupt JPEG data: premature
        end of data segment"'``, that the decoder crashed on it, or that it is too large to check. None when
        libjpeg decoded it without such a warning, or when GDCM does not handle this kind of JPEG.
    """
    if width * height * components > MAX_CHECKED_SAMPLES:
        return (f"JPEG too large to check for corrupt data ({width}x{height} pixels x {components} colour "
                f"components exceeds {MAX_CHECKED_SAMPLES:,} samples); save the film as a grayscale JPEG or a PNG")
    try:
        printed = run_isolated(libjpeg_output, data, width, height, components)
    except WorkerCrashed as err:
        return f"corrupt JPEG data: the decoder crashed on it ({err})"
    found = _CORRUPTION.search(printed)
    return f'corrupt JPEG data: the decoder reports "{found.group(0).strip()}"' if found else None


def frame_warning(data: bytes) -> str | None:
    """:func:`decoder_warning` of a JPEG stream at the size its own frame header declares (None: no header)."""
    from PIL import Image

    try:
        with warnings.catch_warnings():  # the size limits are checked by the caller, not by Pillow's warning
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            with Image.open(io.BytesIO(data), formats=("JPEG",)) as header:  # the header only: nothing decoded
                width, height, components = *header.size, len(header.getbands())
    except Exception:  # no readable frame header: the decoder that follows says so
        return None
    return decoder_warning(data, width, height, components)


def libjpeg_output(data: bytes, width: int, height: int, components: int) -> str:
    """What GDCM's libjpeg prints on standard error while decoding ``data`` (run in the isolated worker only:
    it redirects the process's file descriptor 2, and GDCM may abort the process)."""
    import gdcm

    with tempfile.TemporaryDirectory() as folder, tempfile.TemporaryFile() as printed:
        path = os.path.join(folder, "frame.dcm")
        _wrap_in_dicom(data, width, height, components).save_as(path, enforce_file_format=True)
        saved = os.dup(2)
        os.dup2(printed.fileno(), 2)
        try:  # ask for the last row only: libjpeg decodes every scan to reach it, GDCM copies one row out
            reader = gdcm.ImageRegionReader()
            reader.SetFileName(path)
            if reader.ReadInformation():
                last_row = gdcm.BoxRegion()
                last_row.SetDomain(0, width - 1, height - 1, height - 1, 0, 0)
                reader.SetRegion(last_row)
                reader.ReadIntoBuffer(bytearray(reader.ComputeBufferLength()))
        finally:
            os.dup2(saved, 2)
            os.close(saved)
        printed.seek(0)
        return printed.read().decode("utf-8", "replace")


def _wrap_in_dicom(data: bytes, width: int, height: int, components: int):
    """A minimal DICOM data set holding the JPEG stream as its one encapsulated frame (what GDCM decodes)."""
    from pydicom.dataset import Dataset, FileMetaDataset
    from pydicom.encaps import encapsulate
    from pydicom.uid import JPEGBaseline8Bit, SecondaryCaptureImageStorage, generate_uid

    dataset = Dataset()
    dataset.file_meta = FileMetaDataset()
    dataset.file_meta.TransferSyntaxUID = JPEGBaseline8Bit
    dataset.file_meta.MediaStorageSOPClassUID = dataset.SOPClassUID = SecondaryCaptureImageStorage
    dataset.file_meta.MediaStorageSOPInstanceUID = dataset.SOPInstanceUID = generate_uid()
    dataset.Rows, dataset.Columns, dataset.SamplesPerPixel = height, width, components
    dataset.PhotometricInterpretation = {1: "MONOCHROME2", 3: "YBR_FULL_422"}.get(components, "CMYK")
    if components > 1:
        dataset.PlanarConfiguration = 0
    dataset.BitsAllocated, dataset.BitsStored, dataset.HighBit, dataset.PixelRepresentation = 8, 8, 7, 0
    dataset.PixelData = encapsulate([data])
    dataset["PixelData"].VR = "OB"
    return dataset
