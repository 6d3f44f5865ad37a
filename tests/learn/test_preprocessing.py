"""Orange-faithful preprocessing: missing-value filter and information-gain selection."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import Pipeline
from sklearn.utils.estimator_checks import parametrize_with_checks

from core.learn.preprocessing import (
    InformationGainSelector,
    MissingValueFilter,
    equal_frequency_cut_points,
    information_gain,
)


@parametrize_with_checks([MissingValueFilter(), InformationGainSelector(k=2)])
def test_scikit_learn_estimator_contract(estimator, check):
    check(estimator)


# --- MissingValueFilter ---------------------------------------------------------------------------------------------

def _with_missing(n_rows: int, missing_per_column: list[int]) -> np.ndarray:
    X = np.arange(n_rows * len(missing_per_column), dtype=float).reshape(n_rows, -1)
    for column, n_missing in enumerate(missing_per_column):
        X[:n_missing, column] = np.nan
    return X


@pytest.mark.parametrize("n_rows, kept, dropped", [(100, 5, 6), (20, 1, 2), (60, 3, 4)])
def test_missing_filter_keeps_exactly_five_percent_and_drops_above(n_rows, kept, dropped):
    flt = MissingValueFilter().fit(_with_missing(n_rows, [0, kept, dropped]))
    np.testing.assert_array_equal(flt.keep_mask_, [True, True, False])
    np.testing.assert_allclose(flt.missing_fraction_, np.array([0, kept, dropped]) / n_rows)
    assert flt.transform(_with_missing(n_rows, [0, kept, dropped])).shape == (n_rows, 2)


def test_missing_filter_threshold_is_robust_to_float_round_off():
    # 0.29 * 100 == 28.999999999999996 in binary floating point: 29 missing values are still 29 %.
    flt = MissingValueFilter(max_missing_fraction=0.29).fit(_with_missing(100, [29, 30]))
    np.testing.assert_array_equal(flt.keep_mask_, [True, False])


def test_missing_filter_dataframe_names_and_pandas_output():
    frame = pd.DataFrame(_with_missing(40, [0, 2, 3, 40]), columns=["a", "b", "c", "d"])
    flt = MissingValueFilter().set_output(transform="pandas").fit(frame)
    assert flt.n_features_in_ == 4
    assert list(flt.feature_names_in_) == ["a", "b", "c", "d"]
    assert list(flt.get_feature_names_out()) == ["a", "b"]
    out = flt.transform(frame)
    assert isinstance(out, pd.DataFrame) and list(out.columns) == ["a", "b"]
    # NaNs in new rows pass through untouched (imputation is a later step).
    assert np.isnan(flt.transform(frame.iloc[:3]).to_numpy()).any()


def test_missing_filter_rejects_bad_fraction():
    with pytest.raises(ValueError, match="max_missing_fraction"):
        MissingValueFilter(max_missing_fraction=1.5).fit(np.zeros((3, 2)))


# --- Orange's equal-frequency discretisation -------------------------------------------------------------------------

def test_equal_frequency_walk_by_hand_distinct_values():
    # Values 0..9, n=4 bins, Orange's walk (share = N / bins still to go):
    #   share 10/4 = 2.5; after 0,1,2 the bin holds 3 >= 2.5, overshoot 0.5 is not < 1/2 -> cut BEFORE 2: 1.5
    #   N = 10 - 2 = 8, share 8/3 = 2.67; bin {2,3,4} holds 3, overshoot 0.33 < 1/2 -> cut AFTER 4: 4.5
    #   N = 5, share 2.5; bin {5,6,7} holds 3, overshoot 0.5 -> cut BEFORE 7: 6.5
    # Bins {0,1} {2,3,4} {5,6} {7,8,9}; np.quantile would give 2.25, 4.5, 6.75 instead.
    cuts = equal_frequency_cut_points(np.arange(10.0)[:, None], 4)
    np.testing.assert_allclose(cuts[:, 0], [1.5, 4.5, 6.5])


def test_equal_frequency_walk_by_hand_with_ties():
    # Values 1,1,1,1,2,3,4,5 (distinct 1..5, counts 4,1,1,1,1), share 8/4 = 2:
    #   the first distinct value never closes a bin; at 2 the bin holds 5, overshoot 3 -> cut before 2: 1.5
    #   N = 4, share 4/3; at 3 the bin {2,3} holds 2, overshoot 0.67 -> cut before 3: 2.5
    #   N = 3, share 1.5; at 4 the bin {3,4} holds 2, overshoot 0.5 -> cut before 4: 3.5
    x = np.array([1, 1, 1, 1, 2, 3, 4, 5], dtype=float)[:, None]
    np.testing.assert_allclose(equal_frequency_cut_points(x, 4)[:, 0], [1.5, 2.5, 3.5])


def test_equal_frequency_few_values_cut_between_neighbours_and_constant_has_none():
    X = np.array([[0, 7, 1], [0, 7, 3], [1, 7, 1], [1, 7, 3], [1, 7, 3]], dtype=float)
    cuts = equal_frequency_cut_points(X, 4)
    np.testing.assert_allclose(cuts[:, 0], [0.5, np.nan, np.nan])  # two values: one cut
    assert np.isnan(cuts[:, 1]).all()  # constant: a single bin
    np.testing.assert_allclose(cuts[:, 2], [2.0, np.nan, np.nan])


def _sequential_equal_frequency(column: np.ndarray, n_bins: int) -> np.ndarray:
    """Orange's walk written the slow way, one value at a time (a reference for the vectorised version)."""
    values, counts = np.unique(column[~np.isnan(column)], return_counts=True)
    if n_bins >= len(values):
        return np.unique((values[:-1] + values[1:]) / 2)
    remaining, to_go, in_bin, last, cuts = float(counts.sum()), n_bins, 0.0, None, []
    for i, (value, count) in enumerate(zip(values, counts)):
        if to_go <= 1:
            break
        share = remaining / to_go
        in_bin += count
        if in_bin < share or i == 0:
            last = value
            continue
        if i < len(values) - 1 and in_bin - share < count / 2:
            cuts.append((value + values[i + 1]) / 2)
            remaining, in_bin, last = remaining - in_bin, 0.0, values[i + 1]
        else:
            cuts.append((last + value) / 2)
            remaining, in_bin, last = remaining - (in_bin - count), float(count), value
        to_go -= 1
    return np.unique(cuts)


