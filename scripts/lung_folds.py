"""The patient-grouped folds of the expert-masked images, shared by the lung U-Net's training and evaluation."""

from __future__ import annotations

import numpy as np
import pandas as pd
from sklearn.model_selection import GroupKFold


def masked_images(manifest: pd.DataFrame) -> pd.DataFrame:
    """Rows of the manifest that have an expert lung mask, in manifest order."""
    return manifest[manifest["lung_mask"].notna()].reset_index(drop=True)


def patient_folds(masked: pd.DataFrame, n_folds: int) -> np.ndarray:
    """Fold of every masked image, grouped by patient_group (the same assignment for every run)."""
    fold = np.empty(len(masked), dtype=int)
    for k, (_, test) in enumerate(GroupKFold(n_folds, shuffle=True, random_state=0)
                                  .split(masked, groups=masked["patient_group"])):
        fold[test] = k
    return fold
