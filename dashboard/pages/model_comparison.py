"""Model comparison: first how the triage model holds up at a hospital it has never seen (leave-one-site-out and
within-site contrasts, from the saved site evaluation), then the four classifiers side by side (mean ± sd over
repeats) on random / patient splits, from the saved evaluation reports (instant) or from an evaluation run here."""

from __future__ import annotations

import math

import pandas as pd
import streamlit as st

from core.evaluation.consensus import with_consensus
from core.evaluation.evaluate import EvaluationReport
from core.evaluation.metrics import METRICS
from core.evaluation.report_sites import site_tables, targets_not_met
from core.evaluation.splits import SPLITS
from core.features.blocks import MODEL_FEATURE_SETS
from core.io.datasets import DatasetError
from core.learn.artifacts import ModelLoadError, read_report
from core.paths import default_cache_dir, default_data_dir, default_models_dir
from core.workflow import check_data_set, load_feature_matrix, run_evaluation
from dashboard import charts
from dashboard.state import CUSTOM_RUNS_KEY, STAGE_LABELS, choose_report, default_site_evaluation, load_model
from dashboard.text import plain


MAX_KEPT_RUNS = 16
# What a reader sees instead of the metric's short name; Recall is the same number as Sensitivity.
METRIC_LABELS = {"CA": "Accuracy", "Sensitivity": "Sensitivity (recall)"}
SHOWN_METRICS = [metric for metric in METRICS if metric != "Recall"]


@st.cache_resource(show_spinner=False)
def finished_evaluations() -> dict[tuple, EvaluationReport]:
    """Evaluations already run in this server process, by their parameters (so a repeated run is instant).

    A plain dict in ``st.cache_resource`` rather than ``st.cache_data`` on the evaluation itself: the run reports
    its progress to a bar on the page, and a cached function must not touch page elements (Streamlit replays them,
    which fails on the second identical run with ``CacheReplayClosureError``).
    """
    return {}


def run_comparison(parameters: tuple, progress) -> EvaluationReport:
    """Features (from the per-image cache when possible), then the repeated evaluation; reused when run before."""
    done = finished_evaluations()
    if parameters not in done:
        data_dir, feature_set, select_k, split, repeats, test_source, preset = parameters
        check_data_set(data_dir, split=split, test_source=test_source or None)  # before features: seconds, not minutes
        matrix = load_feature_matrix(data_dir, feature_set, n_jobs=-1, cache_dir=default_cache_dir(),
                                     progress=lambda fraction, message: progress(0.5 * fraction, message))
        report = run_evaluation(matrix, split=split, test_source=test_source or None, repeats=repeats,
                                select_k=select_k, preset=preset, n_jobs=-1,
                                progress=lambda fraction, message: progress(0.5 + 0.5 * fraction, message))
        while len(done) >= MAX_KEPT_RUNS:
            done.pop(next(iter(done)))
        done[parameters] = add_consensus(report, feature_set)
    return done[parameters]


def add_consensus(report: EvaluationReport, feature_set: str) -> EvaluationReport:
    """The consensus at the saved threshold, when this run used the saved models' settings (else unchanged)."""
    try:
        model = load_model()
    except ModelLoadError:
        return report
    settings = model.report
    if settings.get("classes"):  # a three-class saved model: its operating point is in the site evaluation
        return report
    if (feature_set, report.select_k, report.preset) != (settings.get("feature_set"), settings.get("select_k"),
                                                         settings.get("preset")):
        return report
    return with_consensus(report, model.calibrator, model.flag_rule)


def score_table(report: EvaluationReport) -> pd.DataFrame:
    """One row per model × stage, each metric as "mean ± sd" text."""
    table = report.table()
    shown = pd.DataFrame({"model": table["model"], "stage": table["stage"].map(STAGE_LABELS)})
    for metric in SHOWN_METRICS:
        shown[METRIC_LABELS.get(metric, metric)] = [
            f"{value:.3f}" + ("" if math.isnan(sd) else f" ± {sd:.3f}")
            for value, sd in zip(table[metric], table[f"{metric}_sd"])]
    return shown


