"""Site validation: check the tool on this hospital's own labelled films, read the report, and (when the films are
enough) use the recalibrated risk and threshold at this site. Every use is stored, versioned and audited."""

from __future__ import annotations

import json
import tempfile
from pathlib import Path

import streamlit as st

from core.io.archives import extract_labelled_zip
from core.io.datasets import load_dataset
from core.learn.site_profile import SiteProfileError
from core.paths import app_data_dir, default_site_profile
from core.validation.calibrate import films_needed, fit_site_profile, format_profile
from core.validation.figures import report_figures
from core.validation.html import render_html_report
from core.validation.scoring import score_dataset
from core.validation.tables import (
    calibration_table,
    ci_text,
    label_table,
    number,
    percent,
    summary_table,
    warnings_table,
)
from core.validation.validate import json_ready, validation_report
from core.worklist.store import WorklistError
from dashboard.state import active_site_profile, load_base_model, load_model, require_model, site_profile_registry

RESULT_KEY = "site_validation_result"
UPLOAD, FOLDER = "Upload a labelled zip", "A folder on this server"
MAX_ZIP_MB = 500


def show_profile_in_use() -> None:
    """Which calibration the verdicts use now, its history, and a way to stop using it."""
    st.subheader("Calibration in use")
    try:
        active = active_site_profile()
    except (SiteProfileError, WorklistError) as exc:
        st.error(f"The site calibration cannot be read: {exc}")
        active = None
    if active is None:
        st.info("None: every verdict says **not validated at this site**.")
    else:
        where, profile = active
        st.success(f"{profile.label()}: threshold {100 * profile.flag_rule.threshold:.1f}% — {where}.")
    if default_site_profile() is not None:
        st.caption("CXR_SITE_PROFILE is set for this server: it overrides the calibration chosen on this page.")
    registry = site_profile_registry()
    if registry is None:
        return
    history = registry.history()
    if not history.empty:
        with st.expander(f"History ({len(history)} changes)"):
            st.dataframe(history.drop(columns=["id"]), hide_index=True, width="stretch")
    if active is not None and default_site_profile() is None:
        with st.form("site_profile_stop"):
            who = st.text_input("Your name (recorded)", key="site_stop_who")
            note = st.text_input("Reason", key="site_stop_note")
            if st.form_submit_button("Stop using the site calibration"):
                try:
                    registry.deactivate(who=who, note=note)
                except WorklistError as exc:
                    st.error(f"Not changed: {exc}")
                else:
                    st.rerun()


def choose_source():
    """The labelled films: an uploaded zip (file object) or a folder (Path); None until one is given."""
    source = st.radio("Labelled films", [UPLOAD, FOLDER], horizontal=True, key="site_source")
    if source == UPLOAD:
        return st.file_uploader("Zip of the films: manifest.csv + images/, or one sub-folder per label "
                                "(COVID/, Normal/, …)", type=["zip"], key="site_zip", max_upload_size=MAX_ZIP_MB)
    folder = st.text_input("Folder path (on the server running this dashboard)", key="site_folder",
                           placeholder="/data/site-films (manifest.csv or class sub-folders)")
    return Path(folder.strip()).expanduser() if folder.strip() else None


def run(data_dir: Path, apply_profile: bool, target: float, name: str) -> dict:
    """Score the films once, validate, and fit a site profile (or say why not)."""
    model = load_model() if apply_profile else load_base_model()
    dataset = load_dataset(data_dir)
    bar = st.progress(0.0, text=f"scoring {len(dataset)} films…")
    scored = score_dataset(model, dataset, progress=lambda f, m: bar.progress(0.9 * f, text=m))
    bar.progress(0.92, text="figures and confidence intervals")
    report = validation_report(scored, model)
    result = {"report": json_ready(report), "profile": None, "refusal": None}
    if model.site_profile is not None:
        result["refusal"] = ("Validated with the site calibration in use; to make a new one, run again without it.")
    else:
        bar.progress(0.96, text="site calibration")
        try:
            result["profile"] = fit_site_profile(scored, models_fingerprint=model.fingerprint, name=name,
                                                 target_sensitivity=target)
        except SiteProfileError as exc:
            result["refusal"] = str(exc)
    bar.empty()
    return result


