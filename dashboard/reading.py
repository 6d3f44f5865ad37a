"""The three-class reading of one image in words, beside its percentages (drawn on the Review page)."""

from __future__ import annotations

import streamlit as st

from core.triage.model import Prediction

# No colour reads as "safe": "no pneumonia seen" is plain grey (a low probability does not rule disease out).
READING_COLOURS = {"no pneumonia seen": "gray", "pneumonia, not typical of COVID-19": "orange",
                   "COVID-19 pattern": "red"}


def draw_reading(prediction: Prediction) -> None:
    """'COVID-19 pattern' / 'pneumonia, not typical of COVID-19' / 'no pneumonia seen' with P(pneumonia), P(COVID-19)."""
    if prediction.pneumonia is None or prediction.reading is None:
        return
    colour = READING_COLOURS.get(prediction.reading, "gray")
    st.markdown(f"#### :{colour}[{prediction.reading}]")
    st.markdown(f"pneumonia (any) **{100 * prediction.pneumonia:.0f}%** · COVID-19 **{100 * prediction.risk:.0f}%**")
    st.caption("Most probable of three: no pneumonia / pneumonia not typical of COVID-19 / COVID-19 pattern. "
               "Not validated at hospitals the model was not trained on: at an unseen hospital most Normal films "
               "are flagged (see Model comparison, 'How it holds up at a hospital it has never seen').")
