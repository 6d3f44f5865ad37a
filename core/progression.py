"""Patient progression: the corona scores of one patient's images over time and a trend verdict.

The rule (:func:`trend`): fit a least-squares line to corona score against time; its change from the first to the
last image is called *worsening* (or *improving*) when it exceeds ``z`` = 1.96 standard errors of that change,
computed from the per-image noise of the score; otherwise *stable*.  For two images that is a difference larger than
1.96 x sqrt(2) x noise.  The noise is the score's standard deviation over re-acquisition-like perturbations of the
same image (small rotation, zoom, shift and exposure change, each re-running the lung finding), measured by
:func:`perturbation_noise` when the severity model is trained (``report.json`` -> ``severity.noise``); ``NOISE_SD``
is that measurement on the reference data (see ``/work/notes/severity.md``).
"""

from __future__ import annotations

import os
from collections.abc import Sequence

import numpy as np
import pandas as pd
from joblib import Parallel, delayed
from scipy import ndimage as ndi

from core.imaging import read_image
from core.lungs import find_lung_fields

# Corona-score points: pooled within-image sd over 4 perturbations of each of the 64 expert-scored images of the
# reference data (perturbation_noise at training, seed 42: 4.39; median image 2.0, 90th percentile 5.5).
NOISE_SD = 4.4
Z_CRITICAL = 1.96
VERDICTS = ("worsening", "stable", "improving")
NO_VERDICT = "no verdict"


def _as_days(times: pd.Series) -> np.ndarray:
    """Numbers stay as they are (days since onset, study order); dates and date strings become days since the first."""
    if pd.api.types.is_numeric_dtype(times):
        return times.to_numpy(dtype=float)
    stamps = pd.to_datetime(times, errors="coerce")
    return ((stamps - stamps.min()) / pd.Timedelta(days=1)).to_numpy(dtype=float)


def trend(series: pd.DataFrame, noise_sd: float | None = None, z: float = Z_CRITICAL) -> dict:
    """Trend verdict of one patient's corona scores.

    Parameters
    ----------
    series : DataFrame
        Columns ``time`` (days as numbers, or dates / ISO date strings) and ``corona_score`` (0-100); rows with
        either missing are ignored.
    noise_sd : float, optional
        Noise of one score in points (default ``NOISE_SD``, measured).
    z : float
        Standard errors the fitted change must exceed (1.96: a two-sided 5 % test).

    Returns
    -------
    dict
        ``verdict`` (``worsening``, ``stable``, ``improving``, or ``no verdict`` with a ``reason``), ``rule`` (text),
        ``n_images``, ``noise_sd``, and with a verdict: ``change`` (fitted change first -> last image, points),
        ``threshold`` (points the change had to exceed), ``slope_per_day`` and ``span_days``.
    """
    noise_sd = NOISE_SD if noise_sd is None else float(noise_sd)
    times, scores = _as_days(series["time"]), pd.to_numeric(series["corona_score"], errors="coerce").to_numpy(float)
    keep = np.isfinite(times) & np.isfinite(scores)
    times, scores = times[keep], scores[keep]
    result = {"n_images": int(keep.sum()), "noise_sd": noise_sd,
              "rule": (f"least-squares change of the corona score from the first to the last image beyond ±{z:g} "
                       f"standard errors (per-image noise {noise_sd:.1f} points; two images: a difference of more "
                       f"than {z * np.sqrt(2) * noise_sd:.1f}) → worsening / improving, else stable")}
    if times.size < 2:
        return {**result, "verdict": NO_VERDICT, "reason": "a trend needs at least two dated images"}
    centred = times - times.mean()
    spread = float(np.sum(centred**2))
    if spread == 0:
        return {**result, "verdict": NO_VERDICT, "reason": "all images were taken at the same time"}
    slope = float(np.sum(centred * (scores - scores.mean())) / spread)
    span = float(np.ptp(times))
    change = slope * span
    threshold = z * noise_sd * span / np.sqrt(spread)
    verdict = "worsening" if change > threshold else "improving" if change < -threshold else "stable"
    return {**result, "verdict": verdict, "change": round(change, 2), "threshold": round(float(threshold), 2),
            "slope_per_day": slope, "span_days": span}


