"""Train/test split plans: Orange's random sampling, patient-grouped sampling, leave-one-source-out.

- ``random``  -- Orange's *Test & Score* "Random sampling": stratified shuffle splits, ``repeats``
  times, ``train_size`` of the images in training. Images of one patient can land on both sides
  (the leakage the study did not control); the plan reports how many patients are shared.
- ``patient`` -- the same protocol with whole patients: no patient is ever in both train and test;
  patients are drawn per class (a patient's class = majority label of their images, ties count
  as COVID-19), so each class keeps about ``train_size`` of its images in training.
- ``source``  -- train on every source but one and test on that one (source-shift check). The
  split is deterministic, so the plan holds it once per repeat and gives each repeat its own
  model seed (``random_state + repeat``): the spread then measures model randomness only.
- ``site``    -- leave-one-site-out: every site (hospital or publisher) in turn is the test set and
  the models are trained on all other sites, minus any patient who also has an image at the test
  site. One fold per site; the scores are pooled over the folds, so every prediction comes from
  models that never saw that site (:func:`site_splits`).

All plans are reproducible from ``random_state`` (default 42).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pandas as pd
from sklearn.model_selection import StratifiedShuffleSplit

from core.labels import BINARY_LABELS

__all__ = ["SPLITS", "SplitPlan", "make_splits", "random_splits", "patient_splits", "source_split", "site_splits"]

SPLITS = ("patient", "random", "source", "site")
"""The split names, the default first: patient-grouped whenever patient ids exist."""


@dataclass
class SplitPlan:
    """Index pairs for every repeat plus a JSON-friendly description.

    Attributes
    ----------
    kind : str
        "random", "patient" or "source".
    folds : list of (train_index, test_index)
        Integer row indices, one pair per repeat.
    model_seeds : list of int
        Seed of the models fitted in each repeat.
    description : dict
        Sizes per repeat (images, positives, patients, patients shared by train and test) and,
        for the source split, the test source and training sources.
    """

    kind: str
    folds: list[tuple[np.ndarray, np.ndarray]]
    model_seeds: list[int]
    description: dict = field(default_factory=dict)


def _check_train_size(train_size: float) -> None:
    if not 0.0 < float(train_size) < 1.0:
        raise ValueError(f"train_size must be strictly between 0 and 1, got {train_size!r}")


def _group_codes(groups) -> np.ndarray:
    """Integer patient codes; a missing id counts as a patient of its own."""
    ids = pd.Series(np.asarray(groups, dtype=object)).astype(object)
    missing = ids.isna().to_numpy()
    ids = ids.astype(str).to_numpy(dtype=object)
    ids[missing] = [f"\0row-{i}" for i in np.flatnonzero(missing)]
    return np.unique(ids, return_inverse=True)[1]


def random_splits(y: np.ndarray, *, repeats: int = 10, train_size: float = 0.66,
                  random_state: int = 42) -> list[tuple[np.ndarray, np.ndarray]]:
    """Orange's repeated stratified random sampling (StratifiedShuffleSplit, test = the rest)."""
    _check_train_size(train_size)
    splitter = StratifiedShuffleSplit(n_splits=repeats, train_size=train_size, random_state=random_state)
    return [(np.sort(train), np.sort(test)) for train, test in splitter.split(np.zeros((len(y), 1)), y)]


def patient_splits(y: np.ndarray, groups, *, repeats: int = 10, train_size: float = 0.66,
                   random_state: int = 42) -> list[tuple[np.ndarray, np.ndarray]]:
    """Repeated patient-grouped sampling, stratified by the patients' class.

    For each class, the patients are shuffled and the shortest prefix whose image count is closest
    to ``train_size`` of that class's images goes to training (at least one patient on each side).

    Raises
    ------
    ValueError
        If a class has fewer than two patients (it could not appear on both sides).
    """
    _check_train_size(train_size)
    y = np.asarray(y).astype(int)
    patient = _group_codes(groups)
    n_images = np.bincount(patient)
    n_positive = np.bincount(patient, weights=y)
    patient_label = (2 * n_positive >= n_images).astype(int)
    members_by_class = [np.flatnonzero(patient_label == label) for label in (0, 1)]
    for label, members in enumerate(members_by_class):
        if len(members) < 2:
            raise ValueError(f"patient split needs at least 2 {BINARY_LABELS[label]} patients, "
                             f"found {len(members)}; use split='random'")
    rng = np.random.default_rng(random_state)
    folds = []
    for _ in range(repeats):
        train_patients = []
        for members in members_by_class:
            order = rng.permutation(members)
            cumulative = np.cumsum(n_images[order])
            n_take = int(np.argmin(np.abs(cumulative - train_size * cumulative[-1]))) + 1
            train_patients.append(order[: int(np.clip(n_take, 1, len(order) - 1))])
        in_train = np.isin(patient, np.concatenate(train_patients))
        folds.append((np.flatnonzero(in_train), np.flatnonzero(~in_train)))
    return folds


