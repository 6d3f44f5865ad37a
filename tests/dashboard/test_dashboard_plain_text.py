"""Untrusted text is shown as plain text: file names, DICOM header values, names and notes typed by users never
reach Streamlit's markdown as markdown (no image fetched from a header, no link, no bold) (issue 13, item 6)."""

from __future__ import annotations

import re

import numpy as np
import pytest
from dashboard_support import isolate_app, open_page, require_default_model
from imaging_samples import dicom_bytes, dicom_dataset, encoded
from PIL import Image

from core.worklist.store import WorklistStore
from dashboard.text import plain

FETCH = "![x](http://evil.example/x.png)"
LINK = "[click](http://evil.example/)"
# what would render as markup: an image, a link, bold, a Streamlit colour directive, an autolinked address
MARKUP = re.compile(r"(?<!\\)!\[|(?<!\\)\]\(|(?<!\\)\*\*|(?<!\\):red\[|(?<!\\)http://|(?<!\\)www\.")
MARKDOWN_ELEMENTS = ("markdown", "caption", "title", "header", "subheader", "success", "info", "warning", "error")


def markdown_sources(app) -> list[str]:
    return [str(element.value) for kind in MARKDOWN_ELEMENTS for element in getattr(app, kind)]


PAYLOADS = (FETCH, LINK, "**bold**", "www.evil.example")


def assert_no_payload_markup(app) -> None:
    """No payload reaches a markdown element as written (header values may be upper-cased on the way)."""
    for source in markdown_sources(app):
        for payload in PAYLOADS:
            assert payload.lower() not in source.lower(), source


def shows_payloads(app) -> bool:
    return any("evil" in source.lower() for source in markdown_sources(app))


@pytest.mark.parametrize("text", [FETCH, LINK, "**bold**", ":red[alarm]", "www.evil.example", "a_b_c", "1. x",
                                  "# title", "`code`", "<img src=x>", "$x$", "back\\slash"])
def test_plain_escapes_every_markdown_construct(text: str):
    escaped = plain(text)
    assert not MARKUP.search(escaped)
    assert re.sub(r"\\(.)", r"\1", escaped) == text  # nothing lost: every escape is one backslash


@pytest.fixture
def app_env(monkeypatch, tmp_path) -> str:
    require_default_model()
    return isolate_app(monkeypatch, tmp_path)


def test_review_shows_header_values_and_file_names_as_plain_text(app_env, sample_png):
    chest = np.asarray(Image.open(sample_png).convert("L"))
    header = dicom_dataset(chest, bits_stored=8, Modality="DX", BodyPartExamined=FETCH, PatientID=LINK)
    typed = dicom_dataset(chest, bits_stored=8, Modality=FETCH)
    files = [(f"**bold** {LINK}.dcm", dicom_bytes(header), "application/dicom"),
             ("study.dcm", dicom_bytes(typed), "application/dicom"),
             (f"{FETCH}.png", encoded(Image.fromarray(chest), "PNG"), "image/png")]
    app = open_page()
    app.file_uploader(key="review_uploader").set_value(files).run()
    assert not app.exception, [e.value for e in app.exception]
    assert shows_payloads(app)  # the payloads are shown ...
    assert_no_payload_markup(app)  # ... as text
    for key in app.session_state["review_batch"]:  # each film in turn (AppTest cannot set a formatted selectbox)
        app.session_state["review_selected"] = key
        app.run()
        assert not app.exception and shows_payloads(app)
        assert_no_payload_markup(app)


def test_worklist_shows_stored_text_as_plain_text(app_env):
    with WorklistStore(app_env) as store:
        store.add_case(patient_id=f"P {LINK}", image_name=f"**bold** {FETCH}.png", image_sha256="ab" * 32,
                       risk=0.8, flagged=True, threshold=0.3, per_model={"SVM": 0.8}, reviewer=f"dr {FETCH}",
                       model_version=f"www.evil.example {LINK}", note=FETCH)
    app = open_page("worklist")
    assert shows_payloads(app)
    assert_no_payload_markup(app)
