"""Brixia zone grades: the agreement figures, the zone-grade regressor, the reference scores' file, and the
trend verdict's agreement with the experts' own trend."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from core.lungs.zones import ZONE_NAMES
from core.severity.brixia import (
    BRIXIA_LETTERS,
    SENIOR_COLUMNS,
    ZoneGradeRegressor,
    agreement_with_senior,
    brixia_zone_scores,
    grades_from_values,
    zone_design,
)
from core.severity.progression import trend_agreement


def test_agreement_figures_on_a_known_example():
    senior = np.array([[0, 1, 2, 3, 0, 1], [1, 1, 1, 1, 1, 1], [3, 3, 3, 0, 0, 0]])
    assert agreement_with_senior(senior, senior)["total_mae"] == 0.0
    assert agreement_with_senior(senior, senior)["kappa_linear_mean"] == pytest.approx(1.0)
    shifted = np.clip(senior + 1, 0, 3)
    figures = agreement_with_senior(shifted, senior)
    assert figures["total_mae"] == pytest.approx(np.mean(np.abs(shifted.sum(1) - senior.sum(1))))
    assert list(figures["kappa_linear"]) == list(BRIXIA_LETTERS)
    assert figures["kappa_linear_mean"] < 1.0


def test_zone_design_pairs_each_zone_with_the_same_zone_of_the_other_lung():
    zone_z = np.arange(2 * 6 * 3, dtype=float).reshape(2, 6, 3)
    geometry = np.array([[7.0, 8.0], [9.0, 10.0]])
    design = zone_design(zone_z, geometry)
    assert design.shape == (2, 6, 3 * 3 + 2 + 6)
    right_upper, left_upper = ZONE_NAMES.index("right_upper"), ZONE_NAMES.index("left_upper")
    assert np.array_equal(design[0, right_upper, 3:6], zone_z[0, left_upper])
    assert np.array_equal(design[1, left_upper, 3:6], zone_z[1, right_upper])
    assert np.array_equal(design[0, 2, -6:], np.eye(6)[2]) and np.array_equal(design[1, 0, 9:11], geometry[1])


def test_regressor_learns_grades_and_rounds_to_whole_grades():
    rng = np.random.default_rng(0)
    opacity = rng.uniform(0, 3, size=(80, 6))
    zone_z = np.stack([opacity + rng.normal(0, 0.2, (80, 6)), rng.normal(size=(80, 6))], axis=2)
    design = zone_design(zone_z, np.zeros((80, 1)))
    grades = grades_from_values(opacity)
    model = ZoneGradeRegressor(random_state=0).fit(design[:60], grades[:60], groups=np.arange(60) // 2)
    predicted = grades_from_values(model.predict(design[60:]))
    assert predicted.min() >= 0 and predicted.max() <= 3 and predicted.dtype.kind == "i"
    assert np.mean(np.abs(predicted.sum(1) - grades[60:].sum(1))) < 1.5
    assert set(model.selection_["cv_total_mae"]) and model.selection_["chosen"] in model.selection_["cv_total_mae"]


def test_reference_zone_scores_are_read_in_brixia_order(cxr_dir):
    scores = brixia_zone_scores(cxr_dir)
    assert len(scores) > 100 and list(scores.columns[1:7]) == list(SENIOR_COLUMNS)
    assert scores[list(SENIOR_COLUMNS)].isin([0, 1, 2, 3]).all(axis=None)
    assert brixia_zone_scores(cxr_dir / "nowhere").empty


def test_trend_agreement_counts_verdicts_per_series():
    rows = []
    for patient, scores, expert in (("a", [10, 60], [10, 60]),   # both worsening
                                    ("b", [50, 50], [40, 42]),   # both stable
                                    ("c", [60, 10], [50, 55]),   # tool improving, experts stable
                                    ("d", [20], [20])):          # one image: no series
        for day, (score, value) in enumerate(zip(scores, expert)):
            rows.append({"patient": patient, "time": 3 * day, "corona_score": score, "expert": value})
    result = trend_agreement(pd.DataFrame(rows), noise_sd=4.0, expert_band=10.0)
    assert result["n_series"] == 3
    assert result["agreement"] == pytest.approx(2 / 3)
    assert result["confusion"]["expert stable"]["tool improving"] == 1
    assert result["direction_agreement"] == 1.0