def show_report(report: dict) -> None:
    covid, point = report["covid"], report["covid"].get("operating_point") or {}
    st.markdown(f"**{report['data']['root']}**: {report['data']['n_images']} films, {report['data']['n_patients']} "
                f"patients — verdicts: *{report['calibration_statement']}*")
    columns = st.columns(4)
    columns[0].metric("Threshold in use", f"{100 * point['threshold']:.1f}%" if point else "—")
    for column, (label, figure, as_percent) in zip(columns[1:], [
            ("AUC", covid["AUC"], False), ("Sensitivity", point.get("sensitivity"), True),
            ("Specificity", point.get("specificity"), True)]):
        column.metric(label, (percent if as_percent else number)(figure, with_ci=False))
        if ci_text(figure, as_percent):
            column.caption(f"95% CI {ci_text(figure, as_percent)}")
    for note in report["notes"]:
        st.warning(note)
    for name, figure in report_figures(report).items():
        st.plotly_chart(figure, key=f"site_fig_{name}", width="stretch")
    st.dataframe(summary_table(covid, report["warnings"]), hide_index=True, width="stretch")
    st.dataframe(label_table(report["score_distributions"], report["flag_rate_per_label"]), hide_index=True)
    with st.expander("Calibration bins and warnings"):
        st.dataframe(calibration_table(covid["calibration"]), hide_index=True)
        st.dataframe(warnings_table(report["warnings"]), hide_index=True)
    if not report["pneumonia"].get("available"):
        st.caption(f"Pneumonia figures: not available ({report['pneumonia']['reason']}).")
    left, right = st.columns(2)
    left.download_button("Download the printable report (HTML)", render_html_report(report),
                         file_name=f"validation-{report['data']['root']}.html", mime="text/html", key="site_html")
    right.download_button("Download the figures (JSON)", json.dumps(report, indent=2),
                          file_name=f"validation-{report['data']['root']}.json", mime="application/json",
                          key="site_json")


def offer_profile(result: dict) -> None:
    st.subheader("Site calibration")
    profile = result["profile"]
    if profile is None:
        st.warning(result["refusal"])
        return
    st.code(format_profile(profile), language=None)
    for note in profile.evidence.get("notes", []):
        st.caption(note)
    registry = site_profile_registry()
    if registry is None:
        return
    with st.form("site_profile_use"):
        who = st.text_input("Your name (recorded)", key="site_use_who")
        note = st.text_area("Note (e.g. who reviewed the report)", key="site_use_note", max_chars=4000)
        if st.form_submit_button("Use this calibration for this site", type="primary"):
            try:
                version = registry.store_and_activate(profile, who=who, note=note)
            except WorklistError as exc:
                st.error(f"Not stored: {exc}")
            else:
                st.session_state["site_message"] = (f"{profile.label()} is now in use (version {version}); every "
                                                    "verdict from now on says so.")
                st.rerun()


st.title("Site validation")
st.caption("Check the tool on your own labelled films before trusting it, and recalibrate it to your hospital. "
           "Films are only read, never stored.")
require_model()
if message := st.session_state.pop("site_message", None):
    st.success(message)
show_profile_in_use()
st.subheader("Validate on your films")
needed = films_needed(0.95)
st.caption(f"A calibration for 95% sensitivity needs films of at least {needed['COVID-19']} COVID-19 and "
           f"{needed['Normal']} Normal patients; validation alone works on any labelled set.")
left, middle, right = st.columns(3)
target = left.number_input("Target sensitivity", 0.80, 0.99, 0.95, 0.01, key="site_target")
site_name = middle.text_input("Site name", value="this site", key="site_name")
apply_profile = right.checkbox("Apply the calibration in use", key="site_apply",
                               help="Validate the verdicts as they are now, with the site calibration in use.")
source = choose_source()
if source is not None and st.button("Run the validation", type="primary", key="site_run"):
    # an uploaded zip is unpacked for the run only: the films are never kept
    with tempfile.TemporaryDirectory(prefix="site-validation-", dir=app_data_dir()) as workdir:
        try:
            data_dir = source if isinstance(source, Path) else extract_labelled_zip(source, workdir)
            st.session_state[RESULT_KEY] = run(data_dir, apply_profile, float(target), site_name.strip() or "this site")
        except (ValueError, OSError) as exc:  # data set, zip and profile problems: one clear message
            st.error(f"Cannot validate: {exc}")
result = st.session_state.get(RESULT_KEY)
if result is not None:
    show_report(result["report"])
    offer_profile(result)
