"""The four classifiers: Orange and tuned presets, pipelines before / after selection."""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd
import pytest
from sklearn.calibration import CalibratedClassifierCV
from sklearn.datasets import make_classification
from sklearn.ensemble import RandomForestClassifier
from sklearn.impute import SimpleImputer
from sklearn.neighbors import KNeighborsClassifier
from sklearn.neural_network import MLPClassifier
from sklearn.preprocessing import StandardScaler
from sklearn.svm import SVC

from core.learn.models import (
    MODEL_NAMES,
    PRESETS,
    canonical_model_name,
    make_classifier,
    make_pipeline,
)
from core.learn.preprocessing import InformationGainSelector, MissingValueFilter


def _params(estimator, **expected):
    actual = estimator.get_params()
    return {name: actual[name] for name in expected}, expected


def test_orange_preset_is_exactly_the_widget_defaults():
    svm = make_classifier("SVM", preset="orange")
    assert type(svm) is SVC
    assert svm.get_params() == SVC(C=1.0, kernel="rbf", gamma="auto", tol=1e-3, max_iter=100,
                                   probability=True, random_state=42).get_params()
    forest = make_classifier("Random Forest", preset="orange")
    assert type(forest) is RandomForestClassifier
    actual, expected = _params(forest, n_estimators=10, min_samples_split=5, max_features="sqrt", max_depth=None,
                               class_weight=None, random_state=42)
    assert actual == expected
    mlp = make_classifier("Neural Network", preset="orange")
    assert type(mlp) is MLPClassifier
    actual, expected = _params(mlp, hidden_layer_sizes=(100,), activation="relu", solver="adam", alpha=1e-4,
                               max_iter=200, early_stopping=False, random_state=42)
    assert actual == expected
    knn = make_classifier("kNN", preset="orange")
    assert type(knn) is KNeighborsClassifier
    actual, expected = _params(knn, n_neighbors=5, metric="euclidean", weights="uniform")
    assert actual == expected


def test_tuned_preset_values():
    svm = make_classifier("SVM")
    assert isinstance(svm, CalibratedClassifierCV)
    assert (svm.method, svm.cv, svm.ensemble) == ("sigmoid", 5, False)
    actual, expected = _params(svm.estimator, C=1.0, kernel="rbf", gamma="scale", max_iter=-1,
                               class_weight="balanced")
    assert actual == expected
    actual, expected = _params(make_classifier("Random Forest"), n_estimators=300,
                               class_weight="balanced_subsample")
    assert actual == expected
    actual, expected = _params(make_classifier("Neural Network"), solver="lbfgs", alpha=1.0, max_iter=200,
                               hidden_layer_sizes=(100,))
    assert actual == expected
    actual, expected = _params(make_classifier("kNN"), n_neighbors=5, weights="distance")
    assert actual == expected


@pytest.mark.parametrize("preset", PRESETS)
def test_random_state_reaches_every_random_model(preset):
    for name in ("SVM", "Random Forest", "Neural Network"):
        model = make_classifier(name, preset=preset, random_state=7)
        seeded = model.estimator if isinstance(model, CalibratedClassifierCV) else model
        assert seeded.random_state == 7


def test_names_are_case_insensitive_and_unknowns_rejected():
    assert canonical_model_name("random forest") == "Random Forest"
    assert canonical_model_name(" KNN ") == "kNN"
    with pytest.raises(ValueError, match="unknown model"):
        make_classifier("Naive Bayes")
    with pytest.raises(ValueError, match="unknown preset"):
        make_pipeline("SVM", preset="weka")


@pytest.mark.parametrize("name", MODEL_NAMES)
def test_pipeline_steps_before_and_after_selection(name):
    before = make_pipeline(name, select_k=None)
    after = make_pipeline(name, select_k=7, preset="orange")
    scaled = name != "Random Forest"  # Orange normalises for SVM, NN and kNN only
    assert list(before.named_steps) == ["missing", "impute"] + ["scale"] * scaled + ["model"]
    assert list(after.named_steps) == ["missing", "select", "impute"] + ["scale"] * scaled + ["model"]
    assert isinstance(before.named_steps["missing"], MissingValueFilter)
    assert before.named_steps["missing"].max_missing_fraction == 0.05
    assert isinstance(after.named_steps["select"], InformationGainSelector)
    assert (after.named_steps["select"].k, after.named_steps["select"].n_bins) == (7, 4)
    assert isinstance(before.named_steps["impute"], SimpleImputer)
    assert before.named_steps["impute"].strategy == "median"
    assert after.named_steps["impute"].strategy == "mean"  # Orange's SklImpute
    if scaled:
        assert isinstance(before.named_steps["scale"], StandardScaler)


@pytest.fixture(scope="module")
def data_with_gaps():
    X, y = make_classification(n_samples=90, n_features=12, n_informative=4, random_state=3)
    X[::9, 2] = np.nan  # 10 rows = 11 % missing: the filter drops it
    X[::30, 5] = np.nan  # 3 rows = 3.3 %: kept and imputed
    return pd.DataFrame(X, columns=[f"f{i}" for i in range(12)]), y


@pytest.mark.parametrize("preset", PRESETS)
@pytest.mark.parametrize("name", MODEL_NAMES)
def test_pipelines_fit_with_missing_values_and_are_reproducible(name, preset, data_with_gaps):
    X, y = data_with_gaps
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # Orange preset: SVM iteration cap, MLP max_iter, libsvm probability
        first = make_pipeline(name, preset=preset, select_k=5, random_state=1).fit(X, y)
        second = make_pipeline(name, preset=preset, select_k=5, random_state=1).fit(X, y)
        proba = first.predict_proba(X)
        np.testing.assert_array_equal(proba, second.predict_proba(X))
    assert proba.shape == (90, 2)
    np.testing.assert_allclose(proba.sum(axis=1), 1.0)
    kept = first.named_steps["missing"].get_feature_names_out()
    assert "f2" not in kept and "f5" in kept
    assert len(first[:2].get_feature_names_out()) == 5  # missing -> select


def test_linear_model_and_recipes():
    from sklearn.linear_model import LogisticRegression

    from core.learn.models import LINEAR_MODEL, RECIPES

    assert canonical_model_name("logistic regression") == LINEAR_MODEL and LINEAR_MODEL not in MODEL_NAMES
    tuned, orange = make_classifier(LINEAR_MODEL), make_classifier(LINEAR_MODEL, preset="orange")
    assert type(tuned) is LogisticRegression and tuned.C < orange.C == 1.0   # Orange's widget: C = 1
    pipeline = make_pipeline(LINEAR_MODEL, select_k=None)
    assert [name for name, _ in pipeline.steps] == ["missing", "impute", "scale", "model"]
    assert RECIPES["study"].models == MODEL_NAMES and RECIPES["linear"].select_k is None
    X, y = make_classification(n_samples=150, n_features=12, n_informative=6, n_classes=3, random_state=0)
    assert pipeline.fit(X, y).predict_proba(X).shape == (150, 3)
