"""bench prints every figure beside its target (the figures themselves are measured by `python -m core bench`)."""

from __future__ import annotations

from core.bench import TARGETS, format_bench


def test_each_target_is_printed_beside_its_figure_with_met_or_not():
    embedding = {"ours_ms_per_image": 10.0, "ours_ms_per_image_one_thread": 16.0, "ndf_ms_per_image": 120.0,
                 "threads": 2, "speedup": 12.0, "speedup_one_thread": 7.5, "max_abs_diff": 1e-5, "relative_diff": 2e-3,
                 "orange_ms_per_image": 480.0, "speedup_vs_orange": 48.0}
    one_thread = {"lung_fields_ms": 35.0, "radiomic_ms": 50.0, "all_features_ms": 70.0, "cached_features_ms": 0.3}
    result = {
        "date": "2026-12-01", "machine": "test", "n_images": 2, "load_average_start": (3.0, 0, 0),
        "load_average_end": (4.0, 0, 0),
        "features": {"decode_resize_ms": 7.0, "lung_fields_ms": 20.0, "radiomic_ms": 30.0, "all_features_ms": 42.0,
                     "all_features_over_decode": 6.0, "cached_features_ms": 0.3, "embedding": embedding,
                     "threads": 2, "one_thread": one_thread, "one_thread_all_features_over_decode": 10.0,
                     "images_per_s": {"decode": 140, "embedding": 100, "radiomic": 33, "both": 24}},
        "predict": {"n": 2, "p50_ms": 300.0, "p95_ms": 400.0},
        "evaluate_reference": [{"split": "patient", "n_images": 440, "n_features": 1163, "n_fits": 80,
                                "repeats": 10, "seconds": 75.0, "cpu_seconds": 80.0}],
        "scaling": [{"n_images": 10_000, "cached_features_s": 9.0, "cached_peak_mib": 140.0}],
    }
    lines = format_bench(result).splitlines()

    def row(start: str) -> str:
        return next(line for line in lines if line.startswith(f"| {start}"))

    assert row("embedding speed-up").endswith(f"| {TARGETS['embedding_speedup'][0]} | met |")
    assert row("embedding max difference").endswith("| NOT met |")
    assert row("all features (both)").endswith(f"| {TARGETS['all_features'][0]} | NOT met |")
    assert "one thread: 70.0 ms = 10.0×" in row("all features (both), one process, 2 threads")
    assert "(one thread: 7.5×)" in row("embedding speed-up")
    assert "ours is 48× faster" in row("SqueezeNet as Orange runs it") and row("SqueezeNet as Orange").endswith("| |")
    assert row("predict one file").endswith("| met |")
    assert "≈ 40 s on 2 idle cores" in row("evaluate --split patient") and row("evaluate").endswith("| NOT met |")
    assert row("scaling, 10000 images").endswith("| met |") and "peak 140 MiB" in row("scaling, 10000")
    assert "load average at start, end: 3.0, 4.0" in lines[0]
    assert row("test suite").endswith("| |") and "bench --only suite" in row("test suite")  # not measured here

    result["suite"] = {"seconds": 330.0, "exit_code": 0, "summary": "830 passed, 6 skipped in 325.00s"}
    result["sites"] = [{"n_sites": 4, "n_images": 440, "n_fits": 32, "seconds": 12.0, "cpu_seconds": 23.0}]
    lines = format_bench(result).splitlines()
    assert row("test suite").endswith(f"| {TARGETS['suite'][0]} | met |") and "5.5 min: 830 passed" in row("test suite")
    assert "32 fits" in row("evaluate --split site, 4 sites")


def test_site_growth_is_measured_on_real_fits():
    from core.bench import bench_sites

    rows = bench_sites([2, 3], n_images=24, n_features=42, n_jobs=1, preset="orange")
    assert [r["n_sites"] for r in rows] == [2, 3]
    assert all(r["seconds"] > 0 and r["n_fits"] > 0 for r in rows)
    assert rows[1]["n_fits"] > rows[0]["n_fits"]  # one fit per left-out site and model and stage


def test_an_unknown_part_is_refused_by_name():
    import pytest

    from core.bench import run_bench

    with pytest.raises(ValueError, match="unknown bench part.*lungz"):
        run_bench(".", parts=["features", "lungz"])
