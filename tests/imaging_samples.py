"""Builders of synthetic test images (raster files and DICOM data sets) shared by the imaging tests."""

from __future__ import annotations

import io

import numpy as np
from PIL import Image
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import (
    ExplicitVRLittleEndian,
    SecondaryCaptureImageStorage,
    generate_uid,
)


def texture(height: int = 96, width: int = 80, seed: int = 7) -> np.ndarray:
    """An 8-bit image whose every row and column differs, so flips and rotations are detectable."""
    return np.random.default_rng(seed).integers(0, 256, (height, width), dtype=np.uint8)


def ramp12(height: int = 96, width: int = 80) -> np.ndarray:
    """Every 12-bit level 0..4095, row-major."""
    return (np.arange(height * width) % 4096).astype(np.uint16).reshape(height, width)


def encoded(image: Image.Image, fmt: str, **options) -> bytes:
    """The bytes of ``image`` saved by Pillow as ``fmt``."""
    buffer = io.BytesIO()
    image.save(buffer, fmt, **options)
    return buffer.getvalue()


def dicom_dataset(pixels: np.ndarray, photometric: str = "MONOCHROME2", bits_stored: int = 16,
                  **attributes) -> Dataset:
    """A minimal Secondary Capture data set around ``pixels`` (frames first for a multi-frame array)."""
    ds = Dataset()
    ds.file_meta = FileMetaDataset()
    ds.file_meta.MediaStorageSOPClassUID = SecondaryCaptureImageStorage
    ds.file_meta.MediaStorageSOPInstanceUID = generate_uid()
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.SOPClassUID = SecondaryCaptureImageStorage
    ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID
    ds.set_pixel_data(pixels, photometric, bits_stored)
    for keyword, value in attributes.items():
        setattr(ds, keyword, value)
    return ds


def dicom_bytes(ds: Dataset, preamble: bool = True) -> bytes:
    """The file bytes; ``preamble=False`` writes a raw data set without the 128-byte preamble and 'DICM'."""
    buffer = io.BytesIO()
    ds.save_as(buffer, enforce_file_format=preamble)
    return buffer.getvalue()
