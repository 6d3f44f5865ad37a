"""Score every film of a labelled site data set through the one prediction path (what ``predict --json`` prints).

Validation and calibration read the same per-film records ``predict --json`` writes, so a figure in a validation
report is a figure about exactly the tool's output.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd
from joblib import Parallel, delayed

from core.features.threads import map_threaded
from core.io.datasets import Dataset, load_dataset, patient_groups
from core.labels import LABEL_COVID, LABEL_NORMAL
from core.learn.training import data_fingerprint
from core.progress import Progress
from core.triage.model import TriageModel

# Per-film columns kept from the prediction record (the explanation of the risk is not needed here).
_DROPPED = ("top_features", "per_model", "zones")


@dataclass
class ScoredSet:
    """The films of a labelled data set with what the tool said about each.

    Attributes
    ----------
    records : DataFrame
        One row per film: ``file``, ``label``, ``patient`` (see :func:`core.io.datasets.patient_groups`),
        ``patient_known``, ``sha256``, and the ``predict --json`` fields (``risk``, ``flagged``, ``threshold``,
        ``out_of_distribution``, ``warnings``, ``site_profile``, ``calibration``, ``error``, and ``pneumonia``
        when the models give one).
    dataset : Dataset
    """

    records: pd.DataFrame
    dataset: Dataset

    @property
    def scored(self) -> pd.DataFrame:
        """Films that got a risk (read and accepted)."""
        return self.records[self.records["error"].isna()].reset_index(drop=True)

    def binary(self) -> tuple[pd.DataFrame, np.ndarray]:
        """Scored COVID-19 and Normal films, and the target (1 = COVID-19)."""
        rows = self.scored[self.scored["label"].isin([LABEL_COVID, LABEL_NORMAL])].reset_index(drop=True)
        return rows, (rows["label"] == LABEL_COVID).to_numpy(dtype=int)

    def fingerprint(self) -> str:
        """:func:`core.learn.training.data_fingerprint` of the readable films and their labels."""
        readable = self.records[self.records["sha256"].notna()]
        return data_fingerprint(readable["sha256"].tolist(), readable["label"].tolist())


def _record(model: TriageModel, path: str, name: str) -> dict:
    """One film's record; its image and lung fields are dropped here, so memory stays flat."""
    prediction = model.predict(path, name=name)
    record = {key: value for key, value in prediction.to_json().items() if key not in _DROPPED}
    record["sha256"] = prediction.sha256
    return record


def _score_chunk(model: TriageModel, paths: Sequence[str], names: Sequence[str]) -> list[dict]:
    # Films two at a time on a two-core process (core.features.threads); one at a time in a one-core worker.
    return map_threaded(lambda pair: _record(model, *pair), list(zip(paths, names)))


def score_dataset(model: TriageModel, data: str | os.PathLike | Dataset, *, n_jobs: int = 1, chunk_size: int = 16,
                  progress: Progress | None = None) -> ScoredSet:
    """Predict every film of a labelled folder (manifest or class sub-folders) with ``model``.

    Parameters
    ----------
    model : TriageModel
        With or without a site profile; the records carry what it produced.
    data : path or Dataset
    n_jobs : int
        joblib workers (1: in this process).
    progress : callable(fraction, message), optional
    """
    dataset = data if isinstance(data, Dataset) else load_dataset(data)
    table = dataset.table
    if not len(table):
        raise ValueError(f"{dataset.root}: no images")
    paths, names = table["path"].tolist(), table["file"].tolist()
    chunks = [range(i, min(i + chunk_size, len(paths))) for i in range(0, len(paths), chunk_size)]
    tasks = (delayed(_score_chunk)(model, [paths[i] for i in c], [names[i] for i in c]) for c in chunks)
    results = (Parallel(n_jobs=n_jobs, return_as="generator")(tasks) if n_jobs != 1 and len(chunks) > 1
               else (_score_chunk(model, [paths[i] for i in c], [names[i] for i in c]) for c in chunks))
    records: list[dict] = []
    for done, chunk in enumerate(results, start=1):
        records.extend(chunk)
        if progress is not None:
            progress(done / len(chunks), f"scored {len(records)}/{len(paths)} films")
    frame = pd.DataFrame(records)
    if "error" not in frame:
        frame["error"] = None
    frame["error"] = frame["error"].where(frame["error"].notna(), None)
    frame.insert(1, "label", table["label"].to_numpy())
    frame.insert(2, "patient", patient_groups(table))
    frame.insert(3, "patient_known", table["patient_known"].to_numpy())
    if "site" in table.columns:
        frame["site"] = table["site"].to_numpy()
    return ScoredSet(frame, dataset)
