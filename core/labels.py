"""The label vocabulary: the positive class, the negative class, and how raw label spellings map onto them.

Every stage that needs "which label is positive" imports it from here, so the rule has one home.
"""

from __future__ import annotations

import re

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
