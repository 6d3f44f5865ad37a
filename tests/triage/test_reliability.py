"""What the verdict says about its own reliability: validation status, model spread, known limits, score range."""

from __future__ import annotations

import dataclasses

import pytest
from dashboard_support import require_default_model

from core.evaluation.report import EvaluationReport
from core.paths import default_models_dir
from core.triage.model import TriageModel
from core.triage.reliability import (
    NOT_VALIDATED,
    cross_hospital_check,
    known_limits,
    risk_spread,
    score_reference,
    validation_status,
)


@pytest.fixture(scope="module")
def model() -> TriageModel:
    require_default_model()
    return TriageModel.load()


@pytest.fixture(scope="module")
def prediction(model, sample_png):
    return model.predict(sample_png)


def test_not_validated_until_a_site_profile_is_active(prediction):
    assert validation_status(prediction) == NOT_VALIDATED
    profiled = dataclasses.replace(prediction, site_profile={"name": "St Elsewhere, CR room 2", "id": "0123456789ab"})
    assert validation_status(profiled) == \
        'validated at this site (site profile "St Elsewhere, CR room 2" (id 0123456789ab))'


def test_spread_is_each_model_through_the_consensus_calibration(model, prediction):
    if len(prediction.per_model) < 2:   # one model (the linear recipe): no spread to show
        assert risk_spread(model, prediction) is None
    # two models' class probabilities (Normal, other pneumonia, COVID-19) through the saved three-class calibration
    classes = {"cautious": [0.7, 0.2, 0.1], "alarmed": [0.1, 0.2, 0.7]}
    two = dataclasses.replace(prediction, per_model={n: p[2] for n, p in classes.items()}, per_model_classes=classes)
    spread = risk_spread(model, two)
    assert set(spread.per_model) == set(classes) and 0 <= spread.low <= spread.high <= 1
    assert spread.per_model["cautious"] < spread.per_model["alarmed"]
    assert spread.straddles_threshold == (spread.low < two.threshold <= spread.high)
    assert "2 models alone give" in spread.describe()
    assert risk_spread(model, dataclasses.replace(two, risk=None)) is None


def test_known_limits_carry_the_cross_hospital_check(model):
    path = default_models_dir() / "evaluation-source.json"
    source = EvaluationReport.from_json(path) if path.is_file() else None
    limits = known_limits(model.report, source)
    assert limits.startswith("Known limits: trained on")
    # the three-class model has seen other pneumonias; a COVID-19 vs Normal model would say so
    assert "COVID-19 and Normal films only" not in limits
    assert "COVID-19 and Normal films only" in known_limits({**model.report, "classes": ["Normal", "COVID-19"]})
    if source is not None:
        check = cross_hospital_check(source)
        assert check.describe() in limits and check.test_source in limits
        assert cross_hospital_check(None) is None


def test_score_reference_is_the_normal_range_and_retake_noise(model):
    reference = score_reference(model.report)
    normal = model.report["severity"]["corona_by_label"]["Normal"]
    assert (reference.normal_low, reference.normal_high, reference.n_normal) == (normal["p10"], normal["p90"],
                                                                                 normal["n"])
    assert reference.uncertainty == pytest.approx(1.96 * model.report["severity"]["noise"]["noise_sd"])
    assert "80 % score between" in reference.describe()
    assert score_reference({}) is None
