"""The study's four classifiers (SVM, Random Forest, Neural Network, kNN) and a linear model as scikit-learn pipelines.

The linear model (L2-regularised logistic regression on every feature) was added for issue 10: measured
leave-one-site-out, it generalises to unseen hospitals far better than the four study models after information-gain
selection (README, "Results"). :data:`RECIPES` names the model sets the default model is chosen from.

Preset ``"orange"`` reproduces the Orange 3 widget defaults the study used; preset ``"tuned"`` (the default) makes
small changes for a triage model: converged solvers, balanced classes, finer calibratable probabilities. Every
pipeline is missing-value filter -> [information-gain selection] -> imputation -> [scaling] -> classifier, fitted
as one estimator, so preprocessing is learned inside each training split. The settings of each preset and the
measurements behind them are in the README ("Method").
"""

from __future__ import annotations

from dataclasses import dataclass

from sklearn.base import BaseEstimator
from sklearn.calibration import CalibratedClassifierCV
from sklearn.ensemble import RandomForestClassifier
from sklearn.impute import SimpleImputer
from sklearn.linear_model import LogisticRegression
from sklearn.neighbors import KNeighborsClassifier
from sklearn.neural_network import MLPClassifier
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import StandardScaler
from sklearn.svm import SVC

from core.labels import LABEL_COVID, LABEL_NORMAL
from core.learn.preprocessing import InformationGainSelector, MissingValueFilter

__all__ = ["MODEL_NAMES", "LINEAR_MODEL", "ALL_MODELS", "PRESETS", "STAGES", "Recipe", "RECIPES", "make_classifier",
           "make_pipeline", "canonical_model_name", "needs_scaling"]

MODEL_NAMES = ("SVM", "Random Forest", "Neural Network", "kNN")
"""The study's four classifiers (what ``evaluate`` runs by default, and the study's reproduction)."""
LINEAR_MODEL = "Logistic Regression"
ALL_MODELS = MODEL_NAMES + (LINEAR_MODEL,)
PRESETS = ("orange", "tuned")
#: "before" = all features that pass the missing-value filter; "after" = the k best by information gain.
STAGES = ("before", "after")

# Orange normalises inputs for these learners (SVM, NN, kNN); trees do not need it.
_SCALED_MODELS = frozenset({"SVM", "Neural Network", "kNN", LINEAR_MODEL})
# L2 strength of the tuned linear model: leave-one-site-out and within-site AUCs hardly moved over C = 0.003-0.03
# (README, "What did not help"); the strongest penalty gave the best within-site COVID-19 vs other pneumonia AUC.
_LINEAR_C = 0.003
# Orange's SklImpute uses the mean; the tuned preset uses the median.
_IMPUTE_STRATEGY = {"orange": "mean", "tuned": "median"}


def canonical_model_name(name: str) -> str:
    """Map a case-insensitive model name (``"svm"``, ``"random forest"``) to its entry in ALL_MODELS."""
    for known in ALL_MODELS:
        if str(name).strip().casefold() == known.casefold():
            return known
    raise ValueError(f"unknown model {name!r}; choose one of {', '.join(ALL_MODELS)}")


def _check_preset(preset: str) -> str:
    if preset not in PRESETS:
        raise ValueError(f"unknown preset {preset!r}; choose one of {', '.join(PRESETS)}")
    return preset


def needs_scaling(name: str) -> bool:
    """Whether the model gets a StandardScaler in front (as Orange normalises for it)."""
    return canonical_model_name(name) in _SCALED_MODELS


def make_classifier(name: str, preset: str = "tuned", random_state: int = 42) -> BaseEstimator:
    """One unfitted classifier with probability outputs.

    Parameters
    ----------
    name : str
        One of :data:`ALL_MODELS` (case-insensitive).
    preset : {"tuned", "orange"}, default="tuned"
        Hyper-parameters; see the module docstring for every value and why.
    random_state : int, default=42
        Seed for every random part (libsvm's Platt-scaling folds, forest bootstrap, MLP weights).
        kNN and the tuned SVM (unshuffled stratified folds) are deterministic.

    Returns
    -------
    estimator : sklearn classifier with ``predict_proba``
    """
    name = canonical_model_name(name)
    orange = _check_preset(preset) == "orange"
    if name == "SVM":
        if orange:
            return SVC(C=1.0, kernel="rbf", gamma="auto", tol=1e-3, max_iter=100, probability=True,
                       random_state=random_state)
        svm = SVC(C=1.0, kernel="rbf", gamma="scale", tol=1e-3, max_iter=-1, class_weight="balanced",
                  random_state=random_state)
        return CalibratedClassifierCV(svm, method="sigmoid", cv=5, ensemble=False)
    if name == "Random Forest":
        if orange:
            return RandomForestClassifier(n_estimators=10, min_samples_split=5, max_features="sqrt",
                                          n_jobs=1, random_state=random_state)
        return RandomForestClassifier(n_estimators=300, min_samples_split=2, max_features="sqrt",
                                      class_weight="balanced_subsample", n_jobs=1, random_state=random_state)
    if name == "Neural Network":
        if orange:
            return MLPClassifier(hidden_layer_sizes=(100,), activation="relu", solver="adam", alpha=1e-4,
                                 max_iter=200, random_state=random_state)
        return MLPClassifier(hidden_layer_sizes=(100,), activation="relu", solver="lbfgs", alpha=1.0,
                             max_iter=200, random_state=random_state)
    if name == LINEAR_MODEL:  # Orange's Logistic Regression widget: L2, C=1
        return LogisticRegression(C=1.0 if orange else _LINEAR_C, max_iter=2000, random_state=random_state)
    # kNN
    if orange:
        return KNeighborsClassifier(n_neighbors=5, metric="euclidean", weights="uniform")
    return KNeighborsClassifier(n_neighbors=5, metric="euclidean", weights="distance")


