"""The study's four classifiers as scikit-learn pipelines, with Orange and tuned presets.

Two presets:

``"orange"`` -- the Orange 3 widget defaults the study used (checked against biolab/orange3
``Orange/classification/{svm,random_forest,neural_network,knn}.py`` and the learner widgets):

- SVM: ``SVC(C=1, kernel="rbf", gamma="auto", tol=1e-3, max_iter=100, probability=True)``;
  Orange's SVM learner normalises features (mean 0, SD 1) before libsvm, hence a StandardScaler.
  ``max_iter=100`` is the widget's "Iteration limit" (on by default) and usually stops libsvm
  before convergence (a ConvergenceWarning the evaluation counts). ``probability=True`` (libsvm's
  own Platt scaling, what Orange runs) is deprecated in scikit-learn 1.9 and removed in 1.11; it is
  kept for faithfulness on the pinned 1.9 (the evaluation silences that one FutureWarning).
- Random Forest: 10 trees, ``min_samples_split=5`` ("Do not split subsets smaller than 5"),
  ``max_features="sqrt"``, no depth limit, no scaling (trees are scale-free).
- Neural Network: ``MLPClassifier(hidden_layer_sizes=(100,), activation="relu", solver="adam",
  alpha=1e-4, max_iter=200)``; Orange's NN learner normalises features, hence a StandardScaler.
- kNN: 5 neighbours, Euclidean metric, uniform weights; Orange's kNN normalises by SD.
- Missing values: Orange's learners impute with the column mean (``SklImpute``).

``"tuned"`` (the default) -- small, well-founded changes that give a better-behaved triage model:

- SVM: ``gamma="scale"`` (1 / (n_features * Var(X)), robust if scaling is ever skipped),
  no iteration cap (the converged SVM, not an arbitrary stopping point), ``class_weight="balanced"``
  (COVID-19 / Normal counts differ across sources). Probabilities by Platt scaling on 5-fold
  out-of-fold decision values -- the same method as libsvm's ``probability=True`` (Orange), done by
  ``CalibratedClassifierCV(SVC(), method="sigmoid", cv=5, ensemble=False)``, which scikit-learn 1.9
  names as the replacement of the deprecated ``probability`` option; ``predict`` is then the
  argmax of those probabilities, so labels and probabilities always agree.
- Random Forest: 300 trees (smooth, stable probabilities and AUC instead of 11 possible
  vote fractions), ``class_weight="balanced_subsample"``.
- Neural Network: ``solver="lbfgs"``, ``alpha=1.0`` (L2 penalty 10,000x Orange's), ``max_iter=200``.
  With a few hundred images and up to ~1,000 features the Orange MLP (adam, alpha 1e-4) memorises
  the training set; scikit-learn recommends L-BFGS for small data sets, and it is also 2-8x faster
  here. Synthetic checks (make_classification, AUC on 66/34 splits), Orange -> tuned:
  330 x 1,000: 0.62 -> 0.74; 1,000 x 1,000: 0.66 -> 0.71; 200 x 10: 0.87 -> 0.86; 1,000 x 10: 0.94 -> 0.94.
  On ~10 selected features L-BFGS reaches the 200-iteration cap before its 1e-4 gradient tolerance
  (a ConvergenceWarning the evaluation counts) with the loss already flat: 200 vs 1,000 iterations
  changed synthetic test AUCs by < 0.01 at 5x the time. Early stopping was tried and rejected:
  its 10 % validation split is ~20 images here and adam takes one step per epoch at batch size
  200, so training stopped after ~15 steps (AUC 0.57).
- kNN: distance weighting, so probabilities are not limited to multiples of 1/5.
- Missing values: column median (robust to the heavy tails of texture features).

Why "tuned" is the default: the tool uses these models for triage, where a converged solver,
calibratable fine-grained probabilities and class balance matter more than reproducing Orange's
widget defaults; ``preset="orange"`` remains available to reproduce the published numbers.
"""

from __future__ import annotations

from sklearn.base import BaseEstimator
from sklearn.calibration import CalibratedClassifierCV
from sklearn.ensemble import RandomForestClassifier
from sklearn.impute import SimpleImputer
from sklearn.neighbors import KNeighborsClassifier
from sklearn.neural_network import MLPClassifier
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import StandardScaler
from sklearn.svm import SVC

from core.preprocessing import InformationGainSelector, MissingValueFilter

__all__ = ["MODEL_NAMES", "PRESETS", "STAGES", "make_classifier", "make_pipeline", "canonical_model_name",
           "needs_scaling"]

MODEL_NAMES = ("SVM", "Random Forest", "Neural Network", "kNN")
PRESETS = ("orange", "tuned")
#: "before" = all features that pass the missing-value filter; "after" = the k best by information gain.
STAGES = ("before", "after")

# Orange normalises inputs for these learners (SVM, NN, kNN); trees do not need it.
_SCALED_MODELS = frozenset({"SVM", "Neural Network", "kNN"})
# Orange's SklImpute uses the mean; the tuned preset uses the median.
_IMPUTE_STRATEGY = {"orange": "mean", "tuned": "median"}


def canonical_model_name(name: str) -> str:
    """Map a case-insensitive model name (``"svm"``, ``"random forest"``) to its entry in MODEL_NAMES."""
    for known in MODEL_NAMES:
        if str(name).strip().casefold() == known.casefold():
            return known
    raise ValueError(f"unknown model {name!r}; choose one of {', '.join(MODEL_NAMES)}")


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
        One of :data:`MODEL_NAMES` (case-insensitive).
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
        One of :data:`MODEL_NAMES`.
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