def selection_table(report: EvaluationReport) -> pd.DataFrame:
    """Features kept after selection: in how many repeats each model kept each feature."""
    counts = {result.model: result.selection_counts for result in report.results
              if result.stage == "after" and result.selection_counts}
    frame = pd.DataFrame(counts).fillna(0).astype(int)
    if frame.empty:
        return frame
    frame = frame.loc[frame.sum(axis=1).sort_values(ascending=False).index]
    return frame.rename_axis(f"feature (repeats kept, of {report.repeats})").reset_index()


SOURCE_CHECK_NOTE = (
    "**Shortcut check.** Trained on the other hospitals, tested on one held-out hospital. An AUC near or below 0.5 "
    "means the models learned the hospital, not the disease: on the reference data no feature set passes this "
    "check, so the other splits overstate what the models would do in a new hospital. With about 30 test images "
    "an AUC is uncertain by about ±0.2.")


def show_report(report: EvaluationReport, key: str) -> None:
    if report.split == "source":
        st.warning(SOURCE_CHECK_NOTE)
    st.dataframe(score_table(report), hide_index=True, width="stretch")
    st.caption("AUC: mean over repeats; other scores: predictions pooled over repeats; ± sd over repeats. "
               "COVID-19 is the positive class. Consensus (when shown): the four models' calibrated mean at the "
               "saved flag threshold — what the app uses; each model alone at probability 0.5.")
    metric = st.segmented_control("Metric", SHOWN_METRICS, default="AUC", key=f"{key}_metric",
                                  format_func=lambda m: METRIC_LABELS.get(m, m)) or "AUC"
    table = report.table().assign(stage=lambda t: t["stage"].map(STAGE_LABELS))
    st.plotly_chart(charts.metric_bars(table, metric, METRIC_LABELS.get(metric, metric)), key=f"{key}_bars",
                    width="stretch")
    selected = selection_table(report)
    if not selected.empty:
        st.markdown("**Features kept by information-gain selection** (per model, over the repeats)")
        st.dataframe(selected, hide_index=True, width="stretch")


def show_final_features() -> None:
    """The features each saved final model uses (from the training report)."""
    try:
        report = read_report(default_models_dir())
    except ModelLoadError:
        return
    chosen = report.get("consensus", {}).get("selected_features", {})
    if chosen:
        with st.expander("Features used by the saved final models"):
            st.dataframe(pd.DataFrame({model: pd.Series(names) for model, names in chosen.items()}),
                         hide_index=True, width="stretch")


def evaluation_form() -> None:
    with st.form("comparison_form"):
        left, middle, right = st.columns(3)
        data_dir = left.text_input("Data set folder", value=str(default_data_dir()), key="comparison_data_dir")
        feature_set = middle.selectbox("Feature set", MODEL_FEATURE_SETS, index=MODEL_FEATURE_SETS.index("both"),
                                       key="comparison_feature_set")
        select_k = right.number_input("Selected features (0 = no selection)", min_value=0, max_value=500, value=10,
                                      step=1, key="comparison_select_k")
        split = left.selectbox("Split", SPLITS, key="comparison_split",
                               help="patient: no patient on both sides; random: as the original study; "
                                    "source: train on some sources, test on a held-out one; site: "
                                    "leave-one-site-out")
        repeats = middle.number_input("Repeats", min_value=2, max_value=50, value=10, step=1, key="comparison_repeats")
        test_source = right.text_input("Held-out source (source split only)", key="comparison_test_source")
        preset = left.selectbox("Preset", ("tuned", "orange"), key="comparison_preset",
                                format_func=lambda p: "orange — the study's reproduction" if p == "orange" else p)
        submitted = st.form_submit_button("Run the evaluation", type="primary")
    if not submitted:
        return
    bar = st.progress(0.0, text="reading features…")
    parameters = (data_dir.strip(), feature_set, int(select_k) or None, split, int(repeats),
                  test_source.strip() if split == "source" else "", preset)
    try:
        report = run_comparison(parameters, lambda fraction, message: bar.progress(min(max(fraction, 0.0), 1.0),
                                                                                    text=message))
    except (DatasetError, ValueError, OSError) as exc:
        bar.empty()
        st.error(f"The evaluation could not run: {plain(exc)}")
        return
    bar.empty()
    study = "the study's reproduction: " if preset == "orange" else ""
    label = f"{study}{split} split, {feature_set} features, k={parameters[2]}, {repeats} repeats ({parameters[0]})"
    st.session_state.setdefault(CUSTOM_RUNS_KEY, {})[label] = report
    st.session_state["comparison_last_run"] = label


