"""Add the consensus (at the saved flag threshold) to a models folder's saved evaluation reports.

Models trained before the consensus was part of ``python -m core train`` have evaluation-<split>.json files with
the four models only. This re-runs each saved evaluation with the same parameters (same seeds; the four models'
results must agree with the saved ones to within MAX_DIFFERENCE, which is checked), scores the consensus with the folder's own calibration and
threshold, and rewrites the evaluation files and the summaries in report.json. The fitted models are not touched.

Usage (from the repository root):
    python scripts/add_consensus_to_saved_evaluations.py [--models models/default] [--data ../shared/data/cxr]
"""

from __future__ import annotations

import argparse
import json
import math
from pathlib import Path

from core.evaluation.consensus import with_consensus
from core.evaluation.report import EvaluationReport
from core.learn.flag import FlagRule
from core.paths import default_cache_dir, default_data_dir, default_models_dir
from core.triage.model import TriageModel
from core.workflow import evaluation_file_name, load_feature_matrix, run_evaluation


MAX_DIFFERENCE = 0.05


def largest_difference(saved: EvaluationReport, rerun: EvaluationReport) -> float:
    """Largest absolute difference of any per-repeat metric of the four models between the two runs."""
    largest = 0.0
    for old in saved.results:
        new = rerun.result(old.model, old.stage)
        for metric, values in old.per_repeat.items():
            for a, b in zip(values, new.per_repeat[metric]):
                if not (math.isnan(a) and math.isnan(b)):
                    largest = max(largest, abs(a - b))
    return largest


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", type=Path, default=default_models_dir())
    parser.add_argument("--data", type=Path, default=default_data_dir())
    parser.add_argument("--n-jobs", type=int, default=2)
    args = parser.parse_args()
    model = TriageModel.load(args.models)
    report_path = args.models / "report.json"
    report = json.loads(report_path.read_text())
    flag_rule = FlagRule.from_dict(report["consensus"])
    matrix = load_feature_matrix(args.data, report["feature_set"], n_jobs=args.n_jobs, cache_dir=default_cache_dir())
    for split in ("patient", "random", "source"):
        path = args.models / evaluation_file_name(split)
        if not path.is_file():
            continue
        saved = EvaluationReport.from_json(path)
        rerun = run_evaluation(matrix, split=split, test_source=saved.split_description.get("test_source"),
                               repeats=saved.repeats, train_size=saved.train_size, preset=saved.preset,
                               select_k=saved.select_k, random_state=saved.random_state, n_jobs=args.n_jobs)
        # Same seeds and splits; features re-read from the cache and parallel fits can move a score in the third
        # decimal. Anything larger means the data or code changed: retrain instead.
        difference = largest_difference(saved, rerun)
        print(f"{split}: largest per-repeat difference of the four models against the saved run {difference:.4f}")
        if difference > MAX_DIFFERENCE:
            raise SystemExit(f"{path}: the re-run differs from the saved evaluation by {difference:.3f}; "
                             "retrain with python -m core train")
        rerun = with_consensus(rerun, model.calibrator, flag_rule)
        rerun.elapsed_seconds = saved.elapsed_seconds
        path.write_text(json.dumps(rerun.to_dict()))
        report["evaluation"][split] = rerun.summary_json()
        consensus = rerun.result("Consensus", "after" if rerun.select_k else "before")
        print(f"{split}: consensus AUC {consensus.mean('AUC'):.3f}, at threshold {flag_rule.threshold:.3f} "
              f"sensitivity {consensus.pooled['Sensitivity']:.3f} specificity {consensus.pooled['Specificity']:.3f}")
    report_path.write_text(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
