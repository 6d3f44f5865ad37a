"""Dashboard Site validation page (AppTest) and the site profile in use on the Review page and in the worklist.

Needs the trained default model (models/default); skips with the command that creates it otherwise.
"""

from __future__ import annotations

import io
import zipfile

import pytest
from dashboard_support import isolate_app, open_page, plotly_figures, texts
from validation_support import identity_profile, scored_set, synthetic_risks

from core.validation.calibrate import fit_site_profile
from core.worklist.site_profiles import SiteProfileRegistry
from core.worklist.store import WorklistStore


@pytest.fixture
def worklist_url(model, monkeypatch, tmp_path) -> str:
    monkeypatch.delenv("CXR_SITE_PROFILE", raising=False)
    return isolate_app(monkeypatch, tmp_path)


def run_on_folder(folder):
    app = open_page("site_validation")
    app.radio(key="site_source").set_value("A folder on this server").run()
    app.text_input(key="site_folder").input(str(folder)).run()
    app.button(key="site_run").click().run()
    assert not app.exception, [e.value for e in app.exception]
    return app


def test_validation_of_a_folder_shows_the_report_and_refuses_a_small_calibration(worklist_url, site):
    app = run_on_folder(site)
    shown = texts(app)
    assert "None: every verdict says **not validated at this site**" in shown
    assert any(m.label == "AUC" for m in app.metric) and "95% CI" in shown
    assert "too few films to calibrate honestly" in shown and "32 more" in shown
    titles = [f.layout.title.text for f in plotly_figures(app)]
    assert any("ROC" in t for t in titles) and any("Reliability" in t for t in titles)
    assert any("risk by label" in t for t in titles)
    report = app.session_state["site_validation_result"]["report"]
    assert report["data"]["n_images"] == 6 and report["calibration_statement"] == "not validated at this site"


def test_a_bad_zip_is_a_clear_message(worklist_url, tmp_path):
    app = open_page("site_validation")
    evil = io.BytesIO()
    with zipfile.ZipFile(evil, "w") as bundle:
        bundle.writestr("../../escape.png", b"x")
    app.file_uploader(key="site_zip").set_value([("films.zip", evil.getvalue(), "application/zip")]).run()
    app.button(key="site_run").click().run()
    assert not app.exception
    assert any("Cannot validate" in e.value and "outside the zip" in e.value for e in app.error)


def test_use_this_calibration_stores_and_activates_it(model, worklist_url, site, tmp_path):
    app = run_on_folder(site)
    risk, y, patients = synthetic_risks(60, 30, random_state=7)
    profile = fit_site_profile(scored_set(tmp_path, risk, y, patients), models_fingerprint=model.fingerprint,
                               name="General Hospital", n_boot=200)
    app.session_state["site_validation_result"]["profile"] = profile  # as if the films had been enough
    app.run()
    app.text_input(key="site_use_who").input("dr.lead")
    app.text_area(key="site_use_note").input("report signed 2026-01-02")
    next(b for b in app.button if b.label == "Use this calibration for this site").click().run()
    assert not app.exception
    assert "is now in use (version 1)" in texts(app)
    with WorklistStore(worklist_url) as store:
        version, active = SiteProfileRegistry(store).active()
        history = SiteProfileRegistry(store).history()
    assert version == 1 and active.id == profile.id
    assert history[["who", "action", "note"]].values.tolist() == [["dr.lead", "activated", "report signed 2026-01-02"]]
    assert profile.label() in texts(app)  # "Calibration in use" now names it


def test_review_uses_the_active_profiles_threshold_and_the_case_records_it(model, worklist_url, sample_png):
    base = model.predict(sample_png)
    assert base.flagged
    profile = identity_profile(model.fingerprint, threshold=min(base.risk + 0.05, 0.999), name="General Hospital")
    with WorklistStore(worklist_url) as store:
        SiteProfileRegistry(store).store_and_activate(profile, who="dr.lead")
    app = open_page()
    app.file_uploader(key="review_uploader").set_value([(sample_png.name, sample_png.read_bytes(), "image/png")]).run()
    assert not app.exception
    shown = texts(app)
    assert "Not flagged" in shown and f"Validation:** validated at this site ({profile.label()})" in shown
    assert f"Flag threshold {100 * profile.flag_rule.threshold:.1f}%" in shown
    suffix = base.sha256[:16]
    app.text_input(key=f"review_patient_{suffix}").input("site-patient-1")
    app.session_state["identity_name"] = "dr-test"  # the name typed in the sidebar (see test_dashboard_review)
    app.form_submit_button[0].click().run()
    with WorklistStore(worklist_url) as store:
        case = store.cases().iloc[0]
    assert case.site_profile == profile.label() and case.threshold == pytest.approx(profile.flag_rule.threshold)
    assert bool(case.flagged) is False and "+site:" + profile.short_id in case.model_version


def test_a_profile_for_other_models_is_not_applied_and_says_so(worklist_url, sample_png):
    with WorklistStore(worklist_url) as store:
        SiteProfileRegistry(store).store_and_activate(identity_profile("00" * 32, 0.99, "Old models"), who="dr.lead")
    app = open_page()
    app.file_uploader(key="review_uploader").set_value([(sample_png.name, sample_png.read_bytes(), "image/png")]).run()
    shown = texts(app)
    assert "The site calibration is not applied" in shown and "made for other models" in shown
    assert "Validation:** not validated at this site" in shown and "FLAGGED" in shown
