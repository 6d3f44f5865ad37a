"""Trend rule on constructed series, the perturbations behind the noise figure, and per-patient trend tables."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from severity_support import opacified_phantom, reference_model

from core.features.blocks import zone_feature_table
from core.severity.noise import perturb, perturbation_noise
from core.severity.progression import NO_VERDICT, NOISE_SD, patient_trends, trend


def model_features(cxr_dir, rows: pd.DataFrame) -> pd.DataFrame:
    return zone_feature_table([cxr_dir / "images" / f for f in rows.file], n_jobs=2)[0]


def series(times, scores) -> pd.DataFrame:
    return pd.DataFrame({"time": times, "corona_score": scores})


@pytest.mark.parametrize(("scores", "verdict"), [
    ([10, 20, 35, 50], "worsening"),
    ([30, 31, 29, 30], "stable"),
    ([60, 45, 30, 12], "improving"),
])
def test_verdict_follows_the_direction_beyond_noise(scores, verdict):
    result = trend(series([0, 3, 7, 12], scores))
    assert result["verdict"] == verdict
    assert result["n_images"] == 4 and result["noise_sd"] == NOISE_SD
    assert "stable" in result["rule"]


def test_two_images_need_a_difference_beyond_1_96_sqrt2_noise():
    threshold = 1.96 * np.sqrt(2) * 3.0
    assert trend(series([0, 5], [20, 20 + threshold * 1.05]), noise_sd=3.0)["verdict"] == "worsening"
    assert trend(series([0, 5], [20, 20 + threshold * 0.95]), noise_sd=3.0)["verdict"] == "stable"
    assert trend(series([0, 5], [20, 20 - threshold * 1.05]), noise_sd=3.0)["verdict"] == "improving"
    assert trend(series([0, 5], [20, 30]), noise_sd=3.0)["threshold"] == pytest.approx(threshold, abs=0.01)


def test_more_noise_makes_the_same_change_stable():
    rising = series([0, 4, 8], [20, 28, 36])
    assert trend(rising, noise_sd=2.0)["verdict"] == "worsening"
    assert trend(rising, noise_sd=20.0)["verdict"] == "stable"
    assert trend(rising, noise_sd=2.0)["change"] == pytest.approx(16.0)


def test_no_verdict_for_one_image_or_one_date():
    one = trend(series([3], [40]))
    assert one["verdict"] == NO_VERDICT and "two" in one["reason"] and one["n_images"] == 1
    same_day = trend(series([5, 5], [10, 80]))
    assert same_day["verdict"] == NO_VERDICT and "same time" in same_day["reason"]
    missing = trend(series([1, 2, None], [10, None, 50]))
    assert missing["verdict"] == NO_VERDICT and missing["n_images"] == 1


def test_dates_and_date_strings_are_days():
    as_text = trend(series(["2020-03-14", "2020-03-20", "2020-03-28"], [10, 30, 60]))
    as_dates = trend(series(pd.to_datetime(["2020-03-14", "2020-03-20", "2020-03-28"]), [10, 30, 60]))
    assert as_text["verdict"] == as_dates["verdict"] == "worsening"
    assert as_text["span_days"] == as_dates["span_days"] == 14.0


def test_perturb_is_a_small_seeded_change():
    pixels = opacified_phantom(3)[0]
    first, again = perturb(pixels, np.random.default_rng(1)), perturb(pixels, np.random.default_rng(1))
    assert np.array_equal(first, again)
    assert first.shape == pixels.shape and first.dtype == np.float32 and 0 <= first.min() and first.max() <= 1
    assert not np.array_equal(first, pixels)
    assert np.corrcoef(first.ravel(), pixels.ravel())[0, 1] > 0.8


def test_perturbation_noise_is_small_next_to_disease(cxr_dir, cxr_manifest):
    model = reference_model(cxr_dir, cxr_manifest)
    scored = cxr_manifest[cxr_manifest.geographic_extent.notna()].sort_values("file")
    paths = [cxr_dir / "images" / f for f in scored.file.iloc[:4]]
    noise = perturbation_noise(model, paths, n_perturbations=2, random_state=0, n_jobs=2)
    assert noise["n_images"] == 4 and noise["n_perturbations"] == 2
    assert perturbation_noise(model, paths, n_perturbations=2, random_state=0, n_jobs=2) == noise  # seeded
    # points: re-imaging-like changes move the score, but much less than the spread of disease does
    assert 0 < noise["noise_sd"] < 0.5 * model.predict(model_features(cxr_dir, scored))["corona_score"].std()


def test_patient_trends_table():
    table = pd.DataFrame({
        "patient_id": ["a", "a", "a", "b", "b", "c", "d", "d"],
        "offset_days": [0, 5, 10, 2, 9, 4, 3, 3],
        "label": ["COVID-19"] * 8,
    })
    scores = pd.Series([10, 30, 55, 40, 41, 20, 10, 50], dtype=float)
    trends = patient_trends(table, scores, noise_sd=3.0).set_index("patient_id")
    assert list(trends.index) == ["a", "b"]  # c: one image, d: one day
    assert trends.loc["a", "verdict"] == "worsening" and trends.loc["b", "verdict"] == "stable"
    assert trends.loc["a", "days"] == [0, 5, 10] and trends.loc["a", "scores"] == [10.0, 30.0, 55.0]
    assert trends.loc["a", "n_images"] == 3
