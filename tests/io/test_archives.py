"""Unpacking an uploaded zip of labelled films: layouts found, junk skipped, hostile zips refused."""

from __future__ import annotations

import io
import stat
import zipfile

import pytest

from core.io.archives import extract_labelled_zip
from core.io.datasets import DatasetError, load_dataset

PNG = b"\x89PNG\r\n\x1a\n" + b"\0" * 32


def zip_of(entries: dict[str, bytes]) -> io.BytesIO:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as bundle:
        for name, content in entries.items():
            bundle.writestr(name, content)
    buffer.seek(0)
    return buffer


def test_class_folders_inside_one_top_folder(tmp_path):
    archive = zip_of({"films/COVID/a.png": PNG, "films/Normal/b.png": PNG, "films/readme.txt": b"x",
                      "__MACOSX/films/._a.png": b"junk", "films/.DS_Store": b"junk"})
    root = extract_labelled_zip(archive, tmp_path / "out")
    assert root == (tmp_path / "out" / "films").resolve()
    dataset = load_dataset(root)
    assert dataset.layout == "class-folders" and sorted(dataset.table["label"]) == ["COVID-19", "Normal"]
    assert not (root / "readme.txt").exists() and not (tmp_path / "out" / "__MACOSX").exists()


def test_manifest_layout_at_the_top(tmp_path):
    archive = zip_of({"manifest.csv": b"file,label,patient_id\na.png,COVID-19,p1\nb.png,Normal,p2\n",
                      "images/a.png": PNG, "images/b.png": PNG})
    root = extract_labelled_zip(archive, tmp_path / "out")
    assert root == (tmp_path / "out").resolve() and load_dataset(root).layout == "manifest"


@pytest.mark.parametrize("name", ["../escape.png", "/etc/escape.png", "films/../../escape.png", "C:/escape.png"])
def test_paths_outside_the_folder_are_refused(tmp_path, name):
    with pytest.raises(DatasetError, match="outside the zip's folder"):
        extract_labelled_zip(zip_of({name: PNG}), tmp_path / "out")
    assert not (tmp_path / "escape.png").exists()


def test_links_are_refused(tmp_path):
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as bundle:
        link = zipfile.ZipInfo("films/COVID/a.png")
        link.external_attr = (stat.S_IFLNK | 0o777) << 16
        bundle.writestr(link, "/etc/passwd")
    with pytest.raises(DatasetError, match="symbolic link"):
        extract_labelled_zip(io.BytesIO(buffer.getvalue()), tmp_path / "out")


def test_not_a_zip(tmp_path):
    with pytest.raises(DatasetError, match="not a readable zip file"):
        extract_labelled_zip(io.BytesIO(b"PK but not really"), tmp_path / "out")


def test_too_large_once_unpacked(tmp_path, monkeypatch):
    monkeypatch.setattr("core.io.archives.MAX_UNPACKED_BYTES", 1000)
    with pytest.raises(DatasetError, match="unpacks to"):
        extract_labelled_zip(zip_of({"COVID/a.png": b"\0" * 5000}), tmp_path / "out")
