"""Untrusted text for Streamlit's markdown elements (errors, warnings, captions, subheaders ...).

File names, DICOM header values, patient ids, reviewer names and notes come from outside. Streamlit renders these
elements as markdown: ``![x](http://host/x.png)`` in a header makes the reader's browser fetch that address,
``[text](url)`` becomes a link, ``**`` bold, ``:red[...]`` colour. :func:`plain` escapes every ASCII punctuation
character with a backslash (CommonMark renders an escaped character as itself), so the text shows exactly as
written and nothing in it is markup.
"""

from __future__ import annotations

import re

_PUNCTUATION = re.compile(r"([!-/:-@\[-`{-~])")  # every ASCII punctuation character


def plain(text: object) -> str:
    """``text`` (any object, through ``str``) escaped so that markdown shows it literally."""
    return _PUNCTUATION.sub(r"\\\1", str(text))
