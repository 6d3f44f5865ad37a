"""Consensus calibration, threshold choice and the out-of-distribution check."""

from __future__ import annotations

import numpy as np
import pytest

from core.learn.consensus import ConsensusCalibrator, OutOfDistributionDetector
from core.learn.flag import operating_point, threshold_for_sensitivity


def test_threshold_reaches_target_sensitivity():
    rng = np.random.default_rng(0)
    y = np.r_[np.ones(100, int), np.zeros(100, int)]
    risk = np.r_[rng.uniform(0.3, 1, 100), rng.uniform(0, 0.7, 100)]
    threshold = threshold_for_sensitivity(risk, y, 0.95)
    point = operating_point(risk, y, threshold)
    assert point["sensitivity"] >= 0.95
    # the highest such threshold: a hair above it, sensitivity falls below the target
    assert operating_point(risk, y, np.nextafter(threshold, 1))["sensitivity"] < 0.95


def test_threshold_needs_positives():
    with pytest.raises(ValueError, match="no COVID-19"):
        threshold_for_sensitivity(np.array([0.2, 0.4]), np.array([0, 0]))


def test_calibrator_is_monotone_and_calibrated():
    rng = np.random.default_rng(1)
    true_p = rng.uniform(0, 1, 4000)
    y = (rng.uniform(0, 1, 4000) < true_p).astype(int)
    logit = np.log(true_p / (1 - true_p))
    overconfident = 1 / (1 + np.exp(-2.5 * logit))  # four models that all exaggerate, as forests and kNN do
    models = np.stack([np.column_stack([1 - overconfident, overconfident])] * 4, axis=1)  # (n, 4 models, 2)
    calibrator = ConsensusCalibrator().fit(models, y)
    risk = calibrator.predict_proba(models)[:, 1]
    assert np.all(np.diff(risk[np.argsort(overconfident)]) >= -1e-12)
    for low in (0.1, 0.4, 0.7):  # observed frequency matches predicted risk within bins
        band = (risk >= low) & (risk < low + 0.2)
        assert abs(y[band].mean() - risk[band].mean()) < 0.05


def test_three_class_calibration_sums_to_one_and_keeps_the_order():
    rng = np.random.default_rng(3)
    y = rng.integers(0, 3, 900)
    logits = rng.normal(size=(900, 3)) + 2.0 * np.eye(3)[y]
    softmax = np.exp(3 * logits) / np.exp(3 * logits).sum(axis=1, keepdims=True)   # overconfident
    models = np.stack([softmax, softmax], axis=1)
    calibrated = ConsensusCalibrator().fit(models, y).predict_proba(models)
    np.testing.assert_allclose(calibrated.sum(axis=1), 1.0)
    assert (calibrated.argmax(axis=1) == y).mean() > 0.6
    assert calibrated.max(axis=1).mean() < softmax.max(axis=1).mean()   # less overconfident


def test_detector_flags_far_points_only():
    rng = np.random.default_rng(2)
    train = rng.normal(size=(300, 30))
    detector = OutOfDistributionDetector(n_components=10).fit(train)
    assert detector.is_outlier(train).mean() <= 0.02
    assert detector.is_outlier(rng.normal(size=(5, 30)) + 8).all()
