"""Train the lung U-Net once (torch, CPU; training only — the package runs the exported weights in numpy).

Not part of the package: torch is needed here only. Install it in a separate environment, e.g.
``python3 -m venv /tmp/torchenv && /tmp/torchenv/bin/pip install torch==2.13.0 numpy pillow scipy pandas
scikit-learn scikit-image pydicom``, and run from the repository root:

    # patient-grouped cross-validation: one run per left-out fold (5 folds, grouped by patient_group)
    /tmp/torchenv/bin/python scripts/train_lung_unet.py --fold K --out /tmp/lungs/foldK.npz      # K = 0..4
    # the shipped weights: every masked image
    /tmp/torchenv/bin/python scripts/train_lung_unet.py --fold -1 --out /tmp/lungs/final.npz
    # Dice of the left-out folds, quality ranges, and install of the final weights into models/lungs/
    python scripts/evaluate_lung_unet.py --folds /tmp/lungs/fold?.npz --final /tmp/lungs/final.npz

Each run: 400 steps of batch 8 (about 14 epochs of the ~225 training images), ~15 min on 2 cores.
The architecture here must match ``core/lungs/network.py`` (export() writes its layer names).
"""
import argparse
import hashlib
import json
import math
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import torch
import torch.nn as nn
import torch.nn.functional as F
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from core.io.images import read_image  # noqa: E402
from core.lungs.fields import to_working_size  # noqa: E402
from core.lungs.network import NET_SIZE, network_canvas  # noqa: E402
from core.paths import default_data_dir  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent))
from lung_folds import masked_images, patient_folds  # noqa: E402

WIDTHS = (8, 16, 32, 64, 128)


def block(ci, co, stride=1):
    return nn.Sequential(nn.Conv2d(ci, co, 3, stride, 1, bias=False), nn.BatchNorm2d(co), nn.ReLU(inplace=True))


class UNet(nn.Module):
    def __init__(self, widths=WIDTHS):
        super().__init__()
        w0 = widths[0]
        self.stem = nn.Sequential(block(1, w0, 2), block(w0, w0))
        self.down = nn.ModuleList(nn.Sequential(block(a, b), block(b, b)) for a, b in zip(widths[:-1], widths[1:]))
        self.reduce = nn.ModuleList(nn.Conv2d(b, a, 1) for a, b in zip(widths[:-1], widths[1:]))
        self.up = nn.ModuleList(nn.Sequential(block(2 * a, a), block(a, a)) for a in widths[:-1])
        self.head = nn.Conv2d(w0, 1, 1)

    def forward(self, x):
        x = self.stem(x)
        skips = []
        for d in self.down:
            skips.append(x)
            x = d(F.max_pool2d(x, 2))
        for i in reversed(range(len(self.down))):
            x = F.interpolate(self.reduce[i](x), scale_factor=2, mode="nearest")
            x = self.up[i](torch.cat([x, skips[i]], 1))
        return F.interpolate(self.head(x), scale_factor=2, mode="bilinear", align_corners=False)


def augment(x, y, g):
    n = x.shape[0]
    ang = (torch.rand(n, generator=g) * 2 - 1) * math.radians(10)
    scale = torch.exp((torch.rand(n, generator=g) * 2 - 1) * math.log(1.25))
    aspect = torch.exp((torch.rand(n, generator=g) * 2 - 1) * 0.08)
    tx, ty = [(torch.rand(n, generator=g) * 2 - 1) * 0.15 for _ in range(2)]
    sx, sy = 1 / (scale * aspect), aspect / scale
    theta = torch.stack([torch.stack([torch.cos(ang) * sx, -torch.sin(ang) * sx, tx], 1),
                         torch.stack([torch.sin(ang) * sy, torch.cos(ang) * sy, ty], 1)], 1)
    grid = F.affine_grid(theta, x.shape, align_corners=False)
    x = F.grid_sample(x, grid, align_corners=False)
    y = F.grid_sample(y, grid, align_corners=False)
    gamma = torch.exp((torch.rand(n, 1, 1, 1, generator=g) * 2 - 1) * 0.4)
    x = x.clamp(0, 1) ** gamma
    c = 0.8 + 0.4 * torch.rand(n, 1, 1, 1, generator=g); b = (torch.rand(n, 1, 1, 1, generator=g) * 2 - 1) * 0.1
    x = x * c + b
    blur = torch.rand(n, generator=g) < 0.25
    if blur.any():
        x[blur] = F.avg_pool2d(x[blur], 3, 1, 1, count_include_pad=False)
    x = x + torch.randn(x.shape, generator=g) * (torch.rand(n, 1, 1, 1, generator=g) * 0.03)
    for i in range(n):  # burned-in text / markers: bright rectangles anywhere
        if torch.rand(1, generator=g) < 0.3:
            h, w = torch.randint(4, 30, (2,), generator=g)
            r, c0 = torch.randint(0, 256 - 30, (2,), generator=g)
            x[i, :, r:r + h, c0:c0 + w] = torch.rand(1, generator=g) * 0.3 + 0.7
    # renormalise like the runtime: percentiles 1 and 99 -> 0 and 1
    flat = x.reshape(n, -1)
    lo, hi = torch.quantile(flat, 0.01, dim=1), torch.quantile(flat, 0.99, dim=1)
    x = ((x - lo[:, None, None, None]) / (hi - lo).clamp_min(1e-3)[:, None, None, None]).clamp(0, 1)
    return x, y


