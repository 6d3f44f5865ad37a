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

from core.evaluation.evaluate import EvaluationReport, evaluate
from core.evaluation.sites import evaluate_sites
from core.evaluation.splits import SPLITS
from core.features.blocks import extract_features
from core.io.datasets import DatasetError, binary_subset, load_dataset, summarize
from core.labels import LABEL_COVID, LABEL_NORMAL, TRIAGE_CLASSES, task_classes, three_class_target, triage_class
from core.learn.artifacts import ORIENTATION_FILE, SEVERITY_FILE, save_artifacts
from core.learn.models import RECIPES, check_enough_images
from core.learn.orientation import fit_orientation_check
from core.learn.training import data_fingerprint, fit_final_models
from core.paths import portable_path
from core.progress import Progress
from core.severity.brixia import brixia_zone_scores
from core.severity.fitting import fit_severity_model


@dataclass
class FeatureMatrix:
    """Features of the labelled images of a data set, aligned with their target, patients and sites.

    With a ``task`` the rows are the images of its two classes and ``y`` is 1 for its first (positive) class;
    without one, every labelled image and the three-class target (0 Normal, 1 other pneumonia, 2 COVID-19).
    """

    table: pd.DataFrame           # data set rows that were readable (path, file, label, patient_id, ...)
    X: pd.DataFrame               # feature columns only
    y: np.ndarray                 # task: 1 = positive class; no task: three-class index
    shas: list[str]
    errors: dict[str, str] = field(default_factory=dict)
    summary: dict = field(default_factory=dict)
    task: str | None = "covid-vs-normal"

    @property
    def groups(self) -> np.ndarray:
        """Patient of every image: ``patient_group`` (duplicate patients merged) where the manifest has it."""
        column = "patient_group" if "patient_group" in self.table else "patient_id"
        return self.table[column].fillna(self.table["patient_id"]).astype(str).to_numpy()

    @property
    def sites(self) -> np.ndarray | None:
        """Hospital or publisher of every image (manifest column ``site``), if known."""
        return self.table["site"].fillna("unknown").astype(str).to_numpy() if "site" in self.table else None

    @property
    def positive_label(self) -> str:
        return task_classes(self.task)[0] if self.task else LABEL_COVID

    @property
    def sources(self) -> np.ndarray | None:
        return self.table["origin_dataset"].fillna("unknown").to_numpy() if "origin_dataset" in self.table else None

    @property
    def has_patient_ids(self) -> bool:
        return bool(self.table["patient_known"].any())


def load_feature_matrix(data_dir: str | os.PathLike, feature_set: str = "both", *, task: str | None = "covid-vs-normal",
                        n_jobs: int = -1, cache_dir: str | os.PathLike | None = None,
                        progress: Progress | None = None) -> FeatureMatrix:
    """Read a labelled data set, keep the images of ``task`` (None: all three classes), extract their features."""
    dataset = load_dataset(data_dir)
    classes = task_classes(task) if task else TRIAGE_CLASSES
    kinds = dataset.table["label"].map(triage_class)
    table = dataset.table[kinds.isin(classes) & (dataset.table["label"] != "")].reset_index(drop=True)
    found = set(table["label"].map(triage_class))
    needed = classes if task else (LABEL_NORMAL, LABEL_COVID)   # other pneumonias are welcome, not required
    if not set(needed) <= found:
        raise DatasetError(f"{dataset.root}: {task or 'training'} needs images of {', '.join(needed)}; found "
                           f"{', '.join(sorted(found)) or 'none'}")
    features = extract_features(table["path"], feature_set, n_jobs=n_jobs, cache_dir=cache_dir, progress=progress)
    readable = table.set_index("path").loc[features.table["file"]].reset_index()
    X = features.table.drop(columns=["file", "sha256"]).reset_index(drop=True)
    kinds = readable["label"].map(triage_class)
    y = (kinds == classes[0]).to_numpy(dtype=int) if task else three_class_target(readable["label"])
    return FeatureMatrix(readable, X, y, features.table["sha256"].tolist(), features.errors, summarize(dataset),
                         task)


