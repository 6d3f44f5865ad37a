"""Refusal of images that are not frontal chest radiographs, and acceptance of real ones in every format."""

from __future__ import annotations

import io

import numpy as np
import pytest
from imaging_samples import dicom_bytes, dicom_dataset
from PIL import Image

from core.paths import default_models_dir


@pytest.fixture(scope="module")
def model():
    if not (default_models_dir() / "report.json").is_file():
        pytest.skip(f"no trained model in {default_models_dir()}: run `python -m core train --out models/default`")
    from core.triage.model import TriageModel

    return TriageModel.load()


@pytest.fixture(scope="module")
def chest(sample_png) -> Image.Image:
    return Image.open(sample_png).convert("L")


def _encode(image: Image.Image, fmt: str, **options) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, fmt, **options)
    return buffer.getvalue()


@pytest.mark.parametrize("mode, fmt", [("L", "PNG"), ("P", "PNG"), ("RGBA", "PNG"), ("RGB", "JPEG"),
                                       ("CMYK", "JPEG"), ("I;16", "PNG"), ("L", "TIFF"), ("L", "GIF")])
def test_a_real_chest_xray_is_scored_in_every_format(model, chest, mode, fmt):
    image = chest.convert("I").point(lambda v: v * 256).convert("I;16") if mode == "I;16" else chest.convert(mode)
    prediction = model.predict(_encode(image, fmt), name=f"chest.{fmt.lower()}")
    assert prediction.error is None, prediction.error
    assert 0 <= prediction.risk <= 1


def test_a_real_chest_dicom_is_scored(model, chest):
    pixels = (np.asarray(chest, dtype=np.uint16) * 16)  # 12-bit
    prediction = model.predict(dicom_bytes(dicom_dataset(pixels, bits_stored=12)), name="chest.dcm")
    assert prediction.error is None, prediction.error


@pytest.mark.parametrize("field, value, reason", [("Modality", "CT", "CT image, not a projection radiograph"),
                                                  ("ViewPosition", "LL", "lateral view"),
                                                  ("BodyPartExamined", "KNEE", "not a chest examination")])
def test_header_says_not_a_frontal_chest_film(model, chest, field, value, reason):
    dataset = dicom_dataset(np.asarray(chest, dtype=np.uint16) * 16, bits_stored=12)
    setattr(dataset, field, value)
    prediction = model.predict(dicom_bytes(dataset), name="study.dcm")
    assert prediction.risk is None and reason in prediction.error and prediction.error.startswith("study.dcm")


def test_colour_photograph_is_refused(model):
    rng = np.random.default_rng(0)
    photo = np.zeros((240, 320, 3), np.uint8)
    photo[..., 0] = np.linspace(0, 255, 320)[None]
    photo[..., 2] = rng.integers(0, 255, (240, 320))
    prediction = model.predict(_encode(Image.fromarray(photo), "JPEG"), name="holiday.jpg")
    assert prediction.risk is None and "colour image" in prediction.error


def test_noise_is_refused_not_scored(model):
    noise = np.random.default_rng(1).integers(0, 255, (300, 300), dtype=np.uint8)
    prediction = model.predict(_encode(Image.fromarray(noise), "PNG"), name="noise.png")
    assert prediction.risk is None and "unlike every training chest X-ray" in prediction.error
