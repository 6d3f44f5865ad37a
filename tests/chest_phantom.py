"""A synthetic frontal chest X-ray with known lungs, shared by the lung-field and radiomic tests."""

from __future__ import annotations

import numpy as np


def chest_phantom(height: int = 256, width: int = 256, seed: int = 0, text: bool = True):
    """A frontal-chest phantom: dark air, a bright body ellipse that leaves the image at the top and bottom,
    two dark lung ellipses (patient right on the image left), a bright spine, noise, and burned-in text
    (a saturated rectangle) in the top-left corner outside the body.

    Returns the image (float32 in [0, 1]) and the true (image-left lung, image-right lung) masks.
    """
    rng = np.random.default_rng(seed)
    rows, cols = np.mgrid[0:height, 0:width]
    y, x = (rows + 0.5) / height, (cols + 0.5) / width
    image = np.full((height, width), 0.08)
    body = ((y - 0.55) / 0.6) ** 2 + ((x - 0.5) / 0.42) ** 2 <= 1
    image[body] = 0.65
    lungs = tuple(((y - 0.45) / 0.25) ** 2 + ((x - centre) / 0.13) ** 2 <= 1 for centre in (0.3, 0.7))
    for lung in lungs:
        image[lung] = 0.28
    image[(np.abs(x - 0.5) < 0.04) & body] = 0.85
    if text:
        image[int(0.03 * height) : int(0.08 * height), int(0.04 * width) : int(0.22 * width)] = 1.0
    image = np.clip(image + rng.normal(0.0, 0.02, image.shape), 0.0, 1.0)
    return image.astype(np.float32), lungs