@pytest.mark.parametrize("seed", range(6))
def test_vectorised_cut_points_match_the_sequential_walk(seed):
    rng = np.random.default_rng(seed)
    n_rows = int(rng.integers(2, 60))
    X = np.column_stack([rng.normal(size=n_rows), rng.integers(0, 3, n_rows), rng.integers(0, 12, n_rows),
                         np.round(rng.exponential(size=n_rows), 1), rng.poisson(0.3, n_rows)]).astype(float)
    X[rng.random(X.shape) < 0.15] = np.nan
    for n_bins in (2, 3, 4, 6):
        cuts = equal_frequency_cut_points(X, n_bins)
        for j in range(X.shape[1]):
            expected = _sequential_equal_frequency(X[:, j], n_bins)
            np.testing.assert_allclose(cuts[~np.isnan(cuts[:, j]), j], expected)


# --- Information gain -----------------------------------------------------------------------------------------------

def test_information_gain_hand_computed():
    # x = 0..9 -> Orange bins {0,1} {2,3,4} {5,6} {7,8,9} (see above).
    # y = 0 0 | 0 0 1 | 0 1 | 1 1 1  -> per bin H = 0, H(1/3) = 0.918296, 1, 0 bits.
    # H(class) = H(5/10) = 1; H(class | bin) = 0.3 * 0.918296 + 0.2 * 1 = 0.475489; IG = 0.524511.
    # (Quantile bins {0,1,2} {3,4} {5,6} {7,8,9} would give 1 - 0.4 = 0.6.)
    x = np.arange(10.0)[:, None]
    y = np.array([0, 0, 0, 0, 1, 0, 1, 1, 1, 1])
    gain = information_gain(x, y, equal_frequency_cut_points(x, 4))
    h_third = -(1 / 3) * np.log2(1 / 3) - (2 / 3) * np.log2(2 / 3)
    np.testing.assert_allclose(gain, [1 - (0.3 * h_third + 0.2)])
    np.testing.assert_allclose(gain, [0.524511], atol=1e-6)