def _source_table(y: np.ndarray, sources: np.ndarray) -> str:
    lines = []
    for name in np.unique(sources):
        in_source = sources == name
        lines.append(f"  - {name!r}: COVID-19 {int(y[in_source].sum())}, Normal {int((y[in_source] == 0).sum())}")
    return "\n".join(lines)


def source_split(y: np.ndarray, sources, test_source: str | None) -> tuple[np.ndarray, np.ndarray, str]:
    """Leave-one-source-out: train on all other sources, test on the one named by ``test_source``.

    ``test_source`` is a case-insensitive substring of a source name (an exact name wins when it is
    also a substring of another). The chosen source must hold both labels (otherwise AUC,
    sensitivity and specificity are undefined) and so must the remaining training sources.

    Returns
    -------
    train_index, test_index : ndarray of int
    name : str
        The matched source.

    Raises
    ------
    ValueError
        Naming every source with its label counts, when ``test_source`` is missing, matches none
        or several sources, or leaves a side with a single label.
    """
    y = np.asarray(y).astype(int)
    sources = pd.Series(np.asarray(sources, dtype=object)).fillna("<missing>").astype(str).to_numpy()
    names = [str(name) for name in np.unique(sources)]
    table = _source_table(y, sources)
    if not test_source:
        raise ValueError(f"split='source' needs test_source (a part of one source name); sources:\n{table}")
    wanted = str(test_source).casefold()
    matches = [name for name in names if name.casefold() == wanted] or \
              [name for name in names if wanted in name.casefold()]
    if len(matches) != 1:
        found = "no source" if not matches else f"{len(matches)} sources ({', '.join(map(repr, matches))})"
        raise ValueError(f"test_source {test_source!r} matches {found}; it must match exactly one of:\n{table}")
    name = matches[0]
    test = np.flatnonzero(sources == name)
    train = np.flatnonzero(sources != name)
    if len(np.unique(y[test])) < 2:
        raise ValueError(f"test source {name!r} holds a single label, so AUC/sensitivity/specificity are "
                         f"undefined; choose a source with both COVID-19 and Normal images:\n{table}")
    if len(np.unique(y[train])) < 2:
        raise ValueError(f"without {name!r} the training sources hold a single label:\n{table}")
    return train, test, name


def site_splits(y: np.ndarray, sites, groups=None) -> tuple[list[tuple[np.ndarray, np.ndarray]], list[str], dict]:
    """Leave-one-site-out folds.

    Parameters
    ----------
    y : ndarray of int, shape (n_images,)
        Class of every image (any number of classes).
    sites : array-like of shape (n_images,)
        Site (hospital or publisher) of every image; missing = one site called "<missing>".
    groups : array-like of shape (n_images,), optional
        Patient ids: a patient with an image at the test site is kept out of that fold's training.

    Returns
    -------
    folds : list of (train_index, test_index)
        One per site whose training rows still hold every class of ``y``.
    names : list of str
        The test site of each fold.
    skipped : dict
        Site -> reason, for sites left out of the plan (their training rows would lack a class).

    Raises
    ------
    ValueError
        With fewer than two sites.
    """
    y = np.asarray(y)
    sites = pd.Series(np.asarray(sites, dtype=object)).fillna("<missing>").astype(str).to_numpy()
    names = [str(name) for name in np.unique(sites)]
    if len(names) < 2:
        raise ValueError(f"split='site' needs images from at least two sites, found {names}")
    patient = None if groups is None else _group_codes(groups)
    classes = np.unique(y)
    folds, kept, skipped = [], [], {}
    for name in names:
        in_test = sites == name
        in_train = ~in_test
        if patient is not None:
            in_train &= ~np.isin(patient, patient[in_test])
        train, test = np.flatnonzero(in_train), np.flatnonzero(in_test)
        # the promise of this split, checked on every fold rather than trusted
        assert name not in set(sites[train]), f"site {name!r} is in its own training fold"
        missing = sorted(set(classes.tolist()) - set(y[train].tolist()))
        if missing:
            skipped[name] = f"without {name!r} the training sites lack class(es) {missing}"
            continue
        folds.append((train, test))
        kept.append(name)
    return folds, kept, skipped


