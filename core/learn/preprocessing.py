"""Orange-faithful preprocessing as scikit-learn transformers.

The published workflow ran Orange's *Preprocess* widget before the learners:

1. "Remove features with too many missing values" (5 %) -- :class:`MissingValueFilter`;
2. "Select relevant features", *Information Gain*, fixed 10 best -- :class:`InformationGainSelector`.

Both are real estimators (``fit`` learns only from the rows it is given), so placing them in a
:class:`~sklearn.pipeline.Pipeline` keeps the selection inside each training split -- Orange's
*Test & Score* does the same when the preprocessor is connected to the learners.

Orange behaviour reproduced here (checked against ``Orange/preprocess/score.py``,
``Orange/preprocess/discretize.py``, ``_discretize.pyx`` and ``preprocess.py`` of biolab/orange3):

- ``RemoveSparse(threshold=0.05, filter0=False)`` keeps a column when its NaN count is
  ``<= threshold * n_rows``;
- ``InfoGain`` discretises every continuous feature with ``EqualFreq(n=4)``, a greedy walk over the
  sorted distinct values (cut points at mid-points between neighbouring distinct values, not
  interpolated quantiles), ignores unknown values when counting, and multiplies the gain by the
  fraction of rows whose value is known;
- ``SelectBestFeatures`` sorts by score with a stable sort, so ties keep column order.
"""

from __future__ import annotations

import numpy as np
from sklearn.base import BaseEstimator
from sklearn.feature_selection import SelectorMixin
from sklearn.utils.validation import check_is_fitted, column_or_1d, validate_data

__all__ = [
    "MissingValueFilter",
    "InformationGainSelector",
    "equal_frequency_cut_points",
    "information_gain",
]

# Relative slack on the missing-value threshold so that e.g. 0.29 * 100 (= 28.999999999999996 in
# binary floating point) still allows 29 missing values.
_THRESHOLD_RTOL = 1e-9


class MissingValueFilter(SelectorMixin, BaseEstimator):
    """Drop features with too many missing values (Orange's "Remove sparse features", NaN mode).

    A column is kept when its number of NaNs is at most ``max_missing_fraction * n_samples``
    of the training data (Orange's ``s <= threshold`` rule, so exactly 5 % missing is kept).

    Parameters
    ----------
    max_missing_fraction : float, default=0.05
        Largest allowed fraction of missing values, in [0, 1].

    Attributes
    ----------
    missing_fraction_ : ndarray of shape (n_features_in_,)
        Fraction of NaNs per column in the training data.
    keep_mask_ : ndarray of bool, shape (n_features_in_,)
        Columns that are kept.
    n_features_in_ : int
    feature_names_in_ : ndarray of str
        Only when fitted on a DataFrame with string column names.
    """

    def __init__(self, max_missing_fraction: float = 0.05):
        self.max_missing_fraction = max_missing_fraction

    def fit(self, X, y=None) -> "MissingValueFilter":
        if not 0.0 <= float(self.max_missing_fraction) <= 1.0:
            raise ValueError(f"max_missing_fraction must be in [0, 1], got {self.max_missing_fraction!r}")
        X = validate_data(self, X, dtype=np.float64, ensure_all_finite="allow-nan")
        n_samples = X.shape[0]
        n_missing = np.isnan(X).sum(axis=0)
        allowed = float(self.max_missing_fraction) * n_samples * (1.0 + _THRESHOLD_RTOL)
        self.missing_fraction_ = n_missing / n_samples
        self.keep_mask_ = n_missing <= allowed
        return self

    def _get_support_mask(self) -> np.ndarray:
        check_is_fitted(self, "keep_mask_")
        return self.keep_mask_

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.input_tags.allow_nan = True
        return tags


