"""Is this chest film upright? A classifier of orientation thumbnails, with the thresholds that refuse or warn.

Trained at ``python -m core train`` on every readable image of the data set (all findings) and on each image turned
every wrong way (:data:`core.features.orientation.MISORIENTATIONS`), so it needs no labels beyond the images
themselves. Measured leaving one site out at a time (``scripts/orientation_check.py``, 800 reference images):
rotations, top-to-bottom flips and inversions are told from upright films almost always, left-right mirroring only
partly (the heart's side is a subtle cue at 32 px), so a mirror only ever gets a warning.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from joblib import Parallel, delayed
from sklearn.base import BaseEstimator, ClassifierMixin
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from core.features.orientation import MIRRORED, MISORIENTATIONS, UPRIGHT, orientation_thumbnail
from core.io.images import ImageReadError, read_image


@dataclass(frozen=True)
class OrientationVerdict:
    """What the check says about one film: the class probabilities, and a refusal or a warning (or neither)."""

    probabilities: dict[str, float]
    refusal: str | None = None
    warning: str | None = None


class OrientationCheck(ClassifierMixin, BaseEstimator):
    """Multinomial logistic regression on standardised orientation thumbnails, and its operating thresholds.

    Parameters
    ----------
    C : float
        Inverse L2 regularisation (1,024 correlated pixels, a few thousand films: strong regularisation).
    refuse_above : float
        A film is refused when the probability that it is rotated, flipped top to bottom or inverted exceeds this.
    warn_above : float
        ... and gets a warning when that probability exceeds this (but not ``refuse_above``).
    mirror_warn_above : float
        A film gets a warning when P(mirrored) / (P(mirrored) + P(upright)) exceeds this.
    random_state : int
    """

    def __init__(self, C: float = 0.1, refuse_above: float = 0.99, warn_above: float = 0.5,
                 mirror_warn_above: float = 0.98, random_state: int = 42):
        self.C = C
        self.refuse_above = refuse_above
        self.warn_above = warn_above
        self.mirror_warn_above = mirror_warn_above
        self.random_state = random_state

    def fit(self, X: np.ndarray, y: Sequence[str]) -> OrientationCheck:
        """``X``: thumbnails (n, THUMBNAIL_SIDE ** 2); ``y``: ``UPRIGHT`` or a key of ``MISORIENTATIONS``."""
        self.pipeline_ = make_pipeline(StandardScaler(), LogisticRegression(C=self.C, max_iter=3000,
                                                                             random_state=self.random_state))
        self.pipeline_.fit(np.asarray(X, dtype=np.float32), np.asarray(y))
        self.classes_ = self.pipeline_.classes_
        return self

    def predict_proba(self, X: np.ndarray) -> np.ndarray:
        return self.pipeline_.predict_proba(np.atleast_2d(np.asarray(X, dtype=np.float32)))

    def predict(self, X: np.ndarray) -> np.ndarray:
        return self.classes_[self.predict_proba(X).argmax(axis=1)]

    def assess(self, pixels: np.ndarray) -> OrientationVerdict:
        """Refusal, warning or neither for one image (float (H, W) in [0, 1], MONOCHROME2)."""
        return self.assess_thumbnail(orientation_thumbnail(pixels))

    def assess_thumbnail(self, thumbnail: np.ndarray) -> OrientationVerdict:
        """:meth:`assess` of an image whose orientation thumbnail is already made."""
        probabilities = dict(zip(map(str, self.classes_), map(float, self.predict_proba(thumbnail)[0])))
        wrong = {name: p for name, p in probabilities.items() if name not in (UPRIGHT, MIRRORED)}
        likeliest = max(wrong, key=wrong.get)
        misoriented = sum(wrong.values())
        if misoriented > self.refuse_above:
            return OrientationVerdict(probabilities, refusal=(
                f"the film looks {likeliest} (orientation check: {misoriented:.1%} sure it is not upright); "
                "turn it upright and load it again"))
        if misoriented > self.warn_above:
            return OrientationVerdict(probabilities, warning=(
                f"the film may be {likeliest} ({misoriented:.0%} by the orientation check): check that it is upright "
                "before trusting the result"))
        mirrored = probabilities.get(MIRRORED, 0.0) / max(probabilities.get(MIRRORED, 0.0)
                                                           + probabilities.get(UPRIGHT, 0.0), 1e-12)
        if mirrored > self.mirror_warn_above:
            return OrientationVerdict(probabilities, warning=(
                "the film may be mirrored left to right (heart on the image's left?): check the side marker; "
                "if it is mirrored, the right and left zone grades are swapped"))
        return OrientationVerdict(probabilities)


def orientation_examples(pixels: np.ndarray) -> tuple[np.ndarray, list[str]]:
    """Thumbnails of an upright film and of each of its misorientations, with their labels."""
    labels = [UPRIGHT, *MISORIENTATIONS]
    views = [pixels, *(turn(pixels) for turn in MISORIENTATIONS.values())]
    return np.stack([orientation_thumbnail(view) for view in views]), labels


def _examples_of_files(paths: Sequence[str]) -> tuple[list[np.ndarray], list[list[str]], list[int]]:
    thumbnails, labels, kept = [], [], []
    for index, path in enumerate(paths):
        try:
            pixels = read_image(path).pixels
        except ImageReadError:
            continue
        examples, names = orientation_examples(pixels)
        thumbnails.append(examples)
        labels.append(names)
        kept.append(index)
    return thumbnails, labels, kept


def orientation_training_set(paths: Sequence[str | os.PathLike], *, n_jobs: int = 1,
                             chunk_size: int = 32) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Thumbnails of every readable image, upright and turned every wrong way.

    Returns
    -------
    X : ndarray of float32, shape (n_readable * 7, THUMBNAIL_SIDE ** 2)
    y : ndarray of str, shape (n_readable * 7,)
    image_index : ndarray of int, shape (n_readable * 7,)
        Index in ``paths`` of the film each row comes from (group the rows by it, or by its site, when evaluating).
    """
    paths = [str(p) for p in paths]
    chunks = [paths[i:i + chunk_size] for i in range(0, len(paths), chunk_size)]
    results = Parallel(n_jobs=n_jobs)(delayed(_examples_of_files)(chunk) for chunk in chunks)
    X, y, index = [], [], []
    for offset, (thumbnails, labels, kept) in zip(range(0, len(paths), chunk_size), results):
        for examples, names, position in zip(thumbnails, labels, kept):
            X.append(examples)
            y.extend(names)
            index.extend([offset + position] * len(names))
    if not X:
        raise ValueError("no readable image to learn film orientation from")
    return np.concatenate(X), np.asarray(y), np.asarray(index)


def fit_orientation_check(paths: Sequence[str | os.PathLike], *, n_jobs: int = 1,
                          random_state: int = 42) -> tuple[OrientationCheck, dict]:
    """The orientation check fitted on ``paths`` and what the training report says about it."""
    X, y, index = orientation_training_set(paths, n_jobs=n_jobs)
    check = OrientationCheck(random_state=random_state).fit(X, y)
    summary = {"n_images": len(np.unique(index)), "classes": [UPRIGHT, *MISORIENTATIONS],
               "thresholds": {"refuse_above": check.refuse_above, "warn_above": check.warn_above,
                              "mirror_warn_above": check.mirror_warn_above},
               "method": "logistic regression on 32 x 32 thumbnails inside the film's borders, every film upright "
                         "and turned each wrong way"}
    return check, summary
