"""End to end in a real headless Chromium: reviewer name, upload, verdict with its validation status, viewer,
save, every page (an evaluation run twice, the consensus on the ROC page, the saved film on the Worklist), restart,
still there, then a batch that fills in as films are scored.

Starts ``streamlit run dashboard/app.py`` on a free port with a temporary app folder and worklist, drives Debian's
Chromium through Playwright, saves a screenshot of every page under ``test-artifacts/screenshots/`` and writes the
measured times to ``test-artifacts/e2e-timings.json`` (the speed targets are read from there, not asserted: the
machine is shared).
"""

from __future__ import annotations

import json
import os
import re
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pandas as pd
import pytest
from dashboard_support import REPO_ROOT, require_default_model
from validation_support import one_film_per_patient, site_folder

pytestmark = pytest.mark.e2e

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
                 "--disable-sync", "--no-first-run", "--disable-quic"]
ARTIFACTS = REPO_ROOT / "test-artifacts"
SCREENSHOTS = ARTIFACTS / "screenshots"
BATCH_SIZE = 10
PAGES = {"model_comparison": "Model comparison", "roc_curves": "ROC curves",
         "confusion_matrices": "Confusion matrices", "worklist": "Worklist", "progression": "Patient progression"}


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("localhost", 0))
        return probe.getsockname()[1]


class StreamlitServer:
    """``streamlit run dashboard/app.py`` as a subprocess; start waits for the health endpoint."""

    def __init__(self, env: dict[str, str], log: Path):
        self.env, self.log = env, log
        self.port = free_port()
        self.process: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"http://localhost:{self.port}"

    def start(self, timeout_s: float = 60) -> "StreamlitServer":
        command = [sys.executable, "-m", "streamlit", "run", "dashboard/app.py", "--server.port", str(self.port),
                   "--server.headless", "true", "--browser.gatherUsageStats", "false"]
        with open(self.log, "ab") as log:
            self.process = subprocess.Popen(command, cwd=REPO_ROOT, env=self.env, stdout=log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"streamlit exited with {self.process.returncode}; see {self.log}")
            try:
                with urllib.request.urlopen(f"{self.url}/_stcore/health", timeout=2) as response:
                    if response.status == 200:
                        return self
            except OSError:
                time.sleep(0.3)
        raise TimeoutError(f"streamlit did not answer on {self.url} within {timeout_s} s; see {self.log}")

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self.process = None


@pytest.fixture
def server_env(tmp_path, small_cxr_dir) -> dict[str, str]:
    """A fresh app folder, worklist and feature cache; a sample of the reference data as the data folder."""
    if not CHROMIUM.exists():
        pytest.skip(f"{CHROMIUM} is missing: install Debian's Chromium (`apt-get install -y chromium`)")
    require_default_model()
    env = {**os.environ, "CXR_APP_DATA": str(tmp_path / "app-data"), "CXR_DATA": str(small_cxr_dir),
           "CXR_WORKLIST_URL": f"sqlite:///{(tmp_path / 'worklist.db').as_posix()}"}
    return env


@pytest.fixture
def browser() -> Iterator:
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        try:
            yield chromium
        finally:
            chromium.close()


SETTLED_JS = """() => !document.querySelector('[data-testid="stStatusWidget"]')
    && !document.querySelector('[data-testid="stSkeleton"]')
    && [...document.querySelectorAll('[data-testid="stPlotlyChart"]')]
        .every(chart => chart.querySelector('.main-svg'))"""


def wait_idle(page, timeout_ms: int = 120_000) -> None:
    """Wait until the script run has finished and every chart is drawn (the status widget shows up after a delay)."""
    page.wait_for_timeout(400)
    page.wait_for_function(SETTLED_JS, timeout=timeout_ms)


def settled_after(page, heading: str, started: float) -> float:
    """Seconds from ``started`` until the page's heading is shown and its charts are drawn; then waits for the run
    to end (not counted)."""
    page.get_by_role("heading", name=heading).first.wait_for(timeout=60_000)
    page.wait_for_function(SETTLED_JS, timeout=120_000)
    elapsed = time.perf_counter() - started
    wait_idle(page)
    return elapsed


