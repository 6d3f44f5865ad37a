"""The lung-segmentation network: a small U-Net trained once (``scripts/train_lung_unet.py``) and run here in numpy.

Why numpy: no deep-learning runtime is needed at run time, nothing is downloaded, and a 256-px forward pass of this
network (about 0.5 GFLOP) takes a few tens of milliseconds on one core.

Architecture (must match the training script): a stride-2 3×3 stem (1→8 channels, then 8→8) at 128 px, four
encoder levels (max-pool, two 3×3 convolutions; 16, 32, 64, 128 channels), and a decoder that reduces channels with
a 1×1 convolution, upsamples ×2 (nearest), concatenates the skip connection and applies two 3×3 convolutions; a
1×1 head gives lung logits at 128 px, upsampled ×2 bilinearly (half-pixel centres) to 256 px. Batch normalisation
is folded into the convolutions at export; every convolution but the 1×1 ones is followed by ReLU.

Input: the working image (longest side 256 px, :func:`core.lungs.fields.to_working_size`) scaled so that its 1st and
99th percentiles (pixels at the image's minimum or maximum left out) become 0 and 1, centred on a 256×256 black
canvas. Output: lung probability at working size.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from core.paths import REPO_ROOT

NET_SIZE = 256
DEFAULT_WEIGHTS = REPO_ROOT / "models" / "lungs" / "lung-unet.npz"


class LungNetworkError(RuntimeError):
    """The network's weights are missing, changed or do not fit the architecture (the classical finder runs)."""


def _conv3x3(x: np.ndarray, weight: np.ndarray, bias: np.ndarray, stride: int = 1) -> np.ndarray:
    """3×3 convolution, zero padding 1, by im2col and one matrix product. x (C, H, W) -> (C_out, H', W')."""
    channels, height, width = x.shape
    padded = np.pad(x, ((0, 0), (1, 1), (1, 1)))
    out_h, out_w = (height - 1) // stride + 1, (width - 1) // stride + 1
    columns = np.empty((channels, 9, out_h, out_w), dtype=np.float32)
    for k in range(9):
        dy, dx = divmod(k, 3)
        columns[:, k] = padded[:, dy:dy + stride * (out_h - 1) + 1:stride, dx:dx + stride * (out_w - 1) + 1:stride]
    out = weight.reshape(weight.shape[0], -1) @ columns.reshape(channels * 9, out_h * out_w)
    out += bias[:, None]
    return out.reshape(-1, out_h, out_w)


def _conv1x1(x: np.ndarray, weight: np.ndarray, bias: np.ndarray) -> np.ndarray:
    channels, height, width = x.shape
    out = weight.reshape(weight.shape[0], -1) @ x.reshape(channels, -1) + bias[:, None]
    return out.reshape(-1, height, width)


def _relu(x: np.ndarray) -> np.ndarray:
    return np.maximum(x, 0.0, out=x)


def _max_pool2(x: np.ndarray) -> np.ndarray:
    """2×2 / stride-2 max-pool of (C, H, W), H and W even: three element-wise maxima (a reduction over the
    reshaped 2×2 blocks is several times slower)."""
    out = np.maximum(x[:, 0::2, 0::2], x[:, 0::2, 1::2])
    np.maximum(out, x[:, 1::2, 0::2], out=out)
    return np.maximum(out, x[:, 1::2, 1::2], out=out)


def _upsample_nearest2(x: np.ndarray) -> np.ndarray:
    return x.repeat(2, axis=1).repeat(2, axis=2)


def _upsample_bilinear2(x: np.ndarray) -> np.ndarray:
    """×2 bilinear upsampling with half-pixel centres and edge clamping (torch ``align_corners=False``)."""
    def along(a: np.ndarray, axis: int) -> np.ndarray:
        n = a.shape[axis]
        previous = np.take(a, np.r_[0, np.arange(n - 1)], axis=axis)
        following = np.take(a, np.r_[np.arange(1, n), n - 1], axis=axis)
        stacked = np.stack([0.25 * previous + 0.75 * a, 0.75 * a + 0.25 * following], axis=axis + 1)
        shape = list(a.shape)
        shape[axis] *= 2
        return stacked.reshape(shape)
    return along(along(x, 1), 2)


