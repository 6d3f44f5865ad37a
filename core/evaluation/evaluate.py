"""Repeated evaluation of the four classifiers, before and after feature selection.

Reproduces Orange's *Test & Score* (random sampling, 10 repeats, 66 % training) on the study's
workflow and adds what the study lacked: patient-grouped splits (no patient on both sides, the
default whenever patient ids exist) and a leave-one-source-out check of source shift.
Every pipeline -- missing-value filter, information-gain selection, imputation, scaling,
classifier -- is fitted on the training rows of each repeat only.

Example
-------
>>> report = evaluate(features, labels, groups=patient_ids)        # doctest: +SKIP
>>> report.table()                                                   # doctest: +SKIP
>>> report.to_json("evaluation.json")                                # doctest: +SKIP
"""

from __future__ import annotations

import time
import warnings
from typing import Sequence

import joblib
import numpy as np
import pandas as pd
import sklearn
from sklearn.exceptions import ConvergenceWarning

from core.evaluation.metrics import summarise_repeats
from core.evaluation.report import (
    TARGET,
    EvaluationReport,
    ModelResult,
    OutOfFold,
    count_selections,
)
from core.evaluation.splits import SplitPlan, make_splits
from core.features.threads import single_threaded
from core.learn.models import (
    MODEL_NAMES,
    PRESETS,
    STAGES,
    canonical_model_name,
    make_pipeline,
)
from core.progress import Progress

__all__ = ["evaluate", "as_binary_target", "format_table", "EvaluationReport", "ModelResult", "OutOfFold"]


# Relative cost of one fit, to dispatch the slow tasks first so no worker is left with a long one at the end.
# Measured CPU-s per fit, tuned preset, 290 training images x 1,163 features (2026-12-01): Random Forest 2.1
# before / 1.1 after selection, Neural Network 2.3 / 0.24, SVM 0.23 / 0.13, kNN 0.07 / 0.09 (unit: 0.1 CPU-s).
_COST = {("Random Forest", "before"): 21, ("Neural Network", "before"): 23, ("SVM", "before"): 2,
         ("kNN", "before"): 1, ("Random Forest", "after"): 11, ("Neural Network", "after"): 2,
         ("SVM", "after"): 1, ("kNN", "after"): 1}


def as_binary_target(y) -> np.ndarray:
    """Labels as int {0, 1} with 1 = COVID-19.

    Accepts 0/1 (or bool) values, or the strings "COVID-19" / "Normal".

    Raises
    ------
    ValueError
        For any other label, or when one of the two classes is absent.
    """
    labels = np.asarray(y).ravel()
    if labels.dtype.kind in "OUS":
        names = set(map(str, labels))
        unknown = names - {TARGET, "Normal"}
        if unknown:
            raise ValueError(f"labels must be '{TARGET}' or 'Normal', found {sorted(unknown)[:5]}")
        target = np.array([str(label) == TARGET for label in labels], dtype=int)
    else:
        if not np.isin(labels, (0, 1)).all():
            raise ValueError(f"numeric labels must be 0 (Normal) or 1 ({TARGET}), found {np.unique(labels)[:5]}")
        target = labels.astype(int)
    if len(np.unique(target)) < 2:
        raise ValueError(f"both classes ({TARGET} and Normal) are needed, found only one")
    return target


def _fit_predict(values: np.ndarray, target: np.ndarray, train: np.ndarray, test: np.ndarray, model: str,
                 stage: str, preset: str, select_k: int | None, seed: int, feature_names: list[str]) -> dict:
    """Fit one pipeline on the training rows and predict the test rows (runs in a worker)."""
    pipeline = make_pipeline(model, preset=preset, select_k=select_k if stage == "after" else None,
                             random_state=seed)
    started = time.perf_counter()
    # One BLAS thread per task: parallelism is over tasks (n_jobs), and multi-threaded BLAS on these
    # small matrices mostly spins, badly so when the other core is busy.
    with single_threaded(), warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        # The Orange preset keeps libsvm's probability=True on purpose (see core.learn.models).
        warnings.filterwarnings("ignore", message="The `probability` parameter was deprecated",
                                category=FutureWarning)
        pipeline.fit(values[train], target[train])
        positive = list(pipeline.classes_).index(1)
        proba = pipeline.predict_proba(values[test])[:, positive]
        predicted = pipeline.predict(values[test])
    seconds = time.perf_counter() - started
    n_convergence = sum(issubclass(w.category, ConvergenceWarning) for w in caught)
    for w in caught:  # counted, not printed: the Orange preset triggers them on purpose
        if not issubclass(w.category, ConvergenceWarning):
            warnings.warn_explicit(w.message, w.category, w.filename, w.lineno)
    selected = None
    if stage == "after":
        # Names after the missing-value filter, indexed by the selector's ranking (best first).
        after_filter = pipeline.named_steps["missing"].get_feature_names_out(feature_names)
        selected = [str(after_filter[i]) for i in pipeline.named_steps["select"].selected_indices_]
    return {"proba": proba, "y_pred": np.asarray(predicted).astype(int), "selected": selected,
            "seconds": seconds, "n_convergence": n_convergence}


