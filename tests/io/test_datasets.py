"""Data set layouts, label normalisation and the summary."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from core.io.datasets import (
    DatasetError,
    binary_subset,
    format_summary,
    load_dataset,
    summarize,
)
from core.labels import LABEL_COVID, LABEL_NORMAL, normalise_label


def _png(path, size=(80, 96), value=100):
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.full(size[::-1], value, np.uint8)).save(path)


@pytest.mark.parametrize("raw, expected", [("covid", LABEL_COVID), ("COVID-19", LABEL_COVID), ("Covid19", LABEL_COVID),
                                           ("NORMAL", LABEL_NORMAL), ("No Finding", LABEL_NORMAL),
                                           ("No_findings", LABEL_NORMAL), ("Viral Pneumonia", "Viral Pneumonia")])
def test_labels_are_normalised(raw, expected):
    assert normalise_label(raw) == expected


def test_class_folder_layout_any_case(tmp_path):
    _png(tmp_path / "covid" / "a.png")
    _png(tmp_path / "COVID" / "b.jpg".replace(".jpg", ".png"))
    _png(tmp_path / "Normal" / "c.png")
    _png(tmp_path / "Viral Pneumonia" / "d.png")
    dataset = load_dataset(tmp_path)
    assert dataset.layout == "class-folders"
    assert sorted(dataset.table["label"]) == [LABEL_COVID, LABEL_COVID, LABEL_NORMAL, "Viral Pneumonia"]
    assert not dataset.has_patient_ids  # every image is its own patient
    table, y = binary_subset(dataset)
    assert len(table) == 3 and y.sum() == 2
    summary = summarize(dataset)
    assert summary["other_findings"] == ["Viral Pneumonia"]
    assert summary["width"]["min"] == 80 and summary["height"]["max"] == 96


def test_manifest_layout_and_missing_file_is_named(tmp_path):
    _png(tmp_path / "images" / "x.png")
    (tmp_path / "manifest.csv").write_text("file,label,patient_id\nx.png,covid,p1\ny.png,normal,p2\n")
    with pytest.raises(DatasetError, match="y.png"):
        load_dataset(tmp_path)


def test_not_a_dataset_says_what_is_expected(tmp_path):
    with pytest.raises(DatasetError, match="no manifest.csv and no class sub-folders"):
        load_dataset(tmp_path)


def test_unlabelled_folder_when_allowed(tmp_path):
    _png(tmp_path / "a.png")
    assert load_dataset(tmp_path, allow_unlabelled=True).layout == "unlabelled"


def test_reference_data_summary_matches_the_manifest(cxr_dir, cxr_manifest):
    dataset = load_dataset(cxr_dir)
    summary = summarize(dataset)
    labels = cxr_manifest["label"].value_counts()
    assert summary["n_images"] == len(cxr_manifest)
    assert summary["images_per_label"][LABEL_COVID] == labels[LABEL_COVID]
    assert summary["images_per_label"][LABEL_NORMAL] == labels[LABEL_NORMAL]
    assert summary["n_patients"] == cxr_manifest["patient_id"].nunique()
    table, y = binary_subset(dataset)
    assert len(table) == labels[LABEL_COVID] + labels[LABEL_NORMAL] and y.sum() == labels[LABEL_COVID]
    assert "COVID-19" in format_summary(summary)
