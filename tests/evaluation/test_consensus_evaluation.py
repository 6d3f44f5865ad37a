"""The consensus scored like a model: calibrated mean of the four models per repeat, flagged at the threshold."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from core.evaluation.consensus import CONSENSUS, consensus_result, has_consensus, with_consensus
from core.evaluation.evaluate import evaluate
from core.evaluation.report import EvaluationReport
from core.learn.consensus import ConsensusCalibrator
from core.learn.flag import FlagRule
from core.learn.models import MODEL_NAMES


@pytest.fixture(scope="module")
def report() -> EvaluationReport:
    rng = np.random.default_rng(3)
    y = np.arange(60) % 2
    X = pd.DataFrame(rng.normal(size=(60, 6)) + y[:, None] * np.r_[1.2, 1.2, 0, 0, 0, 0],
                     columns=[f"f{i}" for i in range(6)])
    return evaluate(X, y, split="random", repeats=3, select_k=3, n_jobs=1, random_state=0)


@pytest.fixture(scope="module")
def calibrator(report) -> ConsensusCalibrator:
    folds = [report.result(name, "after").out_of_fold[0] for name in MODEL_NAMES]
    return ConsensusCalibrator().fit(np.column_stack([f.proba for f in folds]), folds[0].y_true)


def test_consensus_flags_the_calibrated_mean_at_the_threshold(report, calibrator):
    rule = FlagRule(0.4, 0.95)
    result = consensus_result(report, calibrator, rule, stage="after")
    assert result.model == CONSENSUS and len(result.out_of_fold) == 3
    for repeat, fold in enumerate(result.out_of_fold):
        probabilities = np.column_stack([report.result(n, "after").out_of_fold[repeat].proba for n in MODEL_NAMES])
        expected = calibrator.predict_risk(probabilities)
        assert np.allclose(fold.proba, expected)
        assert np.array_equal(fold.y_pred, (expected >= 0.4).astype(int))
    point = result.roc["operating_point"]
    flagged = np.concatenate([f.y_pred for f in result.out_of_fold])
    truth = np.concatenate([f.y_true for f in result.out_of_fold])
    assert point["threshold"] == 0.4
    assert point["tpr"] == pytest.approx(flagged[truth == 1].mean())
    assert 1 - point["fpr"] == pytest.approx(1 - flagged[truth == 0].mean())
    assert result.confusion["counts"][1][1] == int(flagged[truth == 1].sum())


def test_a_lower_threshold_flags_more(report, calibrator):
    strict = consensus_result(report, calibrator, FlagRule(0.8), stage="after")
    lenient = consensus_result(report, calibrator, FlagRule(0.2), stage="after")
    assert lenient.pooled["Sensitivity"] >= strict.pooled["Sensitivity"]
    assert lenient.pooled["Specificity"] <= strict.pooled["Specificity"]
    assert lenient.pooled["AUC"] == pytest.approx(strict.pooled["AUC"])  # the threshold does not move the curve


def test_consensus_survives_json_and_needs_the_predictions(report, calibrator, tmp_path):
    added = with_consensus(report, calibrator, FlagRule(0.4))
    assert has_consensus(added) and not has_consensus(report)
    assert [r.model for r in added.results].count(CONSENSUS) == 1
    assert with_consensus(added, calibrator, FlagRule(0.4)).results[-1].model == CONSENSUS  # replaced, not doubled
    read = EvaluationReport.from_json(added.to_json(tmp_path / "evaluation.json"))
    assert read.result(CONSENSUS, "after").roc["operating_point"]["threshold"] == 0.4
    with pytest.raises(ValueError, match="per-repeat predictions"):
        consensus_result(read, calibrator, FlagRule(0.4))
