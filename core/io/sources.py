"""The bytes of an image file, whatever was passed, read safely: regular files only, never more than a cap.

A path may name something that is not a file of bytes: a FIFO that blocks the reader until a writer appears, a
symlink to ``/dev/zero`` that never ends, a multi-gigabyte file. Each is refused here, before anything is decoded,
with the file's name and the reason, so a batch answers every other file.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path
from typing import BinaryIO

from core.io.pixels import ImageReadError, describe_error

MAX_FILE_BYTES = 64 * 2**20
"""Largest file read, in bytes (64 MiB). A single-frame chest radiograph is at most ~40 MB even as uncompressed
16-bit DICOM (4300 x 4300 pixels); a DICOM at this limit peaks near 0.5 GB in ``predict``. The dashboard's upload
limit (``.streamlit/config.toml``, 50 MB) is lower still."""

_NOT_REGULAR = ((stat.S_ISDIR, "is a directory, not an image file"), (stat.S_ISFIFO, "a named pipe (FIFO)"),
                (stat.S_ISCHR, "a character device"), (stat.S_ISBLK, "a block device"), (stat.S_ISSOCK, "a socket"))


def too_large(display: str, size: int | str) -> ImageReadError:
    size = f"{size:,} bytes" if isinstance(size, int) else size
    return ImageReadError(display, f"file too large: {size} exceeds the {MAX_FILE_BYTES:,}-byte limit")


def read_path(path: str | os.PathLike, display: str) -> bytes:
    """At most ``MAX_FILE_BYTES`` of a regular file (symlinks followed); anything else is refused unread."""
    try:
        # O_NONBLOCK: opening a FIFO must not wait for a writer (it is refused just below); no effect on files
        descriptor = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_CLOEXEC", 0))
    except FileNotFoundError as err:
        raise ImageReadError(display, "file not found") from err
    except IsADirectoryError as err:
        raise ImageReadError(display, "is a directory, not an image file") from err
    except PermissionError as err:
        raise ImageReadError(display, "permission denied") from err
    except OSError as err:
        raise ImageReadError(display, f"cannot read file ({describe_error(err)})") from err
    try:
        info = os.fstat(descriptor)
        for test, kind in _NOT_REGULAR:
            if test(info.st_mode):
                reason = kind if kind.startswith("is a") else f"not a regular file: {kind}; only image files are read"
                raise ImageReadError(display, reason)
        if info.st_size > MAX_FILE_BYTES:
            raise too_large(display, info.st_size)
        with os.fdopen(descriptor, "rb", closefd=False) as handle:
            return _read_capped(handle, display)
    except ImageReadError:
        raise
    except OSError as err:
        raise ImageReadError(display, f"cannot read file ({describe_error(err)})") from err
    finally:
        os.close(descriptor)


def read_upload(source: BinaryIO, display: str) -> bytes:
    """At most ``MAX_FILE_BYTES`` of a binary file object (``getvalue()`` first: a consumed upload still works)."""
    try:
        if hasattr(source, "getvalue"):
            data = source.getvalue()
            if isinstance(data, (bytes, bytearray, memoryview)) and len(data) > MAX_FILE_BYTES:
                raise too_large(display, len(data))
        else:
            data = _read_capped(source, display)
    except (OSError, ValueError) as err:
        if isinstance(err, ImageReadError):
            raise
        raise ImageReadError(display, f"cannot read upload ({describe_error(err)})") from err
    if not isinstance(data, (bytes, bytearray, memoryview)):
        raise ImageReadError(display, "file object is not opened in binary mode")
    return bytes(data)


def check_size(data: bytes, display: str) -> bytes:
    if len(data) > MAX_FILE_BYTES:
        raise too_large(display, len(data))
    return data


def _read_capped(handle: BinaryIO, display: str) -> bytes:
    """Read to the end but never more than the cap (a file may grow, a stream may never end)."""
    data = handle.read(MAX_FILE_BYTES + 1)
    if isinstance(data, (bytes, bytearray)) and len(data) > MAX_FILE_BYTES:
        raise too_large(display, f"more than {MAX_FILE_BYTES:,} bytes")
    return data


def display_name_of(source: str | os.PathLike | BinaryIO) -> str:
    """The name a path or a file object carries (not yet sanitised)."""
    if isinstance(source, (str, os.PathLike)):
        return Path(source).name
    return str(getattr(source, "name", "") or "upload")
