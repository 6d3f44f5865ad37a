"""Is an image (or a batch) unlike every hospital the model was trained on?

Each training site x class cell (e.g. Actualmed COVID-19, NIH Normal) is summarised by the mean of its
acquisition signature (:mod:`core.features.acquisition`) in a standardised PCA space; the spread around those
means is one shared, shrunk covariance (Ledoit-Wolf). An image's distance is its Mahalanobis distance to the
*nearest* cell, divided by the ``quantile`` of the training images' own distances: above 1 it is unlike all of
them. A batch is unlike the training sites when more of its images are above 1 than the training rate
(1 - quantile) explains (one-sided binomial test).

Cells (site x class) rather than sites, because a site's films differ by class (portable AP COVID-19 films,
PA outpatient Normals) and a site mean would sit between them, where no real film is.
"""

from __future__ import annotations

import numpy as np
from scipy.stats import binomtest
from sklearn.base import BaseEstimator
from sklearn.covariance import LedoitWolf
from sklearn.decomposition import PCA
from sklearn.impute import SimpleImputer
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

__all__ = ["SiteShiftDetector", "SITE_SHIFT_WARNING", "BATCH_SHIFT_WARNING"]

SITE_SHIFT_WARNING = ("this film looks unlike the hospitals the model was trained on: its results are not "
                      "validated here")
BATCH_SHIFT_WARNING = ("this batch of films looks unlike the hospitals the model was trained on: its results are "
                       "not validated here")


class SiteShiftDetector(BaseEstimator):
    """Distance of an image's acquisition signature to the nearest training site x class cell.

    Parameters
    ----------
    n_components : int, default=20
        PCA components kept after standardisation.
    quantile : float, default=0.99
        Share of training images whose distance is below the threshold (per-image false-alarm rate on the
        training sites is about ``1 - quantile``).
    min_cell_size : int, default=5
        Site x class cells with fewer images are not summarised (their images still shape the PCA and the
        threshold).
    batch_alpha : float, default=0.001
        Significance of the one-sided binomial test of :meth:`batch_is_shifted`.
    random_state : int, default=42

    Attributes
    ----------
    embedder_ : Pipeline
        Imputer, scaler and PCA fitted on the training signatures.
    cell_names_ : list of str
        "site|class" of every summarised cell.
    cell_means_ : ndarray of shape (n_cells, n_components)
    precision_ : ndarray of shape (n_components, n_components)
        Inverse of the shared within-cell covariance.
    threshold_ : float
        The ``quantile`` of the training images' distances.
    """

    def __init__(self, n_components: int = 20, quantile: float = 0.99, min_cell_size: int = 5,
                 batch_alpha: float = 0.001, random_state: int = 42):
        self.n_components = n_components
        self.quantile = quantile
        self.min_cell_size = min_cell_size
        self.batch_alpha = batch_alpha
        self.random_state = random_state

    def fit(self, X: np.ndarray, sites, y=None) -> "SiteShiftDetector":
        """Fit on the training signatures ``X`` (n_images, n_signature), their sites and (optionally) classes."""
        X = np.asarray(X, dtype=float)
        sites = np.asarray(sites, dtype=object).astype(str)
        labels = np.zeros(len(X), dtype=int) if y is None else np.asarray(y)
        if len(sites) != len(X) or len(labels) != len(X):
            raise ValueError(f"X has {len(X)} rows but {len(sites)} sites and {len(labels)} labels were given")
        n_components = min(self.n_components, X.shape[0] - 1, X.shape[1])
        self.embedder_ = make_pipeline(SimpleImputer(strategy="median"), StandardScaler(),
                                       PCA(n_components=n_components, random_state=self.random_state))
        reduced = self.embedder_.fit_transform(X)
        cells = np.array([f"{site}|{label}" for site, label in zip(sites, labels)])
        names, counts = np.unique(cells, return_counts=True)
        self.cell_names_ = [str(name) for name, count in zip(names, counts) if count >= self.min_cell_size]
        if not self.cell_names_:
            raise ValueError(f"no site x class cell has {self.min_cell_size} or more images")
        self.cell_means_ = np.array([reduced[cells == name].mean(axis=0) for name in self.cell_names_])
        residuals = np.vstack([reduced[cells == name] - mean for name, mean in zip(self.cell_names_, self.cell_means_)])
        self.precision_ = LedoitWolf().fit(residuals).precision_
        self.threshold_ = float(np.quantile(self._distance(reduced), self.quantile))
        return self

    def _distance(self, reduced: np.ndarray) -> np.ndarray:
        offsets = reduced[:, None, :] - self.cell_means_[None, :, :]
        squared = np.einsum("nkd,de,nke->nk", offsets, self.precision_, offsets)
        return np.sqrt(np.maximum(squared, 0.0).min(axis=1))

    def distance_ratio(self, X: np.ndarray) -> np.ndarray:
        """Distance to the nearest training cell over the threshold (> 1: unlike every training site), (n_images,)."""
        return self._distance(self.embedder_.transform(np.atleast_2d(np.asarray(X, dtype=float)))) / self.threshold_

    def is_shifted(self, X: np.ndarray) -> np.ndarray:
        """Per image: unlike every training site."""
        return self.distance_ratio(X) > 1.0

    def batch_is_shifted(self, ratios: np.ndarray) -> bool:
        """Whether a batch's share of shifted images (ratios from :meth:`distance_ratio`) exceeds the training rate.

        One-sided binomial test against ``1 - quantile`` at ``batch_alpha``; a batch of one is judged as an image.
        """
        ratios = np.asarray(ratios, dtype=float)
        n_shifted = int((ratios > 1.0).sum())
        if len(ratios) <= 1:
            return bool(n_shifted)
        test = binomtest(n_shifted, len(ratios), 1.0 - self.quantile, alternative="greater")
        return bool(test.pvalue < self.batch_alpha)
