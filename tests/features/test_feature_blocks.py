"""Feature sets, the per-image cache and parallel/Dask extraction."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from core.features.blocks import extract_features, feature_blocks, feature_names, zone_feature_table
from core.features.cache import FeatureCache
from core.features.zones import severity_feature_names


@pytest.fixture(scope="module")
def some_images(cxr_dir, cxr_manifest):
    files = cxr_manifest.groupby("label").head(2)["file"].head(4)
    return [str(cxr_dir / "images" / f) for f in files]


def test_feature_sets_are_named_and_fixed_length():
    assert feature_names("embedding")[:2] == ["sqz_000", "sqz_001"] and len(feature_names("embedding")) == 1000
    assert feature_names("both") == feature_names("embedding") + feature_names("radiomic")
    with pytest.raises(ValueError, match="unknown feature set"):
        feature_blocks("pixels")


def test_cache_hit_gives_identical_values_without_reading(tmp_path, some_images, monkeypatch):
    first = extract_features(some_images, "both", n_jobs=1, cache_dir=tmp_path)
    import core.features.blocks

    def fail(*args, **kwargs):
        raise AssertionError("a cached image was decoded again")

    monkeypatch.setattr(core.features.blocks, "read_image", fail)
    second = extract_features(some_images, "both", n_jobs=1, cache_dir=tmp_path)
    assert second.table.equals(first.table)


def test_finding_the_lungs_once_caches_every_lung_block(tmp_path, some_images, monkeypatch):
    """The classifiers' radiomic features and the corona score's zone features share one lung finding per film."""
    extract_features(some_images, "radiomic", n_jobs=1, cache_dir=tmp_path)
    fresh, _ = zone_feature_table(some_images, n_jobs=1, cache_dir=None)
    import core.features.blocks

    def fail(*args, **kwargs):
        raise AssertionError("the lungs of a film were found again")

    monkeypatch.setattr(core.features.blocks, "find_lung_fields", fail)
    cached, errors = zone_feature_table([*some_images, str(tmp_path / "missing.png")], n_jobs=1, cache_dir=tmp_path)
    assert cached.iloc[:-1].equals(fresh) and cached.iloc[-1].isna().all() and list(errors) == [str(tmp_path / "missing.png")]
    assert list(cached.columns) == severity_feature_names()


def test_damaged_cache_entry_is_recomputed(tmp_path, some_images):
    first = extract_features(some_images[:1], "radiomic", n_jobs=1, cache_dir=tmp_path)
    for entry in tmp_path.rglob("*.npy"):
        entry.write_bytes(b"half a file")
    again = extract_features(some_images[:1], "radiomic", n_jobs=1, cache_dir=tmp_path)
    assert again.table.equals(first.table)


def test_cache_write_is_atomic_and_concurrent_safe(tmp_path):
    block = feature_blocks("radiomic")[0]
    cache = FeatureCache(tmp_path)
    values = np.arange(len(block.columns), dtype=np.float32)
    from joblib import Parallel, delayed

    Parallel(n_jobs=2)(delayed(cache.put)(block, "ab" * 32, values) for _ in range(20))
    np.testing.assert_array_equal(cache.get(block, "ab" * 32), values)
    assert not list(tmp_path.rglob("*.tmp"))


def test_unreadable_file_is_reported_and_others_kept(tmp_path, some_images):
    bad = tmp_path / "broken.png"
    bad.write_bytes(b"\x89PNG not really")
    result = extract_features([some_images[0], str(bad)], "radiomic", n_jobs=1, cache_dir=None)
    assert list(result.table["file"]) == [some_images[0]]
    assert "broken.png" in result.errors[str(bad)]


def test_parallel_and_dask_equal_local(tmp_path, some_images):
    distributed = pytest.importorskip("distributed")
    import joblib

    local = extract_features(some_images, "both", n_jobs=1, cache_dir=None, chunk_size=2)
    parallel = extract_features(some_images, "both", n_jobs=2, cache_dir=None, chunk_size=2)
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True,
                                  dashboard_address=None) as cluster, distributed.Client(cluster):
        with joblib.parallel_config(backend="dask"):
            on_dask = extract_features(some_images, "both", n_jobs=-1, cache_dir=None, chunk_size=2)
    for other in (parallel, on_dask):
        assert list(other.table["file"]) == list(local.table["file"])
        np.testing.assert_allclose(other.table.iloc[:, 2:].to_numpy(), local.table.iloc[:, 2:].to_numpy(),
                                   rtol=1e-5, atol=1e-5)


def test_threads_give_the_features_of_one_thread(some_images):
    """Images processed two at a time in one process (core.features.threads) get the same features."""
    from threadpoolctl import threadpool_limits

    with threadpool_limits(limits=1, user_api="blas"):
        one_thread = extract_features(some_images, "both", n_jobs=1, cache_dir=None)
    with threadpool_limits(limits=2, user_api="blas"):  # two threads even on a one-core machine
        threaded = extract_features(some_images, "both", n_jobs=1, cache_dir=None)
    assert list(threaded.table["file"]) == list(one_thread.table["file"])
    radiomic = feature_names("radiomic")
    pd.testing.assert_frame_equal(threaded.table[radiomic], one_thread.table[radiomic])  # bit for bit
    embedding = feature_names("embedding")
    np.testing.assert_allclose(threaded.table[embedding].to_numpy(), one_thread.table[embedding].to_numpy(),
                               rtol=0, atol=1e-5 * np.ptp(one_thread.table[embedding].to_numpy()))
