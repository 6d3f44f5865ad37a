"""Corona score: zone geometry on phantoms with known lungs, Normal anchoring, monotonicity, reproducibility, JSON
shape and the ``score`` command.  Real-image tests use the reference data through the fixtures (skip without it)."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
from chest_phantom import chest_phantom
from PIL import Image
from scipy import ndimage as ndi
from severity_support import (
    fitted_phantom_model,
    opacified_phantom,
    phantom_fields,
    phantom_training_set,
    reference_model,
)

from core.cli import main
from core.features.zones import severity_feature_names, zone_features
from core.io.images import read_image
from core.lungs.fields import LungFields, find_lung_fields, thorax_normalised
from core.lungs.zones import ZONE_NAMES, zone_masks
from core.severity.model import GRADE_CUTOFFS, SeverityModel
from core.severity.progression import trend

JSON_KEYS = {"corona_score", "zones", "brixia_total", "corona_score_sd", "normal_range", "geographic_extent", "opacity",
             "affected_fraction", "lung_finder", "mask_warning"}


@pytest.fixture(scope="module")
def phantom_model() -> SeverityModel:
    return fitted_phantom_model()


@pytest.fixture(scope="module")
def real_model(cxr_dir, cxr_manifest) -> SeverityModel:
    return reference_model(cxr_dir, cxr_manifest)


# -- zone features -------------------------------------------------------------------------------------------------
def test_zone_geometry_matches_the_phantoms_known_lungs():
    pixels, (image_left, image_right) = chest_phantom(256, 256, seed=3, text=False)
    mask = image_left | image_right  # the true lungs, so that only the zone geometry is under test
    fields = LungFields(mask, zone_masks(mask), thorax_normalised(pixels, mask), {"mirrored": False})
    values = zone_features(fields)
    assert list(values) == severity_feature_names()
    # Truth: two ellipses, semi-axes 0.25 H and 0.13 W, centred at 0.3 W and 0.7 W.
    width = 0.7 + 0.13 - (0.3 - 0.13)
    assert values["sev_lung_height_per_width"] == pytest.approx(0.5 / width, rel=0.03)
    assert values["sev_lung_area_per_width2"] == pytest.approx(2 * np.pi * 0.25 * 0.13 / width**2, rel=0.03)
    # thirds of an ellipse's height: the middle third holds 41.6 % of its area, the others 29.2 % each
    for side in ("right", "left"):
        areas = np.array([values[f"sev_{side}_{level}_area"] for level in ("upper", "middle", "lower")])
        assert areas / areas.sum() == pytest.approx([0.292, 0.416, 0.292], abs=0.02)
    assert values["sev_mirrored"] == 0.0
    # found (not given) lungs: the same picture within the lung finder's accuracy
    found = zone_features(phantom_fields(pixels))
    assert found["sev_lung_height_per_width"] == pytest.approx(values["sev_lung_height_per_width"], rel=0.1)
    assert found["sev_lung_area_per_width2"] == pytest.approx(values["sev_lung_area_per_width2"], rel=0.25)


def test_zone_intensity_follows_an_opacity_in_that_zone_only():
    clean, _, _ = opacified_phantom(seed=4)
    opaque, _, _ = opacified_phantom(seed=4, involved=(0.3, 0.0), density=(0.2, 0.0))
    fields = phantom_fields(clean)
    held = LungFields(fields.mask, fields.zones, thorax_normalised(opaque, fields.mask), fields.quality,
                      fields.scale, fields.midline)
    before, after = zone_features(fields), zone_features(held)
    assert after["sev_right_lower_p50"] - before["sev_right_lower_p50"] > 0.1
    assert abs(after["sev_left_lower_p50"] - before["sev_left_lower_p50"]) < 0.02


def test_an_empty_lung_mask_gives_missing_features_not_an_error():
    fields = find_lung_fields(chest_phantom(128, 128, seed=1)[0])
    empty = LungFields(np.zeros_like(fields.mask), np.zeros_like(fields.zones), fields.image, fields.quality)
    assert all(np.isnan(v) for v in zone_features(empty).values())


# -- the model on phantoms -----------------------------------------------------------------------------------------
def test_normal_like_phantom_scores_low_and_opacified_ones_higher(phantom_model):
    scores = {}
    for name, involved, density in (("clean", (0, 0), (0, 0)), ("one base", (0.3, 0), (0.2, 0)),
                                    ("both lungs", (0.6, 0.6), (0.3, 0.3))):
        images = [opacified_phantom(seed, involved, density)[0] for seed in (51, 52)]
        scores[name] = [phantom_model.assess(image, phantom_fields(image)) for image in images]
    clean = scores["clean"]
    assert all(r.corona_score < 10 and sum(r.zone_grades.values()) <= 2 for r in clean)
    assert all(r.geographic_extent < 1.0 for r in clean)
    one_base = scores["one base"]
    assert all(r.zone_grades["right_lower"] >= 2 and r.zone_grades["left_lower"] <= 1 for r in one_base)
    assert min(r.corona_score for r in one_base) > max(r.corona_score for r in clean) + 5
    both = scores["both lungs"]
    assert min(r.corona_score for r in both) > max(r.corona_score for r in one_base) + 20
    assert min(r.geographic_extent for r in both) > max(r.geographic_extent for r in one_base)


def test_grades_and_score_are_one_picture(phantom_model):
    features, _ = phantom_training_set(n_normal=2, n_scored=6, seed=5)
    table = phantom_model.predict(features)
    severity = table[[f"severity_{zone}" for zone in ZONE_NAMES]].to_numpy()
    assert np.allclose(table["corona_score"], 100 * severity.mean(axis=1))
    grades = table[[f"grade_{zone}" for zone in ZONE_NAMES]].to_numpy()
    assert np.array_equal(grades, np.digitize(severity, GRADE_CUTOFFS))
    assert np.array_equal(table["brixia_total"], grades.sum(axis=1))
    assert table["corona_score"].between(0, 100).all() and table["geographic_extent"].between(0, 8).all()
    assert table["opacity"].between(0, 6).all()
    assert np.allclose(table["affected_fraction"], table["geographic_extent"] / 8)


def test_fit_is_reproducible_with_a_fixed_seed():
    features, targets = phantom_training_set(n_normal=8, n_scored=14, seed=2)
    first = SeverityModel(random_state=7, cv_splits=3).fit(features, targets).predict(features)
    second = SeverityModel(random_state=7, cv_splits=3).fit(features, targets).predict(features)
    pd.testing.assert_frame_equal(first, second)


def test_fit_refuses_a_data_set_without_expert_scores():
    features, targets = phantom_training_set(n_normal=6, n_scored=4, seed=3)
    with pytest.raises(ValueError, match="expert-scored"):
        SeverityModel().fit(features, targets)


def test_json_record_shape(phantom_model):
    image = opacified_phantom(9, (0.4, 0.2), (0.2, 0.1))[0]
    record = phantom_model.assess(image, phantom_fields(image)).to_json()
    assert set(record) == JSON_KEYS
    assert list(record["zones"]) == list(ZONE_NAMES)
    assert all(isinstance(g, int) and 0 <= g <= 3 for g in record["zones"].values())
    assert record["brixia_total"] == sum(record["zones"].values())
    assert 0 <= record["corona_score"] <= 100 and 0 <= record["affected_fraction"] <= 1
    json.dumps(record)  # plain JSON types only


def test_trend_is_importable_from_severity():
    series = pd.DataFrame({"time": [0, 10], "corona_score": [10.0, 60.0]})
    assert trend(series)["verdict"] == "worsening"


# -- the model on real images --------------------------------------------------------------------------------------
def _blend_towards_soft_tissue(pixels: np.ndarray, fields: LungFields, zone: int, amount: float) -> np.ndarray:
    """Consolidation-like change of one zone: pixels pulled towards the thorax's soft-tissue grey, edges softened."""
    weights = ndi.gaussian_filter((fields.zones == zone).astype(np.float32), 3.0) * amount
    weights = np.asarray(Image.fromarray(weights).resize(pixels.shape[::-1], Image.Resampling.BILINEAR))
    tissue = np.percentile(pixels, 90)
    return ((1 - weights) * pixels + weights * tissue).astype(np.float32)