def show_site_evaluation() -> None:
    """Leave-one-site-out, within-site contrasts, flag rates and the site-shift check of the saved model."""
    st.header("How it holds up at a hospital it has never seen")
    result = default_site_evaluation()
    if result is None:
        st.info("The saved model has no site evaluation yet: retrain it with `python -m core train` (it chooses the "
                "model leave-one-site-out and saves site-evaluation.json), or run `python -m core contrasts`.")
        return
    tables = site_tables(result)
    missed = targets_not_met(result)
    if missed:
        st.error("**Targets not met.** " + " ".join(f"{line}." for line in missed)
                 + " The tool is not validated for hospitals it was not trained on.")
    st.markdown(f"Three classes (Normal / other pneumonia / COVID-19), recipe **{result['recipe']['name']}** "
                f"({result['recipe']['description']}), {result['n_images']} images from {result['n_patients']} "
                f"patients at {result['n_sites']} sites. *Leave-one-site-out*: each site in turn is predicted by "
                "models trained on the other sites only. 95 % CIs: bootstrap over patients.")
    st.dataframe(tables["targets"], hide_index=True, width="stretch")
    st.markdown("**AUC per question**")
    st.dataframe(tables["tasks"], hide_index=True, width="stretch")
    st.markdown("**Within-site contrasts** — pairs of films from the same site only: a model that recognises the "
                "hospital cannot score here")
    st.dataframe(tables["within_site"], hide_index=True, width="stretch")
    with st.expander("AUC per left-out site (— where the site holds one class)"):
        st.dataframe(tables["per_site"], width="stretch")
    st.markdown(f"**Flag rates** (threshold {result['flag_rule']['threshold']:.3f}, chosen for "
                f"{result['flag_rule']['target_sensitivity']:.0%} sensitivity on patient-held-out predictions)")
    st.dataframe(tables["flags"], hide_index=True, width="stretch")
    if not tables["shift"].empty:
        st.markdown("**Site-shift warning** (\"this film looks unlike the hospitals the model was trained on\") "
                    "fires on")
        st.dataframe(tables["shift"], hide_index=True, width="stretch")
    if "candidates" in result:
        st.caption("Default model chosen leave-one-site-out among: " + ", ".join(
            f"{name} (score {c['selection_score']:.3f})" for name, c in result["candidates"].items())
                   + f" → {result['chosen_recipe']}.")


st.title("Model comparison")
show_site_evaluation()
st.header("Random and patient splits (hospitals known)")
st.caption("The study's four models on COVID-19 vs Normal. Evaluations with preset 'orange' are the study's "
           "reproduction (its Orange workflow).")
saved_tab, run_tab = st.tabs(["Evaluations", "Run an evaluation"])
with run_tab:
    st.caption("Runs the repeated evaluation on a data set folder (manifest.csv or class sub-folders). Features "
               "come from the per-image cache when available; results are kept for this session and are also "
               "offered on the ROC and Confusion pages.")
    evaluation_form()
    last = st.session_state.get("comparison_last_run")
    if last:
        st.success(f"Finished: {plain(last)}")
        show_report(st.session_state[CUSTOM_RUNS_KEY][last], key="comparison_run")
with saved_tab:
    chosen = choose_report("comparison_report")
    if chosen is not None:
        show_report(chosen, key="comparison_saved")
    show_final_features()