def _tasks(plan: SplitPlan, models: Sequence[str], stages: Sequence[str]) -> list[tuple[int, str, str]]:
    tasks = [(repeat, model, stage) for stage in stages for model in models for repeat in range(len(plan.folds))]
    return sorted(tasks, key=lambda task: -_COST.get((task[1], task[2]), 1))  # stable: keeps repeat order


def evaluate(
    X: pd.DataFrame,
    y: np.ndarray,
    *,
    groups=None,
    sources=None,
    split: str = "patient",
    test_source: str | None = None,
    repeats: int = 10,
    train_size: float = 0.66,
    preset: str = "tuned",
    select_k: int | None = 10,
    models: Sequence[str] = MODEL_NAMES,
    random_state: int = 42,
    n_jobs: int = 1,
    progress: Progress | None = None,
    task: str | None = None,
    target: str = TARGET,
) -> EvaluationReport:
    """Repeatedly fit and score every model before and after information-gain selection.

    Parameters
    ----------
    X : DataFrame of shape (n_images, n_features)
        Numeric features (NaN = missing); column names are used in the report.
    y : array-like of shape (n_images,)
        1 / "COVID-19" (positive) or 0 / "Normal" (or 1 / 0 of another ``task``).
    groups : array-like, optional
        Patient id per image. Without it ``split="patient"`` falls back to "random" (with a
        warning, recorded in the report).
    sources : array-like, optional
        Source data set per image (needed for ``split="source"``), or the site of every image
        (needed for ``split="site"``).
    split : {"patient", "random", "source", "site"}, default="patient"
        See :mod:`core.evaluation.splits`.
    test_source : str, optional
        Held-out source for ``split="source"`` (case-insensitive part of its name).
    repeats : int, default=10
    train_size : float, default=0.66
        Fraction of images in training ("random", "patient"); for "source" the report holds the
        actual training share.
    preset : {"tuned", "orange"}, default="tuned"
        Model hyper-parameters (:mod:`core.learn.models`).
    select_k : int or None, default=10
        Features kept by information gain at stage "after"; None evaluates stage "before" only.
    models : sequence of str, default=MODEL_NAMES
    random_state : int, default=42
        Seed of the splits and the models.
    n_jobs : int, default=1
        Parallel workers (joblib) over repeats x models x stages; -1 = all cores.
    progress : callable(fraction, message), optional
        Called after every fitted pipeline with the fraction done in [0, 1].
    task : str, optional
        Name of the two-class question (:data:`core.labels.TASKS`), recorded in the report.
    target : str, default="COVID-19"
        Name of the positive class (label 1), recorded in the report.

    Returns
    -------
    EvaluationReport
    """
    started = time.perf_counter()
    if preset not in PRESETS:
        raise ValueError(f"unknown preset {preset!r}; choose one of {', '.join(PRESETS)}")
    frame = X if isinstance(X, pd.DataFrame) else pd.DataFrame(np.asarray(X))
    feature_names = [str(column) for column in frame.columns]
    values = frame.to_numpy(dtype=np.float64, na_value=np.nan)
    positive_name, task_name = target, task   # both names are reused below
    target = as_binary_target(y)
    if len(target) != len(values):
        raise ValueError(f"X has {len(values)} rows but y has {len(target)} labels")
    if split == "patient" and groups is None:
        warnings.warn("no patient ids given: falling back to split='random' (images of one patient may "
                      "fall on both sides)", UserWarning, stacklevel=2)
        split = "random"
    plan = make_splits(target, groups=groups, sources=sources, split=split, test_source=test_source,
                       repeats=repeats, train_size=train_size, random_state=random_state)
    models = list(dict.fromkeys(canonical_model_name(model) for model in models))
    stages = STAGES if select_k is not None else ("before",)
    tasks = _tasks(plan, models, stages)

    jobs = (joblib.delayed(_fit_predict)(values, target, plan.folds[repeat][0], plan.folds[repeat][1], model,
                                         stage, preset, select_k, plan.model_seeds[repeat], feature_names)
            for repeat, model, stage in tasks)
    outputs: dict[tuple[int, str, str], dict] = {}
    runner = joblib.Parallel(n_jobs=n_jobs, return_as="generator")
    for done, (task, output) in enumerate(zip(tasks, runner(jobs)), start=1):
        outputs[task] = output
        if progress is not None:
            repeat, model, stage = task
            progress(done / len(tasks), f"{model} ({stage} selection), repeat {repeat + 1}/{len(plan.folds)}")

    results = [_model_result(model, stage, plan, target, outputs) for stage in stages for model in models]
    if plan.kind == "source":  # the held-out source fixes the sizes: report the actual training share
        train_size = len(plan.folds[0][0]) / len(target)
    if plan.kind == "site":  # one fold per site: the folds are the repeats, the headline AUC is pooled
        repeats = len(plan.folds)
        train_size = float(np.mean([len(train) / len(target) for train, _ in plan.folds]))
        for result in results:
            result.pooled["AUC"] = result.pooled["AUC_pooled"]
    return EvaluationReport(
        split=plan.kind, repeats=int(repeats), train_size=float(train_size), preset=preset, task=task_name,
        target=positive_name,
        select_k=None if select_k is None else int(select_k), random_state=int(random_state),
        n_images=int(len(target)), n_patients=plan.description.get("n_patients"),
        n_features=int(values.shape[1]), split_description=plan.description, results=results,
        elapsed_seconds=time.perf_counter() - started,
        software={"scikit-learn": sklearn.__version__, "numpy": np.__version__, "pandas": pd.__version__},
    )


