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
    python scripts/site_validation_experiment.py summarise --out /work/scratch/validation # README tables
    python scripts/site_validation_experiment.py halves --out /work/scratch/validation    # 50 random halves

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

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # this checkout's core, even beside an installed one
from core.paths import default_cache_dir, default_data_dir  # noqa: E402

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


def core_command(*args: object, refusal_expected: bool = False) -> subprocess.CompletedProcess:
    command = [sys.executable, "-m", "core", *map(str, args)]
    print("$", " ".join(command), flush=True)
    done = subprocess.run(command, capture_output=True, text=True)
    if done.returncode not in ((0, 1, 2) if refusal_expected else (0, 1)):
        raise RuntimeError(f"{' '.join(command)} exited {done.returncode}: {done.stderr[-2000:]}")
    return done


def run(out: Path, n_jobs: int) -> None:
    results: dict[str, dict] = {}
    figures = out / "figures"
    figures.mkdir(parents=True, exist_ok=True)

    def validate(key: str, data: str, models: str, profile: Path | None = None) -> dict:
        json_path, html_path = figures / f"{key}.json", figures / f"{key}.html"
        if json_path.is_file():  # resume: each validation is run once
            results[key] = json.loads(json_path.read_text())
            return results[key]
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
        done = None if profile.is_file() else core_command(
                            "calibrate", "--data", out / "data" / f"external-{calibrated}",
                            "--models", out / "models" / "without-external", "--out", profile,
                            "--name", f"external half {calibrated}", "--n-jobs", n_jobs, "--quiet")
        if done is not None:
            results[f"calibrate-{calibrated}"] = {"stdout": done.stdout, "stderr": done.stderr[-2000:],
                                                  "returncode": done.returncode}
        validate(f"external-{applied}-before", f"external-{applied}", "without-external")
        if profile.is_file():
            validate(f"external-{applied}-with-profile-{calibrated}", f"external-{applied}", "without-external",
                     profile)
    done = core_command("calibrate", "--data", out / "data" / "site-actualmed", "--models",
                        out / "models" / "without-external", "--out", figures / "profile-actualmed.json", "--quiet",
                        refusal_expected=True)
    results["calibrate-actualmed"] = {"stdout": done.stdout, "stderr": done.stderr[-2000:],
                                      "returncode": done.returncode}
    (out / "results.json").write_text(json.dumps(results, indent=2))
    print(f"wrote {out / 'results.json'}")


def _cell(figure: dict | None, events: bool = True, digits: int = 1) -> str:
    if not figure or figure.get("value") is None:
        return "—"
    low, high = figure["ci"]
    if "events" not in figure:  # AUC, Brier
        return f"{figure['value']:.3f} ({low:.3f}–{high:.3f})"
    text = f"{100 * figure['value']:.{digits}f}% ({100 * low:.0f}–{100 * high:.0f})"
    return text + (f" [{figure['events']}/{figure['n']}]" if events else "")


def summarise(out: Path) -> None:
    """The README tables: one row per validation, and the two halves before / with the other half's profile."""
    figures = out / "figures"
    print("| set | models | films (patients) COVID / Normal | AUC (95% CI) | threshold | sensitivity | specificity |"
          " flagged: other labels | OOD warning |")
    print("| --- | --- | --- | --- | --- | --- | --- | --- | --- |")
    for path in sorted(figures.glob("*.json")):
        if path.name.startswith("profile-"):
            continue
        report = json.loads(path.read_text())
        covid, point = report["covid"], report["covid"].get("operating_point") or {}
        others = "; ".join(f"{label} {_cell(rate, digits=0)}" for label, rate in report["flag_rate_per_label"].items()
                           if label not in ("COVID-19", "Normal"))
        print(f"| {path.stem} | {report['models']['folder']} | {covid['n_positive']} ({covid['positive_patients']}) / "
              f"{covid['n_negative']} ({covid['negative_patients']}) | {_cell(covid['AUC'])} | "
              f"{100 * (report['threshold'] or 0):.1f}% | {_cell(point.get('sensitivity'))} | "
              f"{_cell(point.get('specificity'))} | {others or '—'} | "
              f"{_cell(report['warnings']['out_of_distribution'])} |")
    for path in sorted(figures.glob("profile-*.json")):
        profile = json.loads(path.read_text())
        ev = profile["evidence"]
        low, high = ev["threshold_ci"]
        cv = ev.get("cross_validated", {})
        print(f"\n{path.stem}: {profile['recalibration']['method']}, threshold "
              f"{100 * profile['flag_rule']['threshold']:.1f}% (95% CI {100 * low:.1f}–{100 * high:.1f}), models' risk "
              f"≥ {100 * ev['model_risk_at_threshold']:.1f}%; calibration films: sensitivity "
              f"{_cell(ev['on_calibration_films']['sensitivity'])}, specificity "
              f"{_cell(ev['on_calibration_films']['specificity'])}; cross-validated: sensitivity "
              f"{_cell(cv.get('sensitivity'))}, specificity {_cell(cv.get('specificity'))}, Brier "
              f"{cv.get('brier_before', float('nan')):.3f} → {cv.get('brier_after', float('nan')):.3f}")


