"""Site profiles: recalibration maps, the JSON file (round trip, tampering, wrong files), the models check."""

from __future__ import annotations

import json

import numpy as np
import pytest
from scipy.special import expit, logit
from validation_support import identity_profile

from core.learn.artifacts import model_files_fingerprint
from core.learn.site_profile import (
    SiteProfileError,
    SiteRecalibrator,
    load_site_profile,
)


def labels_from(true_probability: np.ndarray, seed: int = 0) -> np.ndarray:
    return (np.random.default_rng(seed).random(len(true_probability)) < true_probability).astype(int)


def test_platt_recovers_a_site_miscalibration():
    """At this site the true risk is expit(2·logit(r) − 1): Platt scaling finds slope 2 and intercept −1."""
    risk = np.random.default_rng(1).uniform(0.02, 0.98, 20_000)
    y = labels_from(expit(2 * logit(risk) - 1))
    recalibrator = SiteRecalibrator("platt").fit(risk, y)
    assert recalibrator.slope_ == pytest.approx(2.0, abs=0.1)
    assert recalibrator.intercept_ == pytest.approx(-1.0, abs=0.1)
    grid = np.linspace(0.01, 0.99, 50)
    assert np.all(np.diff(recalibrator.predict_risk(grid)) > 0)  # the ranking (and the AUC) is kept


def test_platt_never_reverses_the_ranking():
    risk = np.linspace(0.05, 0.95, 200)
    y = (risk < 0.5).astype(int)  # the risk falls with the label at this site
    recalibrator = SiteRecalibrator("platt").fit(risk, y)
    assert recalibrator.slope_ == 0.0


def test_isotonic_is_monotone_and_round_trips():
    risk = np.random.default_rng(2).uniform(0, 1, 3000)
    y = labels_from(risk ** 2)
    recalibrator = SiteRecalibrator("isotonic").fit(risk, y)
    grid = np.linspace(0, 1, 101)
    mapped = recalibrator.predict_risk(grid)
    assert np.all(np.diff(mapped) >= 0) and mapped.min() >= 0 and mapped.max() <= 1
    again = SiteRecalibrator.from_dict(json.loads(json.dumps(recalibrator.to_dict())))
    np.testing.assert_array_equal(again.predict_risk(grid), mapped)


def test_unknown_method_is_refused():
    with pytest.raises(ValueError, match="unknown recalibration method 'beta'"):
        SiteRecalibrator("beta").fit(np.array([0.2, 0.8]), np.array([0, 1]))


def test_profile_file_round_trip(tmp_path):
    profile = identity_profile("cd" * 32, threshold=0.42, name="St Elsewhere")
    path = profile.save(tmp_path / "profiles" / "site.json")
    loaded = load_site_profile(path)
    assert loaded.id == profile.id and loaded.flag_rule.threshold == 0.42 and loaded.name == "St Elsewhere"
    assert loaded.risk(0.3) == pytest.approx(0.3)  # identity recalibration
    assert loaded.summary()["id"] == profile.short_id and profile.label().startswith('site profile "St Elsewhere"')


def test_a_changed_profile_file_is_refused(tmp_path):
    path = identity_profile("cd" * 32, threshold=0.42).save(tmp_path / "site.json")
    record = json.loads(path.read_text())
    record["flag_rule"]["threshold"] = 0.05  # someone lowers the threshold by hand
    path.write_text(json.dumps(record))
    with pytest.raises(SiteProfileError, match="changed after it was made"):
        load_site_profile(path)


@pytest.mark.parametrize("content, message", [
    ("{not json", "not valid JSON"),
    ('{"kind": "something else"}', "not a site profile"),
    ('{"kind": "cxr-triage site profile", "format": 99}', "format 99"),
    ('{"kind": "cxr-triage site profile", "format": 1, "name": "x"}', "incomplete or malformed"),
])
def test_files_that_are_not_profiles_are_refused_with_the_reason(tmp_path, content, message):
    path = tmp_path / "profile.json"
    path.write_text(content)
    with pytest.raises(SiteProfileError, match=message) as raised:
        load_site_profile(path)
    assert str(path) in str(raised.value)


def test_missing_profile_file(tmp_path):
    with pytest.raises(SiteProfileError, match="no such site profile file"):
        load_site_profile(tmp_path / "absent.json")


def test_a_profile_for_other_models_is_refused():
    report = {"files": {"svm.joblib": "a" * 64, "consensus.joblib": "b" * 64}}
    retrained = {"files": {"svm.joblib": "a" * 64, "consensus.joblib": "c" * 64}}
    assert model_files_fingerprint(report) != model_files_fingerprint(retrained)
    profile = identity_profile(model_files_fingerprint(report), threshold=0.3)
    profile.check_models(model_files_fingerprint(report))  # the models it was made for: accepted
    with pytest.raises(SiteProfileError, match="made for other models.*python -m core calibrate"):
        profile.check_models(model_files_fingerprint(retrained))