def open_and_time(page, url: str, heading: str) -> float:
    """Load a URL (a new browser session) and time it."""
    started = time.perf_counter()
    page.goto(url)
    return settled_after(page, heading, started)


def click_page(page, title: str) -> float:
    """Switch page through the sidebar (same session, as a user does) and time it."""
    started = time.perf_counter()
    page.locator('[data-testid="stSidebarNav"] a', has_text=title).first.click()
    return settled_after(page, title if title != "Review" else "Review chest X-rays", started)


def find_case(page, patient_id: str, reviewer: str) -> None:
    """The worklist table has the patient's row and the audit trail shows who created it.

    (st.dataframe draws on a canvas; its accessible grid cells are in the DOM, hidden.)
    """
    for text in (patient_id, reviewer):
        page.locator("td[role=gridcell]", has_text=text).first.wait_for(state="attached", timeout=60_000)


def shoot(page, name: str) -> None:
    page.screenshot(path=str(SCREENSHOTS / f"{name}.png"), full_page=True)


def choose(page, label: str, option: str) -> None:
    """Pick an option of a Streamlit select box by its label."""
    page.get_by_test_id("stSelectbox").filter(has_text=label).first.click()
    page.get_by_role("option", name=option, exact=True).first.click()


def run_evaluation_twice(page, timings: dict, data_dir: Path) -> None:
    """Model comparison: the same small evaluation of ``data_dir`` twice (the second used to crash with
    CacheReplayClosureError)."""
    page.get_by_role("tab", name="Run an evaluation").click()
    page.get_by_label("Data set folder").fill(str(data_dir))
    choose(page, "Feature set", "radiomic")
    choose(page, "Split", "random")
    page.get_by_label("Repeats").fill("2")
    page.get_by_label("Selected features (0 = no selection)").fill("5")
    page.get_by_label("Selected features (0 = no selection)").press("Tab")
    for attempt in ("first", "second"):
        started = time.perf_counter()
        page.get_by_role("button", name="Run the evaluation").click()
        wait_idle(page, timeout_ms=600_000)
        page.get_by_text("Finished: random split, radiomic features, k=5, 2 repeats").first.wait_for(timeout=60_000)
        assert not page.get_by_test_id("stException").count(), page.get_by_test_id("stException").first.inner_text()
        timings[f"model comparison: {attempt} identical evaluation run"] = time.perf_counter() - started


@pytest.fixture
def evaluation_data(cxr_dir, cxr_manifest, tmp_path) -> Path:
    """What the user evaluates on the Model comparison page: 15 COVID-19 and 15 Normal films of distinct patients."""
    rows = pd.concat([one_film_per_patient(cxr_manifest, label, 15) for label in ("COVID-19", "Normal")])
    return site_folder(cxr_dir, rows, tmp_path / "evaluation-data")


