"""Measure the lung U-Net on patients it never saw, set the mask-quality ranges, install the shipped weights.

    python scripts/evaluate_lung_unet.py --folds F0.npz F1.npz F2.npz F3.npz F4.npz --final FINAL.npz \\
        [--table lung-dice.csv] [--no-install]

For every expert-masked image, the weights of the fold that left its patient out (``train_lung_unet.py``, the same
patient_group folds) find the lungs through the package's own ``find_lung_fields``; the mask, resampled to the
image's size, is compared with the expert mask (Dice). Printed and written into ``models/lungs/lung-unet.json``:
Dice mean and 10th percentile by mask source (v7labs, lungVAE) and overall, the classical finder's Dice on the same
images, the forward-pass time, and the mask-quality ranges: for each quality measure, the 1st (or 99th)
percentile over the out-of-fold masks with Dice >= 0.90, so that a measure flags about 1 in 100 good masks,
with how many doubtful masks (Dice < 0.85) the check flags. ``--from-table`` reuses a per-image table written by
``--table`` (no re-measuring).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
from PIL import Image
from threadpoolctl import threadpool_limits

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from core.io.images import read_image  # noqa: E402
from core.lungs.fields import find_lung_fields, mask_at_size, to_working_size  # noqa: E402
from core.lungs.network import DEFAULT_WEIGHTS, LungNetwork  # noqa: E402
from core.lungs.quality import DEFAULT_RANGES, doubtful_measures  # noqa: E402
from core.paths import default_data_dir  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent))
from lung_folds import masked_images, patient_folds  # noqa: E402

GOOD_DICE, DOUBTFUL_DICE = 0.90, 0.85
RANGE_QUANTILE = 0.01  # share of good masks each measure may flag


def load_weights(path: Path) -> LungNetwork:
    with np.load(path, allow_pickle=False) as archive:
        weights = {k: archive[k].astype(np.float32) for k in archive.files if not k.endswith("_index")}
    return LungNetwork(weights, {})


def dice(a: np.ndarray, b: np.ndarray) -> float:
    return float(2 * np.count_nonzero(a & b) / max(np.count_nonzero(a) + np.count_nonzero(b), 1))


def measure(data_dir: Path, fold_paths: list[Path]) -> pd.DataFrame:
    manifest = masked_images(pd.read_csv(data_dir / "manifest.csv"))
    fold = patient_folds(manifest, len(fold_paths))
    networks = [load_weights(p) for p in fold_paths]
    rows = []
    for i, row in enumerate(manifest.itertuples()):
        pixels = read_image(data_dir / "images" / row.file).pixels
        expert = np.asarray(Image.open(data_dir / "masks" / row.lung_mask)) > 127
        network = networks[fold[i]]
        fields = find_lung_fields(pixels, method="network", network=network)
        classical = find_lung_fields(pixels, method="classical")
        auto = find_lung_fields(pixels, method="auto", network=network)
        rows.append({"file": row.file, "source": row.lung_mask_source, "site": row.site, "fold": int(fold[i]),
                     "dice": dice(mask_at_size(fields, expert.shape), expert),
                     "dice_auto": dice(mask_at_size(auto, expert.shape), expert), "auto_method": auto.quality["method"],
                     "dice_classical": dice(mask_at_size(classical, expert.shape), expert),
                     **fields.quality["measures"]})
    return pd.DataFrame(rows)


def summary(table: pd.DataFrame, column: str) -> dict:
    groups = {"all": table, **{source: part for source, part in table.groupby("source")}}
    return {name: {"n": int(len(part)), "mean": round(float(part[column].mean()), 4),
                   "p10": round(float(part[column].quantile(0.1)), 4)} for name, part in groups.items()}


def quality_ranges(table: pd.DataFrame) -> tuple[dict, dict]:
    good = table[table["dice"] >= GOOD_DICE]
    ranges = {}
    for name, (low, high) in DEFAULT_RANGES.items():
        if name not in table:
            continue
        ranges[name] = (None if low is None else round(float(good[name].quantile(RANGE_QUANTILE)), 3),
                        None if high is None else round(float(good[name].quantile(1 - RANGE_QUANTILE)), 3))
    flagged = table.apply(lambda r: bool(doubtful_measures(r.to_dict(), ranges)), axis=1)
    doubtful = table["dice"] < DOUBTFUL_DICE
    figures = {"flagged_good": round(float(flagged[table["dice"] >= GOOD_DICE].mean()), 3),
               "flagged_doubtful": round(float(flagged[doubtful].mean()), 3) if doubtful.any() else None,
               "n_good": int((table["dice"] >= GOOD_DICE).sum()), "n_doubtful": int(doubtful.sum())}
    return ranges, figures


def forward_ms(network: LungNetwork, data_dir: Path, n: int = 20) -> float:
    files = pd.read_csv(data_dir / "manifest.csv")["file"].iloc[:n]
    works = [to_working_size(read_image(data_dir / "images" / f).pixels)[0] for f in files]
    with threadpool_limits(limits=1):
        network.probability(works[0])
        start = time.perf_counter()
        for work in works:
            network.probability(work)
    return (time.perf_counter() - start) / len(works) * 1000


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", type=Path, default=default_data_dir())
    ap.add_argument("--folds", type=Path, nargs="+", required=True, help="fold weights, in fold order 0, 1, ...")
    ap.add_argument("--final", type=Path, required=True, help="weights trained on every masked image")
    ap.add_argument("--table", type=Path, default=None, help="write the per-image Dice here (CSV)")
    ap.add_argument("--no-install", action="store_true", help="only measure; leave models/lungs/ as it is")
    ap.add_argument("--from-table", type=Path, default=None, help="per-image table of an earlier run (--table)")
    a = ap.parse_args()
    table = pd.read_csv(a.from_table) if a.from_table else measure(a.data, a.folds)
    if a.table:
        table.to_csv(a.table, index=False)
    ranges, flags = quality_ranges(table)
    final = load_weights(a.final)
    figures = {"dice_out_of_fold": summary(table, "dice"), "dice_out_of_fold_auto": summary(table, "dice_auto"),
               "auto_used_classical": int((table["auto_method"] == "classical").sum()),
               "dice_classical_same_images": summary(table, "dice_classical"),
               "validation": f"{len(a.folds)}-fold cross-validation grouped by patient_group over the "
                             f"{len(table)} expert-masked images; Dice at the image's own size",
               "forward_ms_one_core": round(forward_ms(final, a.data), 1),
               "quality_ranges": ranges, "quality_check": flags}
    print(json.dumps(figures, indent=2))
    if not a.no_install:
        DEFAULT_WEIGHTS.parent.mkdir(parents=True, exist_ok=True)
        np.savez(DEFAULT_WEIGHTS, **final.weights)
        meta_path = DEFAULT_WEIGHTS.with_suffix(".json")
        meta = json.loads(meta_path.read_text()) if meta_path.is_file() else {}
        meta.update(figures)
        meta["sha256"] = hashlib.sha256(DEFAULT_WEIGHTS.read_bytes()).hexdigest()
        meta["n_parameters"] = int(sum(v.size for v in final.weights.values()))
        meta_path.write_text(json.dumps(meta, indent=2))
        print(f"installed {DEFAULT_WEIGHTS} and {meta_path.name}")


if __name__ == "__main__":
    main()