class InformationGainSelector(SelectorMixin, BaseEstimator):
    """Keep the ``k`` features with the highest information gain, as Orange's Rank/Preprocess.

    Each feature is discretised into ``n_bins`` equal-frequency intervals learned on the training
    rows (:func:`equal_frequency_cut_points`), then scored with :func:`information_gain`
    (log2 entropies; NaNs ignored and the gain scaled by the known fraction).

    Parameters
    ----------
    k : int or "all", default=10
        Number of features to keep (all of them when there are fewer).
    n_bins : int, default=4
        Number of equal-frequency bins (Orange's default).

    Attributes
    ----------
    scores_ : ndarray of shape (n_features_in_,)
        Information gain of each feature, in bits.
    selected_indices_ : ndarray of int, shape (min(k, n_features_in_),)
        Kept columns, best first; ties broken by column order.
    cut_points_ : list of ndarray
        Cut points of each feature (at most ``n_bins - 1``, strictly increasing).
    classes_ : ndarray
        Class labels seen in ``fit``.
    n_features_in_ : int
    feature_names_in_ : ndarray of str
        Only when fitted on a DataFrame with string column names.

    Notes
    -----
    ``transform`` keeps the original column order (scikit-learn convention); Orange orders the
    selected columns by score, which only changes the column order seen by the learner.
    """

    def __init__(self, k: int | str = 10, n_bins: int = 4):
        self.k = k
        self.n_bins = n_bins

    def fit(self, X, y) -> "InformationGainSelector":
        if not (self.k == "all" or (isinstance(self.k, (int, np.integer)) and self.k >= 1)):
            raise ValueError(f"k must be a positive int or 'all', got {self.k!r}")
        if not (isinstance(self.n_bins, (int, np.integer)) and self.n_bins >= 1):
            raise ValueError(f"n_bins must be a positive int, got {self.n_bins!r}")
        X, y = validate_data(self, X, y, dtype=np.float64, ensure_all_finite="allow-nan")
        y = column_or_1d(y)
        self.classes_ = np.unique(y)
        cuts = equal_frequency_cut_points(X, self.n_bins)
        self.cut_points_ = [column[~np.isnan(column)] for column in cuts.T]
        self.scores_ = information_gain(X, y, cuts)
        n_keep = X.shape[1] if self.k == "all" else min(int(self.k), X.shape[1])
        # Stable sort on the negated score = Orange's sorted(..., reverse=True): ties keep column order.
        self.selected_indices_ = np.argsort(-self.scores_, kind="stable")[:n_keep]
        return self

    def _get_support_mask(self) -> np.ndarray:
        check_is_fitted(self, "selected_indices_")
        mask = np.zeros(self.n_features_in_, dtype=bool)
        mask[self.selected_indices_] = True
        return mask

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.input_tags.allow_nan = True
        tags.target_tags.required = True
        return tags


