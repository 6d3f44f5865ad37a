"""What the pages share: cached loaders for the model (with the site calibration in use), the worklist store and the
saved evaluation reports, and the first-start screen that trains the default model when there is none.

Caching rules: objects that hold live state (the fitted models, the database engine) are ``st.cache_resource``,
one per process (the models load in a background thread, so a page can be drawn while they load); tables and
reports are ``st.cache_data``. Every cache key includes what would make the cached
value stale (the models folder's ``report.json`` modification time, the database URL).
"""

from __future__ import annotations

import json
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path

import streamlit as st

from core.evaluation.evaluate import EvaluationReport
from core.learn.artifacts import REPORT_NAME, ModelLoadError
from core.learn.site_profile import SiteProfile, SiteProfileError, load_site_profile
from core.paths import default_cache_dir, default_data_dir, default_models_dir, default_site_profile
from core.triage.model import Prediction, TriageModel
from core.triage.reliability import cross_hospital_check
from core.workflow import SITE_EVALUATION_FILE, evaluation_file_name, train
from core.worklist.site_profiles import SiteProfileRegistry
from core.worklist.store import WorklistError, WorklistStore, default_database_url
from dashboard.text import plain

DISCLAIMER = ("**Research use only.** This tool supports, and does not replace, a radiologist's reading "
              "of the image. Not a medical device.")


def _file_stamp(path: Path) -> float:
    """Modification time of a file, 0 when it is not there: part of the cache key of what is read from it."""
    return path.stat().st_mtime if path.is_file() else 0.0


def models_stamp(models_dir: Path) -> float:
    """Modification time of the models folder's report (0 when there is none): part of every cache key."""
    return _file_stamp(Path(models_dir) / REPORT_NAME)


@st.cache_resource(show_spinner=False, max_entries=2)
def _model_loader(models_dir: str, stamp: float) -> Future:
    """Loading of the models in a background thread, started once per models folder and process."""
    # the site profile is applied per run (load_model): it can change while the models stay loaded
    loader = ThreadPoolExecutor(max_workers=1, thread_name_prefix="load-models")
    return loader.submit(TriageModel.load, models_dir, use_environment=False)


def _clear_model_cache() -> None:
    _model_loader.clear()


def models_present() -> bool:
    """Whether the default models folder has a training report (cheap: nothing is loaded)."""
    return (default_models_dir() / REPORT_NAME).is_file()


def preload_model() -> None:
    """Start loading the models without waiting: the first page is drawn meanwhile, the first upload finds them."""
    models_dir = default_models_dir()
    _model_loader(str(models_dir), models_stamp(models_dir))


def load_base_model() -> TriageModel:
    """The default models without any site calibration (what a site profile is fitted on)."""
    models_dir = default_models_dir()
    loader = _model_loader(str(models_dir), models_stamp(models_dir))
    if not loader.done():
        with st.spinner("Loading the models…"):
            return loader.result()
    return loader.result()


def site_profile_registry() -> SiteProfileRegistry | None:
    """The stored site profiles (worklist database); None after showing why the database cannot be opened."""
    store = open_worklist()
    return SiteProfileRegistry(store) if store is not None else None


@st.cache_resource(show_spinner=False, max_entries=4)
def _site_profile_file(path: str, stamp: float) -> SiteProfile:
    """A site profile file, read and checked once per version of the file (not on every rerun of a page)."""
    return load_site_profile(path)


def active_site_profile() -> tuple[str, SiteProfile] | None:
    """Where the site profile in use comes from and the profile: ``$CXR_SITE_PROFILE`` when set (deployment
    override), else the version activated on the Site validation page; None when there is none.

    Raises :class:`SiteProfileError` / :class:`WorklistError` when it cannot be read.
    """
    path = default_site_profile()
    if path is not None:
        return f"CXR_SITE_PROFILE={path}", _site_profile_file(str(path), _file_stamp(Path(path)))
    registry = site_profile_registry()
    found = registry.active() if registry is not None else None
    return (f"version {found[0]}, activated on the Site validation page", found[1]) if found else None


def load_model() -> TriageModel:
    """The default models (``core.paths.default_models_dir()``) with the site calibration in use; raises
    :class:`ModelLoadError`. A site profile that cannot be applied (other models, unreadable) is shown as a warning
    and left out: verdicts then say "not validated at this site"."""
    model = load_base_model()
    try:
        active = active_site_profile()
        return model.with_site_profile(active[1]) if active else model
    except (SiteProfileError, WorklistError) as exc:
        st.warning(f"The site calibration is not applied: {exc}")
        return model


def model_version(model: TriageModel) -> str:
    """What produced a risk (recorded by the worklist, keys this session's predictions): folder name, training time,
    and the site profile's id when one is applied."""
    version = f"{model.models_dir.name}@{model.report.get('created', '?')}"
    return version + (f"+site:{model.site_profile.short_id}" if model.site_profile is not None else "")