def perturb(pixels: np.ndarray, rng: np.random.Generator, *, max_rotation_deg: float = 3.0, max_zoom: float = 0.05,
            max_shift: float = 0.02, max_log_gamma: float = 0.1) -> np.ndarray:
    """The same chest imaged again, roughly: a small random rotation, zoom, shift and exposure (gamma) change.

    Parameters
    ----------
    pixels : ndarray of float32, shape (H, W), values in [0, 1]
    rng : numpy Generator
    max_rotation_deg, max_zoom, max_shift, max_log_gamma : float
        Uniform ranges: degrees, relative zoom, shift as a fraction of the size, log of the gamma exponent.

    Returns
    -------
    ndarray of float32, shape (H, W), values in [0, 1]
    """
    height, width = pixels.shape
    angle = np.deg2rad(rng.uniform(-max_rotation_deg, max_rotation_deg))
    zoom = 1.0 + rng.uniform(-max_zoom, max_zoom)
    shift = rng.uniform(-max_shift, max_shift, size=2) * np.array([height, width])
    rotation = np.array([[np.cos(angle), -np.sin(angle)], [np.sin(angle), np.cos(angle)]]) / zoom
    centre = np.array([height, width]) / 2.0
    offset = centre - rotation @ (centre + shift)  # output coordinate -> input coordinate, about the centre
    moved = ndi.affine_transform(pixels, rotation, offset=offset, order=1, mode="nearest")
    gamma = np.exp(rng.uniform(-max_log_gamma, max_log_gamma))
    return np.clip(moved, 0.0, 1.0).astype(np.float32) ** np.float32(gamma)


def _scores_under_perturbation(model, path: str, n_perturbations: int, seed: int) -> list[float]:
    pixels = read_image(path).pixels
    rng = np.random.default_rng(seed)
    images = [pixels] + [perturb(pixels, rng) for _ in range(n_perturbations)]
    return [model.assess(image, find_lung_fields(image)).corona_score for image in images]


def perturbation_noise(model, paths: Sequence[str | os.PathLike], *, n_perturbations: int = 4,
                       random_state: int = 0, n_jobs: int = -1) -> dict:
    """Noise of the corona score: its pooled within-image standard deviation over :func:`perturb` copies.

    Parameters
    ----------
    model : fitted ``core.severity.SeverityModel`` (anything with ``assess(pixels, fields)``)
    paths : image files (unreadable ones must have been left out)
    n_perturbations : int
        Perturbed copies per image (scored together with the original).
    random_state : int
    n_jobs : int

    Returns
    -------
    dict
        ``noise_sd`` (points), ``n_images``, ``n_perturbations``, ``median_image_sd`` and ``method``.
    """
    seeds = np.random.default_rng(random_state).integers(0, 2**31, size=len(paths))
    scores = Parallel(n_jobs=n_jobs)(delayed(_scores_under_perturbation)(model, str(p), n_perturbations, int(s))
                                     for p, s in zip(paths, seeds))
    variances = np.array([np.var(s, ddof=1) for s in scores])
    return {"noise_sd": float(np.sqrt(variances.mean())), "n_images": len(paths), "n_perturbations": n_perturbations,
            "median_image_sd": float(np.median(np.sqrt(variances))),
            "method": "pooled within-image sd of the corona score over the original and perturbed copies "
                      "(rotation ±3°, zoom ±5 %, shift ±2 %, gamma ×e^±0.1; lungs found again on each)"}


def patient_trends(table: pd.DataFrame, scores: pd.Series, noise_sd: float | None = None) -> pd.DataFrame:
    """Trend of every patient with images on two or more days.

    Parameters
    ----------
    table : DataFrame
        Data set rows with ``patient_id``, ``offset_days`` (days since symptom onset) and ``label``.
    scores : Series
        Corona score of each row (same index as ``table``).
    noise_sd : float, optional

    Returns
    -------
    DataFrame
        One row per patient: ``patient_id``, ``label``, ``n_images``, ``days`` and ``scores`` (lists, oldest first),
        ``verdict``, ``change``, ``threshold``.
    """
    dated = table.assign(corona_score=scores).dropna(subset=["offset_days", "corona_score"])
    rows = []
    for patient, images in dated.groupby("patient_id", sort=True):
        if images["offset_days"].nunique() < 2:
            continue
        images = images.sort_values("offset_days")
        verdict = trend(images.rename(columns={"offset_days": "time"}), noise_sd=noise_sd)
        rows.append({"patient_id": patient, "label": images["label"].iloc[0], "n_images": len(images),
                     "days": images["offset_days"].tolist(), "scores": images["corona_score"].round(1).tolist(),
                     "verdict": verdict["verdict"], "change": verdict.get("change"),
                     "threshold": verdict.get("threshold")})
    return pd.DataFrame(rows)
