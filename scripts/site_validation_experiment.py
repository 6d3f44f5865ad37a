"""Site validation on the reference data: models that never saw a site, validated and calibrated on that site.

The reference set has no single hospital with enough COVID-19 *and* Normal films, so the experiment is built from
what the ``site`` column allows (see the README, "Site validation"):

- ``external``: the non-NIH sites that hold both labels (actualmed, eurorad, hannover, other-web, sciencedirect, sirm)
  pooled as one "hospital". Models are trained on every other site (NIH Normal films, COVID-19 from the COVID-only
  publishers). The external patients are split in two halves (patient-grouped, stratified by label): a profile
  is calibrated on one half and applied to the other, both ways.
- leave-one-site-out models for ``nih``, ``radiopaedia`` and ``rsna-journals``, each validated on its own site.

Usage (from the repository root; writes everything under OUT, nothing into the repository)::

    python scripts/site_validation_experiment.py prepare --out /work/scratch/validation   # subsets + training
    python scripts/site_validation_experiment.py run --out /work/scratch/validation       # validate / calibrate

Data subsets are folders holding a ``manifest.csv`` of the chosen rows and an ``images`` symbolic link to the
reference images: no image is copied.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
from sklearn.model_selection import StratifiedGroupKFold

from core.paths import default_cache_dir, default_data_dir

EXTERNAL_SITES = ("actualmed", "eurorad", "hannover", "other-web", "sciencedirect", "sirm")
LEAVE_ONE_OUT_SITES = ("nih", "radiopaedia", "rsna-journals")
HALVES_SEED = 7


def write_subset(rows: pd.DataFrame, folder: Path, source: Path) -> Path:
    """A data set folder with these manifest rows and a link to the reference images."""
    folder.mkdir(parents=True, exist_ok=True)
    rows.to_csv(folder / "manifest.csv", index=False)
    link = folder / "images"
    if not link.exists():
        link.symlink_to(source / "images", target_is_directory=True)
    return folder


def halves(rows: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Two halves of the patients (``patient_group``), stratified by label."""
    labelled = rows[rows["label"].isin(["COVID-19", "Normal"])].reset_index(drop=True)
    y = (labelled["label"] == "COVID-19").to_numpy(int)
    folds = StratifiedGroupKFold(n_splits=2, shuffle=True, random_state=HALVES_SEED)
    first, second = next(folds.split(labelled, y, labelled["patient_group"]))
    return labelled.iloc[first], labelled.iloc[second]


def prepare(out: Path, data: Path, n_jobs: int) -> None:
    from core.workflow import train

    manifest = pd.read_csv(data / "manifest.csv", dtype=str)
    subsets = {"external": manifest[manifest["site"].isin(EXTERNAL_SITES)],
               "without-external": manifest[~manifest["site"].isin(EXTERNAL_SITES)]}
    subsets["external-A"], subsets["external-B"] = halves(subsets["external"])
    for site in LEAVE_ONE_OUT_SITES:
        subsets[f"site-{site}"] = manifest[manifest["site"] == site]
        subsets[f"without-{site}"] = manifest[manifest["site"] != site]
    for name, rows in subsets.items():
        write_subset(rows, out / "data" / name, data)
    for name in ["without-external", *(f"without-{site}" for site in LEAVE_ONE_OUT_SITES)]:
        models = out / "models" / name
        if (models / "report.json").is_file():
            continue
        started = time.perf_counter()
        report = train(out / "data" / name, models, n_jobs=n_jobs, cache_dir=default_cache_dir(), evaluate_splits=())
        print(f"{name}: trained on {report['data']['n_images']} images in {time.perf_counter() - started:.0f} s, "
              f"threshold {report['consensus']['threshold']:.3f}", flush=True)


def core_command(*args: object) -> subprocess.CompletedProcess:
    command = [sys.executable, "-m", "core", *map(str, args)]
    print("$", " ".join(command), flush=True)
    done = subprocess.run(command, capture_output=True, text=True)
    if done.returncode not in (0, 1):
        raise RuntimeError(f"{' '.join(command)} exited {done.returncode}: {done.stderr[-2000:]}")
    return done


def run(out: Path, n_jobs: int) -> None:
    results: dict[str, dict] = {}
    figures = out / "figures"
    figures.mkdir(parents=True, exist_ok=True)

    def validate(key: str, data: str, models: str, profile: Path | None = None) -> dict:
        json_path, html_path = figures / f"{key}.json", figures / f"{key}.html"
        extra = ["--site-profile", profile] if profile else []
        core_command("validate", "--data", out / "data" / data, "--models", out / "models" / models,
                     "--json", json_path, "--report", html_path, "--n-jobs", n_jobs, "--quiet", *extra)
        results[key] = json.loads(json_path.read_text())
        return results[key]

    for site in EXTERNAL_SITES:
        write_subset(pd.read_csv(out / "data" / "external" / "manifest.csv", dtype=str).query("site == @site"),
                     out / "data" / f"site-{site}", default_data_dir())
        validate(f"site-{site}", f"site-{site}", "without-external")
    for site in LEAVE_ONE_OUT_SITES:
        validate(f"site-{site}", f"site-{site}", f"without-{site}")
    validate("external", "external", "without-external")
    for calibrated, applied in (("A", "B"), ("B", "A")):
        profile = figures / f"profile-external-{calibrated}.json"
        done = core_command("calibrate", "--data", out / "data" / f"external-{calibrated}",
                            "--models", out / "models" / "without-external", "--out", profile,
                            "--name", f"external half {calibrated}", "--n-jobs", n_jobs, "--quiet")
        results[f"calibrate-{calibrated}"] = {"stdout": done.stdout, "stderr": done.stderr[-2000:],
                                              "returncode": done.returncode}
        validate(f"external-{applied}-before", f"external-{applied}", "without-external")
        if profile.is_file():
            validate(f"external-{applied}-with-profile-{calibrated}", f"external-{applied}", "without-external",
                     profile)
    done = core_command("calibrate", "--data", out / "data" / "site-actualmed", "--models",
                        out / "models" / "without-external", "--out", figures / "profile-actualmed.json", "--quiet")
    results["calibrate-actualmed"] = {"stdout": done.stdout, "stderr": done.stderr[-2000:],
                                      "returncode": done.returncode}
    (out / "results.json").write_text(json.dumps(results, indent=2))
    print(f"wrote {out / 'results.json'}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("stage", choices=("prepare", "run"))
    parser.add_argument("--out", type=Path, required=True, help="working folder (outside the repository)")
    parser.add_argument("--data", type=Path, default=default_data_dir())
    parser.add_argument("--n-jobs", type=int, default=1)
    args = parser.parse_args()
    np.seterr(all="ignore")
    if args.stage == "prepare":
        prepare(args.out, args.data.resolve(), args.n_jobs)
    else:
        run(args.out, args.n_jobs)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
