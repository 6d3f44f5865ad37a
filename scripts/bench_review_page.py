"""Server time of the Review page, as felt (issue: upload -> verdict <= 1 s for one film; first page <= 3 s).

Runs the real app in Streamlit's AppTest (the same script runs a browser session triggers, without the network
and the browser's drawing) and prints the seconds of each script run:

- first run in a fresh process (imports, loading the models, drawing the empty Review page);
- one film uploaded (reading, scoring, drawing verdict and viewer), and the film's scoring alone;
- a Window/Level change (redraw only);
- a batch of 10 films (all scored and drawn), and the scoring alone per film.

Usage (from the repository root; reference data in ../shared/data/cxr or $CXR_DATA):
    PYTHONPATH=$PWD python scripts/bench_review_page.py [--repeats 3]
The machine's load average is printed too: on a shared machine, compare figures taken at similar load.
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time
from pathlib import Path

import pandas as pd

from core.paths import default_data_dir

APP = Path(__file__).resolve().parent.parent / "dashboard" / "app.py"


def timed(function) -> float:
    started = time.perf_counter()
    function()
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    os.environ.setdefault("CXR_APP_DATA", tempfile.mkdtemp(prefix="bench-review-"))
    os.environ.setdefault("CXR_WORKLIST_URL", f"sqlite:///{os.environ['CXR_APP_DATA']}/worklist.db")
    manifest = pd.read_csv(default_data_dir() / "manifest.csv")
    files = [default_data_dir() / "images" / name
             for name in manifest[manifest.label.isin(["COVID-19", "Normal"])]["file"].iloc[: 10 + args.repeats]]

    started = time.perf_counter()
    from streamlit.testing.v1 import AppTest  # noqa: E402  (part of the cold start)

    app = AppTest.from_file(str(APP), default_timeout=300)
    app.run()
    figures = {"first run (cold: imports, models, empty page)": time.perf_counter() - started}

    from dashboard.state import load_model  # the page's cached model (already loaded by the first run)

    model = load_model()
    single, scoring, redraw = [], [], []
    for path in files[10:]:
        content = path.read_bytes()
        scoring.append(timed(lambda: model.predict(content, path.name)))
        single.append(timed(lambda: app.file_uploader(key="review_uploader")
                            .set_value([(path.name, content, "image/png")]).run()))
        assert not app.exception, [e.value for e in app.exception]
        redraw.append(timed(lambda: app.slider(key="review_window").set_value(60).run()))
        app.slider(key="review_window").set_value(100)
    figures["upload -> verdict, 1 film (whole page run), median"] = statistics.median(single)
    figures["  of which scoring the film (model.predict), median"] = statistics.median(scoring)
    figures["Window/Level change (redraw), median"] = statistics.median(redraw)
    batch = [(path.name, path.read_bytes(), "image/png") for path in files[:10]]
    figures["batch of 10 (whole page run)"] = timed(lambda: app.file_uploader(key="review_uploader")
                                                    .set_value(batch).run())
    for name, seconds in figures.items():
        print(f"{name:<58} {seconds:6.2f} s")
    print(f"{'load average (1 min) on this machine':<58} {os.getloadavg()[0]:6.2f}")


if __name__ == "__main__":
    main()
