"""The study's workflow end to end: data set → features → evaluation, and data set → saved models.

The command line and the dashboard both call these functions, so both run exactly the same science.
"""

from __future__ import annotations

import datetime as dt
import json
import os
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from core.evaluation.consensus import with_consensus
from core.evaluation.evaluate import EvaluationReport, evaluate
from core.evaluation.splits import SPLITS
from core.features.blocks import extract_features
from core.io.datasets import binary_subset, load_dataset, summarize
from core.labels import LABEL_COVID
from core.learn.artifacts import save_artifacts
from core.learn.flag import FlagRule
from core.learn.training import data_fingerprint, fit_final_models
from core.paths import portable_path
from core.progress import Progress
from core.severity.brixia import brixia_zone_scores
from core.severity.fitting import fit_severity_model


@dataclass
class FeatureMatrix:
    """Features of the COVID-19 and Normal images of a data set, aligned with their labels and groups."""

    table: pd.DataFrame           # data set rows that were readable (path, file, label, patient_id, ...)
    X: pd.DataFrame               # feature columns only
    y: np.ndarray                 # 1 = COVID-19, 0 = Normal
    shas: list[str]
    errors: dict[str, str] = field(default_factory=dict)
    summary: dict = field(default_factory=dict)

    @property
    def groups(self) -> np.ndarray:
        return self.table["patient_id"].to_numpy()

    @property
    def sources(self) -> np.ndarray | None:
        return self.table["origin_dataset"].fillna("unknown").to_numpy() if "origin_dataset" in self.table else None

    @property
    def has_patient_ids(self) -> bool:
        return bool(self.table["patient_known"].any())


def load_feature_matrix(data_dir: str | os.PathLike, feature_set: str = "both", *, n_jobs: int = -1,
                        cache_dir: str | os.PathLike | None = None,
                        progress: Progress | None = None) -> FeatureMatrix:
    """Read a labelled data set, keep COVID-19 and Normal, extract (or fetch cached) features."""
    dataset = load_dataset(data_dir)
    table, _ = binary_subset(dataset)
    features = extract_features(table["path"], feature_set, n_jobs=n_jobs, cache_dir=cache_dir, progress=progress)
    readable = table.set_index("path").loc[features.table["file"]].reset_index()
    X = features.table.drop(columns=["file", "sha256"]).reset_index(drop=True)
    y = (readable["label"] == LABEL_COVID).to_numpy(dtype=int)
    return FeatureMatrix(readable, X, y, features.table["sha256"].tolist(), features.errors, summarize(dataset))


def choose_test_source(sources: np.ndarray, y: np.ndarray, test_source: str | None) -> str:
    """The one source named (case-insensitive part of its name) that holds both labels.

    Without a name, the source holding both labels with the most images of its rarer label (the most balanced
    test); a tie is an error that lists the candidates.
    """
    frame = pd.DataFrame({"source": sources, "y": y})
    both = sorted(s for s, g in frame.groupby("source") if g["y"].nunique() == 2)
    if test_source is None:
        rarer = {s: int(frame.loc[frame["source"] == s, "y"].value_counts().min()) for s in both}
        best = [s for s in both if rarer[s] == max(rarer.values(), default=0)]
        if len(best) == 1:
            return best[0]
        raise ValueError("--split source needs --test-source; sources holding both labels: "
                         + "; ".join(both or ["none"]))
    matches = [s for s in frame["source"].unique() if test_source.lower() in str(s).lower()]
    if len(matches) != 1:
        raise ValueError(f"--test-source {test_source!r} matches {len(matches)} sources "
                         f"({'; '.join(map(str, matches)) or 'none'}); sources: "
                         + "; ".join(map(str, sorted(frame['source'].unique()))))
    if matches[0] not in both:
        raise ValueError(f"source {matches[0]!r} does not hold both COVID-19 and Normal images; "
                         f"sources that do: {'; '.join(both) or 'none'}")
    return matches[0]


