"""Add the consensus (at the saved flag threshold) to a models folder's saved evaluation reports.

Models trained before the consensus was part of ``python -m core train`` have evaluation-<split>.json files with
the four models only. This re-runs each saved evaluation with the same parameters (same seeds; the four models'
mean AUCs must agree with the saved ones to within MAX_AUC_DIFFERENCE, which is checked), scores the consensus with the folder's own calibration and
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


MAX_AUC_DIFFERENCE = 0.05


def largest_auc_difference(saved: EvaluationReport, rerun: EvaluationReport) -> float:
    """Largest difference of a model's mean AUC over the repeats between the saved run and the re-run."""
    differences = [abs(old.mean("AUC") - rerun.result(old.model, old.stage).mean("AUC")) for old in saved.results]
    return max((d for d in differences if not math.isnan(d)), default=0.0)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", type=Path, default=default_models_dir())
    parser.add_argument("--data", type=Path, default=default_data_dir())
    parser.add_argument("--n-jobs", type=int, default=2)
    parser.add_argument("--splits", nargs="+", default=["patient", "random", "source"])
    args = parser.parse_args()
    model = TriageModel.load(args.models)
    report_path = args.models / "report.json"
    report = json.loads(report_path.read_text())
    flag_rule = FlagRule.from_dict(report["consensus"])
    matrix = load_feature_matrix(args.data, report["feature_set"], n_jobs=args.n_jobs, cache_dir=default_cache_dir())
    for split in args.splits:
        path = args.models / evaluation_file_name(split)
        if not path.is_file():
            continue
        saved = EvaluationReport.from_json(path)
        rerun = run_evaluation(matrix, split=split, test_source=saved.split_description.get("test_source"),
                               repeats=saved.repeats, train_size=saved.train_size, preset=saved.preset,
                               select_k=saved.select_k, random_state=saved.random_state, n_jobs=args.n_jobs)
        # Same seeds and splits; features re-read from the cache and parallel fits move scores a little (most on the
        # ~30 test films of the source split). A larger change means the data or code changed: retrain instead.
        difference = largest_auc_difference(saved, rerun)
        print(f"{split}: largest change of a model's mean AUC against the saved run {difference:.4f}")
        if difference > MAX_AUC_DIFFERENCE:
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