def _fold_sizes(y: np.ndarray, patient: np.ndarray | None, train: np.ndarray, test: np.ndarray) -> dict:
    sizes = {"n_train": int(len(train)), "n_test": int(len(test)),
             "n_train_covid": int(y[train].sum()), "n_test_covid": int(y[test].sum())}
    if patient is not None:
        train_patients, test_patients = set(patient[train]), set(patient[test])
        sizes.update(n_train_patients=len(train_patients), n_test_patients=len(test_patients),
                     n_shared_patients=len(train_patients & test_patients))
    return sizes


def make_splits(
    y: np.ndarray,
    *,
    groups=None,
    sources=None,
    split: str = "patient",
    test_source: str | None = None,
    repeats: int = 10,
    train_size: float = 0.66,
    random_state: int = 42,
) -> SplitPlan:
    """Build the split plan used by :func:`core.evaluation.evaluate`.

    Parameters
    ----------
    y : ndarray of int, shape (n_images,)
        1 = COVID-19, 0 = Normal.
    groups : array-like of shape (n_images,), optional
        Patient ids; required for ``split="patient"``, reported for the others.
    sources : array-like of shape (n_images,), optional
        Source (data set) names; required for ``split="source"``; the site of every image for
        ``split="site"``.
    split : {"patient", "random", "source", "site"}
    test_source : str, optional
        Source held out for ``split="source"``.
    repeats : int
        Number of repeats (resamplings; for "source", model re-fits with new seeds).
    train_size : float
        Fraction of images in training ("random", "patient").
    random_state : int
        Seed of the resampling and of the models.
    """
    if split not in SPLITS:
        raise ValueError(f"unknown split {split!r}; choose one of {', '.join(SPLITS)}")
    if int(repeats) < 1:
        raise ValueError(f"repeats must be >= 1, got {repeats!r}")
    y = np.asarray(y).astype(int)
    patient = None if groups is None else _group_codes(groups)
    description: dict = {"kind": split, "repeats": int(repeats), "n_images": int(len(y))}
    if split == "random":
        folds = random_splits(y, repeats=repeats, train_size=train_size, random_state=random_state)
        seeds = [random_state] * repeats  # as Orange: one learner, resampled data
        description["train_size"] = float(train_size)
    elif split == "patient":
        if groups is None:
            raise ValueError("split='patient' needs groups (patient ids)")
        folds = patient_splits(y, groups, repeats=repeats, train_size=train_size, random_state=random_state)
        seeds = [random_state] * repeats
        description["train_size"] = float(train_size)
    elif split == "site":
        if sources is None:
            raise ValueError("split='site' needs the site of every image (manifest column site)")
        folds, names, skipped = site_splits(y, sources, groups)
        seeds = [random_state] * len(folds)
        description.update(test_sites=names, skipped_sites=skipped,
                           note="one fold per site; scores are pooled over the left-out sites")
    else:
        if sources is None:
            raise ValueError("split='source' needs sources (one source name per image)")
        train, test, name = source_split(y, sources, test_source)
        folds = [(train, test)] * repeats
        seeds = [random_state + r for r in range(repeats)]
        source_names = pd.Series(np.asarray(sources, dtype=object)).fillna("<missing>").astype(str).to_numpy()
        description.update(test_source=name, train_sources=sorted(set(source_names[train])),
                           note="one deterministic split; repeats re-fit the models with seeds random_state + repeat")
    if patient is not None:
        description["n_patients"] = int(patient.max(initial=-1) + 1)
    description["folds"] = [{"repeat": r, **_fold_sizes(y, patient, train, test)}
                            for r, (train, test) in enumerate(folds)]
    if split == "site":
        for fold, name in zip(description["folds"], description["test_sites"]):
            fold["test_site"] = name
    return SplitPlan(kind=split, folds=folds, model_seeds=seeds, description=description)
