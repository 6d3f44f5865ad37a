"""Labelled chest X-ray data sets: the manifest layout and the class-folder layout.

Two layouts are understood:

- a folder with ``manifest.csv`` (``file,label[,patient_id,offset_days,view,origin_dataset,...]``), the images
  under the folder or its ``images/`` sub-folder (as in ``../shared/data/cxr``);
- a folder of class sub-folders (``COVID/``, ``Normal/``, any case, as in the Kaggle layouts).

Labels are normalised to ``COVID-19`` / ``Normal``; other findings (bacterial or viral pneumonias, SARS, ...) keep
their own name. The triage model is trained on three classes (Normal / other pneumonia / COVID-19; every finding other
than COVID-19 and Normal is "other pneumonia", :mod:`core.labels`); :func:`binary_subset` keeps the study's two
classes (COVID-19 vs Normal) for its reproduction.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
from PIL import Image

from core.io.images import SUPPORTED_SUFFIXES
from core.labels import LABEL_COVID, LABEL_NORMAL, normalise_label


class DatasetError(ValueError):
    """A data set folder that cannot be used, with the reason."""


@dataclass
class Dataset:
    """A labelled image collection.

    Attributes
    ----------
    root : Path
        The folder the data set was read from.
    table : DataFrame
        One row per image: ``path`` (absolute), ``file`` (relative to ``root``), ``label`` (normalised),
        ``patient_id`` (the file itself when unknown), and, when the manifest has them, ``offset_days``, ``view``,
        ``origin_dataset``, ``geographic_extent``, ``opacity``.
    layout : str
        ``"manifest"``, ``"class-folders"`` or ``"unlabelled"``.
    """

    root: Path
    table: pd.DataFrame
    layout: str

    @property
    def has_patient_ids(self) -> bool:
        return bool(self.table["patient_known"].any())

    def __len__(self) -> int:
        return len(self.table)


def is_image_file(path: Path) -> bool:
    return path.is_file() and path.suffix.lower() in SUPPORTED_SUFFIXES and not path.name.startswith(".")


def load_dataset(root: str | Path, *, allow_unlabelled: bool = False) -> Dataset:
    """Read a data set folder in either layout (or, if allowed, a plain folder of unlabelled images)."""
    root = Path(root).expanduser().resolve()
    if not root.is_dir():
        raise DatasetError(f"{root}: not a folder")
    if (root / "manifest.csv").is_file():
        return _load_manifest(root)
    class_dirs = sorted(d for d in root.iterdir() if d.is_dir() and any(is_image_file(p) for p in d.iterdir()))
    if class_dirs:
        return _load_class_folders(root, class_dirs)
    if allow_unlabelled:
        files = sorted(p for p in root.iterdir() if is_image_file(p))
        if files:
            table = pd.DataFrame({"path": [str(p) for p in files], "file": [p.name for p in files]})
            table["label"] = ""
            return Dataset(root, _with_patients(table), "unlabelled")
    raise DatasetError(f"{root}: no manifest.csv and no class sub-folders with images "
                       f"(expected e.g. {root}/COVID/*.png and {root}/Normal/*.png)")


def _load_manifest(root: Path) -> Dataset:
    manifest = root / "manifest.csv"
    try:
        table = pd.read_csv(manifest, dtype={"patient_id": str, "file": str, "label": str})
    except (pd.errors.ParserError, UnicodeDecodeError, pd.errors.EmptyDataError) as exc:
        raise DatasetError(f"{manifest}: cannot be read as CSV ({exc})") from exc
    missing = {"file", "label"} - set(table.columns)
    if missing:
        raise DatasetError(f"{manifest}: missing column(s) {', '.join(sorted(missing))}")
    image_dir = root / "images" if (root / "images").is_dir() else root
    paths = [image_dir / f for f in table["file"]]
    absent = [str(p.name) for p in paths if not p.is_file()]
    if absent:
        raise DatasetError(f"{manifest}: {len(absent)} listed image(s) not found, e.g. {absent[:3]}")
    table = table.copy()
    table.insert(0, "path", [str(p) for p in paths])
    table["label"] = table["label"].map(normalise_label)
    return Dataset(root, _with_patients(table), "manifest")


def _load_class_folders(root: Path, class_dirs: list[Path]) -> Dataset:
    rows = []
    for folder in class_dirs:
        label = normalise_label(folder.name)
        for path in sorted(p for p in folder.iterdir() if is_image_file(p)):
            rows.append({"path": str(path), "file": str(path.relative_to(root)), "label": label})
    return Dataset(root, _with_patients(pd.DataFrame(rows)), "class-folders")


def _with_patients(table: pd.DataFrame) -> pd.DataFrame:
    """Fill ``patient_id`` (each unknown image is its own patient) and record which ids were known."""
    table = table.reset_index(drop=True)
    if "patient_id" in table.columns:
        known = table["patient_id"].notna() & (table["patient_id"].astype(str).str.strip() != "")
    else:
        known = pd.Series(False, index=table.index)
        table["patient_id"] = None
    table["patient_known"] = known
    table["patient_id"] = np.where(known, table["patient_id"].astype(str), "file:" + table["file"].astype(str))
    return table


def patient_groups(table: pd.DataFrame) -> np.ndarray:
    """The patient of each row, to group and split by: ``patient_group`` (ids of one person merged) where the
    manifest gives it, else ``patient_id`` (an image of an unknown patient is its own patient)."""
    groups = table["patient_id"].astype(str)
    if "patient_group" in table.columns:
        given = table["patient_group"].notna() & (table["patient_group"].astype(str).str.strip() != "")
        groups = groups.where(~given, table["patient_group"].astype(str))
    return groups.to_numpy()


def binary_subset(dataset: Dataset) -> tuple[pd.DataFrame, np.ndarray]:
    """Rows labelled COVID-19 or Normal, and the target (1 = COVID-19, 0 = Normal)."""
    table = dataset.table[dataset.table["label"].isin([LABEL_COVID, LABEL_NORMAL])].reset_index(drop=True)
    if table["label"].nunique() < 2:
        raise DatasetError(f"{dataset.root}: need both COVID-19 and Normal images, found "
                           f"{sorted(dataset.table['label'].unique())}")
    return table, (table["label"] == LABEL_COVID).to_numpy(dtype=int)


def _image_size(path: str) -> tuple[float, float]:
    """Width and height from the file header only (no pixel decoding)."""
    try:
        if Path(path).suffix.lower() in {".dcm", ".dicom"}:
            import pydicom

            header = pydicom.dcmread(path, stop_before_pixels=True)
            return float(header.Columns), float(header.Rows)
        with Image.open(path) as image:
            return float(image.width), float(image.height)
    except Exception:  # an unreadable file is reported by the reader later, not by the summary
        return float("nan"), float("nan")


def summarize(dataset: Dataset) -> dict:
    """Images per label, patients, views, sources and image sizes of a data set."""
    table = dataset.table
    sizes = np.array([_image_size(p) for p in table["path"]])
    summary = {
        "root": str(dataset.root),
        "layout": dataset.layout,
        "n_images": int(len(table)),
        "n_patients": int(table.loc[table["patient_known"], "patient_id"].nunique()) if dataset.has_patient_ids
        else None,
        "images_per_label": table["label"].value_counts().to_dict(),
        "patients_per_label": table[table["patient_known"]].groupby("label")["patient_id"].nunique().to_dict(),
        "width": _describe(sizes[:, 0]) if len(sizes) else None,
        "height": _describe(sizes[:, 1]) if len(sizes) else None,
    }
    for column in ("view", "origin_dataset", "site"):
        if column in table.columns:
            summary[f"images_per_{column}"] = table[column].fillna("unknown").value_counts().to_dict()
    others = sorted(set(table["label"]) - {LABEL_COVID, LABEL_NORMAL, ""})
    summary["other_findings"] = others
    summary["note"] = ("The triage model is trained on three classes: Normal, other pneumonia (every other finding: "
                       f"{int(table['label'].isin(others).sum())} images) and COVID-19; the study's reproduction "
                       "uses COVID-19 vs Normal only.")
    return summary


def _describe(values: np.ndarray) -> dict:
    values = values[np.isfinite(values)]
    if not len(values):
        return {}
    return {"min": int(values.min()), "median": float(np.median(values)), "max": int(values.max())}


def format_summary(summary: dict) -> str:
    """Human-readable lines of :func:`summarize`."""
    lines = [f"{summary['root']} ({summary['layout']}): {summary['n_images']} images"
             + (f", {summary['n_patients']} patients" if summary["n_patients"] else "")]
    for label, count in summary["images_per_label"].items():
        patients = summary["patients_per_label"].get(label)
        lines.append(f"  {label:<14} {count:>5} images" + (f"  {patients:>4} patients" if patients else ""))
    for key in ("images_per_view", "images_per_origin_dataset", "images_per_site"):
        if key in summary:
            lines.append(f"  {key.removeprefix('images_per_')}: "
                         + ", ".join(f"{k} {v}" for k, v in summary[key].items()))
    if summary.get("width"):
        w, h = summary["width"], summary["height"]
        lines.append(f"  size: width {w['min']}–{w['max']} (median {w['median']:.0f}), "
                     f"height {h['min']}–{h['max']} (median {h['median']:.0f}) px")
    lines.append("  " + summary["note"])
    return "\n".join(lines)
