"""Helpers for the dashboard tests: an isolated app environment and an AppTest on one page."""

from __future__ import annotations

import base64
import re
import json
from pathlib import Path

import numpy as np
import plotly.graph_objects as go
import pytest
from streamlit.testing.v1 import AppTest

from core.paths import default_models_dir

REPO_ROOT = Path(__file__).resolve().parent.parent
APP = REPO_ROOT / "dashboard" / "app.py"
# First runs import the scientific stack and may load the models: generous, the tests stay well under it.
TIMEOUT_S = 120


def isolate_app(monkeypatch: pytest.MonkeyPatch, tmp_path: Path, models_dir: Path | None = None) -> str:
    """Point the app's writable folder and worklist at tmp_path (and optionally the models folder); return the URL."""
    url = f"sqlite:///{(tmp_path / 'worklist.db').as_posix()}"
    monkeypatch.setenv("CXR_APP_DATA", str(tmp_path / "app-data"))
    monkeypatch.setenv("CXR_WORKLIST_URL", url)
    if models_dir is not None:
        monkeypatch.setenv("CXR_MODELS", str(models_dir))
    return url


def require_default_model() -> None:
    """Skip unless the trained models the app uses (models/default, or $CXR_MODELS) exist."""
    report = default_models_dir() / "report.json"
    if not report.is_file():
        pytest.skip(f"no trained default model ({report} is absent); create it with "
                    f"`python -m core train --data ../shared/data/cxr --out {default_models_dir()}`")


def open_page(page: str | None = None) -> AppTest:
    """Run the app, then (optionally) switch to ``pages/<page>.py`` and run again."""
    app = AppTest.from_file(str(APP), default_timeout=TIMEOUT_S)
    if page is not None:
        app.switch_page(f"pages/{page}.py")
    app.run()
    assert not app.exception, [e.value for e in app.exception]
    return app


def _decode_typed_arrays(value):
    """Plotly sends numpy arrays as {"dtype", "bdata" (base64), "shape"}; turn them back into arrays."""
    if isinstance(value, dict):
        if "bdata" in value and "dtype" in value:
            array = np.frombuffer(base64.b64decode(value["bdata"]), dtype=value["dtype"])
            shape = value.get("shape")
            return array.reshape([int(n) for n in str(shape).split(",")]) if shape else array
        return {key: _decode_typed_arrays(item) for key, item in value.items()}
    if isinstance(value, list):
        return [_decode_typed_arrays(item) for item in value]
    return value


def plotly_figures(app: AppTest) -> list[go.Figure]:
    """The Plotly figures on the page, rebuilt from the JSON specs sent to the browser (arrays decoded)."""
    return [go.Figure(_decode_typed_arrays(json.loads(element.proto.spec))) for element in app.get("plotly_chart")]


def shown(markdown: object) -> str:
    """The text a reader sees of a markdown source: backslash-escaped punctuation (dashboard.text.plain) unescaped."""
    return re.sub(r"\\([!-/:-@\[-`{-~])", r"\1", str(markdown))


def texts(app: AppTest) -> str:
    """All markdown, captions, metrics, alerts and titles of the page as one string (for `in` checks), as shown."""
    parts = [e.value for kind in ("markdown", "caption", "title", "header", "subheader", "success", "info",
                                  "warning", "error") for e in getattr(app, kind)]
    parts += [f"{m.label} {m.value}" for m in app.metric]
    return shown("\n".join(map(str, parts)))