def run_evaluation(matrix: FeatureMatrix, *, split: str | None = None, test_source: str | None = None,
                   repeats: int = 10, train_size: float = 0.66, preset: str = "tuned", select_k: int | None = 10,
                   random_state: int = 42, n_jobs: int = -1, progress: Progress | None = None) -> EvaluationReport:
    """Evaluate the four models before and after feature selection on one split type.

    ``split`` defaults to ``patient`` when the data set has patient ids, else ``random``.
    """
    split = split or ("patient" if matrix.has_patient_ids else "random")
    if split not in SPLITS:
        raise ValueError(f"unknown split {split!r}; choose one of {', '.join(SPLITS)}")
    if split == "patient" and not matrix.has_patient_ids:
        raise ValueError("--split patient needs patient ids (manifest column patient_id); use --split random")
    if split == "source":
        if matrix.sources is None:
            raise ValueError("--split source needs the manifest column origin_dataset")
        test_source = choose_test_source(matrix.sources, matrix.y, test_source)
    return evaluate(matrix.X, matrix.y, groups=matrix.groups, sources=matrix.sources, split=split,
                    test_source=test_source, repeats=repeats, train_size=train_size, preset=preset,
                    select_k=select_k, random_state=random_state, n_jobs=n_jobs, progress=progress)


def evaluation_file_name(split: str) -> str:
    return f"evaluation-{split}.json"


def train(data_dir: str | os.PathLike, out_dir: str | os.PathLike, *, feature_set: str = "both",
          preset: str = "tuned", select_k: int | None = 10, target_sensitivity: float = 0.95,
          repeats: int = 10, random_state: int = 42, n_jobs: int = -1, cache_dir: str | os.PathLike | None = None,
          evaluate_splits: tuple[str, ...] = SPLITS, progress: Progress | None = None) -> dict:
    """Fit, calibrate, evaluate and save the four models; returns the report written to ``report.json``."""
    say = progress or (lambda fraction, message: None)
    matrix = load_feature_matrix(data_dir, feature_set, n_jobs=n_jobs, cache_dir=cache_dir,
                                 progress=lambda f, m: say(0.3 * f, m))
    artifacts, consensus = fit_final_models(matrix.X, matrix.y, matrix.groups, preset=preset, select_k=select_k,
                                            target_sensitivity=target_sensitivity, random_state=random_state,
                                            n_jobs=n_jobs, progress=lambda f, m: say(0.3 + 0.3 * f, m))
    say(0.6, "severity model (corona score)")
    try:  # every labelled image (other findings too) feeds the severity model; it needs the expert scores
        severity_model, severity = fit_severity_model(load_dataset(data_dir).table, n_jobs=n_jobs,
                                                      random_state=random_state,
                                                      zone_scores=brixia_zone_scores(data_dir))
        artifacts["severity.joblib"] = severity_model
    except ValueError as exc:  # e.g. a data set without expert scores: the classifiers are still saved
        severity = {"error": str(exc)}
    evaluations, side_files = {}, {}
    for index, split in enumerate(evaluate_splits):
        if split == "patient" and not matrix.has_patient_ids or split == "source" and matrix.sources is None:
            continue
        say(0.6 + 0.4 * index / max(len(evaluate_splits), 1), f"evaluating ({split} split)")
        try:
            report = run_evaluation(matrix, split=split, repeats=repeats, preset=preset, select_k=select_k,
                                    random_state=random_state, n_jobs=n_jobs)
        except ValueError as exc:  # e.g. no source holds both labels: say so in the report
            evaluations[split] = {"error": str(exc)}
            continue
        # the consensus at the saved threshold: the operating point the app flags with
        report = with_consensus(report, artifacts["consensus.joblib"]["calibrator"], FlagRule.from_dict(consensus))
        side_files[evaluation_file_name(split)] = json.dumps(report.to_dict())
        evaluations[split] = report.summary_json()
    report = {
        "created": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        "feature_set": feature_set, "preset": preset, "select_k": select_k, "random_state": random_state,
        "target": LABEL_COVID,
        "data": {"root": portable_path(data_dir), "fingerprint": data_fingerprint(
                     matrix.shas, matrix.table["label"].tolist()),
                 "n_images": int(len(matrix.y)), "n_covid": int(matrix.y.sum()),
                 "n_patients": int(pd.Series(matrix.groups).nunique()), "unreadable": matrix.errors,
                 "summary": {**matrix.summary, "root": portable_path(data_dir)}},
        "feature_names": list(matrix.X.columns),
        "consensus": consensus,
        "evaluation": evaluations,
        "severity": severity,
    }
    out_dir = save_artifacts(out_dir, artifacts, report, side_files)
    say(1.0, "saved")
    return json.loads((out_dir / "report.json").read_text())
