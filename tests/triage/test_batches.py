"""A batch of films is scored on the process's threads: the same answers, in order, whatever goes wrong with one.

``model`` is the shared fixture of the default models (tests/validation_support.py).
"""

from __future__ import annotations

import numpy as np
import pytest
from threadpoolctl import threadpool_limits


@pytest.fixture(scope="module")
def films(cxr_dir, cxr_manifest):
    return [str(cxr_dir / "images" / name) for name in cxr_manifest.groupby("label").head(2)["file"].head(5)]


def test_groups_on_two_threads_give_the_answers_of_one_film_at_a_time(model, films, tmp_path):
    broken = tmp_path / "broken.png"
    broken.write_bytes(b"\x89PNG not really")
    sources = [films[0], str(broken), *films[1:]]
    with threadpool_limits(limits=1, user_api="blas"):
        one_at_a_time = [model.predict(source) for source in sources]
    with threadpool_limits(limits=2, user_api="blas"):  # two threads even on a one-core machine
        groups = list(model.predict_groups(sources))
    assert [len(group) for group in groups] == [2, 2, 2]
    threaded = [prediction for group in groups for prediction in group]
    assert [p.file for p in threaded] == [p.file for p in one_at_a_time]
    assert threaded[1].error is not None and "broken.png" in threaded[1].error
    for a, b in zip(threaded, one_at_a_time):
        assert (a.error is None) == (b.error is None)
        if a.risk is not None:
            assert a.risk == pytest.approx(b.risk, abs=1e-6) and a.flagged == b.flagged
            assert a.severity["corona_score"] == pytest.approx(b.severity["corona_score"], abs=1e-6)


def test_an_unforeseen_failure_on_one_film_costs_the_batch_nothing(model, films, monkeypatch):
    real_predict = type(model).predict

    def predict(self, source, name=None):
        if source == films[1]:
            raise MemoryError("no memory left for this film")
        return real_predict(self, source, name)

    monkeypatch.setattr(type(model), "predict", predict)
    progress = []
    with threadpool_limits(limits=2, user_api="blas"):
        results = model.predict_many(films[:3], progress=lambda fraction, message: progress.append(fraction))
    assert [r.error is None for r in results] == [True, False, True]
    assert "could not be scored" in results[1].error and "no memory left" in results[1].error
    assert np.isclose(progress[-1], 1.0) and progress == sorted(progress)


def test_each_top_feature_effect_is_the_risk_change_with_that_feature_at_its_training_median(model, films):
    """The effects come from one batch of probes; recompute five of them one probe at a time."""
    import pandas as pd

    from core.features.blocks import compute_image_features
    from core.io.images import read_image
    from core.lungs.fields import find_lung_fields

    prediction = model.predict(films[0])
    image = read_image(films[0])
    values = compute_image_features(image, model.feature_set, find_lung_fields(image.pixels))
    X = pd.DataFrame([values], columns=model.feature_names)
    assert len(prediction.top_features) == 5
    for entry in prediction.top_features:
        probe = X.copy()
        probe.loc[0, entry["feature"]] = model.feature_medians[entry["feature"]]
        changed = float(model._probabilities(probe)[2][0])
        assert entry["value"] == pytest.approx(float(X.at[0, entry["feature"]]))
        assert entry["effect"] == pytest.approx(prediction.risk - changed, abs=1e-4)
    assert [abs(e["effect"]) for e in prediction.top_features] == sorted(
        (abs(e["effect"]) for e in prediction.top_features), reverse=True)