def format_table(report: EvaluationReport, metrics: Sequence[str] = ("AUC", "CA", "F1", "Precision", "Recall",
                                                                      "Sensitivity", "Specificity")) -> str:
    """Plain-text score table (value ± SD over repeats), one line per model x stage."""
    table = report.table()
    lines = [f"{report.split} split, {report.repeats} repeats, preset {report.preset}, "
             f"target {report.target}, {report.n_images} images"]
    header = f"{'model':<15} {'stage':<7}" + "".join(f" {name:>15}" for name in metrics)
    lines += [header, "-" * len(header)]
    for _, row in table.iterrows():  # one repeat (or the source split's single test) has no spread to show
        cells = "".join(f" {row[name]:>7.3f} ± {row[name + '_sd']:<5.3f}" if np.isfinite(row[name + "_sd"])
                        else f" {row[name]:>7.3f}{'':8}" for name in metrics)
        lines.append(f"{row['model']:<15} {row['stage']:<7}{cells}")
    return "\n".join(lines)


def _model_result(model: str, stage: str, plan: SplitPlan, target: np.ndarray,
                  outputs: dict[tuple[int, str, str], dict]) -> ModelResult:
    """Collect one model x stage over the repeats and score it."""
    runs = [outputs[(repeat, model, stage)] for repeat in range(len(plan.folds))]
    folds = [OutOfFold(repeat=repeat, test_index=test, y_true=target[test], proba=run["proba"], y_pred=run["y_pred"])
             for repeat, ((_, test), run) in enumerate(zip(plan.folds, runs))]
    summary = summarise_repeats([f.y_true for f in folds], [f.proba for f in folds], [f.y_pred for f in folds])
    selected = [run["selected"] for run in runs] if stage == "after" else None
    return ModelResult(
        model=model, stage=stage, pooled=summary["pooled"], per_repeat=summary["per_repeat"],
        confusion=summary["confusion"], roc=summary["roc"], selected_features=selected,
        selection_counts=count_selections(selected) if selected is not None else None,
        fit_seconds=float(sum(run["seconds"] for run in runs)),
        n_convergence_warnings=int(sum(run["n_convergence"] for run in runs)), out_of_fold=folds,
    )
