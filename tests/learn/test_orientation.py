"""The orientation check: thumbnails, training set, refusal and warning thresholds (synthetic films, no data)."""

from __future__ import annotations

import numpy as np
import pytest
import skops.io as sio

from core.features.orientation import MIRRORED, MISORIENTATIONS, THUMBNAIL_SIDE, UPRIGHT, orientation_thumbnail
from core.learn.artifacts import TRUSTED_TYPES
from core.learn.orientation import OrientationCheck, orientation_examples


def _film(seed: int) -> np.ndarray:
    """A crude, asymmetric 'chest': two dark lungs, a bright mediastinum and heart bulging right, bright abdomen."""
    rng = np.random.default_rng(seed)
    height, width = 300 + rng.integers(-30, 30), 260 + rng.integers(-30, 30)
    rows, cols = np.mgrid[0:height, 0:width] / np.array([height, width])[:, None, None]
    film = 0.55 + 0.1 * rng.standard_normal((height, width)) * 0.2
    for centre in (0.28, 0.72):
        film -= 0.35 * (((cols - centre) / 0.16) ** 2 + ((rows - 0.45) / 0.3) ** 2 < 1)
    film += 0.25 * (((cols - 0.58) / 0.14) ** 2 + ((rows - 0.65) / 0.12) ** 2 < 1)  # heart, patient's left
    film += 0.3 * (rows > 0.82)
    return np.clip(film, 0, 1).astype(np.float32)


@pytest.fixture(scope="module")
def check() -> OrientationCheck:
    examples = [orientation_examples(_film(seed)) for seed in range(40)]
    X = np.concatenate([x for x, _ in examples])
    y = np.concatenate([labels for _, labels in examples])
    return OrientationCheck().fit(X, y)


def test_thumbnail_shape_range_and_borders_ignored():
    film = _film(0)[:240]  # (without the bright abdomen band, which content_box takes for a frame)
    framed = np.pad(film, 40)  # a black letterbox around the same film
    thumbnail = orientation_thumbnail(film)
    assert thumbnail.shape == (THUMBNAIL_SIDE**2,) and thumbnail.dtype == np.float32
    assert 0 <= thumbnail.min() and thumbnail.max() <= 1
    assert np.abs(orientation_thumbnail(framed) - thumbnail).mean() < 0.05


def test_examples_cover_upright_and_every_misorientation():
    X, labels = orientation_examples(_film(1))
    assert labels == [UPRIGHT, *MISORIENTATIONS] and X.shape == (1 + len(MISORIENTATIONS), THUMBNAIL_SIDE**2)


def test_upright_passes_turned_films_are_refused_and_a_mirror_is_warned_about(check):
    film = _film(99)  # not among the training films
    assert check.assess(film).refusal is None and check.assess(film).warning is None
    for name, turn in MISORIENTATIONS.items():
        verdict = check.assess(turn(film))
        if name == MIRRORED:
            assert verdict.refusal is None and "mirrored left to right" in verdict.warning
        else:
            assert verdict.refusal is not None and name in verdict.refusal and "turn it upright" in verdict.refusal


def test_between_the_thresholds_a_warning_not_a_refusal(check):
    lenient = check.set_params(refuse_above=1.0)  # thresholds are parameters: no refit needed
    try:
        verdict = lenient.assess(np.rot90(_film(98)))
    finally:
        check.set_params(refuse_above=0.99)
    assert verdict.refusal is None and "check that it is upright" in verdict.warning


def test_the_fitted_check_is_a_trusted_skops_type(check, tmp_path):
    path = tmp_path / "orientation.skops"
    sio.dump(check, path)
    assert set(sio.get_untrusted_types(file=path)) <= set(TRUSTED_TYPES)
    restored = sio.load(path, trusted=list(TRUSTED_TYPES))
    thumbnail = orientation_thumbnail(_film(3))
    np.testing.assert_allclose(restored.predict_proba(thumbnail), check.predict_proba(thumbnail))