def test_information_gain_ignores_unknowns_and_scales_by_known_fraction():
    # Known rows: x = 1..8, y = 0 0 0 1 0 1 1 1 -> bins {1,2} {3,4} {5,6} {7,8} (cuts 2.5, 4.5, 6.5),
    # H(class) = 1, H(class | bin) = (0 + 1 + 1 + 0) / 4 = 0.5, gain on known rows = 0.5.
    # Two more rows with unknown x (both COVID-19) do not enter the counts (else H(class) = H(0.6) != 1);
    # Orange scales by the known fraction 8 / 10: IG = 0.4.
    x = np.array([1, 2, 3, 4, 5, 6, 7, 8, np.nan, np.nan])[:, None]
    y = np.array([0, 0, 0, 1, 0, 1, 1, 1, 1, 1])
    selector = InformationGainSelector(k=1).fit(x, y)
    np.testing.assert_allclose(selector.cut_points_[0], [2.5, 4.5, 6.5])
    np.testing.assert_allclose(selector.scores_, [0.4])


def test_all_missing_column_scores_zero():
    X = np.column_stack([np.full(6, np.nan), np.arange(6.0)])
    scores = InformationGainSelector(k=1).fit(X, [0, 0, 0, 1, 1, 1]).scores_
    np.testing.assert_allclose(scores, [0.0, 1.0])


def test_selector_keeps_best_k_ties_by_column_order_and_names():
    rng = np.random.default_rng(0)
    y = np.repeat([0, 1], 20)
    perfect = y + rng.normal(0, 0.01, 40)  # IG = 1 bit
    noise = rng.normal(size=40)
    frame = pd.DataFrame({"noise": noise, "dup_a": perfect, "constant": np.ones(40), "dup_b": perfect})
    selector = InformationGainSelector(k=2).set_output(transform="pandas").fit(frame, y)
    assert selector.scores_[1] == selector.scores_[3] == pytest.approx(1.0)
    assert selector.scores_[2] == 0.0
    np.testing.assert_array_equal(selector.selected_indices_, [1, 3])  # tie: earlier column first
    assert list(selector.get_feature_names_out()) == ["dup_a", "dup_b"]
    assert list(selector.transform(frame).columns) == ["dup_a", "dup_b"]
    one = InformationGainSelector(k=1).fit(frame, y)
    np.testing.assert_array_equal(one.selected_indices_, [1])
    assert InformationGainSelector(k=50).fit(frame, y).get_support().all()
    assert InformationGainSelector(k="all").fit(frame, y).get_support().sum() == 4


def test_selector_rejects_bad_k():
    with pytest.raises(ValueError, match="k must be"):
        InformationGainSelector(k=0).fit(np.zeros((4, 2)), [0, 1, 0, 1])


def test_filter_and_selector_in_a_pipeline_learn_from_training_rows_only():
    """Column 1 predicts y only in the training rows and column 2 is missing in half of the held-out
    rows (15 % overall, 0 % in training). Fitted on the training rows, the pipeline keeps column 2,
    selects column 1 and its scores are those of the training rows alone; fitted on all rows, the
    filter would drop column 2."""
    rng = np.random.default_rng(1)
    n = 200
    y = np.tile([0, 1], n // 2)
    train, test = np.arange(n) < 140, np.arange(n) >= 140
    X = rng.normal(size=(n, 3))
    X[train, 1] += 3 * y[train]
    X[np.flatnonzero(test)[::2], 2] = np.nan
    pipeline = Pipeline([("missing", MissingValueFilter()), ("select", InformationGainSelector(k=1)),
                         ("model", LogisticRegression())]).fit(X[train], y[train])
    assert pipeline.named_steps["missing"].keep_mask_.all()
    np.testing.assert_array_equal(pipeline.named_steps["missing"].missing_fraction_, [0, 0, 0])
    np.testing.assert_array_equal(pipeline.named_steps["select"].selected_indices_, [1])
    np.testing.assert_array_equal(pipeline.named_steps["select"].scores_,
                                  InformationGainSelector(k=1).fit(X[train], y[train]).scores_)
    whole = MissingValueFilter().fit(X)
    np.testing.assert_array_equal(whole.keep_mask_, [True, True, False])
