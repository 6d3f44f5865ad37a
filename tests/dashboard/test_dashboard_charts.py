"""Figure builders of the dashboard (drawing only): positions, sizes and values end up where they belong."""

from __future__ import annotations

import base64
import io

import numpy as np
import pandas as pd
import pytest
from chest_phantom import chest_phantom
from PIL import Image
from scipy import ndimage as ndi

from core.lungs.fields import find_lung_fields
from dashboard import charts
from dashboard.overlay import DISPLAY_MAX_SIDE, apply_window, display_copy, overlay_rgb


def test_zone_label_positions_are_zone_centroids_as_fractions():
    zones = np.zeros((100, 200), dtype=np.int8)
    zones[10:30, 20:60] = 1     # centre (40, 20) in (x, y) pixels
    zones[50:90, 120:180] = 6   # centre (150, 70)
    positions = charts.zone_label_positions(zones)
    assert positions.keys() == {1, 6}
    assert positions[1] == pytest.approx((40 / 200, 20 / 100))
    assert positions[6] == pytest.approx((150 / 200, 70 / 100))


def decode(uri: str) -> Image.Image:
    return Image.open(io.BytesIO(base64.b64decode(uri.split(",", 1)[1])))


def test_film_figure_sends_downsized_pngs_scales_labels_and_marks_right_and_left():
    rgb = np.zeros((1500, 3000, 3), dtype=np.uint8)
    rgb[:, 1500:] = 255
    figure = charts.film_figure([("Original", rgb), ("Overlay", rgb)], labels=[(0.5, 0.25, "2")],
                                legend=[("#808080", "0 none")])
    assert [trace.type for trace in figure.data] == ["image", "image"]
    for trace in figure.data:
        assert trace.source.startswith("data:image/png;base64,")
        assert decode(trace.source).size == (DISPLAY_MAX_SIDE, DISPLAY_MAX_SIDE // 2)
    assert figure.layout.xaxis2.matches == "x" and figure.layout.yaxis2.matches == "y"  # zoomed together
    by_text = {}
    for annotation in figure.layout.annotations:
        by_text.setdefault(annotation.text, []).append(annotation)
    label = by_text["2"][0]
    assert (label.xref, label.x, label.y) == ("x2", DISPLAY_MAX_SIDE / 2, DISPLAY_MAX_SIDE / 8)  # on the overlay
    right, left = by_text["<b>R</b>"], by_text["<b>L</b>"]
    assert len(right) == len(left) == 2                      # on both panels
    assert all(r.x < DISPLAY_MAX_SIDE / 2 < l.x for r, l in zip(right, left))  # patient's right on the image left
    assert any("0 none" in text for text in by_text)


def test_window_and_level_stretch_the_chosen_range():
    pixels = np.linspace(0, 1, 101, dtype=np.float32)[None, :]
    assert np.allclose(apply_window(pixels, 1.0, 0.5), pixels)  # full window, mid level: unchanged
    narrow = apply_window(pixels, 0.2, 0.3)                     # 0.2 .. 0.4 stretched to 0 .. 1
    assert narrow[0, 20] == 0 and narrow[0, 40] == 1 and narrow[0, 30] == pytest.approx(0.5)
    assert narrow.min() == 0 and narrow.max() == 1


def test_display_copy_bounds_the_longest_side():
    big = np.random.default_rng(0).uniform(size=(3000, 2400)).astype(np.float32)
    copy = display_copy(big)
    assert copy.shape == (DISPLAY_MAX_SIDE, round(2400 / 3000 * DISPLAY_MAX_SIDE)) and copy.dtype == np.float32
    small = np.zeros((300, 200), dtype=np.float32)
    assert display_copy(small) is small or np.array_equal(display_copy(small), small)


def test_per_model_bars_show_percentages_and_the_consensus_threshold():
    per_model = {"SVM": 0.2, "Random Forest": 0.4, "Neural Network": 0.6, "kNN": 0.8}
    figure = charts.per_model_bars(per_model, risk=0.55, threshold=0.3)
    bars = figure.data[0]
    assert list(bars.x) == [*per_model, "Consensus"]
    assert list(bars.y) == pytest.approx([20, 40, 60, 80, 55])
    assert figure.layout.shapes[0].y0 == pytest.approx(30)


def test_progression_figure_puts_score_and_risk_on_one_axis():
    series = pd.DataFrame({"study #": [1, 2, 3], "risk": [0.2, 0.5, 0.9], "corona_score": [10.0, None, 60.0]})
    figure = charts.progression_figure(series, "study #", "study")
    by_name = {trace.name: trace for trace in figure.data}
    assert list(by_name["COVID-19 risk %"].y) == pytest.approx([20, 50, 90])
    assert figure.layout.xaxis.dtick == 1
    no_score = charts.progression_figure(series.assign(corona_score=None), "study #", "study")
    assert [trace.name for trace in no_score.data] == ["COVID-19 risk %"]


def test_overlay_at_original_resolution_with_tinted_zones():
    pixels, _ = chest_phantom(300, 240)
    fields = find_lung_fields(pixels)
    plain = overlay_rgb(pixels, fields)
    assert plain.shape == (300, 240, 3) and plain.dtype == np.uint8
    grey = np.repeat(np.round(pixels * 255).astype(np.uint8)[:, :, None], 3, axis=2)
    zones = np.asarray(Image.fromarray(fields.zones.astype(np.uint8)).resize((240, 300), Image.Resampling.NEAREST))
    drawn = (plain != grey).any(axis=2)
    assert drawn.any() and not (drawn & ~ndi.binary_dilation(zones > 0, iterations=3)).any()  # lines hug the lungs
    tinted = overlay_rgb(pixels, fields, zone_values=[3, 0, 0, 0, 0, np.nan], vmax=3)
    changed = (tinted != plain).any(axis=2)
    assert changed.any() and (zones[changed] == 1).all()  # only the right upper zone is tinted
    with pytest.raises(ValueError):
        overlay_rgb(pixels, fields, zone_values=[1, 2, 3])
    invisible = overlay_rgb(pixels, fields, zone_values=[3, 0, 0, 0, 0, np.nan], vmax=3, opacity=0.0)
    assert np.array_equal(invisible, grey)                      # opacity 0: the film alone
    half = overlay_rgb(pixels, fields, zone_values=[3, 0, 0, 0, 0, np.nan], vmax=3, opacity=0.5)
    inside = zones == 1
    assert (np.abs(half[inside].astype(int) - grey[inside]).mean()
            < np.abs(tinted[inside].astype(int) - grey[inside]).mean())  # half opacity: weaker tint