def require_model() -> TriageModel:
    """The model, or (first start, or unusable models) the message, the command and a button that trains it.

    Stops the page when there is no model, so a page can simply call this first.
    """
    try:
        return load_model()
    except ModelLoadError as exc:
        problem = str(exc)
    st.error(f"The models cannot be used: {plain(problem)}")
    command = f"python -m core train --data {default_data_dir()} --out {default_models_dir()}"
    st.markdown("Create them from the reference data with this command (from the repository folder):")
    st.code(command, language="bash")
    if not default_data_dir().is_dir():
        st.warning(f"The reference data folder {default_data_dir()} does not exist; set CXR_DATA to a data set.")
    elif st.button("Train the default model now", type="primary", key="state_train_button",
                   help="Extracts features, chooses the model leave-one-site-out, fits and evaluates it; takes several minutes."):
        bar = st.progress(0.0, text="starting")
        try:
            report = train(default_data_dir(), default_models_dir(), cache_dir=default_cache_dir(),
                           progress=lambda fraction, message: bar.progress(min(max(fraction, 0.0), 1.0), text=message))
        except Exception as exc:  # any failure is shown as a message: the page must stay usable
            st.error(f"Training failed: {plain(exc)}")
        else:
            _clear_model_cache()
            saved_evaluations.clear()
            st.success(f"Saved to {default_models_dir()}: threshold {report['consensus']['threshold']:.3f}.")
            st.rerun()
    st.stop()


@st.cache_resource(show_spinner=False, max_entries=4)
def _cached_store(url: str) -> WorklistStore:
    return WorklistStore(url)


def open_worklist() -> WorklistStore | None:
    """The worklist store for ``$CXR_WORKLIST_URL`` (or the default SQLite file); None after showing why not."""
    try:  # the default URL creates the app's data folder, which may not be writable
        return _cached_store(default_database_url())
    except WorklistError as exc:
        st.error(f"The worklist database cannot be opened: {plain(exc)}")
    except Exception as exc:  # e.g. PostgreSQL unreachable: SQLAlchemy's OperationalError
        st.error(f"The worklist database cannot be opened ({type(exc).__name__}): {plain(exc)}. "
                 "Check CXR_WORKLIST_URL and that the database server is running.")
    return None


@st.cache_data(show_spinner="Reading the saved evaluation reports…", max_entries=4)
def saved_evaluations(models_dir: str, stamp: float) -> dict[str, EvaluationReport]:
    """The evaluation reports the training run saved beside the models, by split type (may be empty)."""
    reports = {}
    for split in ("patient", "random", "source"):  # the study models' reports (the site evaluation has its own file)
        path = Path(models_dir) / evaluation_file_name(split)
        if path.is_file():
            reports[split] = EvaluationReport.from_json(path)
    return reports


@st.cache_data(show_spinner=False, max_entries=4)
def saved_site_evaluation(models_dir: str, stamp: float) -> dict | None:
    """The site evaluation the training run saved (leave-one-site-out, within-site, flags, shift), or None."""
    path = Path(models_dir) / SITE_EVALUATION_FILE
    return json.loads(path.read_text()) if path.is_file() else None


def default_site_evaluation() -> dict | None:
    models_dir = default_models_dir()
    return saved_site_evaluation(str(models_dir), models_stamp(models_dir))


def default_evaluations() -> dict[str, EvaluationReport]:
    models_dir = default_models_dir()
    return saved_evaluations(str(models_dir), models_stamp(models_dir))


def cross_hospital_warning() -> None:
    """The saved cross-hospital check, where figures from within-hospital splits are shown (when it failed)."""
    check = cross_hospital_check(default_evaluations().get("source"))
    if check is not None and not check.passed:
        st.warning(f"**Cross-hospital check.** Trained on the other hospitals, the models {check.describe()}. "
                   "Figures from the patient and random splits overstate what the models would do in a new "
                   "hospital: they may have learned the hospital, not the disease.")


def prediction_cache() -> dict[str, Prediction]:
    """Predictions of this session keyed by (model version, file SHA-256): a page switch never rescores."""
    return st.session_state.setdefault("review_predictions", {})


def predictions_by_image_sha() -> dict[str, Prediction]:
    """This session's readable predictions keyed by the image's SHA-256 (what the worklist stores)."""
    return {p.sha256: p for p in prediction_cache().values() if p.error is None and p.sha256}


STAGE_LABELS = {"before": "before selection (all features)", "after": "after feature selection"}
CUSTOM_RUNS_KEY = "comparison_runs"  # evaluations run from the Model comparison page in this session


def describe_report(report: EvaluationReport) -> str:
    """One line saying how a report was made: split, repeats, images, patients, held-out source."""
    held_out = report.split_description.get("test_source")
    study = "the study's reproduction (Orange workflow, preset orange) — " if report.preset == "orange" else ""
    return (f"{study}{report.split} split{f' (held-out source: {held_out})' if held_out else ''}, {report.repeats} repeats, "
            f"{report.train_size:.0%} training, {report.n_images} images"
            + (f" from {report.n_patients} patients" if report.n_patients else "")
            + f", {report.n_features} features, preset {report.preset}, "
            + (f"{report.select_k} selected by information gain" if report.select_k else "no feature selection"))


def choose_report(key: str) -> EvaluationReport | None:
    """A select box over the saved evaluation reports and this session's own runs; None (with a note) if none."""
    options = {f"saved: {split} split": report for split, report in default_evaluations().items()}
    own_runs = st.session_state.get(CUSTOM_RUNS_KEY, {})
    options.update({f"your run: {label}": report for label, report in own_runs.items()})
    if not options:
        st.info("No evaluation to show yet. Train the default model (it saves the evaluation reports), e.g. "
                f"`python -m core train --data {default_data_dir()} --out {default_models_dir()}`, "
                "or run one on the Model comparison page.")
        return None
    label = st.selectbox("Evaluation", list(options), key=key)
    report = options[label]
    st.caption(describe_report(report))
    return report
