"""Saved models: fit, calibrate, save, reload, and refuse anything that is not what training wrote."""

from __future__ import annotations

import hashlib
import json
import pickle
import zipfile

import numpy as np
import pytest
import skops.io as sio

from core.bench import synthetic_features
from core.learn.artifacts import (
    CONSENSUS_FILE,
    FINGERPRINT_ENV,
    ModelLoadError,
    environment_versions,
    load_artifacts,
    model_file_name,
    models_fingerprint,
    save_artifacts,
)
from core.learn.flag import FlagRule
from core.learn.models import MODEL_NAMES
from core.learn.training import class_probabilities, fit_final_models


@pytest.fixture(scope="module")
def fitted():
    X, y, groups = synthetic_features(180, 40, n_classes=3)   # 0 Normal, 1 other pneumonia, 2 COVID-19
    artifacts, summary = fit_final_models(X, y, groups, recipe="study", n_jobs=1)
    summary.pop("out_of_fold_probabilities")
    return X, y, artifacts, summary


def _save(tmp_path, fitted):
    X, y, artifacts, summary = fitted
    return save_artifacts(tmp_path / "models", artifacts, {"feature_names": list(X.columns), "consensus": summary},
                          {"evaluation-patient.json": "{}"})


def test_threshold_reaches_target_out_of_fold(fitted):
    _, _, artifacts, summary = fitted
    assert summary["out_of_fold"]["sensitivity"] >= summary["target_sensitivity"] == 0.95
    assert all(len(names) == 10 for names in summary["selected_features"].values())
    rule = FlagRule.from_dict(artifacts[CONSENSUS_FILE]["flag_rule"])   # the threshold lives with the model
    assert rule.threshold == summary["threshold"]


def test_three_class_consensus_gives_pneumonia_and_risk(fitted):
    X, y, artifacts, summary = fitted
    assert summary["classes"] == ["Normal", "other pneumonia", "COVID-19"] and summary["models"] == list(MODEL_NAMES)
    per_model = np.stack([class_probabilities(artifacts[model_file_name(n)], X) for n in MODEL_NAMES], axis=1)
    calibrated = artifacts[CONSENSUS_FILE]["calibrator"].predict_proba(per_model)
    np.testing.assert_allclose(calibrated.sum(axis=1), 1.0)
    risk, pneumonia = calibrated[:, 2], 1 - calibrated[:, 0]
    assert (risk <= pneumonia + 1e-12).all()                    # COVID-19 is a pneumonia
    assert summary["out_of_fold"]["AUC"] > 0.6 and summary["out_of_fold"]["pneumonia_AUC"] > 0.6


def test_linear_recipe_uses_every_feature():
    X, y, groups = synthetic_features(120, 45, n_classes=3, random_state=1)
    artifacts, summary = fit_final_models(X, y, groups, recipe="linear", n_jobs=1)
    assert summary["models"] == ["Logistic Regression"]
    assert summary["selected_features"]["Logistic Regression"] == list(X.columns)
    assert summary["out_of_fold_probabilities"].shape == (120, 3)


def test_round_trip_gives_identical_predictions(tmp_path, fitted):
    X, _, artifacts, _ = fitted
    folder = _save(tmp_path, fitted)
    loaded, report = load_artifacts(folder)
    assert report["versions"] == environment_versions()
    assert set(report["files"]) == {model_file_name(n) for n in MODEL_NAMES} | {CONSENSUS_FILE}
    assert all(zipfile.is_zipfile(folder / name) for name in report["files"])  # skops files, not pickles
    np.testing.assert_array_equal(loaded[CONSENSUS_FILE]["feature_medians"], artifacts[CONSENSUS_FILE]["feature_medians"])
    assert list(loaded[CONSENSUS_FILE]["feature_medians"].index) == list(X.columns)
    assert (folder / "evaluation-patient.json").read_text() == "{}"
    for name in MODEL_NAMES:
        file = model_file_name(name)
        np.testing.assert_array_equal(loaded[file].predict_proba(X), artifacts[file].predict_proba(X))


def test_tampered_model_file_is_refused(tmp_path, fitted):
    folder = _save(tmp_path, fitted)
    (folder / model_file_name("kNN")).write_bytes(sio.dumps({"not": "the model"}))
    with pytest.raises(ModelLoadError, match="does not match the training report"):
        load_artifacts(folder)


