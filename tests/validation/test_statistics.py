"""Confidence intervals of the validation figures: patient bootstrap, weighted AUC and threshold, exact intervals."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.metrics import roc_auc_score

from core.learn.flag import threshold_for_sensitivity
from core.validation.statistics import (
    calibration_bins,
    clopper_pearson,
    patient_bootstrap_weights,
    percentile_interval,
    positives_needed,
    proportion,
    weighted_auc,
    weighted_threshold_for_sensitivity,
)


def test_unit_weights_give_sklearns_auc_with_ties():
    rng = np.random.default_rng(0)
    y = rng.integers(0, 2, 400)
    score = np.round(rng.random(400) + 0.4 * y, 1)  # many ties
    assert weighted_auc(y, score, np.ones((1, 400)))[0] == pytest.approx(roc_auc_score(y, score), abs=1e-12)


def test_integer_weights_equal_repeating_the_films():
    rng = np.random.default_rng(1)
    y, score = rng.integers(0, 2, 60), rng.random(60)
    weights = rng.integers(0, 3, 60)
    repeated = np.repeat(np.arange(60), weights)
    assert weighted_auc(y, score, weights[None, :])[0] == pytest.approx(roc_auc_score(y[repeated], score[repeated]))
    positives = y == 1
    repeated_positives = np.repeat(score[positives], weights[positives])
    assert weighted_threshold_for_sensitivity(score[positives], weights[None, positives], 0.9)[0] == \
        threshold_for_sensitivity(repeated_positives, np.ones(len(repeated_positives)), 0.9)


def test_bootstrap_draws_patients_not_films():
    groups = np.array(["a", "a", "a", "b", "c", "c"])
    weights = patient_bootstrap_weights(groups, n_boot=500, random_state=3)
    assert weights.shape == (500, 6)
    assert np.all(weights[:, 0] == weights[:, 1]) and np.all(weights[:, 4] == weights[:, 5])
    assert np.all(weights[:, [0, 3, 4]].sum(axis=1) == 3)  # three patients drawn each time


def test_auc_interval_covers_the_estimate_and_narrows_with_patients():
    rng = np.random.default_rng(4)

    def width(n):
        y = np.r_[np.ones(n, int), np.zeros(n, int)]
        score = y + rng.normal(0, 1, 2 * n)
        low, high = percentile_interval(weighted_auc(y, score, patient_bootstrap_weights(np.arange(2 * n), 1000, 0)))
        assert low <= roc_auc_score(y, score) <= high
        return high - low

    assert width(400) < width(40) / 2


def test_clopper_pearson_known_values():
    low, high = clopper_pearson(0, 10)
    assert low == 0.0 and high == pytest.approx(1 - 0.025 ** (1 / 10), abs=1e-6)
    low, high = clopper_pearson(10, 10)
    assert high == 1.0 and low == pytest.approx(0.025 ** (1 / 10), abs=1e-6)


def test_proportion_counts_patients_for_its_interval():
    events = np.array([True] * 20)
    one_patient_each = proportion(events, np.arange(20))
    four_patients = proportion(events, np.repeat(np.arange(4), 5))
    assert one_patient_each["value"] == four_patients["value"] == 1.0
    assert four_patients["patients"] == 4 and four_patients["ci"][0] < one_patient_each["ci"][0]


def test_positives_needed_is_the_smallest_that_meets_the_margin():
    needed = positives_needed(0.95, 0.10)
    assert needed == 35
    assert clopper_pearson(np.ceil(0.95 * needed), needed)[0] >= 0.85
    assert clopper_pearson(np.ceil(0.95 * (needed - 1)), needed - 1)[0] < 0.85


def test_calibration_bins_hold_every_film():
    rng = np.random.default_rng(5)
    risk = rng.random(300)
    y = (rng.random(300) < risk).astype(int)
    bins = calibration_bins(y, np.r_[risk[:-1], 1.0])
    assert sum(b["n"] for b in bins) == 300 and bins[-1]["range"] == [0.9, 1.0]
    for b in bins:
        assert b["range"][0] <= b["mean_risk"] <= b["range"][1]
        assert b["observed_ci"][0] <= b["observed"] <= b["observed_ci"][1]
