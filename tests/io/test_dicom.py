"""core.io.dicom through read_image: LUT pipeline, photometrics, codecs, header warnings, privacy, bad files."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("pydicom")
from imaging_samples import dicom_bytes, dicom_dataset, ramp12, texture  # noqa: E402
from pydicom.dataset import Dataset  # noqa: E402
from pydicom.uid import JPEG2000Lossless, RLELossless  # noqa: E402

from core.io.images import ImageReadError, read_image  # noqa: E402

RNG = np.random.default_rng(11)


def _read_error(data: bytes, name: str) -> ImageReadError:
    with pytest.raises(ImageReadError) as caught:
        read_image(data, name=name)
    return caught.value


def test_dicom_monochrome1_is_inverted():
    stored = ramp12()
    plain = read_image(dicom_bytes(dicom_dataset(stored, "MONOCHROME2", 12)), name="m2.dcm")
    inverted = read_image(dicom_bytes(dicom_dataset(stored, "MONOCHROME1", 12)), name="m1.dcm")
    assert plain.format == inverted.format == "DICOM"
    assert (plain.metadata["photometric"], inverted.metadata["photometric"]) == ("MONOCHROME2", "MONOCHROME1")
    np.testing.assert_allclose(inverted.pixels, 1.0 - plain.pixels, atol=1e-6)
    assert plain.pixels[0, 0] == 0.0 and plain.pixels.max() == 1.0


def test_dicom_12bit_rescale_and_window_follow_the_standard():
    stored = ramp12()
    slope, intercept, center, width = 2.0, -1000.0, 1500.0, 3000.0
    ds = dicom_dataset(stored, bits_stored=12, RescaleSlope=slope, RescaleIntercept=intercept,
                       WindowCenter=center, WindowWidth=width)
    image = read_image(dicom_bytes(ds), name="window.dcm")
    modality_values = stored * slope + intercept
    # PS3.3 C.11.2.1.2.1 LINEAR window, normalised to the display range [0, 1]
    expected = np.clip((modality_values - (center - 0.5)) / (width - 1) + 0.5, 0.0, 1.0)
    np.testing.assert_allclose(image.pixels, expected, atol=1e-6)
    assert image.metadata["bits_stored"] == 12


@pytest.mark.parametrize("photometric", ["MONOCHROME2", "MONOCHROME1"])
def test_dicom_voi_lut_sequence_maps_its_output_range(photometric: str):
    stored = ramp12()
    curve = np.round(65535 * np.sqrt(np.arange(4096) / 4095)).astype(np.uint16)  # non-linear, 16-bit entries
    item = Dataset()
    item.LUTDescriptor = [4096, 0, 16]
    item.LUTData = curve.tobytes()
    ds = dicom_dataset(stored, photometric, 12, WindowCenter=10, WindowWidth=10)  # the LUT takes precedence
    ds.VOILUTSequence = [item]
    image = read_image(dicom_bytes(ds), name="lut.dcm")
    expected = curve[stored] / 65535.0
    np.testing.assert_allclose(image.pixels, expected if photometric == "MONOCHROME2" else 1 - expected, atol=1e-6)


def test_dicom_unusable_window_falls_back_to_minmax_with_a_warning():
    stored = ramp12()
    image = read_image(dicom_bytes(dicom_dataset(stored, bits_stored=12, WindowCenter=100, WindowWidth=0)), name="w0.dcm")
    np.testing.assert_allclose(image.pixels, stored / 4095.0, atol=1e-6)
    assert any(note.startswith("VOI LUT / window unusable") for note in image.warnings)


def test_dicom_without_window_keeps_depth_and_uses_minmax():
    stored = ramp12()
    image = read_image(dicom_bytes(dicom_dataset(stored, bits_stored=12)), name="deep.dcm")
    np.testing.assert_allclose(image.pixels, stored / 4095.0, atol=1e-6)
    assert len(np.unique(image.pixels)) == 4096


def test_dicom_8bit_is_exactly_value_over_255():
    stored = texture() // 2 + 40  # 40..167: a min-max stretch would change every value
    image = read_image(dicom_bytes(dicom_dataset(stored, bits_stored=8)), name="eight.dcm")
    np.testing.assert_array_equal(image.to_uint8(), stored)


@pytest.mark.parametrize("syntax", [RLELossless, JPEG2000Lossless])
def test_compressed_dicom_decodes_losslessly(syntax):
    from pydicom.pixels import get_encoder

    if not get_encoder(syntax).is_available:
        pytest.skip(f"no installed encoder for {syntax.name}")
    stored = ramp12()
    ds = dicom_dataset(stored, bits_stored=12)
    ds.compress(syntax)
    image = read_image(dicom_bytes(ds), name="packed.dcm")
    reference = read_image(dicom_bytes(dicom_dataset(stored, bits_stored=12)), name="plain.dcm")
    np.testing.assert_array_equal(image.pixels, reference.pixels)
    assert image.metadata["transfer_syntax"] == syntax.name


def test_dicom_metadata_and_privacy():
    ds = dicom_dataset(texture(), bits_stored=8, PatientID="P-0042", PatientName="Doe^Jane",
                       PatientBirthDate="19700101", StudyDate="20200315", Modality="DX", ViewPosition="PA",
                       BodyPartExamined="CHEST")
    image = read_image(dicom_bytes(ds), name="pa.dcm")
    assert {k: image.metadata[k] for k in ("patient_id", "study_date", "modality", "view_position", "body_part")} == {
        "patient_id": "P-0042", "study_date": "2020-03-15", "modality": "DX", "view_position": "PA",
        "body_part": "CHEST"}
    assert not any("Doe" in str(value) or "1970" in str(value) for value in image.metadata.values())
    assert image.warnings == []


@pytest.mark.parametrize(("attributes", "fragment"), [
    ({"Modality": "CT"}, "CT modality"),
    ({"Modality": "DX", "ViewPosition": "LL"}, "lateral view"),
    ({"Modality": "CR", "ViewPosition": "LATERAL"}, "lateral view"),
    ({"Modality": "DX", "BodyPartExamined": "KNEE"}, "not a chest"),
])
def test_dicom_header_warnings(attributes: dict, fragment: str):
    image = read_image(dicom_bytes(dicom_dataset(texture(), bits_stored=8, **attributes)), name="w.dcm")
    assert any(fragment in note for note in image.warnings)


@pytest.mark.parametrize("kind", ["gray RGB", "gray palette", "colour RGB"])
def test_colour_dicom_goes_through_luma(kind: str):
    gray = texture()
    if kind == "gray palette":
        ds = dicom_dataset(gray, "PALETTE COLOR", 8)
        entries = (np.arange(256, dtype=np.uint16) * 257).tobytes()  # identity palette, 16-bit entries
        for colour in ("Red", "Green", "Blue"):
            setattr(ds, f"{colour}PaletteColorLookupTableDescriptor", [256, 0, 16])
            setattr(ds, f"{colour}PaletteColorLookupTableData", entries)
    else:
        rgb = np.dstack([gray] * 3) if kind == "gray RGB" else RNG.integers(0, 256, (*gray.shape, 3), dtype=np.uint8)
        ds = dicom_dataset(rgb, "RGB", 8)
    image = read_image(dicom_bytes(ds), name="colour.dcm")
    if kind == "colour RGB":
        assert any("colour image" in note for note in image.warnings)
    else:
        expected = gray / 255.0 if kind == "gray RGB" else (gray - gray.min()) / float(np.ptp(gray))
        np.testing.assert_allclose(image.pixels, expected, atol=1e-6)
        assert image.warnings == []


def test_multiframe_dicom_uses_first_frame():
    frames = np.stack([texture(seed=1), np.zeros((96, 80), np.uint8), texture(seed=2)])
    image = read_image(dicom_bytes(dicom_dataset(frames, bits_stored=8)), name="cine.dcm")
    np.testing.assert_array_equal(image.to_uint8(), frames[0])
    assert image.metadata["n_frames"] == 3
    assert any(note.startswith("multi-frame DICOM: first frame used") for note in image.warnings)


def test_dicom_detected_by_preamble_not_suffix_and_raw_dataset_by_suffix(tmp_path: Path):
    ds = dicom_dataset(texture(), bits_stored=8)
    misnamed = tmp_path / "export.png"
    misnamed.write_bytes(dicom_bytes(ds))
    assert read_image(misnamed).format == "DICOM"
    raw = tmp_path / "raw.dcm"
    raw.write_bytes(dicom_bytes(ds, preamble=False))
    assert raw.read_bytes()[128:132] != b"DICM"
    np.testing.assert_array_equal(read_image(raw).to_uint8(), read_image(misnamed).to_uint8())


def test_dicom_without_pixel_data():
    ds = dicom_dataset(texture(), bits_stored=8)
    del ds.PixelData
    err = _read_error(dicom_bytes(ds), name="report.dcm")
    assert str(err).startswith("report.dcm: DICOM file has no pixel data")


def test_corrupt_and_truncated_dicom():
    preamble_then_noise = bytes(128) + b"DICM" + RNG.bytes(600)
    err = _read_error(preamble_then_noise, name="noise.dcm")
    assert err.source == "noise.dcm" and "DICOM" in err.reason
    full = dicom_bytes(dicom_dataset(ramp12(), bits_stored=12))
    err = _read_error(full[:-3000], name="cut.dcm")
    assert err.reason.startswith("cannot decode DICOM pixel data") and "less than expected" in err.reason
    err = _read_error(RNG.bytes(700), name="garbage.dcm")
    assert err.source == "garbage.dcm" and "DICOM" in err.reason


def test_tiny_dicom_is_too_small():
    err = _read_error(dicom_bytes(dicom_dataset(np.zeros((10, 300), np.uint8), bits_stored=8)), name="strip.dcm")
    assert err.reason.startswith("image too small: 300x10")


def _raw_big_endian(stored: np.ndarray, **attributes) -> bytes:
    """A data set written Explicit VR Big Endian with no preamble and no file meta (as old archives hold them)."""
    from pydicom.filebase import DicomBytesIO
    from pydicom.filewriter import write_dataset

    dataset = dicom_dataset(stored, bits_stored=12, **attributes)
    del dataset.file_meta
    dataset.PixelData = stored.astype(">u2").tobytes()
    stream = DicomBytesIO()
    stream.is_little_endian, stream.is_implicit_VR = False, False
    write_dataset(stream, dataset)
    return stream.getvalue()


@pytest.mark.parametrize("name", ["big-endian.dcm", "big-endian", "IM000001"])
def test_big_endian_dicom_is_read_whatever_its_name(name: str):
    stored = ramp12()
    image = read_image(_raw_big_endian(stored, Modality="DX"), name=name)
    assert image.format == "DICOM" and image.metadata["modality"] == "DX"
    np.testing.assert_array_equal(np.round(image.pixels * 4095).astype(int), stored)


@pytest.mark.parametrize("bits, value", [(16, 65535), (12, 4095), (12, 0)])
def test_a_uniform_dicom_keeps_its_brightness(bits: int, value: int):
    image = read_image(dicom_bytes(dicom_dataset(np.full((80, 80), value, np.uint16), bits_stored=bits)),
                       name="flat.dcm")
    assert np.all(image.pixels == value / (2**bits - 1))
