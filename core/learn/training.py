"""Fit the triage model on a whole data set: three classes, a calibrated consensus, the flag rule and the checks.

The triage model answers two questions per image: is there pneumonia (any: COVID-19, bacterial, viral, ...) and is
it COVID-19. It is trained on three classes (:data:`core.labels.TRIAGE_CLASSES`: Normal / other pneumonia /
COVID-19) with the models of a :class:`core.learn.models.Recipe`; their averaged class probabilities are calibrated
on patient-grouped out-of-fold predictions; the flag rule is chosen on the out-of-fold COVID-19 probability.

Saving and loading the fitted objects is :mod:`core.learn.artifacts`; ``python -m core train`` is
:func:`core.workflow.train`.
"""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd
from joblib import Parallel, delayed
from sklearn.exceptions import ConvergenceWarning
from sklearn.metrics import roc_auc_score
from sklearn.model_selection import StratifiedGroupKFold

from core.features.cache import pairs_sha256
from core.features.threads import single_threaded
from core.labels import LABEL_COVID, LABEL_NORMAL, TRIAGE_CLASSES
from core.learn.artifacts import CONSENSUS_FILE, model_file_name
from core.learn.consensus import ConsensusCalibrator, OutOfDistributionDetector
from core.learn.flag import FlagRule
from core.learn.models import RECIPES, Recipe, make_pipeline
from core.learn.site_shift import SiteShiftDetector
from core.progress import Progress

COVID_INDEX = TRIAGE_CLASSES.index(LABEL_COVID)
NORMAL_INDEX = TRIAGE_CLASSES.index(LABEL_NORMAL)
N_CLASSES = len(TRIAGE_CLASSES)


def data_fingerprint(shas: list[str], labels: list[str]) -> str:
    """SHA-256 over the sorted (image hash, label) pairs: the same images and labels give the same fingerprint."""
    return pairs_sha256(zip(shas, labels))


def fit_pipeline(name: str, recipe: Recipe, X: pd.DataFrame | np.ndarray, y: np.ndarray, random_state: int,
                 X_test=None):
    """Fit one model of ``recipe``; with ``X_test``, also its class probabilities there, (n_test, 3).

    Classes absent from the training rows get probability 0 (a joblib task).
    """
    with warnings.catch_warnings(), single_threaded():
        # The tuned MLP stops at its iteration cap with a flat loss (see core.learn.models); the evaluation counts these.
        warnings.simplefilter("ignore", ConvergenceWarning)
        model = make_pipeline(name, preset=recipe.preset, select_k=recipe.select_k,
                              random_state=random_state).fit(X, y)
        if X_test is None:
            return model, None
        return model, class_probabilities(model, X_test)


def class_probabilities(model, X) -> np.ndarray:
    """P(class) for every triage class, shape (n_images, 3); classes the model never saw get 0."""
    out = np.zeros((len(X), N_CLASSES))
    out[:, np.asarray(model.classes_, dtype=int)] = model.predict_proba(X)
    return out


def fold_probabilities(recipe: Recipe, X: pd.DataFrame, y: np.ndarray, folds: list[tuple[np.ndarray, np.ndarray]],
                       *, random_state: int = 42, n_jobs: int = 1) -> np.ndarray:
    """Class probabilities of every test row from the recipe's models fitted on its fold's training rows.

    Returns
    -------
    ndarray of shape (n_images, n_models, 3)
        NaN for rows in no test fold.
    """
    tasks = [(name, train, test) for train, test in folds for name in recipe.models]
    outputs = Parallel(n_jobs=n_jobs)(delayed(fit_pipeline)(name, recipe, X.iloc[train], y[train], random_state,
                                                             X.iloc[test]) for name, train, test in tasks)
    out = np.full((len(X), len(recipe.models), N_CLASSES), np.nan)
    for (name, _, test), (_, probabilities) in zip(tasks, outputs):
        out[test, recipe.models.index(name)] = probabilities
    return out


def patient_folds(y: np.ndarray, groups: np.ndarray, *, n_splits: int = 5, random_state: int = 42):
    """Patient-grouped, class-stratified K-fold (no patient in both training and test)."""
    return list(StratifiedGroupKFold(n_splits=n_splits, shuffle=True, random_state=random_state)
                .split(np.zeros(len(y)), y, groups))


