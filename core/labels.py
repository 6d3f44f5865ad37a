"""The label vocabulary: the positive class, the negative class, and how raw label spellings map onto them.

Every stage that needs "which label is positive" imports it from here, so the rule has one home.
"""

from __future__ import annotations

import re

import numpy as np

LABEL_COVID = "COVID-19"
LABEL_NORMAL = "Normal"
LABEL_PNEUMONIA = "Pneumonia"
"""Pneumonia other than COVID-19 (e.g. the NIH "Pneumonia" films): the positive class of the pneumonia figures."""

_COVID_ALIASES = {"covid", "covid19", "covid-19", "covid_19", "covid 19", "sars-cov-2", "coronavirus"}
_NORMAL_ALIASES = {"normal", "no finding", "no_finding", "no findings", "no_findings", "nofinding", "healthy",
                   "negative"}


def normalise_label(raw: object) -> str:
    """Map a label spelling to ``COVID-19``, ``Normal`` or a tidy name of another finding."""
    text = str(raw).strip()
    key = re.sub(r"\s+", " ", text.lower())
    if key in _COVID_ALIASES:
        return LABEL_COVID
    if key in _NORMAL_ALIASES:
        return LABEL_NORMAL
    return text

POSITIVE_LABEL = LABEL_COVID
"""The class the binary classifiers score (target 1); its probability is the COVID-19 risk."""

BINARY_LABELS = (LABEL_NORMAL, LABEL_COVID)
"""The two classes of the study's question, indexed by the binary target (0 = Normal, 1 = COVID-19)."""

LABEL_OTHER_PNEUMONIA = "other pneumonia"
"""Every finding other than COVID-19 and Normal (bacterial, viral, fungal pneumonias, SARS, ARDS, ...)."""

TRIAGE_CLASSES = (LABEL_NORMAL, LABEL_OTHER_PNEUMONIA, LABEL_COVID)
"""The three classes the triage model is trained on, indexed by the three-class target (0, 1, 2)."""

TASKS = {
    "covid-vs-normal": (LABEL_COVID, LABEL_NORMAL),
    "pneumonia-vs-normal": (LABEL_OTHER_PNEUMONIA, LABEL_NORMAL),
    "covid-vs-pneumonia": (LABEL_COVID, LABEL_OTHER_PNEUMONIA),
}
"""Two-class questions, (positive, negative): ``evaluate --task`` and the site evaluation use these."""

READING_WORDS = {
    LABEL_NORMAL: "no pneumonia seen",
    LABEL_OTHER_PNEUMONIA: "pneumonia, not typical of COVID-19",
    LABEL_COVID: "COVID-19 pattern",
}
"""What the Review page and ``predict`` say for the most probable of the three classes."""


def triage_class(label: object) -> str:
    """The triage class of a normalised label: ``Normal``, ``COVID-19`` or ``other pneumonia`` (any other finding)."""
    text = str(label)
    return text if text in (LABEL_NORMAL, LABEL_COVID) else LABEL_OTHER_PNEUMONIA


def three_class_target(labels) -> np.ndarray:
    """Labels as int {0 Normal, 1 other pneumonia, 2 COVID-19} (index into :data:`TRIAGE_CLASSES`)."""
    return np.array([TRIAGE_CLASSES.index(triage_class(label)) for label in np.asarray(labels).ravel()], dtype=int)


def task_classes(task: str) -> tuple[str, str]:
    """(positive, negative) triage classes of a task name, with a clear error for an unknown one."""
    if task not in TASKS:
        raise ValueError(f"unknown task {task!r}; choose one of {', '.join(TASKS)}")
    return TASKS[task]


def reading_in_words(pneumonia: float, risk: float) -> str:
    """Words for the most probable class, from P(any pneumonia) and P(COVID-19) (both in [0, 1]).

    P(Normal) = 1 - pneumonia, P(other pneumonia) = pneumonia - risk, P(COVID-19) = risk.
    """
    probabilities = {LABEL_NORMAL: 1.0 - pneumonia, LABEL_OTHER_PNEUMONIA: pneumonia - risk, LABEL_COVID: risk}
    return READING_WORDS[max(probabilities, key=probabilities.get)]
