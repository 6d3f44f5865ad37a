"""Who is reviewing: the login's identity when the app runs behind Streamlit's OpenID Connect login, otherwise a
name typed once per session.

A login is configured with an ``[auth]`` section in ``.streamlit/secrets.toml`` (Streamlit's ``st.login`` /
``st.user``; it needs the Authlib package). Then only a signed-in user can save or change a case, and the name
recorded in the worklist and its audit trail is the login's (source "login"). Without a login the reviewer types a
name once per session (source "typed": recorded, but not verified).
"""

from __future__ import annotations

import importlib.util
from dataclasses import dataclass

import streamlit as st

from dashboard.text import plain

TYPED_NAME_KEY = "identity_name"  # survives page switches: not a widget key


@dataclass(frozen=True)
class Reviewer:
    name: str
    source: str  # "login" or "typed" (see core.worklist.migration_4.IDENTITY_SOURCES)

    def describe(self) -> str:
        return f"{self.name} (signed in)" if self.source == "login" else f"{self.name} (typed, not verified)"


def login_configured() -> bool:
    """Whether secrets.toml configures a login: ``st.user`` then carries ``is_logged_in``."""
    try:
        return "is_logged_in" in st.user
    except Exception:  # st.user outside a session, or a malformed secrets file: no login
        return False


def current_reviewer() -> Reviewer | None:
    """The signed-in user, or the name typed in this session; None when neither is known yet."""
    if login_configured():
        if not st.user.get("is_logged_in"):
            return None
        name = st.user.get("email") or st.user.get("name") or st.user.get("sub")
        return Reviewer(str(name), "login") if name else None
    name = st.session_state.get(TYPED_NAME_KEY, "")
    return Reviewer(name, "typed") if name else None


def _use_typed_name() -> None:
    st.session_state[TYPED_NAME_KEY] = st.session_state.get("identity_name_input", "").strip()


def _forget_typed_name() -> None:
    st.session_state[TYPED_NAME_KEY] = ""


def reviewer_sidebar() -> Reviewer | None:
    """The reviewer block of the sidebar: sign in / out, or type a name once; returns the current reviewer."""
    reviewer = current_reviewer()
    with st.sidebar:
        if login_configured():
            if reviewer is not None:
                st.caption(f"Reviewer: **{plain(reviewer.name)}** (signed in)")
                st.button("Log out", key="identity_logout", on_click=st.logout)
            elif importlib.util.find_spec("authlib") is None:
                st.error("A login is configured in .streamlit/secrets.toml, but the Authlib package it needs is "
                         "not installed (`pip install 'Authlib>=1.3.2'`).")
            else:
                st.caption("Log in to save or change cases.")
                st.button("Log in", key="identity_login", on_click=st.login, type="primary")
        elif reviewer is not None:
            st.caption(f"Reviewer: **{plain(reviewer.name)}** (typed, not verified)")
            st.button("Change name", key="identity_change", on_click=_forget_typed_name)
        else:
            st.text_input("Your name (asked once per session; recorded with every case you save or change)",
                          key="identity_name_input", on_change=_use_typed_name, max_chars=128)
    return reviewer


def require_reviewer_note() -> str:
    """What to do when no reviewer is known (shown where a save is refused)."""
    if login_configured():
        return "Log in first (sidebar): cases are saved under the login's name."
    return "Enter your name in the sidebar first: it is recorded with the case."