class _RunsCodeWhenUnpickled:
    """A 'model' whose unpickling writes a file: what a replaced pickle can do to whoever loads it."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return open, (self.marker, "w")


def _replace_with_matching_hash(folder, name, content: bytes) -> None:
    """Replace a file *and* its hash in report.json: what anyone who can write the folder can do."""
    (folder / name).write_bytes(content)
    report = json.loads((folder / "report.json").read_text())
    report["files"][name] = hashlib.sha256(content).hexdigest()
    (folder / "report.json").write_text(json.dumps(report))


def test_a_replaced_pickle_is_never_unpickled(tmp_path, fitted):
    folder = _save(tmp_path, fitted)
    marker = tmp_path / "code-ran"
    _replace_with_matching_hash(folder, model_file_name("SVM"), pickle.dumps(_RunsCodeWhenUnpickled(marker)))
    with pytest.raises(ModelLoadError, match="not a readable skops model file"):
        load_artifacts(folder)
    assert not marker.exists()


def test_a_skops_file_with_an_untrusted_type_is_refused(tmp_path, fitted):
    from fractions import Fraction

    folder = _save(tmp_path, fitted)
    _replace_with_matching_hash(folder, model_file_name("SVM"), sio.dumps(Fraction(1, 3)))
    with pytest.raises(ModelLoadError, match="outside the trusted list.*fractions.Fraction"):
        load_artifacts(folder)


def test_saving_an_untrusted_type_fails_at_training_time(tmp_path):
    from fractions import Fraction

    with pytest.raises(ValueError, match="TRUSTED_TYPES"):
        save_artifacts(tmp_path / "models", {"odd.skops": Fraction(1, 3)}, {})


def test_an_entry_the_program_does_not_use_is_refused(tmp_path, fitted):
    folder = _save(tmp_path, fitted)
    _replace_with_matching_hash(folder, "extra.skops", sio.dumps([1, 2, 3]))
    names = [model_file_name("kNN")]
    assert set(load_artifacts(folder, names=names)[0]) == set(names)  # only what is asked for is loaded
    with pytest.raises(ModelLoadError, match=r"lists files this version does not use \(extra.skops\)"):
        load_artifacts(folder, names=names, known=[model_file_name(n) for n in MODEL_NAMES] + [CONSENSUS_FILE])


@pytest.mark.parametrize("content", [{}, {"files": []}, {"files": {"svm.skops": "not a digest"}}, [1, 2]])
def test_a_report_without_a_valid_file_list_is_refused(tmp_path, content):
    (tmp_path / "report.json").write_text(json.dumps(content))
    with pytest.raises(ModelLoadError, match="no valid 'files' list"):
        load_artifacts(tmp_path)


def test_a_pinned_fingerprint_refuses_a_folder_rewritten_with_matching_hashes(tmp_path, fitted, monkeypatch):
    folder = _save(tmp_path, fitted)
    monkeypatch.setenv(FINGERPRINT_ENV, models_fingerprint(folder))
    load_artifacts(folder, names=[model_file_name("kNN")])  # the pinned folder loads
    _replace_with_matching_hash(folder, model_file_name("kNN"), sio.dumps({"a": 1}))
    with pytest.raises(ModelLoadError, match=f"does not match the fingerprint pinned in {FINGERPRINT_ENV}"):
        load_artifacts(folder, names=[model_file_name("kNN")])


def test_file_outside_the_folder_is_refused(tmp_path, fitted):
    folder = _save(tmp_path, fitted)
    report = json.loads((folder / "report.json").read_text())
    report["files"]["../evil.skops"] = "0" * 64
    (folder / "report.json").write_text(json.dumps(report))
    with pytest.raises(ModelLoadError, match="refusing to load"):
        load_artifacts(folder)


def test_version_mismatch_is_refused_with_the_fix(tmp_path, fitted):
    folder = _save(tmp_path, fitted)
    report = json.loads((folder / "report.json").read_text())
    report["versions"]["scikit-learn"] = "0.24.2"
    (folder / "report.json").write_text(json.dumps(report))
    with pytest.raises(ModelLoadError, match=r"scikit-learn 0.24.2 .*retrain"):
        load_artifacts(folder)


def test_missing_model_names_the_command(tmp_path):
    with pytest.raises(ModelLoadError, match="python -m core train"):
        load_artifacts(tmp_path)


def test_resave_replaces_the_folder_atomically(tmp_path, fitted):
    first = _save(tmp_path, fitted)
    (first / "stale.txt").write_text("from an older run")
    second = _save(tmp_path, fitted)
    assert first == second and not (second / "stale.txt").exists()
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".models")]