def make_pipeline(
    name: str,
    *,
    preset: str = "tuned",
    select_k: int | None = 10,
    max_missing_fraction: float = 0.05,
    random_state: int = 42,
) -> Pipeline:
    """The full Orange-style chain for one model, to be fitted on a training split only.

    Steps (names in brackets):

    - ``select_k=None`` (stage "before"): [missing] MissingValueFilter -> [impute] SimpleImputer ->
      [scale] StandardScaler (SVM, NN, kNN only) -> [model] classifier.
    - ``select_k=k`` (stage "after"): [missing] -> [select] InformationGainSelector(k) -> [impute] ->
      [scale] -> [model].

    The selector comes *before* the imputer on purpose: in the study Orange's Preprocess widget
    scored the raw features (unknowns ignored, gain scaled by the known fraction) and the learners
    imputed afterwards; imputing first would let filled-in medians form their own bin.

    Parameters
    ----------
    name : str
        One of :data:`ALL_MODELS`.
    preset : {"tuned", "orange"}, default="tuned"
        Hyper-parameters; also picks the imputer (Orange: mean; tuned: median).
    select_k : int or None, default=10
        Number of features kept by information gain; None keeps all (stage "before").
    max_missing_fraction : float, default=0.05
        Threshold of the missing-value filter (Orange's 5 %).
    random_state : int, default=42
        Passed to the classifier.

    Returns
    -------
    pipeline : sklearn.pipeline.Pipeline
    """
    preset = _check_preset(preset)
    steps = [("missing", MissingValueFilter(max_missing_fraction=max_missing_fraction))]
    if select_k is not None:
        steps.append(("select", InformationGainSelector(k=select_k, n_bins=4)))
    steps.append(("impute", SimpleImputer(strategy=_IMPUTE_STRATEGY[preset])))
    if needs_scaling(name):
        steps.append(("scale", StandardScaler()))
    steps.append(("model", make_classifier(name, preset=preset, random_state=random_state)))
    return Pipeline(steps)


@dataclass(frozen=True)
class Recipe:
    """A named model set: the classifiers averaged in the consensus, their preset and the feature selection.

    Attributes
    ----------
    name : str
    models : tuple of str
        Entries of :data:`ALL_MODELS`.
    preset : str
    select_k : int or None
        Information-gain selection (None: every feature).
    description : str
        One line for reports and the dashboard.
    """

    name: str
    models: tuple[str, ...]
    preset: str
    select_k: int | None
    description: str

    def to_dict(self) -> dict:
        return {"name": self.name, "models": list(self.models), "preset": self.preset, "select_k": self.select_k,
                "description": self.description}


RECIPES = {
    "linear": Recipe("linear", (LINEAR_MODEL,), "tuned", None,
                     "L2 logistic regression on every feature"),
    "study": Recipe("study", MODEL_NAMES, "tuned", 10,
                    "the study's four models (tuned) on the 10 features of highest information gain"),
}
"""Candidates for the default model; ``train`` keeps the one that does best leave-one-site-out."""


MIN_IMAGES_PER_LABEL = 10
"""Fewest COVID-19 and Normal images — and patients — a data set needs for the models to be fitted and evaluated.
The tuned SVM calibrates its probabilities by 5-fold cross-validation inside every training split and kNN looks at 5
neighbours, so each training part needs at least 5 images of each label; 10 leaves a test part beside it."""


def check_enough_images(y, groups=None, *, train_size: float = 0.8, where: str = "the data set") -> None:
    """Refuse, in the project's words, labels (1 = COVID-19, 0 = Normal) too few to fit and test the models on.

    ``groups`` are the patients (None: every image its own patient); ``train_size`` the share that trains.
    """
    import numpy as np

    y = np.asarray(y)
    counts = []
    for value, label in ((1, LABEL_COVID), (0, LABEL_NORMAL)):
        images = int(np.sum(y == value))
        patients = images if groups is None else len(set(np.asarray(groups)[y == value]))
        counts.append((label, images, patients))
    fewest = min(min(images, patients) for _, images, patients in counts)
    if fewest >= MIN_IMAGES_PER_LABEL and fewest * train_size >= 5 and fewest * (1 - train_size) >= 1:
        return
    found = " and ".join(f"{images} {label} images ({patients} patients)" for label, images, patients in counts)
    raise ValueError(f"{where}: too few images to fit and evaluate the models: {found}. They need at least "
                     f"{MIN_IMAGES_PER_LABEL} images of each label from as many patients, with at least 5 of each "
                     f"in the training share ({train_size:.0%}): the SVM calibrates its probabilities by 5-fold "
                     "cross-validation inside every training split")