def _distinct_values(X: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Sorted distinct non-NaN values of every column, padded to a common length.

    Returns ``values`` (L, p) padded with NaN, ``counts`` (L, p) padded with 0 and the number of
    distinct values per column (p,), where L is the largest number of distinct values.
    """
    n_rows, n_cols = X.shape
    ordered = np.sort(X, axis=0)  # NaNs sort last
    known = ~np.isnan(ordered)
    is_new = known.copy()
    is_new[1:] &= ordered[1:] != ordered[:-1]
    rank = np.cumsum(is_new, axis=0) - 1  # index of each row's value among the distinct values
    n_distinct = is_new.sum(axis=0)
    length = max(int(n_distinct.max(initial=0)), 1)
    column = np.broadcast_to(np.arange(n_cols), (n_rows, n_cols))
    values = np.full((length, n_cols), np.nan)
    values[rank[is_new], column[is_new]] = ordered[is_new]
    flat = rank[known] * n_cols + column[known]
    counts = np.bincount(flat, minlength=length * n_cols).reshape(length, n_cols).astype(np.float64)
    return values, counts, n_distinct


def equal_frequency_cut_points(X, n_bins: int = 4) -> np.ndarray:
    """Orange's ``EqualFreq`` cut points for every column at once.

    For each column (NaNs ignored) the sorted distinct values are walked once, accumulating
    counts; when a bin's share ``N / to_go`` of the remaining rows is reached, a cut is placed
    either just after the current value (if that overshoots by less than half its count) or just
    before it, always at the mid-point of two neighbouring distinct values. Columns with at most
    ``n_bins`` distinct values get a cut between every pair of neighbours. Duplicate cut points
    are collapsed. Vectorised over columns: one pass per cut instead of one per value.

    Parameters
    ----------
    X : array-like of shape (n_samples, n_features)
        Continuous features; NaN marks a missing value.
    n_bins : int, default=4
        Number of bins wanted.

    Returns
    -------
    cuts : ndarray of shape (n_bins - 1, n_features)
        Increasing cut points per column, padded with NaN at the end when a column has fewer.
    """
    X = np.asarray(X, dtype=np.float64)
    n_cols = X.shape[1]
    n_cuts = max(int(n_bins) - 1, 0)
    cuts = np.full((n_cuts, n_cols), np.nan)
    if n_cuts == 0 or X.shape[0] == 0 or n_cols == 0:
        return cuts
    values, counts, n_distinct = _distinct_values(X)
    few = n_distinct <= n_bins
    if few.any():  # cut between every pair of neighbouring distinct values
        m = min(n_cuts, values.shape[0] - 1)
        mids = (values[:m, few] + values[1 : m + 1, few]) / 2
        cuts[:m, few] = np.where(np.arange(m)[:, None] < n_distinct[few] - 1, mids, np.nan)
    many = np.flatnonzero(~few)
    if many.size:
        cuts[:, many] = _greedy_cuts(values[:, many], counts[:, many], n_distinct[many], n_bins)
    # Collapse duplicates (Orange: np.unique of the points); the walk yields non-decreasing cuts.
    cuts = np.sort(cuts, axis=0)
    duplicate = np.zeros_like(cuts, dtype=bool)
    duplicate[1:] = cuts[1:] == cuts[:-1]
    cuts[duplicate] = np.nan
    return np.sort(cuts, axis=0)


def _greedy_cuts(values: np.ndarray, counts: np.ndarray, n_distinct: np.ndarray, n_bins: int) -> np.ndarray:
    """Orange's equal-frequency walk for columns with more than ``n_bins`` distinct values."""
    length, n_cols = values.shape
    cum = np.cumsum(counts, axis=0)
    rows = np.arange(length)[:, None]
    cols = np.arange(n_cols)
    remaining = cum[-1].copy()  # Orange's N: rows not yet assigned to a closed bin
    to_go = np.full(n_cols, n_bins)
    share = remaining / to_go  # Orange's "inone"
    position = np.zeros(n_cols, dtype=np.intp)  # next distinct value to visit
    offset = np.zeros(n_cols)  # count already in the open bin = cum[i] - offset
    previous = np.full(n_cols, np.nan)  # last value put in the open bin when position was set
    active = np.ones(n_cols, dtype=bool)
    cuts = np.full((n_bins - 1, n_cols), np.nan)
    for step in range(n_bins - 1):
        # First visited value whose bin reaches its share (the first value never closes a bin).
        start = np.maximum(position, 1)
        reached = (rows >= start) & (rows < n_distinct) & (cum - offset >= share)
        found = active & reached.any(axis=0)
        i = reached.argmax(axis=0)
        in_bin = cum[i, cols] - offset
        count = counts[i, cols]
        value = values[i, cols]
        after_value = values[np.minimum(i + 1, length - 1), cols]
        before_value = np.where(i > position, values[np.maximum(i - 1, 0), cols], previous)
        split_after = (i < n_distinct - 1) & (in_bin - share < count / 2)
        cut = np.where(split_after, (value + after_value) / 2, (before_value + value) / 2)
        cuts[step] = np.where(found, cut, np.nan)
        # Split after: the value closes this bin. Split before: it opens the next one.
        remaining = np.where(found, remaining - np.where(split_after, in_bin, in_bin - count), remaining)
        offset = np.where(found, cum[i, cols] - np.where(split_after, 0.0, count), offset)
        previous = np.where(found, np.where(split_after, after_value, value), previous)
        position = np.where(found, i + 1, position)
        to_go = to_go - found
        with np.errstate(divide="ignore", invalid="ignore"):
            share = remaining / to_go
        active &= found
    return cuts


def _entropy_bits(counts: np.ndarray, axis: int) -> np.ndarray:
    """Shannon entropy (bits) of count distributions along ``axis``; 0 for empty distributions."""
    total = counts.sum(axis=axis, keepdims=True)
    with np.errstate(divide="ignore", invalid="ignore"):
        p = np.where(total > 0, counts / total, 0.0)
        terms = np.where(p > 0, -p * np.log2(p), 0.0)
    return terms.sum(axis=axis)


def information_gain(X, y, cut_points: np.ndarray) -> np.ndarray:
    """Information gain of each discretised feature about ``y``, as Orange's ``InfoGain``.

    ``IG = known_fraction * (H(class) - H(class | bin))``, both entropies in bits and computed on
    the rows whose feature value is known; ``known_fraction`` is the share of those rows.

    Parameters
    ----------
    X : array-like of shape (n_samples, n_features)
        Continuous features; NaN = unknown.
    y : array-like of shape (n_samples,)
        Class labels (any number of classes).
    cut_points : ndarray of shape (n_cuts, n_features)
        Bin edges per column, NaN-padded (see :func:`equal_frequency_cut_points`).

    Returns
    -------
    gain : ndarray of shape (n_features,)
        In bits; 0 for a column without any known value.
    """
    X = np.asarray(X, dtype=np.float64)
    n_rows, n_cols = X.shape
    _, y_code = np.unique(np.asarray(y), return_inverse=True)
    n_classes = int(y_code.max(initial=0)) + 1
    n_bins = cut_points.shape[0] + 1
    # Bin index = number of cut points <= value (np.digitize semantics); NaN cuts never count.
    bins = np.zeros(X.shape, dtype=np.intp)
    for cut in cut_points:
        bins += X >= cut
    known = ~np.isnan(X)
    column = np.broadcast_to(np.arange(n_cols), X.shape)
    cell = (y_code[:, None] * n_bins + bins) * n_cols + column
    contingency = np.bincount(cell[known], minlength=n_classes * n_bins * n_cols)
    contingency = contingency.reshape(n_classes, n_bins, n_cols).astype(np.float64)
    n_known = contingency.sum(axis=(0, 1))
    h_class = _entropy_bits(contingency.sum(axis=1), axis=0)
    bin_share = np.divide(contingency.sum(axis=0), n_known, out=np.zeros((n_bins, n_cols)), where=n_known > 0)
    h_given_bin = (bin_share * _entropy_bits(contingency, axis=0)).sum(axis=0)
    return (n_known / max(n_rows, 1)) * (h_class - h_given_bin)
