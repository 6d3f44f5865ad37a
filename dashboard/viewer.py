"""The film viewer of the Review page: Window and Level, zoom (drag a box, scroll, double-click to reset), the
original beside the overlay of lung outline and zone grades with its opacity, R/L markers, the grade legend and
the mask-quality warning. PNG, JPEG, TIFF and DICOM films are shown the same way (a DICOM arrives with its own
VOI window applied; Window/Level then adjusts that display)."""

from __future__ import annotations

import numpy as np
import streamlit as st

from core.lungs.zones import ZONE_NAMES
from core.triage.model import Prediction
from core.worklist.review_data import MAX_ZONE_GRADE
from dashboard import charts
from dashboard.overlay import apply_window, display_copy, grade_colour, grey_rgb, overlay_rgb

GRADE_WORDS = ("none", "interstitial", "interstitial + alveolar (interstitial predominant)", "alveolar predominant")
GRADE_LEGEND = ("none", "interstitial", "interstitial + alveolar", "alveolar predominant")  # short, for the film
DEFAULT_WINDOW, DEFAULT_LEVEL, DEFAULT_OPACITY = 100, 50, 60  # percent of the display range / of full strength
_CONTROL_KEYS = {"review_window": DEFAULT_WINDOW, "review_level": DEFAULT_LEVEL, "review_overlay": True,
                 "review_opacity": DEFAULT_OPACITY}


def _reset_controls() -> None:
    for key, value in _CONTROL_KEYS.items():
        st.session_state[key] = value


def _display_pixels(prediction: Prediction) -> np.ndarray:
    """The display-size copy of the film, made once per film and session (Window/Level redraws reuse it)."""
    copies = st.session_state.setdefault("review_display_copies", {})
    if prediction.sha256 not in copies:
        if len(copies) >= 8:  # bound the session's memory: a display copy is up to 4 MB
            copies.pop(next(iter(copies)))
        copies[prediction.sha256] = display_copy(prediction.image.pixels)
    return copies[prediction.sha256]


def mask_quality_warning(prediction: Prediction) -> str | None:
    """Why the lung outline (and so the zone grades and the corona score) is doubtful, or None."""
    fields = prediction.lung_fields
    if fields is None or fields.quality.get("ok", True):
        return None
    reasons = fields.quality.get("reasons") or [k for k in ("template", "mirrored") if fields.quality.get(k)]
    detail = f" ({', '.join(map(str, reasons))})" if reasons else ""
    return (f"Lung outline doubtful{detail}: check it on the overlay; the zone grades and the corona score "
            "depend on it.")


def grade_legend(opacity: float) -> list[tuple[str, str]]:
    return [(grade_colour(grade, MAX_ZONE_GRADE, opacity), f"grade {grade}: {words}")
            for grade, words in enumerate(GRADE_LEGEND)]


def film_viewer(prediction: Prediction, grades: dict[str, int] | None) -> None:
    """Controls, then the film (and the overlay beside it when there are lung fields)."""
    for key, value in _CONTROL_KEYS.items():
        st.session_state.setdefault(key, value)
    has_overlay = prediction.lung_fields is not None
    window_column, level_column, opacity_column, overlay_column = st.columns([3, 3, 3, 2])
    window = window_column.slider("Window", 1, 100, key="review_window", format="%d%%",
                                  help="Width of the displayed grey range (100 %: the whole film as read)")
    level = level_column.slider("Level", 0, 100, key="review_level", format="%d%%",
                                help="Centre of the displayed grey range")
    overlay = overlay_column.toggle("Overlay", key="review_overlay", disabled=not has_overlay,
                                    help="Lung outline, zone boundaries and zone grades beside the original")
    opacity = opacity_column.slider("Opacity", 0, 100, key="review_opacity", format="%d%%",
                                    disabled=not (overlay and has_overlay))
    overlay_column.button("Reset view", key="review_reset_view", on_click=_reset_controls)
    pixels = apply_window(_display_pixels(prediction), window / 100, level / 100)
    panels = [("Original", grey_rgb(pixels))]
    labels, legend = [], []
    if overlay and has_overlay:
        fields = prediction.lung_fields
        values = [np.nan if grades is None else grades.get(name, np.nan) for name in ZONE_NAMES]
        panels.append(("Lung fields and zone grades (0–3)",
                       overlay_rgb(pixels, fields, zone_values=values, vmax=MAX_ZONE_GRADE, opacity=opacity / 100)))
        if grades is not None:
            positions = charts.zone_label_positions(fields.zones)
            labels = [(x, y, str(grades.get(ZONE_NAMES[zone - 1], "?"))) for zone, (x, y) in positions.items()]
            legend = grade_legend(opacity / 100)
    figure = charts.film_figure(panels, labels, legend)
    st.plotly_chart(figure, key="review_film", width="stretch",
                    config={"scrollZoom": True, "displaylogo": False, "modeBarButtonsToRemove": ["select2d",
                                                                                                "lasso2d"]})
    image = prediction.image
    method = prediction.lung_fields.quality.get("method") if has_overlay else None
    st.caption(f"{image.format}, {image.pixels.shape[1]}×{image.pixels.shape[0]} px"
               + (f"; lung outline by {method}" if method else "") + ". Zoom: drag a box on either side (both "
               "follow), scroll, double-click to reset. R/L: the patient's right is on the image left, as the film "
               "is conventionally displayed.")
    if warning := mask_quality_warning(prediction):
        st.warning(warning)
