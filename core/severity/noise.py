"""The corona score's test–retest noise: scores of re-acquisition-like perturbations of the same image.

Each perturbation is a small rotation, zoom, shift and exposure change, and re-runs the lung finding. The pooled
within-image standard deviation is the noise :func:`core.severity.progression.trend` needs to call a change real.
"""

from __future__ import annotations

import os
from collections.abc import Sequence

import numpy as np
from joblib import Parallel, delayed
from scipy import ndimage as ndi

from core.features.threads import map_threaded
from core.io.images import read_image
from core.lungs.fields import find_lung_fields


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


def _scores_under_perturbation(model, path: str, n_perturbations: int, seed: int) -> list[tuple[float, float]]:
    pixels = read_image(path).pixels
    rng = np.random.default_rng(seed)
    images = [pixels] + [perturb(pixels, rng) for _ in range(n_perturbations)]
    results = map_threaded(lambda image: model.assess(image, find_lung_fields(image)), images)
    return [(result.corona_score, float(sum(result.zone_grades.values()))) for result in results]


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
        ``noise_sd`` (corona-score points), ``median_image_sd``, ``brixia_total_sd`` (0–18 points),
        ``detectable_change`` and ``detectable_change_brixia`` (the smallest difference between two images that
        exceeds the noise: 1.96 x sqrt(2) x sd), ``n_images``, ``n_perturbations`` and ``method``.
    """
    seeds = np.random.default_rng(random_state).integers(0, 2**31, size=len(paths))
    scores = Parallel(n_jobs=n_jobs)(delayed(_scores_under_perturbation)(model, str(p), n_perturbations, int(s))
                                     for p, s in zip(paths, seeds))
    scores = np.asarray(scores, dtype=float)  # (n_images, 1 + n_perturbations, [corona, brixia total])
    variances = np.var(scores, axis=1, ddof=1)
    noise_sd, brixia_sd = np.sqrt(variances.mean(axis=0))
    return {"noise_sd": float(noise_sd), "n_images": len(paths), "n_perturbations": n_perturbations,
            "median_image_sd": float(np.median(np.sqrt(variances[:, 0]))), "brixia_total_sd": float(brixia_sd),
            "detectable_change": float(1.96 * np.sqrt(2) * noise_sd),
            "detectable_change_brixia": float(1.96 * np.sqrt(2) * brixia_sd),
            "method": "pooled within-image sd of the corona score over the original and perturbed copies "
                      "(rotation ±3°, zoom ±5 %, shift ±2 %, gamma ×e^±0.1; lungs found again on each)"}