def fit_final_models(X: pd.DataFrame, y: np.ndarray, groups: np.ndarray, *, sites: np.ndarray | None = None,
                     signatures: np.ndarray | None = None, recipe: Recipe | str = "linear",
                     target_sensitivity: float = 0.95, random_state: int = 42, n_jobs: int = 1,
                     progress: Progress | None = None) -> tuple[dict, dict]:
    """Fit the recipe's pipelines on all rows, calibrate their consensus out of fold, choose the flag rule.

    Parameters
    ----------
    X : DataFrame (n_images, n_features)
    y : ndarray of int (n_images,)
        Three-class target (:func:`core.labels.three_class_target`): 0 Normal, 1 other pneumonia, 2 COVID-19.
    groups : ndarray (n_images,)
        Patient ids (out-of-fold predictions never see the patient).
    sites : ndarray (n_images,), optional
        Site of every image; with ``signatures``, fits the site-shift detector.
    signatures : ndarray (n_images, n_signature), optional
        Acquisition signatures (:mod:`core.features.acquisition`).
    recipe : Recipe or str
        The models (:data:`core.learn.models.RECIPES`).

    Returns
    -------
    artifacts : dict
        Fitted objects by file name (one per model, ``consensus.joblib``).
    summary : dict
        What the report says about them, including ``out_of_fold_probabilities`` (n_images, 3), removed by the
        caller before writing JSON.
    """
    recipe = RECIPES[recipe] if isinstance(recipe, str) else recipe
    say = progress or (lambda fraction, message: None)
    say(0.05, "out-of-fold predictions for calibration")
    oof = fold_probabilities(recipe, X, y, patient_folds(y, groups, random_state=random_state),
                             random_state=random_state, n_jobs=n_jobs)
    calibrator = ConsensusCalibrator(n_classes=N_CLASSES).fit(oof, y)
    oof_calibrated = calibrator.predict_proba(oof)
    oof_risk = oof_calibrated[:, COVID_INDEX]
    is_covid = (y == COVID_INDEX).astype(int)
    flag_rule = FlagRule.for_sensitivity(oof_risk, is_covid, target_sensitivity)
    say(0.6, "fitting the final models on all images")
    fitted = Parallel(n_jobs=n_jobs)(delayed(fit_pipeline)(name, recipe, X, y, random_state)
                                     for name in recipe.models)
    models = {name: model for name, (model, _) in zip(recipe.models, fitted)}
    detector = OutOfDistributionDetector(random_state=random_state).fit(X.to_numpy())
    site_shift = (SiteShiftDetector(random_state=random_state).fit(signatures, sites, y)
                  if signatures is not None and sites is not None else None)
    artifacts = {model_file_name(name): model for name, model in models.items()}
    artifacts[CONSENSUS_FILE] = {"calibrator": calibrator, "flag_rule": flag_rule.to_dict(), "detector": detector,
                                 "site_shift": site_shift, "feature_medians": X.median(numeric_only=True),
                                 "classes": TRIAGE_CLASSES}
    pneumonia = 1.0 - oof_calibrated[:, NORMAL_INDEX]
    summary = {
        "method": (f"{recipe.description}; three classes ({' / '.join(TRIAGE_CLASSES)}); mean of the class "
                   "probabilities of the models, recalibrated (multinomial Platt) on patient-grouped 5-fold "
                   "out-of-fold predictions; risk = P(COVID-19), pneumonia = 1 - P(Normal)"),
        "recipe": recipe.to_dict(),
        "models": list(recipe.models),
        "classes": list(TRIAGE_CLASSES),
        **flag_rule.to_dict(),
        "out_of_fold": {"AUC": _auc(is_covid, oof_risk), **flag_rule.operating_point(oof_risk, is_covid),
                        "pneumonia_AUC": _auc((y != NORMAL_INDEX).astype(int), pneumonia),
                        "per_model_AUC": {name: _auc(is_covid, oof[:, index, COVID_INDEX])
                                          for index, name in enumerate(recipe.models)}},
        "selected_features": {name: selected_feature_names(model) for name, model in models.items()},
        "out_of_fold_probabilities": oof_calibrated,
    }
    return artifacts, summary


def _auc(y: np.ndarray, score: np.ndarray) -> float | None:
    return float(roc_auc_score(y, score)) if len(np.unique(y)) == 2 else None


def selected_feature_names(pipeline) -> list[str]:
    """Names of the features the fitted pipeline's classifier sees (after filtering and selection)."""
    return [str(n) for n in pipeline[:-1].get_feature_names_out()]
