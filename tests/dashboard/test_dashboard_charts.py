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
from core.lungs.zones import ZONE_NAMES
from dashboard import charts
from dashboard.overlay import overlay_rgb


def test_zone_label_positions_are_zone_centroids_as_fractions():
    zones = np.zeros((100, 200), dtype=np.int8)
    zones[10:30, 20:60] = 1     # centre (40, 20) in (x, y) pixels
    zones[50:90, 120:180] = 6   # centre (150, 70)
    positions = charts.zone_label_positions(zones)
    assert positions.keys() == {1, 6}
    assert positions[1] == pytest.approx((40 / 200, 20 / 100))
    assert positions[6] == pytest.approx((150 / 200, 70 / 100))


def test_xray_figure_sends_a_downsized_png_and_scales_the_labels():
    rgb = np.zeros((1500, 3000, 3), dtype=np.uint8)
    rgb[:, 1500:] = 255
    figure = charts.xray_figure(rgb, labels=[(0.5, 0.25, "2")], title="Corona score 40 / 100")
    uri = figure.data[0].source
    assert uri.startswith("data:image/png;base64,")
    shown = Image.open(io.BytesIO(base64.b64decode(uri.split(",", 1)[1])))
    assert shown.size == (charts.DISPLAY_MAX_SIDE, charts.DISPLAY_MAX_SIDE // 2)
    label = figure.layout.annotations[0]
    assert (label.x, label.y, label.text) == (charts.DISPLAY_MAX_SIDE / 2, charts.DISPLAY_MAX_SIDE / 8, "2")


def test_zone_grades_are_drawn_on_a_real_xray(sample_png):
    pixels = np.asarray(Image.open(sample_png).convert("L"), dtype=np.float32) / 255
    fields = find_lung_fields(pixels)
    grades = dict(zip(ZONE_NAMES, [0, 1, 2, 3, 2, 1]))
    rgb = overlay_rgb(pixels, fields, zone_values=list(grades.values()), vmax=3)
    positions = charts.zone_label_positions(fields.zones)
    figure = charts.xray_figure(rgb, [(x, y, str(grades[ZONE_NAMES[z - 1]])) for z, (x, y) in positions.items()])
    assert len(figure.layout.annotations) == len(positions) == 6
    # the patient's right lung (zones 1-3) is on the image left
    right_lung_x = [positions[z][0] for z in (1, 2, 3)]
    left_lung_x = [positions[z][0] for z in (4, 5, 6)]
    assert max(right_lung_x) < min(left_lung_x)


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
