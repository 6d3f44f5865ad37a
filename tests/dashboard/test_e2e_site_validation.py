"""Site validation in a real headless Chromium: the HTML report opens, draws its figures and prints; the dashboard page
runs a validation; the Review page states the site profile in use. Screenshots go to ``test-artifacts/screenshots/``.
"""

from __future__ import annotations

import re

import pytest
from dashboard_support import require_default_model
from test_e2e_browser import (  # noqa: F401  (browser and server_env are fixtures)
    ARTIFACTS,
    CHROMIUM,
    CHROMIUM_ARGS,
    SCREENSHOTS,
    StreamlitServer,
    browser,
    click_page,
    server_env,
    shoot,
    wait_idle,
)
from validation_support import identity_profile, small_site

from core.triage.model import TriageModel
from core.validation.html import write_html_report
from core.validation.scoring import score_dataset
from core.validation.validate import validation_report
from core.worklist.site_profiles import SiteProfileRegistry
from core.worklist.store import WorklistStore

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def site(cxr_dir, cxr_manifest, tmp_path_factory):
    return small_site(cxr_dir, cxr_manifest, tmp_path_factory.mktemp("site") / "actualmed-6")


def test_html_report_opens_draws_and_prints_in_chromium(site, tmp_path):
    if not CHROMIUM.exists():
        pytest.skip(f"{CHROMIUM} is missing: install Debian's Chromium (`apt-get install -y chromium`)")
    require_default_model()
    from playwright.sync_api import sync_playwright

    model = TriageModel.load(use_environment=False)
    report_path = write_html_report(validation_report(score_dataset(model, site), model, n_boot=300),
                                    tmp_path / "report.html")
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=str(CHROMIUM), args=["--headless", *CHROMIUM_ARGS])
        try:
            page = chromium.new_page(viewport={"width": 1200, "height": 1000})
            problems: list[str] = []
            page.on("pageerror", lambda error: problems.append(str(error)))
            page.on("console", lambda message: problems.append(message.text) if message.type == "error" else None)
            page.goto(report_path.as_uri())
            page.wait_for_function("document.querySelectorAll('.js-plotly-plot .main-svg').length >= 3",
                                   timeout=60_000)
            assert page.locator(".js-plotly-plot").count() >= 3  # + the pneumonia figures when the model gives them
            assert page.get_by_text("Verdicts in this report: not validated at this site").is_visible()
            assert page.locator(".js-plotly-plot .scatterlayer .trace").count() >= 4  # ROC, point, bins, diagonals
            assert page.get_by_text("Sign-off").is_visible()
            page.screenshot(path=str(SCREENSHOTS / "validation-report.png"), full_page=True)
            pdf = page.pdf(path=str(ARTIFACTS / "validation-report.pdf"), format="A4")
            assert pdf.startswith(b"%PDF") and len(pdf) > 20_000
            assert not problems, problems
        finally:
            chromium.close()


def test_site_validation_page_and_review_with_a_profile(server_env, browser, site, tmp_path,  # noqa: F811
                                                        sample_png):
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    server = StreamlitServer(server_env, tmp_path / "streamlit.log").start()
    try:
        page = browser.new_page(viewport={"width": 1400, "height": 1600})
        page.goto(server.url)  # through the app's navigation: a deep link would bypass app.py (see the report)
        page.get_by_role("heading", name="Review chest X-rays").first.wait_for(timeout=60_000)
        click_page(page, "Site validation")
        page.get_by_text("A folder on this server").click()
        page.get_by_label("Folder path (on the server running this dashboard)").fill(str(site))
        page.get_by_label("Folder path (on the server running this dashboard)").press("Enter")
        wait_idle(page)
        page.get_by_role("button", name="Run the validation").click()
        page.get_by_text("Threshold in use").first.wait_for(timeout=300_000)
        page.get_by_text(re.compile("too few films to calibrate honestly")).first.wait_for(timeout=60_000)
        wait_idle(page)
        shoot(page, "site-validation")

        model = TriageModel.load(use_environment=False)
        base = model.predict(sample_png)
        profile = identity_profile(model.fingerprint, min(base.risk + 0.05, 0.999), name="General Hospital")
        with WorklistStore(server_env["CXR_WORKLIST_URL"]) as store:
            SiteProfileRegistry(store).store_and_activate(profile, who="dr.lead", note="e2e")
        page.goto(server.url)
        page.get_by_role("heading", name="Review chest X-rays").first.wait_for(timeout=60_000)
        page.locator("input[type=file]").set_input_files(str(sample_png))
        page.get_by_text(re.compile("validated at this site \\(site profile")).first.wait_for(timeout=120_000)
        assert page.get_by_text("Not flagged — risk").first.is_visible()
        wait_idle(page)
        shoot(page, "review-site-profile")
    finally:
        server.stop()
