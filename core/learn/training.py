"""Fit the four final models on a whole data set, calibrate their consensus out of fold and choose the flag rule.

Saving and loading the fitted objects is :mod:`core.learn.artifacts`; ``python -m core train`` is
:func:`core.workflow.train`.
"""

from __future__ import annotations

import hashlib
import warnings

import numpy as np
import pandas as pd
from joblib import Parallel, delayed
from sklearn.exceptions import ConvergenceWarning
from sklearn.metrics import roc_auc_score
from sklearn.model_selection import StratifiedGroupKFold

from core.learn.artifacts import CONSENSUS_FILE, model_file_name
from core.learn.consensus import ConsensusCalibrator, OutOfDistributionDetector
from core.learn.flag import FlagRule
from core.learn.models import MODEL_NAMES, make_pipeline
from core.progress import Progress


def data_fingerprint(shas: list[str], labels: list[str]) -> str:
    """SHA-256 over the sorted (image hash, label) pairs: the same images and labels give the same fingerprint."""
    digest = hashlib.sha256()
    for sha, label in sorted(zip(shas, labels)):
        digest.update(f"{sha}\t{label}\n".encode())
    return digest.hexdigest()


def out_of_fold_probabilities(X: pd.DataFrame, y: np.ndarray, groups: np.ndarray, *, preset: str = "tuned",
                              select_k: int | None = 10, n_splits: int = 5, random_state: int = 42,
                              n_jobs: int = 1) -> pd.DataFrame:
    """P(COVID-19) of every image from models that never saw its patient (patient-grouped K-fold).

    Returns a DataFrame (n_images, 4 models).
    """
    folds = list(StratifiedGroupKFold(n_splits=n_splits, shuffle=True, random_state=random_state)
                 .split(X, y, groups))
    tasks = (delayed(_fit_pipeline)(name, X.iloc[train], y[train], preset, select_k, random_state, X.iloc[test])
             for name in MODEL_NAMES for train, test in folds)
    keys = [(name, test) for name in MODEL_NAMES for _, test in folds]
    out = pd.DataFrame(np.nan, index=range(len(X)), columns=list(MODEL_NAMES))
    for (name, test), (_, probabilities) in zip(keys, Parallel(n_jobs=n_jobs)(tasks)):
        out.loc[test, name] = probabilities
    return out


def _fit_pipeline(name: str, X: pd.DataFrame, y: np.ndarray, preset: str, select_k: int | None,
                  random_state: int, X_test: pd.DataFrame | None = None):
    """Fit one model's pipeline; with ``X_test``, also its P(COVID-19) there (a joblib task)."""
    with warnings.catch_warnings():
        # The tuned MLP stops at its iteration cap with a flat loss (see core.learn.models); the evaluation counts these.
        warnings.simplefilter("ignore", ConvergenceWarning)
        model = make_pipeline(name, preset=preset, select_k=select_k, random_state=random_state).fit(X, y)
    return model, (model.predict_proba(X_test)[:, 1] if X_test is not None else None)


def fit_final_models(X: pd.DataFrame, y: np.ndarray, groups: np.ndarray, *, preset: str = "tuned",
                     select_k: int | None = 10, target_sensitivity: float = 0.95, random_state: int = 42,
                     n_jobs: int = 1, progress: Progress | None = None) -> tuple[dict, dict]:
    """Fit the four pipelines on all rows, calibrate the consensus out of fold, choose the flag threshold.

    Returns ``(artifacts, summary)``: the fitted objects by file name, and what the report says about them.
    """
    say = progress or (lambda fraction, message: None)
    say(0.05, "out-of-fold predictions for calibration")
    oof = out_of_fold_probabilities(X, y, groups, preset=preset, select_k=select_k,
                                    random_state=random_state, n_jobs=n_jobs)
    calibrator = ConsensusCalibrator().fit(oof.to_numpy(), y)
    oof_risk = calibrator.predict_risk(oof.to_numpy())
    flag_rule = FlagRule.for_sensitivity(oof_risk, y, target_sensitivity)
    say(0.6, "fitting the final models on all images")
    fitted = Parallel(n_jobs=n_jobs)(delayed(_fit_pipeline)(name, X, y, preset, select_k, random_state)
                                     for name in MODEL_NAMES)
    models = {name: model for name, (model, _) in zip(MODEL_NAMES, fitted)}
    detector = OutOfDistributionDetector(random_state=random_state).fit(X.to_numpy())
    medians = X.median(numeric_only=True)
    artifacts = {model_file_name(name): model for name, model in models.items()}
    artifacts[CONSENSUS_FILE] = {"calibrator": calibrator, "threshold": flag_rule.threshold, "detector": detector,
                                     "feature_medians": medians}
    summary = {
        "method": "mean of the four P(COVID-19), Platt-scaled on patient-grouped 5-fold out-of-fold predictions",
        **flag_rule.to_dict(),
        "out_of_fold": {"AUC": float(roc_auc_score(y, oof_risk)), **flag_rule.operating_point(oof_risk, y),
                        "per_model_AUC": {n: float(roc_auc_score(y, oof[n])) for n in MODEL_NAMES}},
        "selected_features": {name: selected_feature_names(model) for name, model in models.items()},
    }
    return artifacts, summary


def selected_feature_names(pipeline) -> list[str]:
    """Names of the features the fitted pipeline's classifier sees (after filtering and selection)."""
    return [str(n) for n in pipeline[:-1].get_feature_names_out()]


