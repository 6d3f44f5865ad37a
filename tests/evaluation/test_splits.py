"""Split plans: Orange's random sampling, patient-grouped sampling, leave-one-source-out."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from core.evaluation.splits import (
    make_splits,
    patient_splits,
    random_splits,
    site_splits,
    source_split,
)


def _patients(n_patients: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """1-4 images per patient, one label per patient."""
    rng = np.random.default_rng(seed)
    sizes = rng.integers(1, 5, n_patients)
    labels = np.arange(n_patients) % 2
    groups = np.repeat([f"p{i}" for i in range(n_patients)], sizes)
    return np.repeat(labels, sizes), groups


@settings(max_examples=60, deadline=None)
@given(n_patients=st.integers(4, 40), seed=st.integers(0, 2**31 - 1), train_size=st.floats(0.2, 0.8))
def test_patient_split_never_puts_a_patient_on_both_sides(n_patients, seed, train_size):
    y, groups = _patients(n_patients, seed)
    folds = patient_splits(y, groups, repeats=5, train_size=train_size, random_state=seed)
    assert len(folds) == 5
    for train, test in folds:
        assert not set(groups[train]) & set(groups[test])
        assert len(train) + len(test) == len(y) and not set(train) & set(test)
        for label in (0, 1):  # every class on both sides
            assert (y[train] == label).any() and (y[test] == label).any()


def test_patient_split_is_stratified_and_near_train_size():
    y, groups = _patients(200, 0)
    for train, _ in patient_splits(y, groups, repeats=10, train_size=0.66, random_state=3):
        for label in (0, 1):
            share = (y[train] == label).sum() / (y == label).sum()
            assert abs(share - 0.66) < 0.03


def test_missing_patient_ids_count_as_separate_patients():
    y = np.array([0, 0, 0, 0, 1, 1, 1, 1])
    groups = np.array(["a", "a", None, None, "b", "b", np.nan, "c"], dtype=object)
    plan = make_splits(y, groups=groups, split="patient", repeats=3)
    assert plan.description["n_patients"] == 6
    for train, test in plan.folds:
        assert not {"a", "b", "c"} & set(groups[train]) & set(groups[test])


def test_patient_split_needs_two_patients_per_class():
    with pytest.raises(ValueError, match="at least 2 COVID-19 patients"):
        patient_splits(np.array([0, 0, 1, 1]), np.array(["a", "b", "c", "c"]))


def test_random_split_is_orange_stratified_sampling():
    y = np.array([1] * 30 + [0] * 70)
    folds = random_splits(y, repeats=10, train_size=0.66, random_state=42)
    assert len(folds) == 10
    for train, test in folds:
        assert len(train) == 66 and len(test) == 34
        assert y[train].sum() in (19, 20)  # 30 % of 66
    assert len({tuple(train) for train, _ in folds}) == 10


def test_splits_are_reproducible_with_the_seed():
    y, groups = _patients(30, 1)
    for split in ("random", "patient"):
        first = make_splits(y, groups=groups, split=split, random_state=5)
        again = make_splits(y, groups=groups, split=split, random_state=5)
        other = make_splits(y, groups=groups, split=split, random_state=6)
        for (a, _), (b, _) in zip(first.folds, again.folds):
            np.testing.assert_array_equal(a, b)
        assert any(not np.array_equal(a, b) for (a, _), (b, _) in zip(first.folds, other.folds))


def test_description_reports_patient_leakage_of_random_sampling():
    y, groups = _patients(40, 2)
    random_plan = make_splits(y, groups=groups, split="random", repeats=10)
    patient_plan = make_splits(y, groups=groups, split="patient", repeats=10)
    assert sum(fold["n_shared_patients"] for fold in random_plan.description["folds"]) > 0
    assert all(fold["n_shared_patients"] == 0 for fold in patient_plan.description["folds"])
    assert patient_plan.description["n_patients"] == 40
    assert random_plan.model_seeds == [42] * 10


SOURCES = np.array(["Actualmed COVID-19"] * 4 + ["NIH ChestX-ray8"] * 3 + ["ieee8023 collection"] * 3
                   + ["ieee8023 collection v2"] * 2)
LABELS = np.array([1, 0, 1, 0] + [0, 0, 0] + [1, 1, 0] + [1, 0])


def test_source_split_picks_the_named_source_case_insensitively():
    train, test, name = source_split(LABELS, SOURCES, "ACTUALMED")
    assert name == "Actualmed COVID-19"
    np.testing.assert_array_equal(test, [0, 1, 2, 3])
    np.testing.assert_array_equal(train, np.arange(4, 12))
    # An exact name wins over a substring of a longer one.
    assert source_split(LABELS, SOURCES, "ieee8023 collection")[2] == "ieee8023 collection"


@pytest.mark.parametrize("test_source, message", [
    ("padchest", "matches no source"),
    ("ieee8023", "matches 2 sources"),
    ("nih", "holds a single label"),
    (None, "needs test_source"),
])
def test_source_split_errors_name_every_source(test_source, message):
    with pytest.raises(ValueError, match=message) as info:
        source_split(LABELS, SOURCES, test_source)
    for name in set(SOURCES):  # the message lists the sources with their label counts
        assert repr(str(name)) in str(info.value)
    assert "COVID-19 2, Normal 2" in str(info.value)


def test_source_plan_repeats_one_split_with_new_model_seeds():
    plan = make_splits(LABELS, sources=SOURCES, split="source", test_source="actualmed", repeats=3,
                       random_state=10)
    assert plan.model_seeds == [10, 11, 12]
    assert all(np.array_equal(test, [0, 1, 2, 3]) for _, test in plan.folds)
    assert plan.description["test_source"] == "Actualmed COVID-19"
    assert "NIH ChestX-ray8" in plan.description["train_sources"]


def test_source_split_on_the_reference_manifest(cxr_manifest: pd.DataFrame):
    binary = cxr_manifest[cxr_manifest.label.isin(["COVID-19", "Normal"])].reset_index(drop=True)
    y = (binary.label == "COVID-19").to_numpy(int)
    train, test, name = source_split(y, binary.origin_dataset, "actualmed")
    assert set(binary.origin_dataset[test]) == {name} and name.startswith("Actualmed")
    assert len(train) + len(test) == len(binary)
    with pytest.raises(ValueError, match="single label"):
        source_split(y, binary.origin_dataset, "NIH")


def test_bad_arguments():
    y = np.array([0, 1] * 5)
    with pytest.raises(ValueError, match="unknown split"):
        make_splits(y, split="kfold")
    with pytest.raises(ValueError, match="needs groups"):
        make_splits(y, split="patient")
    with pytest.raises(ValueError, match="train_size"):
        make_splits(y, split="random", train_size=1.0)


# ---------------------------------------------------------------- leave-one-site-out

def _site_data():
    rng = np.random.default_rng(0)
    sites = np.array(["a"] * 30 + ["b"] * 30 + ["c"] * 20 + ["d"] * 5)
    y = rng.integers(0, 3, len(sites))
    y[sites == "d"] = 2                                   # a site with one class
    groups = np.array([f"p{i // 2}" for i in range(len(sites))])
    groups[60] = groups[0]                                # one patient seen at sites a and c
    return y, sites, groups


def test_site_split_never_trains_on_the_test_site_or_its_patients():
    y, sites, groups = _site_data()
    folds, names, skipped = site_splits(y, sites, groups)
    assert names == ["a", "b", "c", "d"] and skipped == {}
    for (train, test), name in zip(folds, names):
        assert set(sites[test]) == {name}
        assert name not in set(sites[train])
        assert not set(groups[train]) & set(groups[test])
    # the patient shared by a and c is out of c's training fold (and of a's)
    train_c = folds[names.index("c")][0]
    assert 0 not in train_c and 60 not in folds[names.index("a")][0]
    assert sorted(np.concatenate([test for _, test in folds]).tolist()) == list(range(len(y)))


def test_site_split_skips_a_site_whose_absence_leaves_a_class_untrained():
    y, sites, groups = _site_data()
    y[sites != "a"] = np.where(y[sites != "a"] == 1, 0, y[sites != "a"])   # class 1 only at site a
    folds, names, skipped = site_splits(y, sites, groups)
    assert "a" not in names and "lack class" in skipped["a"]


def test_make_splits_site_plan_names_the_test_sites():
    y, sites, groups = _site_data()
    plan = make_splits((y == 2).astype(int), groups=groups, sources=sites, split="site")
    assert plan.kind == "site" and plan.description["test_sites"] == ["a", "b", "c", "d"]
    assert [fold["test_site"] for fold in plan.description["folds"]] == ["a", "b", "c", "d"]
    with pytest.raises(ValueError, match="at least two sites"):
        site_splits(y, ["a"] * len(y))
