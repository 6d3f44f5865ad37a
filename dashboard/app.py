"""The clinician dashboard: ``streamlit run dashboard/app.py`` from the repository folder.

One entrypoint, one page module per task in ``dashboard/pages/``. Pages draw; all science is in ``core``.
"""

from __future__ import annotations

import streamlit as st

from dashboard.identity import reviewer_sidebar
from dashboard.state import DISCLAIMER  # core and dashboard are installed by requirements.txt (`-e .`)

st.set_page_config(page_title="CXR COVID-19 triage", page_icon="🫁", layout="wide")

PAGES = [
    st.Page("pages/review.py", title="Review", icon=":material/upload_file:", default=True),
    st.Page("pages/model_comparison.py", title="Model comparison", icon=":material/leaderboard:"),
    st.Page("pages/roc_curves.py", title="ROC curves", icon=":material/show_chart:"),
    st.Page("pages/confusion_matrices.py", title="Confusion matrices", icon=":material/grid_on:"),
    st.Page("pages/worklist.py", title="Worklist", icon=":material/checklist:"),
    st.Page("pages/progression.py", title="Patient progression", icon=":material/timeline:"),
    st.Page("pages/site_validation.py", title="Site validation", icon=":material/verified:"),
]

navigation = st.navigation(PAGES)
st.sidebar.caption(DISCLAIMER)
reviewer_sidebar()  # who saves and changes cases: the login's user, or a name typed once per session
navigation.run()
