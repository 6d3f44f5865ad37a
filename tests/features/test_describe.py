"""Feature names in words for the reader."""

from __future__ import annotations

from core.features.blocks import feature_names
from core.features.describe import EMBEDDING_GROUP, describe_feature, describe_finding, explain_effects


def test_every_radiomic_feature_has_words_and_no_code_name():
    for name in feature_names("radiomic"):
        words = describe_feature(name)
        assert "rad_" not in words and "_" not in words.split(":")[0], (name, words)


def test_findings_name_region_quantity_and_direction():
    assert describe_finding("rad_left_lower_p50", 0.8, 0.5) == "left lower zone: density above usual"
    assert describe_finding("rad_lung_canny_density", 0.1, 0.3) == \
        "both lungs: fine lines (interstitial markings) below usual"
    assert describe_feature("rad_right_upper_hist0") == "right upper zone: share of pixels in density band 1 of 8"
    assert describe_finding("sqz_366", 1.0, 0.0) == EMBEDDING_GROUP


def test_embedding_features_are_one_uninterpretable_row():
    effects = [{"feature": "sqz_366", "value": 1.0, "training_median": 0.5, "effect": 0.04},
               {"feature": "rad_left_lower_p50", "value": 0.7, "training_median": 0.5, "effect": 0.03},
               {"feature": "sqz_024", "value": 0.1, "training_median": 0.5, "effect": 0.02}]
    rows = explain_effects(effects)
    assert rows[0] == {"finding": EMBEDDING_GROUP, "effect": 0.06, "features": 2}
    assert rows[1]["finding"] == "left lower zone: density above usual"