def repeated_halves(out: Path, repeats: int, n_jobs: int) -> None:
    """How much the applied half's sensitivity varies with the split: the halves experiment repeated over many
    patient-grouped random halves (label-stratified like the main split, then also site × label), through the same
    code as ``calibrate`` (:func:`fit_site_profile`) on one scoring of the external films."""
    from core.io.datasets import load_dataset
    from core.learn.site_profile import SiteProfileError
    from core.triage.model import TriageModel
    from core.validation.calibrate import fit_site_profile
    from core.validation.scoring import ScoredSet, score_dataset

    model = TriageModel.load(out / "models" / "without-external", use_environment=False)
    cached = out / "figures" / "external-records.json"
    dataset = load_dataset(out / "data" / "external")
    if cached.is_file():
        records = pd.read_json(cached)
    else:
        records = score_dataset(model, dataset, n_jobs=n_jobs).records
        records.to_json(cached)
    scored = ScoredSet(records, dataset)
    rows, y = scored.binary()
    summary = {}
    for design in ("label", "site x label"):
        strata = y if design == "label" else pd.factorize(rows["site"] + "|" + rows["label"])[0]
        applied, refused = [], 0
        for seed in range(repeats):
            folds = StratifiedGroupKFold(n_splits=2, shuffle=True, random_state=seed)
            first, second = next(folds.split(rows, strata, rows["patient"]))
            for fit_on, apply_to in ((first, second), (second, first)):
                part = ScoredSet(rows.iloc[fit_on].reset_index(drop=True), dataset)
                try:
                    profile = fit_site_profile(part, models_fingerprint=model.fingerprint, name="half", n_boot=200)
                except SiteProfileError:
                    refused += 1
                    continue
                risk = profile.risk(rows["risk"].to_numpy()[apply_to])
                flagged, truth = risk >= profile.flag_rule.threshold, y[apply_to]
                applied.append((flagged[truth == 1].mean(), (~flagged[truth == 0]).mean()))
        sens, spec = np.array(applied).T
        summary[design] = {"profiles": len(applied), "refused": refused,
                           "sensitivity": {"mean": float(sens.mean()), "median": float(np.median(sens)),
                                           "p5": float(np.quantile(sens, 0.05)), "p95": float(np.quantile(sens, 0.95)),
                                           "share_at_or_above_target": float((sens >= 0.95).mean())},
                           "specificity": {"mean": float(spec.mean()), "median": float(np.median(spec))}}
        print(f"{design}: {len(applied)} profiles ({refused} refused); applied-half sensitivity mean "
              f"{sens.mean():.3f}, median {np.median(sens):.3f}, 5–95% {np.quantile(sens, 0.05):.3f}–"
              f"{np.quantile(sens, 0.95):.3f}, ≥ 0.95 in {(sens >= 0.95).mean():.0%}; "
              f"specificity mean {spec.mean():.3f}")
    (out / "figures" / "repeated-halves.json").write_text(json.dumps(summary, indent=2))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("stage", choices=("prepare", "run", "summarise", "halves"))
    parser.add_argument("--repeats", type=int, default=50, help="halves: random splits (default 50)")
    parser.add_argument("--out", type=Path, required=True, help="working folder (outside the repository)")
    parser.add_argument("--data", type=Path, default=default_data_dir())
    parser.add_argument("--n-jobs", type=int, default=1)
    args = parser.parse_args()
    np.seterr(all="ignore")
    if args.stage == "prepare":
        prepare(args.out, args.data.resolve(), args.n_jobs)
    elif args.stage == "run":
        run(args.out, args.n_jobs)
    elif args.stage == "halves":
        repeated_halves(args.out, args.repeats, args.n_jobs)
    else:
        summarise(args.out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