def loss_fn(logits, y):
    p = torch.sigmoid(logits)
    inter = (p * y).sum((1, 2, 3)); dice = (2 * inter + 1) / (p.sum((1, 2, 3)) + y.sum((1, 2, 3)) + 1)
    return F.binary_cross_entropy_with_logits(logits, y) + (1 - dice).mean()


def export(model):
    """Fold batch norm into the convolutions; numpy arrays keyed by layer."""
    model.eval(); out = {}
    def fold(seq, name):
        conv, bn = seq[0], seq[1]
        s = bn.weight / torch.sqrt(bn.running_var + bn.eps)
        out[name + ".w"] = (conv.weight * s[:, None, None, None]).detach().numpy().astype(np.float32)
        out[name + ".b"] = (bn.bias - bn.running_mean * s).detach().numpy().astype(np.float32)
    fold(model.stem[0], "stem0"); fold(model.stem[1], "stem1")
    for i, d in enumerate(model.down):
        fold(d[0], f"down{i}.0"); fold(d[1], f"down{i}.1")
    for i, (r, u) in enumerate(zip(model.reduce, model.up)):
        out[f"reduce{i}.w"] = r.weight.detach().numpy().astype(np.float32); out[f"reduce{i}.b"] = r.bias.detach().numpy()
        fold(u[0], f"up{i}.0"); fold(u[1], f"up{i}.1")
    out["head.w"] = model.head.weight.detach().numpy().astype(np.float32); out["head.b"] = model.head.bias.detach().numpy()
    return out


def prepare(data_dir: Path, cache: Path | None) -> tuple[pd.DataFrame, np.ndarray, np.ndarray]:
    """Network inputs (the runtime's own network_canvas) and soft expert masks of every masked image."""
    if cache is not None and cache.is_file():
        saved = np.load(cache, allow_pickle=False)
        return pd.read_csv(cache.with_suffix(".csv")), saved["X"].astype(np.float32), saved["Y"].astype(np.float32)
    manifest = masked_images(pd.read_csv(data_dir / "manifest.csv"))
    X = np.zeros((len(manifest), NET_SIZE, NET_SIZE), np.float32)
    Y = np.zeros_like(X)
    for i, row in enumerate(manifest.itertuples()):
        work, _ = to_working_size(read_image(data_dir / "images" / row.file).pixels)
        X[i], (top, left) = network_canvas(work)
        mask = np.asarray(Image.open(data_dir / "masks" / row.lung_mask), dtype=np.float32) / 255.0
        soft = np.clip(to_working_size(mask)[0], 0.0, 1.0)
        Y[i, top:top + soft.shape[0], left:left + soft.shape[1]] = soft
    if cache is not None:
        np.savez_compressed(cache, X=X.astype(np.float16), Y=Y.astype(np.float16))
        manifest.to_csv(cache.with_suffix(".csv"), index=False)
    return manifest, X, Y


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", type=Path, default=default_data_dir())
    ap.add_argument("--cache", type=Path, default=None, help="npz cache of the prepared inputs (optional)")
    ap.add_argument("--fold", type=int, default=-1, help="leave out this fold (-1: train on every masked image)")
    ap.add_argument("--folds", type=int, default=5)
    ap.add_argument("--steps", type=int, default=400)
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--lr", type=float, default=3e-3)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--out", type=Path, required=True, help="weights file (.npz)")
    a = ap.parse_args()
    torch.manual_seed(a.seed)
    torch.set_num_threads(a.threads)
    manifest, X, Y = prepare(a.data, a.cache)
    fold = patient_folds(manifest, a.folds)
    train, test = np.flatnonzero(fold != a.fold), np.flatnonzero(fold == a.fold)
    X, Y = torch.from_numpy(X)[:, None], torch.from_numpy(Y)[:, None]
    model = UNet()
    opt = torch.optim.AdamW(model.parameters(), lr=a.lr, weight_decay=1e-4)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=a.lr, total_steps=a.steps, pct_start=0.1)
    g = torch.Generator().manual_seed(a.seed)
    rng = np.random.default_rng(a.seed)
    t0, step = time.time(), 0
    while step < a.steps:
        order = rng.permutation(train)
        for s in range(0, len(order) - a.batch + 1, a.batch):
            b = order[s:s + a.batch]
            x, y = augment(X[b].clone(), Y[b].clone(), g)
            model.train()
            loss = loss_fn(model(x), y)
            opt.zero_grad()
            loss.backward()
            opt.step()
            sched.step()
            step += 1
            if step % 50 == 0:
                print(f"step {step}/{a.steps} loss {loss.item():.3f} {time.time() - t0:.0f}s", flush=True)
            if step >= a.steps:
                break
    weights = export(model)
    a.out.parent.mkdir(parents=True, exist_ok=True)
    np.savez(a.out, **weights)
    record = {"fold": a.fold, "folds": a.folds, "steps": a.steps, "batch": a.batch, "lr": a.lr, "seed": a.seed,
              "train_files": manifest["file"].iloc[train].tolist(), "test_files": manifest["file"].iloc[test].tolist(),
              "seconds": round(time.time() - t0), "sha256": hashlib.sha256(a.out.read_bytes()).hexdigest()}
    a.out.with_suffix(".run.json").write_text(json.dumps(record, indent=1))
    print(f"wrote {a.out} ({len(train)} training images, {time.time() - t0:.0f} s)")


if __name__ == "__main__":
    main()
