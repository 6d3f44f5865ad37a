"""Site calibration on scored films: too-small sets refused with the numbers, the threshold and its evidence."""

from __future__ import annotations

import json

import numpy as np
import pytest
from validation_support import scored_set, synthetic_risks

from core.learn.site_profile import SiteProfile, SiteProfileError
from core.validation.calibrate import ISOTONIC_MIN_FILES, films_needed, fit_site_profile

FINGERPRINT = "ef" * 32


def test_too_few_covid_patients_is_refused_saying_how_many_are_needed(tmp_path):
    risk, y, patients = synthetic_risks(20, 30)
    with pytest.raises(SiteProfileError) as raised:
        fit_site_profile(scored_set(tmp_path, risk, y, patients), models_fingerprint=FINGERPRINT, name="small")
    message = str(raised.value)
    assert "35 COVID-19 patients (this set has 20: 15 more)" in message and "Normal" not in message.split(".")[0]


def test_more_films_of_the_same_patients_do_not_count(tmp_path):
    risk, y, patients = synthetic_risks(80, 30, films_per_patient=4)  # 80 COVID-19 films from 20 patients
    with pytest.raises(SiteProfileError, match=r"this set has 20: 15 more.*Normal patients \(this set has 8: 2 more"):
        fit_site_profile(scored_set(tmp_path, risk, y, patients), models_fingerprint=FINGERPRINT, name="small")


def test_the_needed_numbers_follow_the_target():
    assert films_needed(0.95) == {"COVID-19": 35, "Normal": 10}
    assert films_needed(0.90)["COVID-19"] == 48  # a lower target needs more patients to bound it as tightly


def test_profile_reaches_the_target_with_its_evidence(tmp_path):
    risk, y, patients = synthetic_risks(120, 80, random_state=2)
    profile = fit_site_profile(scored_set(tmp_path, risk, y, patients), models_fingerprint=FINGERPRINT,
                               name="St Elsewhere", target_sensitivity=0.95, n_boot=500)
    site_risk = profile.risk(risk)
    sensitivity = np.mean(site_risk[y == 1] >= profile.flag_rule.threshold)
    assert 0.95 <= sensitivity < 0.95 + 1 / 120 + 1e-9  # the highest threshold that reaches the target
    low, high = profile.evidence["threshold_ci"]
    assert low <= profile.flag_rule.threshold <= high
    assert profile.recalibrator.method == "platt" and profile.models_fingerprint == FINGERPRINT
    cv = profile.evidence["cross_validated"]
    assert cv["folds"] == 5 and 0.7 < cv["sensitivity"]["value"] <= 1.0
    assert profile.data["covid_patients"] == 120 and profile.data["n_images"] == 200
    assert SiteProfile.from_json(json.dumps(profile.to_dict())).id == profile.id  # strict JSON


def test_isotonic_when_both_classes_are_large(tmp_path):
    risk, y, patients = synthetic_risks(ISOTONIC_MIN_FILES, ISOTONIC_MIN_FILES, random_state=3)
    profile = fit_site_profile(scored_set(tmp_path, risk, y, patients), models_fingerprint=FINGERPRINT,
                               name="big", n_boot=200)
    assert profile.recalibrator.method == "isotonic" and "isotonic" in profile.evidence["method_reason"]


def test_a_model_that_does_not_discriminate_here_is_refused(tmp_path):
    risk, y, patients = synthetic_risks(60, 40, separation=-2.0, random_state=4)  # risk falls with COVID-19
    with pytest.raises(SiteProfileError, match="does not rise with COVID-19"):
        fit_site_profile(scored_set(tmp_path, risk, y, patients), models_fingerprint=FINGERPRINT, name="x")


def test_films_scored_with_a_profile_are_refused(tmp_path):
    risk, y, patients = synthetic_risks(60, 40)
    scored = scored_set(tmp_path, risk, y, patients)
    scored.records["site_profile"] = [{"name": "old", "id": "abc"}] * len(y)
    with pytest.raises(SiteProfileError, match="scored with a site profile"):
        fit_site_profile(scored, models_fingerprint=FINGERPRINT, name="x")
