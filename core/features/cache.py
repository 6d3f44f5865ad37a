"""The per-image feature cache: a file store keyed by the SHA-256 of the image file and the feature block's version.

A second run over the same images only hashes the files. Safe when several processes write at once (temporary
file + atomic rename).
"""

from __future__ import annotations

import hashlib
import os
import tempfile
from pathlib import Path
from typing import Protocol

import numpy as np


class CachedBlock(Protocol):
    """What the cache needs of a feature block: its name, version and column names."""

    name: str
    version: str
    columns: tuple[str, ...]


def file_sha256(path: str | os.PathLike) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def pairs_sha256(pairs) -> str:
    """SHA-256 over sorted ``(a, b)`` text pairs, one ``a<TAB>b`` line each: the same set, in any order, gives the
    same digest (data set and model-file fingerprints)."""
    digest = hashlib.sha256()
    for first, second in sorted(pairs):
        digest.update(f"{first}\t{second}\n".encode())
    return digest.hexdigest()


class FeatureCache:
    """File store of per-image feature vectors: ``<root>/<block>-<version>/<sha[:2]>/<sha>.npy``.

    Writes go to a temporary file in the same folder and are renamed into place (``os.replace`` is atomic on POSIX),
    so two processes writing the same entry at once both leave a complete file, and a reader never sees half of one.
    """

    def __init__(self, root: str | os.PathLike | None):
        self.root = Path(root) if root is not None else None

    def _path(self, block: CachedBlock, sha: str) -> Path:
        return self.root / f"{block.name}-{block.version}" / sha[:2] / f"{sha}.npy"

    def get(self, block: CachedBlock, sha: str) -> np.ndarray | None:
        if self.root is None:
            return None
        path = self._path(block, sha)
        try:
            values = np.load(path, allow_pickle=False)
        except (OSError, ValueError):  # absent, or damaged by a crash before the rename: recompute
            return None
        return values if values.shape == (len(block.columns),) else None

    def put(self, block: CachedBlock, sha: str, values: np.ndarray) -> None:
        if self.root is None:
            return
        path = self._path(block, sha)
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            handle, temporary = tempfile.mkstemp(dir=path.parent, suffix=".tmp")
        except OSError:  # a cache that cannot be written only costs speed: the features are still returned
            return
        try:
            with os.fdopen(handle, "wb") as stream:
                np.save(stream, np.asarray(values, dtype=np.float32))
            os.replace(temporary, path)
        except BaseException:
            Path(temporary).unlink(missing_ok=True)
            raise