@dataclass
class LungNetwork:
    """Weights of the lung U-Net and the numpy forward pass.

    Attributes
    ----------
    weights : dict of str to ndarray
        Folded convolution weights ``<layer>.w`` (C_out, C_in, k, k) and biases ``<layer>.b``.
    meta : dict
        The JSON file beside the weights: architecture, training recipe, cross-validated Dice, quality thresholds.
    """

    weights: dict[str, np.ndarray]
    meta: dict

    @property
    def levels(self) -> int:
        return sum(1 for name in self.weights if name.startswith("down") and name.endswith(".0.w"))

    @classmethod
    def load(cls, path: str | os.PathLike = DEFAULT_WEIGHTS) -> "LungNetwork":
        """Read ``<name>.npz`` after checking its SHA-256 against ``<name>.json``; raise LungNetworkError if not."""
        path = Path(path)
        meta_path = path.with_suffix(".json")
        if not path.is_file() or not meta_path.is_file():
            raise LungNetworkError(f"lung network weights not found ({path} and {meta_path.name})")
        meta = json.loads(meta_path.read_text())
        digest = hashlib.sha256(path.read_bytes()).hexdigest()
        if digest != meta.get("sha256"):
            raise LungNetworkError(f"{path}: SHA-256 {digest[:12]}… differs from {meta_path.name}; refusing it")
        with np.load(path, allow_pickle=False) as archive:
            weights = {name: archive[name].astype(np.float32) for name in archive.files}
        return cls(weights, meta)

    def logits(self, canvas: np.ndarray) -> np.ndarray:
        """Lung logits of a (NET_SIZE, NET_SIZE) float32 canvas in [0, 1]; shape (NET_SIZE, NET_SIZE)."""
        w = self.weights
        x = canvas[None].astype(np.float32)
        x = _relu(_conv3x3(x, w["stem0.w"], w["stem0.b"], stride=2))
        x = _relu(_conv3x3(x, w["stem1.w"], w["stem1.b"]))
        skips = []
        for level in range(self.levels):
            skips.append(x)
            x = _max_pool2(x)
            x = _relu(_conv3x3(x, w[f"down{level}.0.w"], w[f"down{level}.0.b"]))
            x = _relu(_conv3x3(x, w[f"down{level}.1.w"], w[f"down{level}.1.b"]))
        for level in reversed(range(self.levels)):
            x = _upsample_nearest2(_conv1x1(x, w[f"reduce{level}.w"], w[f"reduce{level}.b"]))
            x = np.concatenate([x, skips[level]])
            x = _relu(_conv3x3(x, w[f"up{level}.0.w"], w[f"up{level}.0.b"]))
            x = _relu(_conv3x3(x, w[f"up{level}.1.w"], w[f"up{level}.1.b"]))
        return _upsample_bilinear2(_conv1x1(x, w["head.w"], w["head.b"]))[0]

    def probability(self, work: np.ndarray) -> np.ndarray:
        """Lung probability of every pixel of a working image.

        Parameters
        ----------
        work : ndarray of float32, shape (h, w), longest side NET_SIZE
            :func:`core.lungs.fields.to_working_size` of the image (any grey-level scale, MONOCHROME2).

        Returns
        -------
        ndarray of float32, shape (h, w), values in [0, 1]
        """
        height, width = work.shape
        if max(height, width) != NET_SIZE:
            raise ValueError(f"the lung network needs a working image with longest side {NET_SIZE}, got {work.shape}")
        canvas, (top, left) = network_canvas(work)
        logits = self.logits(canvas)[top:top + height, left:left + width]
        return (1.0 / (1.0 + np.exp(-logits))).astype(np.float32)


def network_canvas(work: np.ndarray) -> tuple[np.ndarray, tuple[int, int]]:
    """The network's input: ``work`` scaled by its 1st/99th percentiles to [0, 1], centred on a black square.

    The percentiles leave out pixels at the image's own minimum or maximum (black padding, saturated burned-in
    labels), so a label in a corner does not rescale the lungs. Returns the (NET_SIZE, NET_SIZE) float32 canvas and
    the (top, left) offset of the image on it. The training script builds its inputs with this same function.
    """
    height, width = work.shape
    top, left = (NET_SIZE - height) // 2, (NET_SIZE - width) // 2
    inner = work[(work > work.min()) & (work < work.max())]
    low, high = np.percentile(inner if inner.size >= 16 else work, [1, 99])
    canvas = np.zeros((NET_SIZE, NET_SIZE), dtype=np.float32)
    canvas[top:top + height, left:left + width] = np.clip((work - low) / max(float(high - low), 1e-6), 0.0, 1.0)
    return canvas, (top, left)
