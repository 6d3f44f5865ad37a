"""validate / calibrate / predict --site-profile on real films of the reference data (default model needed).

The small sites here are cut from the reference set, which the default model was trained on: these tests check
that the figures are computed from exactly what ``predict`` says, and that profiles are applied or refused — not
how well the model does (see ``scripts/site_validation_experiment.py`` for that, with models that never saw the site).
"""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
from cli_support import run_cli
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import roc_auc_score
from sklearn.model_selection import GroupKFold, cross_val_predict
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler
from validation_support import identity_profile, one_film_per_patient, site_folder

from core.features.blocks import extract_features
from core.io.datasets import load_dataset
from core.triage.model import TriageModel
from core.validation.html import render_html_report
from core.validation.scoring import score_dataset
from core.validation.validate import validation_report


@pytest.fixture(scope="module")
def core_cli(tmp_path_factory):
    """``python -m core`` (in this process) with a fresh app folder and no site profile from the environment."""
    app_data = str(tmp_path_factory.mktemp("app"))

    def run(*args, **extra_env):
        return run_cli(*args, env={"CXR_SITE_PROFILE": None, "CXR_APP_DATA": app_data, **extra_env})
    return run


def test_validate_auc_is_the_auc_of_predict_json(model, site, core_cli, tmp_path):
    figures, html = tmp_path / "v.json", tmp_path / "v.html"
    done = core_cli("validate", "--data", site, "--json", figures, "--report", html, "--bootstrap", 300, "--quiet")
    assert done.returncode == 0, done.stderr
    report = json.loads(figures.read_text())
    manifest = pd.read_csv(site / "manifest.csv")
    predicted = core_cli("predict", *[site / "images" / f for f in manifest["file"]], "--json")
    assert predicted.returncode == 0, predicted.stderr
    records = {r["file"]: r for r in json.loads(predicted.stdout)}
    y = (manifest["label"] == "COVID-19").to_numpy(int)
    risk = np.array([records[f]["risk"] for f in manifest["file"]])
    assert report["covid"]["AUC"]["value"] == roc_auc_score(y, risk)
    assert report["threshold"] == records[manifest["file"].iloc[0]]["threshold"] == round(model.flag_rule.threshold, 4)
    flagged = np.array([records[f]["flagged"] for f in manifest["file"]])
    point = report["covid"]["operating_point"]
    assert point["sensitivity"]["events"] == int(flagged[y == 1].sum())
    assert point["specificity"]["events"] == int((~flagged[y == 0]).sum())
    low, high = report["covid"]["AUC"]["ci"]
    assert low <= report["covid"]["AUC"]["value"] <= high
    assert report["calibration_statement"] == "not validated at this site" and report["site_profile"] is None
    assert "AUC" in done.stdout and "not validated at this site" in done.stdout
    text = html.read_text()
    assert "Verdicts in this report: not validated at this site" in text and "fig-roc" in text


def test_predict_uses_the_profiles_threshold(model, sample_png, core_cli, tmp_path):
    base = model.predict(sample_png)
    assert base.flagged and base.site_profile is None and base.calibration_statement() == "not validated at this site"
    profile = identity_profile(model.fingerprint, threshold=min(base.risk + 0.05, 0.999))
    path = profile.save(tmp_path / "site.json")
    for args, env in (((sample_png, "--site-profile", path, "--json"), {}),
                      ((sample_png, "--json"), {"CXR_SITE_PROFILE": str(path)})):
        done = core_cli("predict", *args, **env)
        assert done.returncode == 0, done.stderr
        record = json.loads(done.stdout)[0]
        assert record["flagged"] is False and record["threshold"] == round(profile.flag_rule.threshold, 4)
        assert record["risk"] == record["model_risk"] == round(base.risk, 4)
        assert record["site_profile"]["name"] == "test hospital" and record["site_profile"]["id"] == profile.short_id
        assert record["calibration"] == profile.label()
    text = core_cli("predict", sample_png, "--site-profile", path)
    assert "not flagged" in text.stdout and profile.label() in text.stdout


def test_a_profile_for_other_models_is_refused_everywhere(model, site, sample_png, core_cli, tmp_path):
    path = identity_profile("00" * 32, threshold=0.5).save(tmp_path / "elsewhere.json")
    for done in (core_cli("predict", sample_png, "--site-profile", path),
                 core_cli("predict", sample_png, CXR_SITE_PROFILE=str(path)),
                 core_cli("validate", "--data", site, "--site-profile", path, "--quiet")):
        assert done.returncode == 2
        assert "made for other models" in done.stderr and "Traceback" not in done.stderr
    with pytest.raises(ValueError, match="made for other models"):
        TriageModel.load(site_profile=path)


def test_calibrate_refuses_a_small_real_site(site, core_cli, tmp_path):
    out = tmp_path / "profile.json"
    done = core_cli("calibrate", "--data", site, "--out", out, "--quiet")
    assert done.returncode == 2 and "Traceback" not in done.stderr
    assert "too few films to calibrate honestly" in done.stderr
    assert "35 COVID-19 patients (this set has 3: 32 more)" in done.stderr
    assert not out.exists()


def test_pneumonia_figures_when_predictions_carry_a_pneumonia_probability(model, cxr_dir, cxr_manifest, tmp_path):
    """Models without a pneumonia probability get a plain "not available"; a small logistic regression fitted on the films' radiomic
    features (patient-grouped, out of fold) stands in for it, on NIH Pneumonia and Normal films."""
    rows = pd.concat([one_film_per_patient(cxr_manifest, label, 8, "nih") for label in ("Pneumonia", "Normal")])
    folder = site_folder(cxr_dir, rows, tmp_path / "nih-16")
    scored = score_dataset(model, load_dataset(folder))
    assert validation_report(scored, model, n_boot=100)["pneumonia"]["available"]  # the three-class model's
    scored.records = scored.records.drop(columns="pneumonia")  # as models without a pneumonia probability give
    without = validation_report(scored, model, n_boot=100)
    assert without["pneumonia"] == {"available": False, "reason": "these models give no pneumonia probability"}
    assert without["covid"]["AUC"]["value"] is None and without["flag_rate_per_label"]["Pneumonia"]["n"] == 8

    features = extract_features(scored.dataset.table["path"], "radiomic", n_jobs=1).table
    X = features.drop(columns=["file", "sha256"]).to_numpy()
    y = (scored.records["label"] == "Pneumonia").to_numpy(int)
    stand_in = make_pipeline(StandardScaler(), LogisticRegression(C=0.1, max_iter=1000))
    scored.records["pneumonia"] = cross_val_predict(stand_in, X, y, groups=scored.records["patient"],
                                                    cv=GroupKFold(n_splits=4), method="predict_proba")[:, 1]
    report = validation_report(scored, model, n_boot=200)
    pneumonia = report["pneumonia"]
    assert pneumonia["available"] and pneumonia["positive_patients"] == 8 and pneumonia["negative_patients"] == 8
    assert pneumonia["AUC"]["value"] == roc_auc_score(y, scored.records["pneumonia"])
    assert sum(b["n"] for b in pneumonia["calibration"]) == 16
    assert set(pneumonia["score_distributions"]) == {"Pneumonia", "Normal"}
    html = render_html_report(report)
    assert "fig-pneumonia_roc" in html and "fig-pneumonia_reliability" in html