def test_review_workflow_in_a_browser(server_env, browser, tmp_path, cxr_manifest, cxr_dir, sample_png,
                                      evaluation_data):
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    timings: dict[str, float] = {}
    server = StreamlitServer(server_env, tmp_path / "streamlit.log").start()
    try:
        page = browser.new_page(viewport={"width": 1400, "height": 1600})
        started = time.perf_counter()
        page.goto(server.url)
        page.locator("input[type=file]").wait_for(state="attached", timeout=120_000)
        timings["first page load after start: uploader usable"] = time.perf_counter() - started
        timings["first page load after start: page settled"] = settled_after(page, "Review chest X-rays", started)

        page.get_by_label(re.compile("Your name")).fill("dr-e2e")
        page.get_by_label(re.compile("Your name")).press("Enter")
        page.get_by_text("typed, not verified").first.wait_for(timeout=30_000)

        started = time.perf_counter()
        page.locator("input[type=file]").set_input_files(str(sample_png))
        page.get_by_text(re.compile(r"(FLAGGED|Not flagged) — risk")).first.wait_for(timeout=60_000)
        timings["upload -> verdict, 1 film"] = time.perf_counter() - started
        wait_idle(page)
        timings["upload -> whole Review page drawn, 1 film"] = time.perf_counter() - started
        for label in ("Window", "Level", "Opacity"):  # the viewer's controls
            assert page.get_by_test_id("stSlider").filter(has_text=label).count() == 1, label
        assert page.get_by_text("Validation: not validated at this site").first.is_visible()
        assert page.get_by_text("Known limits:").first.is_visible()
        assert page.get_by_text(re.compile("no pneumonia seen|pneumonia, not typical of COVID-19|COVID-19 pattern")
                                ).first.is_visible()   # the three-class reading in words
        shoot(page, "review")

        page.get_by_label("Patient id (pseudonymous, no names)").fill("e2e-patient-1")
        page.get_by_text("Flag for quarantine follow-up").click()
        page.get_by_role("button", name="Save to worklist").click()
        page.get_by_text("Saved to the worklist as case #1").wait_for(timeout=30_000)
        wait_idle(page)
        shoot(page, "review-saved")

        for slug, title in PAGES.items():
            timings[f"switch to {title}"] = click_page(page, title)
            assert page.get_by_text("does not replace").first.is_visible()  # the disclaimer, on every page
            if slug == "model_comparison":
                run_evaluation_twice(page, timings, evaluation_data)
            if slug == "roc_curves":  # the consensus at its threshold, and the cross-hospital check
                # the consensus at its threshold, or (three-class default model) the note saying where it is instead
                page.locator(".legendtext", has_text="Consensus at the flag threshold").or_(
                    page.get_by_text("no consensus result")).first.wait_for(timeout=30_000)
                assert page.get_by_text("Cross-hospital check.").first.is_visible()
            if slug == "worklist":  # the saved case, with its film
                find_case(page, "e2e-patient-1", "dr-e2e")
                page.get_by_test_id("stImage").first.wait_for(timeout=30_000)
                assert "case #1" in page.get_by_test_id("stImage").first.inner_text()
            if slug == "progression":  # the worklist patient's film comes from the stored copy
                page.get_by_test_id("stImage").first.wait_for(timeout=30_000)
            shoot(page, slug)
        timings["switch back to Review (nothing rescored)"] = click_page(page, "Review")
        page.get_by_text("Showing your last batch").wait_for()

        server.stop()
        server.start()
        timings["load Worklist after restart"] = open_and_time(page, f"{server.url}/worklist", "Worklist")
        find_case(page, "e2e-patient-1", "dr-e2e")
        page.get_by_test_id("stImage").first.wait_for(timeout=30_000)  # the film survives the restart too
        shoot(page, "worklist-after-restart")

        two_classes = cxr_manifest[cxr_manifest.label.isin(["COVID-19", "Normal"])].iloc[1:]
        batch = [cxr_dir / "images" / name for name in two_classes.groupby("label").head(BATCH_SIZE // 2)["file"]]
        open_and_time(page, server.url, "Review chest X-rays")
        started = time.perf_counter()
        page.locator("input[type=file]").set_input_files([str(p) for p in batch])
        page.get_by_text(re.compile(rf"Scored \d+ of {BATCH_SIZE}")).first.wait_for(timeout=120_000)
        timings[f"batch of {BATCH_SIZE}: first result shown"] = time.perf_counter() - started
        page.get_by_text(f"{BATCH_SIZE} files", exact=False).first.wait_for(timeout=300_000)
        timings[f"batch of {BATCH_SIZE}: all filled in"] = time.perf_counter() - started
        wait_idle(page)
        shoot(page, "review-batch")
    finally:
        server.stop()
        (ARTIFACTS / "e2e-timings.json").write_text(json.dumps({k: round(v, 2) for k, v in timings.items()},
                                                               indent=2))
    print(json.dumps(timings, indent=2))
