"""How an image was acquired and processed, not what it shows: the signature the site-shift check compares.

Each hospital's detector, processing chain and export (windowing, equalisation, compression, burned-in borders)
leaves a grey-level distribution, saturation, noise and sharpness of its own. These few numbers describe that
signature; :class:`core.learn.site_shift.SiteShiftDetector` says when an image's signature is unlike every
training site. They are deliberately not used by the classifiers.
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage as ndi

__all__ = ["ACQUISITION_VERSION", "ACQUISITION_COLUMNS", "acquisition_signature"]

ACQUISITION_VERSION = "1"
_QUANTILES = (0.01, 0.05, 0.10, 0.25, 0.50, 0.75, 0.90, 0.95, 0.99)
_HISTOGRAM_BINS = 64
ACQUISITION_COLUMNS: tuple[str, ...] = (
    *(f"acq_q{int(round(100 * q)):02d}" for q in _QUANTILES),
    "acq_black_fraction", "acq_white_fraction", "acq_laplacian_mean", "acq_laplacian_median",
    "acq_used_levels", "acq_sd", "acq_row_gradient", "acq_left_border", "acq_top_border",
    *(f"acq_hist_{i:02d}" for i in range(_HISTOGRAM_BINS)),
)


def acquisition_signature(pixels: np.ndarray) -> np.ndarray:
    """Grey-level, saturation, noise and border statistics of a whole image.

    Parameters
    ----------
    pixels : ndarray of float, shape (H, W)
        Grayscale image in [0, 1], MONOCHROME2.

    Returns
    -------
    ndarray of float32, shape (len(ACQUISITION_COLUMNS),)
        Grey-level quantiles; fractions of pixels at black (<= 0.002) and white (>= 0.998); mean and median
        absolute Laplacian (noise and sharpness, grey levels per pixel); share of the 64 histogram bins in use
        (posterisation); SD; mean horizontal gradient relative to the SD; the mean of the left and top tenth
        minus the image mean (borders, collimation); the 64-bin histogram (fractions of pixels).
    """
    image = np.asarray(pixels, dtype=np.float32)
    if image.ndim != 2:
        raise ValueError(f"expected a 2-D grayscale image, got shape {image.shape}")
    laplacian = np.abs(ndi.laplace(image))
    histogram = np.histogram(image, bins=_HISTOGRAM_BINS, range=(0.0, 1.0))[0] / image.size
    sd = float(image.std())
    height, width = image.shape
    values = [
        *np.quantile(image, _QUANTILES),
        float((image <= 0.002).mean()), float((image >= 0.998).mean()),
        float(laplacian.mean()), float(np.median(laplacian)),
        float((histogram > 0).mean()), sd,
        float(np.abs(np.diff(image, axis=1)).mean() / (sd + 1e-6)),
        float(image[:, : max(1, width // 10)].mean() - image.mean()),
        float(image[: max(1, height // 10)].mean() - image.mean()),
        *histogram,
    ]
    return np.asarray(values, dtype=np.float32)