def check_options(*, repeats: int | None = None, train_size: float | None = None, select_k: int | None = None,
                  target_sensitivity: float | None = None, bootstrap: int | None = None,
                  severity_repeats: int | None = None) -> None:
    """Refuse option values that make no sense, before any image is read (``ValueError`` naming the option)."""
    problems = []
    for name, count in (("repeats", repeats), ("bootstrap", bootstrap), ("severity-repeats", severity_repeats)):
        if count is not None and count < 1:
            problems.append(f"--{name} must be at least 1, got {count}")
    if train_size is not None and not 0 < train_size < 1:
        problems.append(f"--train-size must be between 0 and 1 (the share of images that trains), got {train_size}")
    if select_k is not None and select_k < 1:
        problems.append(f"--select must be at least 1 (the number of features kept), got {select_k}")
    if target_sensitivity is not None and not 0 < target_sensitivity <= 1:
        problems.append(f"--target-sensitivity must be in (0, 1], got {target_sensitivity}")
    if problems:
        raise ValueError("; ".join(problems))


def check_data_set(data_dir: str | os.PathLike, *, split: str | None = None, test_source: str | None = None,
                   train_size: float = 0.8) -> None:
    """Refuse, from the manifest alone (before any feature is computed), a data set too small for the models or
    a split it cannot make: no patient ids for ``patient``, no source or no usable held-out source for ``source``."""
    table, y = binary_subset(load_dataset(data_dir))
    known = bool(table["patient_known"].any())
    patients = table["patient_id"].to_numpy() if known else None
    split = split or ("patient" if known else "random")
    if split == "patient" and not known:
        raise ValueError("--split patient needs patient ids (manifest column patient_id); use --split random")
    check_enough_images(y, patients, train_size=train_size, where=str(data_dir))
    if split == "source":
        if "origin_dataset" not in table:
            raise ValueError("--split source needs the manifest column origin_dataset")
        sources = table["origin_dataset"].fillna("unknown").to_numpy()
        held_out = choose_test_source(sources, y, test_source)
        training = sources != held_out
        check_enough_images(y[training], None if patients is None else patients[training], train_size=0.99,
                            where=f"{data_dir} without the held-out source {held_out!r}")


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
    check_options(repeats=repeats, train_size=train_size, select_k=select_k)
    split = split or ("patient" if matrix.has_patient_ids else "random")
    if split not in SPLITS:
        raise ValueError(f"unknown split {split!r}; choose one of {', '.join(SPLITS)}")
    if split == "patient" and not matrix.has_patient_ids:
        raise ValueError("--split patient needs patient ids (manifest column patient_id); use --split random")
    if matrix.task is None:
        raise ValueError("the evaluation of the four models needs a two-class task (e.g. covid-vs-normal)")
    sources = matrix.sources
    if split == "source":
        if matrix.sources is None:
            raise ValueError("--split source needs the manifest column origin_dataset")
        test_source = choose_test_source(matrix.sources, matrix.y, test_source)
    if split == "site":
        if matrix.sites is None:
            raise ValueError("--split site needs the manifest column site (hospital or publisher of every image)")
        sources = matrix.sites
    return evaluate(matrix.X, matrix.y, groups=matrix.groups, sources=sources, split=split,
                    test_source=test_source, repeats=repeats, train_size=train_size, preset=preset,
                    select_k=select_k, random_state=random_state, n_jobs=n_jobs, progress=progress,
                    task=matrix.task, target=matrix.positive_label)


def evaluation_file_name(split: str) -> str:
    return f"evaluation-{split}.json"


SITE_EVALUATION_FILE = "site-evaluation.json"


def acquisition_signatures(matrix: FeatureMatrix, *, n_jobs: int = -1,
                           cache_dir: str | os.PathLike | None = None) -> np.ndarray:
    """Acquisition signatures (:mod:`core.features.acquisition`) of the matrix's images, row-aligned."""
    result = extract_features(matrix.table["path"], "acquisition", n_jobs=n_jobs, cache_dir=cache_dir)
    if result.errors:  # the same files were readable a moment ago
        raise DatasetError("; ".join(result.errors.values()))
    return result.table.drop(columns=["file", "sha256"]).to_numpy(dtype=float)


