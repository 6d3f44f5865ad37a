"""The consensus as the app uses it, scored like the four models: the operating point that matters.

The app does not flag with any one model at probability 0.5: it averages the four models' probabilities, maps the
average through the saved calibration and flags at the saved threshold (:mod:`core.learn.flag`). In each repeat of
an evaluation the four models were fitted on that repeat's training images; their test probabilities go through the
same calibration and threshold, giving a "Consensus" result with the same fields as a model's (curves, confusion
matrices, per-repeat scores), whose operating point is the flag threshold.
"""

from __future__ import annotations

import dataclasses

import numpy as np

from core.evaluation.metrics import summarise_repeats
from core.evaluation.report import EvaluationReport, ModelResult, OutOfFold
from core.learn.consensus import ConsensusCalibrator
from core.learn.flag import FlagRule
from core.learn.models import MODEL_NAMES

CONSENSUS = "Consensus"


def consensus_result(report: EvaluationReport, calibrator: ConsensusCalibrator, flag_rule: FlagRule,
                     stage: str = "after") -> ModelResult:
    """Score the calibrated consensus of the four models at the flag threshold, repeat by repeat.

    Parameters
    ----------
    report : EvaluationReport
        An evaluation still holding its out-of-fold predictions (in memory, or saved with them).
    calibrator : ConsensusCalibrator
        The saved models' calibration (mean of the four probabilities -> risk).
    flag_rule : FlagRule
        The saved operating threshold on that risk.
    stage : {"before", "after"}
        Feature-selection stage whose models the consensus combines (the saved models' stage).

    Returns
    -------
    ModelResult
        ``model`` "Consensus"; ``roc["operating_point"]["threshold"]`` is the flag threshold.

    Raises
    ------
    ValueError
        When the report lacks a model or the per-repeat predictions (a report read back from JSON without them).
    """
    results = [report.result(name, stage) for name in MODEL_NAMES]
    if any(not result.out_of_fold for result in results):
        raise ValueError("the evaluation holds no per-repeat predictions of the four models; the consensus can "
                         "only be scored from an evaluation run in this process")
    folds = []
    for repeat_folds in zip(*(result.out_of_fold for result in results)):
        first = repeat_folds[0]
        if any(not np.array_equal(fold.test_index, first.test_index) for fold in repeat_folds):
            raise ValueError(f"repeat {first.repeat}: the four models were tested on different images")
        risk = calibrator.predict_risk(np.column_stack([fold.proba for fold in repeat_folds]))
        folds.append(OutOfFold(repeat=first.repeat, test_index=first.test_index, y_true=first.y_true, proba=risk,
                               y_pred=np.asarray(flag_rule.flags(risk), dtype=int)))
    summary = summarise_repeats([f.y_true for f in folds], [f.proba for f in folds], [f.y_pred for f in folds])
    summary["roc"]["operating_point"]["threshold"] = float(flag_rule.threshold)
    return ModelResult(model=CONSENSUS, stage=stage, pooled=summary["pooled"], per_repeat=summary["per_repeat"],
                       confusion=summary["confusion"], roc=summary["roc"], out_of_fold=folds)


def with_consensus(report: EvaluationReport, calibrator: ConsensusCalibrator, flag_rule: FlagRule) -> EvaluationReport:
    """A copy of ``report`` with the consensus result added (stage "after" when features were selected)."""
    stage = "after" if report.select_k is not None else "before"
    result = consensus_result(report, calibrator, flag_rule, stage)
    kept = [r for r in report.results if r.model != CONSENSUS]
    return dataclasses.replace(report, results=kept + [result])


def has_consensus(report: EvaluationReport) -> bool:
    return any(result.model == CONSENSUS for result in report.results)
