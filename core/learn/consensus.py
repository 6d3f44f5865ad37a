"""From the models' probabilities to calibrated class probabilities, a flag, and an out-of-distribution check.

- :class:`ConsensusCalibrator` averages the models' class probabilities and recalibrates the average (Platt scaling,
  multinomial for three classes). It is fitted on *out-of-fold* predictions, because in-sample probabilities of a
  random forest or a kNN are overconfident.
- The flag threshold chosen on those out-of-fold risks lives in :mod:`core.learn.flag`.
- :class:`OutOfDistributionDetector` says when an image is unlike every training image (distance to its nearest
  training neighbours in a standardised, PCA-reduced feature space, against the 99th percentile of the same
  distance among the training images themselves).
"""

from __future__ import annotations

import numpy as np
from sklearn.base import BaseEstimator
from sklearn.decomposition import PCA
from sklearn.impute import SimpleImputer
from sklearn.linear_model import LogisticRegression
from sklearn.neighbors import NearestNeighbors
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

_EPS = 1e-6


class ConsensusCalibrator(BaseEstimator):
    """Mean of the models' class probabilities, recalibrated by a multinomial logistic regression on their logs.

    With two classes this is Platt scaling on the logit of the mean probability; with three (Normal / other
    pneumonia / COVID-19) the calibrated probabilities still sum to 1, so P(any pneumonia) = 1 - P(Normal) is
    never below P(COVID-19).

    Parameters
    ----------
    C : float
        Inverse regularisation of the logistic regression (large: almost unregularised, as Platt).
    n_classes : int or None
        Columns of :meth:`predict_proba` when the classes are indices 0..n_classes-1 and some may be absent from
        the training data (their probability is 0); None: the classes seen in ``fit``.

    Attributes
    ----------
    classes_ : ndarray
        The classes seen in ``fit``.
    """

    def __init__(self, C: float = 100.0, n_classes: int | None = None):
        self.C = C
        self.n_classes = n_classes

    @staticmethod
    def _log_mean(model_probabilities: np.ndarray) -> np.ndarray:
        probabilities = np.asarray(model_probabilities, dtype=float)
        if probabilities.ndim == 2:  # (n_images, n_models) P(positive) of a two-class problem
            probabilities = np.stack([1.0 - probabilities, probabilities], axis=2)
        return np.log(np.clip(probabilities.mean(axis=1), _EPS, 1.0))

    def fit(self, model_probabilities: np.ndarray, y: np.ndarray) -> "ConsensusCalibrator":
        """Fit on out-of-fold probabilities.

        ``model_probabilities``: (n_images, n_models, n_classes) class probabilities, or (n_images, n_models)
        P(positive) of a two-class problem; ``y``: class index (1 = positive for two classes).
        """
        self.platt_ = LogisticRegression(C=self.C, max_iter=1000).fit(self._log_mean(model_probabilities),
                                                                        np.asarray(y))
        self.classes_ = self.platt_.classes_
        return self

    def predict_proba(self, model_probabilities: np.ndarray) -> np.ndarray:
        """Calibrated class probabilities, shape (n_images, n_classes)."""
        probabilities = self.platt_.predict_proba(self._log_mean(model_probabilities))
        if self.n_classes is None:
            return probabilities
        full = np.zeros((len(probabilities), self.n_classes))
        full[:, self.classes_.astype(int)] = probabilities
        return full

    def predict_risk(self, model_probabilities: np.ndarray) -> np.ndarray:
        """Two-class calibrators only: calibrated P(positive) from (n_images, n_models) P(positive), (n_images,)."""
        if len(self.classes_) != 2:
            raise ValueError(f"this consensus is calibrated on {len(self.classes_)} classes; its risk comes from "
                             "predict_proba on every class's probabilities, not from P(COVID-19) alone")
        return self.predict_proba(np.atleast_2d(np.asarray(model_probabilities, dtype=float)))[:, -1]


class OutOfDistributionDetector(BaseEstimator):
    """Distance of an image's features to the training images.

    Parameters
    ----------
    n_components : int
        PCA components kept after standardisation (noise dimensions would swamp the distance).
    n_neighbors : int
        The distance is the mean over this many nearest training images.
    quantile : float
        Training images' own (leave-one-out) distances above this quantile count as unusual.
    """

    def __init__(self, n_components: int = 20, n_neighbors: int = 5, quantile: float = 0.99,
                 random_state: int = 42):
        self.n_components = n_components
        self.n_neighbors = n_neighbors
        self.quantile = quantile
        self.random_state = random_state

    def fit(self, X: np.ndarray, y: np.ndarray | None = None) -> "OutOfDistributionDetector":
        X = np.asarray(X, dtype=float)
        n_components = min(self.n_components, X.shape[0] - 1, X.shape[1])
        self.embedder_ = make_pipeline(SimpleImputer(strategy="median"), StandardScaler(),
                                       PCA(n_components=n_components, random_state=self.random_state))
        reduced = self.embedder_.fit_transform(X)
        self.neighbors_ = NearestNeighbors(n_neighbors=self.n_neighbors + 1).fit(reduced)
        distances, _ = self.neighbors_.kneighbors(reduced)
        own = distances[:, 1:].mean(axis=1)  # column 0 is the image itself
        self.threshold_ = float(np.quantile(own, self.quantile))
        return self

    def distance_ratio(self, X: np.ndarray) -> np.ndarray:
        """Distance relative to the threshold (> 1: unlike the training images), shape (n_images,)."""
        reduced = self.embedder_.transform(np.atleast_2d(np.asarray(X, dtype=float)))
        distances, _ = self.neighbors_.kneighbors(reduced, n_neighbors=self.n_neighbors)
        return distances.mean(axis=1) / self.threshold_

    def is_outlier(self, X: np.ndarray) -> np.ndarray:
        return self.distance_ratio(X) > 1.0