def site_evaluation(matrix: FeatureMatrix, recipe: str = "linear", *, signatures: np.ndarray | None = None,
                    target_sensitivity: float = 0.95, n_boot: int = 1000, random_state: int = 42, n_jobs: int = -1,
                    progress: Progress | None = None) -> dict:
    """Leave-one-site-out, within-site contrasts, flag rates and site shift of a recipe (three classes)."""
    if matrix.task is not None:
        raise ValueError("the site evaluation trains the three-class model: load the matrix with task=None")
    if matrix.sites is None:
        raise ValueError("the site evaluation needs the manifest column site (hospital or publisher of every image)")
    return evaluate_sites(matrix.X, matrix.y, matrix.groups, matrix.sites, recipe=recipe, signatures=signatures,
                          target_sensitivity=target_sensitivity, n_boot=n_boot, random_state=random_state,
                          n_jobs=n_jobs, progress=progress)


def train(data_dir: str | os.PathLike, out_dir: str | os.PathLike, *, feature_set: str = "both",
          recipe: str = "auto", target_sensitivity: float = 0.95, repeats: int = 10, random_state: int = 42,
          n_jobs: int = -1, cache_dir: str | os.PathLike | None = None,
          evaluate_splits: tuple[str, ...] = ("patient", "random", "source"),
          n_boot: int = 1000, severity_repeats: int = 5, progress: Progress | None = None) -> dict:
    """Choose the recipe leave-one-site-out, fit, calibrate, evaluate and save the three-class triage model.

    ``recipe="auto"`` evaluates every :data:`core.learn.models.RECIPES` leave-one-site-out and keeps the one with
    the best :func:`core.evaluation.sites.selection_score` (data without sites: ``linear``). The site evaluation of
    the chosen recipe is saved as ``site-evaluation.json``; ``evaluate_splits`` adds the study's four models on
    COVID-19 vs Normal (``evaluation-<split>.json``) for the Model comparison page. ``n_boot``: patient bootstrap
    resamples of the site evaluation's intervals; ``severity_repeats``: fold assignments of the corona score's report.
    """
    check_options(repeats=repeats, target_sensitivity=target_sensitivity, bootstrap=n_boot,
                  severity_repeats=severity_repeats)
    check_data_set(data_dir, split="random")  # before any feature: enough images of each label to fit at all
    say = progress or (lambda fraction, message: None)
    matrix = load_feature_matrix(data_dir, feature_set, task=None, n_jobs=n_jobs, cache_dir=cache_dir,
                                 progress=lambda f, m: say(0.2 * f, m))
    signatures = acquisition_signatures(matrix, n_jobs=n_jobs, cache_dir=cache_dir) \
        if matrix.sites is not None else None
    candidates = list(RECIPES) if recipe == "auto" else [recipe]
    if recipe != "auto" and recipe not in RECIPES:
        raise ValueError(f"unknown recipe {recipe!r}; choose auto or one of {', '.join(RECIPES)}")
    site_results = {}
    if matrix.sites is not None and len(set(matrix.sites)) > 1:
        for index, name in enumerate(candidates):
            say(0.2 + 0.3 * index / len(candidates), f"leave-one-site-out evaluation of recipe {name}")
            site_results[name] = site_evaluation(matrix, name, signatures=signatures, n_boot=n_boot,
                                                 target_sensitivity=target_sensitivity, random_state=random_state,
                                                 n_jobs=n_jobs)
        chosen = max(site_results, key=lambda name: site_results[name]["selection_score"])
    else:
        chosen = "linear" if recipe == "auto" else recipe
    say(0.5, f"fitting the {chosen} recipe on all images")
    artifacts, consensus = fit_final_models(matrix.X, matrix.y, matrix.groups, sites=matrix.sites,
                                            signatures=signatures, recipe=chosen,
                                            target_sensitivity=target_sensitivity, random_state=random_state,
                                            n_jobs=n_jobs)
    consensus.pop("out_of_fold_probabilities")
    say(0.6, "severity model (corona score)")
    every_image = load_dataset(data_dir).table  # all findings: the severity model and the orientation check
    try:  # every labelled image (other findings too) feeds the severity model; it needs the expert scores
        severity_model, severity = fit_severity_model(every_image, n_jobs=n_jobs, random_state=random_state,
                                                      repeats=severity_repeats, zone_scores=brixia_zone_scores(data_dir),
                                                      cache_dir=cache_dir)
        artifacts[SEVERITY_FILE] = severity_model
    except ValueError as exc:  # e.g. a data set without expert scores: the classifiers are still saved
        severity = {"error": str(exc)}
    say(0.62, "orientation check (every film upright and turned each wrong way)")
    artifacts[ORIENTATION_FILE], orientation = fit_orientation_check(every_image["path"], n_jobs=n_jobs,
                                                                     random_state=random_state)
    evaluations, side_files = {}, {}
    if site_results:
        site = {**site_results[chosen], "chosen_recipe": chosen, "candidates": {
            name: {"recipe": result["recipe"], "selection_score": result["selection_score"],
                   "site_held_out": {t: f["value"] for t, f in result["site_held_out"]["tasks"].items()},
                   "targets": result["targets"]} for name, result in site_results.items()}}
        side_files[SITE_EVALUATION_FILE] = json.dumps(site, indent=1)
        evaluations["site"] = {"chosen_recipe": chosen, "targets": site["targets"],
                               "candidates": {n: c["selection_score"] for n, c in site["candidates"].items()}}
    binary = load_feature_matrix(data_dir, feature_set, task="covid-vs-normal", n_jobs=n_jobs, cache_dir=cache_dir) \
        if evaluate_splits else None
    for index, split in enumerate(evaluate_splits):
        if split == "patient" and not binary.has_patient_ids or split == "source" and binary.sources is None \
                or split == "site" and binary.sites is None:
            continue
        say(0.6 + 0.4 * index / max(len(evaluate_splits), 1), f"evaluating the study's models ({split} split)")
        try:
            report = run_evaluation(binary, split=split, repeats=repeats, random_state=random_state, n_jobs=n_jobs)
        except ValueError as exc:  # e.g. no source holds both labels: say so in the report
            evaluations[split] = {"error": str(exc)}
            continue
        # No "Consensus" row here: these are the study's two-class models, while the saved model is three-class;
        # its operating point (flag rates at the saved threshold) is in site-evaluation.json.
        side_files[evaluation_file_name(split)] = json.dumps(report.to_dict())
        evaluations[split] = report.summary_json()
    report = {
        "created": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "feature_set": feature_set, "recipe": chosen, "preset": RECIPES[chosen].preset,
        "select_k": RECIPES[chosen].select_k, "random_state": random_state,
        "target": LABEL_COVID, "classes": list(TRIAGE_CLASSES),
        "data": {"root": portable_path(data_dir), "fingerprint": data_fingerprint(
                     matrix.shas, matrix.table["label"].tolist()),
                 "n_images": len(matrix.y), "n_covid": int((matrix.y == TRIAGE_CLASSES.index(LABEL_COVID)).sum()),
                 "images_per_class": {c: int((matrix.y == i).sum()) for i, c in enumerate(TRIAGE_CLASSES)},
                 "n_patients": int(pd.Series(matrix.groups).nunique()), "unreadable": matrix.errors,
                 "summary": {**matrix.summary, "root": portable_path(data_dir)}},
        "feature_names": list(matrix.X.columns),
        "consensus": consensus,
        "evaluation": evaluations,
        "severity": severity,
        "orientation": orientation,
    }
    out_dir = save_artifacts(out_dir, artifacts, report, side_files)
    say(1.0, "saved")
    return json.loads((out_dir / "report.json").read_text())
