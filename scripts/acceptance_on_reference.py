"""Does the acceptance path refuse real frontal chest films? And how well does the orientation check see turned ones?

1. ``--saved``: every reference film through the saved models' acceptance checks (``TriageModel.predict``, what
   ``predict``, ``score`` and the dashboard run): how many are refused and warned about, by reason and by site.
   The orientation check was trained on these films, so this is the in-sample count the README quotes.
2. ``--orientation``: the orientation check judged honestly, leaving one site out at a time (sites with fewer than
   28 films pooled as "small sites"): upright films wrongly refused or warned, and turned films caught, per way of
   turning. This is the figure for films from a hospital the check has not seen.

Usage (from the repository root; ``PYTHONPATH=$PWD`` in a git worktree):
    python scripts/acceptance_on_reference.py [--saved] [--orientation] [--data DIR] [--n-jobs 2]
"""

from __future__ import annotations

import argparse
import collections
import sys
from pathlib import Path

import numpy as np
import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # this checkout's core, not an installed one

from core.features.orientation import MISORIENTATIONS, UPRIGHT
from core.io.datasets import load_dataset
from core.learn.orientation import OrientationCheck, orientation_training_set
from core.paths import default_data_dir

SMALL_SITE = 28  # films; smaller sites are pooled into one held-out group


def saved_models_on_reference(table: pd.DataFrame) -> None:
    from core.triage.model import TriageModel

    model = TriageModel.load()
    refused, warned = collections.Counter(), collections.Counter()
    refused_sites = collections.Counter()
    for row in table.itertuples():
        prediction = model.predict(row.path)
        if prediction.error:
            reason = prediction.error.split("not scored — ", 1)[-1].split(" (")[0]
            refused[reason] += 1
            refused_sites[row.site] += 1
        for warning in prediction.warnings:
            warned[warning.split(" (")[0].split(":")[0]] += 1
    print(f"{len(table)} reference films (all labels), saved models in {model.models_dir}")
    print(f"refused: {sum(refused.values())}" + "".join(f"\n  {n:4d}  {reason}" for reason, n in refused.most_common()))
    if refused_sites:
        print("refused by site: " + ", ".join(f"{site} {n}" for site, n in refused_sites.most_common()))
    print("warnings (a film may have several):" + "".join(f"\n  {n:4d}  {w}" for w, n in warned.most_common()))


def orientation_leave_site_out(table: pd.DataFrame, n_jobs: int) -> None:
    X, y, index = orientation_training_set(table["path"], n_jobs=n_jobs)
    sites = table["site"].fillna("unknown").to_numpy()
    counts = pd.Series(sites).value_counts()
    group = np.array([s if counts[s] >= SMALL_SITE else "small sites" for s in sites])[index]
    check = OrientationCheck()
    refused = np.zeros(len(y), bool)
    warned = np.zeros(len(y), bool)
    for held_out in np.unique(group):
        test = group == held_out
        fitted = OrientationCheck(**check.get_params()).fit(X[~test], y[~test])
        for row in np.flatnonzero(test):
            verdict = fitted.assess_thumbnail(X[row])
            refused[row], warned[row] = verdict.refusal is not None, verdict.warning is not None
    print(f"orientation check, leave one site out ({len(np.unique(index))} films, "
          f"groups: {', '.join(np.unique(group))})")
    print(f"{'film is':<48} {'refused':>8} {'warned':>8} {'neither':>8}")
    for label in [UPRIGHT, *MISORIENTATIONS]:
        rows = y == label
        n = rows.sum()
        print(f"{label:<48} {refused[rows].sum():>8d} {(warned & ~refused)[rows].sum():>8d} "
              f"{(~refused & ~warned)[rows].sum():>8d}   (of {n})")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", type=Path, default=default_data_dir())
    parser.add_argument("--saved", action="store_true", help="the saved models' acceptance on every film")
    parser.add_argument("--orientation", action="store_true", help="leave-one-site-out orientation check")
    parser.add_argument("--n-jobs", type=int, default=1)
    args = parser.parse_args()
    table = load_dataset(args.data).table
    if args.saved or not args.orientation:
        saved_models_on_reference(table)
    if args.orientation or not args.saved:
        orientation_leave_site_out(table, args.n_jobs)


if __name__ == "__main__":
    main()
