"""The one progress-callback type every long-running step accepts (CLI progress line, Streamlit progress bar)."""

from __future__ import annotations

from collections.abc import Callable

Progress = Callable[[float, str], None]
"""``progress(fraction, message)``: ``fraction`` in [0, 1] of the work done, ``message`` says what is running."""
