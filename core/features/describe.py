"""Feature names in words a radiologist reads: "left lower zone: density above usual", not ``rad_left_lower_p50``.

Radiomic features (``rad_<region>_<quantity>``, ``rad_pattern_*``, ``rad_global_*``) are named by region and what
they measure; the SqueezeNet embedding's 1000 columns (``sqz_NNN``) have no meaning one by one and are grouped as
one "image pattern (not interpretable)". "Usual" is the median of the training films (COVID-19 and Normal).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

EMBEDDING_GROUP = "image pattern (not interpretable)"
_EMBEDDING_PREFIX = "sqz_"

_REGION_WORDS = {"lung": "both lungs", "right_upper": "right upper zone", "right_middle": "right middle zone",
                 "right_lower": "right lower zone", "left_upper": "left upper zone",
                 "left_middle": "left middle zone", "left_lower": "left lower zone"}
_QUANTITY_WORDS = {
    "mean": "density", "p50": "density", "p10": "density of the most aerated parts",
    "p90": "density of the densest parts", "sd": "variation in density", "skewness": "skew of the densities",
    "kurtosis": "peakedness of the densities", "glcm_contrast": "texture contrast",
    "glcm_homogeneity": "texture smoothness", "glcm_energy": "texture uniformity",
    "glcm_correlation": "texture regularity", "glcm_dissimilarity": "texture roughness",
    "sobel_mean": "edge strength (markings)", "canny_density": "fine lines (interstitial markings)",
}
_PATTERN_WORDS = {
    "lower_minus_upper_right": "right lung: lower zone denser than upper",
    "lower_minus_upper_left": "left lung: lower zone denser than upper",
    "periphery_minus_centre_right": "right lung: periphery denser than centre",
    "periphery_minus_centre_left": "left lung: periphery denser than centre",
    "asymmetry_upper": "upper zones: right–left difference", "asymmetry_middle": "middle zones: right–left difference",
    "asymmetry_lower": "lower zones: right–left difference",
}
_GLOBAL_WORDS = {"left_right_ratio": "size of the right lung field against the left",
                 "quality_ok": "lung fields found as expected"}


def is_embedding(name: str) -> bool:
    return name.startswith(_EMBEDDING_PREFIX)


def describe_feature(name: str) -> str:
    """What a feature measures, in words (the name itself when it is not a known feature)."""
    if is_embedding(name):
        return EMBEDDING_GROUP
    if name.startswith("rad_pattern_"):
        return _PATTERN_WORDS.get(name.removeprefix("rad_pattern_"), name)
    if name.startswith("rad_global_"):
        return _GLOBAL_WORDS.get(name.removeprefix("rad_global_"), name)
    if name.startswith("rad_"):
        rest = name.removeprefix("rad_")
        for region, region_words in _REGION_WORDS.items():
            if rest.startswith(region + "_"):
                quantity = rest.removeprefix(region + "_")
                if quantity.startswith("hist") and quantity[4:].isdigit():
                    return f"{region_words}: share of pixels in density band {int(quantity[4:]) + 1} of 8"
                return f"{region_words}: {_QUANTITY_WORDS.get(quantity, quantity.replace('_', ' '))}"
    return name


def describe_finding(name: str, value: float, usual: float) -> str:
    """A feature of one film against the training films' median, e.g. ``left lower zone: density above usual``."""
    if is_embedding(name):
        return EMBEDDING_GROUP
    direction = "above usual" if value > usual else "below usual" if value < usual else "as usual"
    return f"{describe_feature(name)} {direction}"


def explain_effects(effects: Sequence[Mapping]) -> list[dict]:
    """Reader-facing rows from ``Prediction.top_features``: one per radiomic finding, one for all embedding features.

    Each input has ``feature``, ``value``, ``training_median`` and ``effect`` (risk change, 0–1, when the feature
    is set to the training median; positive: the feature pushes towards COVID-19). The embedding row sums its
    features' separate effects and says how many there were. Rows are ordered by the size of the effect.
    """
    rows, embedding = [], []
    for effect in effects:
        if is_embedding(effect["feature"]):
            embedding.append(effect)
        else:
            rows.append({"finding": describe_finding(effect["feature"], effect["value"], effect["training_median"]),
                         "effect": float(effect["effect"]), "features": 1})
    if embedding:
        rows.append({"finding": EMBEDDING_GROUP, "effect": float(sum(e["effect"] for e in embedding)),
                     "features": len(embedding)})
    return sorted(rows, key=lambda row: -abs(row["effect"]))
