"""Unpack an uploaded zip of labelled films (manifest or class sub-folders) safely into a folder.

A zip from outside is untrusted: members with absolute paths or ``..`` (zip slip), links, too many members and
too many bytes once unpacked (zip bombs) are refused with a message saying which member and why. Only image files
and ``manifest.csv`` are written; everything else (``__MACOSX``, ``Thumbs.db``, notes) is skipped.
"""

from __future__ import annotations

import os
import stat
import zipfile
from pathlib import Path, PurePosixPath
from typing import BinaryIO

from core.io.datasets import DatasetError
from core.io.images import SUPPORTED_SUFFIXES

MAX_MEMBERS = 50_000
MAX_UNPACKED_BYTES = 8 * 1024**3  # 8 GiB
_COPY_CHUNK = 1 << 20


def _wanted(name: PurePosixPath) -> bool:
    if any(part.startswith(".") or part == "__MACOSX" for part in name.parts):
        return False
    return name.name == "manifest.csv" or name.suffix.lower() in SUPPORTED_SUFFIXES


def extract_labelled_zip(archive: str | os.PathLike | BinaryIO, destination: str | os.PathLike) -> Path:
    """Unpack the films and manifest of ``archive`` under ``destination``; return the data set's root folder.

    The root is the folder holding ``manifest.csv`` or the class sub-folders: a zip of one top folder
    (``site-films/COVID/…``) and a zip of its contents give the same result. Raises :class:`DatasetError`.
    """
    destination = Path(destination).resolve()
    destination.mkdir(parents=True, exist_ok=True)
    try:
        bundle = zipfile.ZipFile(archive)
    except (zipfile.BadZipFile, OSError) as exc:
        raise DatasetError(f"the upload is not a readable zip file ({exc})") from exc
    with bundle:
        members = bundle.infolist()
        if len(members) > MAX_MEMBERS:
            raise DatasetError(f"the zip holds {len(members)} entries; at most {MAX_MEMBERS} are accepted")
        total = sum(member.file_size for member in members)
        if total > MAX_UNPACKED_BYTES:
            raise DatasetError(f"the zip unpacks to {total / 1024**3:.1f} GiB; at most "
                               f"{MAX_UNPACKED_BYTES / 1024**3:.0f} GiB are accepted")
        for member in members:
            name = PurePosixPath(member.filename.replace("\\", "/"))
            if name.is_absolute() or ".." in name.parts or (name.parts and ":" in name.parts[0]):
                raise DatasetError(f"{member.filename}: a path outside the zip's folder; refusing the zip")
            if stat.S_ISLNK(member.external_attr >> 16):
                raise DatasetError(f"{member.filename}: a symbolic link; refusing the zip")
            if member.is_dir() or not _wanted(name):
                continue
            target = destination.joinpath(*name.parts)
            target.parent.mkdir(parents=True, exist_ok=True)
            written = 0
            with bundle.open(member) as source, open(target, "wb") as sink:
                while chunk := source.read(_COPY_CHUNK):
                    written += len(chunk)
                    if written > member.file_size:  # the header lied about the size
                        raise DatasetError(f"{member.filename}: larger than its zip header says; refusing the zip")
                    sink.write(chunk)
    return _data_root(destination)


def _data_root(folder: Path) -> Path:
    """Descend through single sub-folders until a manifest or image files appear."""
    while not (folder / "manifest.csv").is_file():
        children = [p for p in folder.iterdir() if not p.name.startswith(".")]
        if len(children) == 1 and children[0].is_dir() and not any(
                p.is_file() and p.suffix.lower() in SUPPORTED_SUFFIXES for p in children[0].iterdir()):
            folder = children[0]
        else:
            break
    return folder