@pytest.mark.parametrize("zone_name", ["right_lower", "left_middle"])
def test_more_opacity_in_a_zone_never_lowers_its_grade_or_the_score(real_model, cxr_dir, cxr_manifest, zone_name):
    zone = ZONE_NAMES.index(zone_name) + 1
    files = cxr_manifest[cxr_manifest.label == "Normal"].file.iloc[:3]
    for file in files:
        pixels = read_image(cxr_dir / "images" / file).pixels
        fields = find_lung_fields(pixels)
        grades, scores = [], []
        for amount in (0.0, 0.2, 0.4, 0.6, 0.8):
            changed = _blend_towards_soft_tissue(pixels, fields, zone, amount)
            held = LungFields(fields.mask, fields.zones, thorax_normalised(changed, fields.mask), fields.quality,
                              fields.scale, fields.midline)  # mask held fixed
            result = real_model.assess(changed, held)
            grades.append(result.zone_grades[zone_name])
            scores.append(result.corona_score)
        assert grades == sorted(grades), (file, grades)
        # the other zones may look a shade darker once one zone whitens (per-image intensity normalisation):
        # allowed, but below half the score's test-retest noise (2.8 points on the network lungs; it was 0.5 with the
        # classical lungs, whose thorax hull moved less when one zone whitened)
        assert np.all(np.diff(scores) >= -1.4), (file, scores)
        assert scores[-1] > scores[0], (file, scores)


# -- the score command ---------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def saved_models():
    """The default models: `score` reads films through the acceptance checks, which need them."""
    from core.paths import default_models_dir

    if not (default_models_dir() / "report.json").is_file():
        pytest.skip(f"no trained model in {default_models_dir()}: run `python -m core train`")
    return default_models_dir()


def test_score_command_json_and_unreadable_file(saved_models, sample_png, tmp_path, capsys):
    bad = tmp_path / "broken.png"
    bad.write_bytes(b"not an image")
    good = str(sample_png)
    code = main(["score", good, str(bad), good, "--models", str(saved_models), "--json"])
    records = json.loads(capsys.readouterr().out)
    assert code == 1  # one file unreadable, the others still scored
    assert [r["file"] for r in records] == [sample_png.name, "broken.png", sample_png.name]
    assert set(records[0]) == {"file", "warnings"} | JSON_KEYS and records[0] == records[2]
    assert set(records[1]) == {"file", "error"}
    assert main(["score", good, "--models", str(saved_models)]) == 0
    assert "corona score" in capsys.readouterr().out


def test_score_command_without_severity_model(saved_models, tmp_path, capsys):
    import shutil

    models = shutil.copytree(saved_models, tmp_path / "models")
    report = json.loads((models / "report.json").read_text())
    del report["files"]["severity.skops"]
    (models / "report.json").write_text(json.dumps(report))
    assert main(["score", str(tmp_path / "x.png"), "--models", str(models)]) == 2
    assert "severity.skops not in report.json" in capsys.readouterr().err
