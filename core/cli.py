"""Command line: ``python -m core {summary,features,evaluate,train,contrasts,predict,score,lungs,validate,calibrate,
bench} --help``."""

from __future__ import annotations

import argparse
import contextlib
import json
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import joblib

from core.evaluation.splits import SPLITS
from core.labels import TASKS
from core.learn.models import PRESETS, RECIPES
from core.paths import default_cache_dir, default_data_dir, default_models_dir


def _progress_printer(quiet: bool = False):
    """A progress callback writing one updating line to stderr."""
    def report(fraction: float, message: str) -> None:
        if not quiet:
            print(f"\r[{fraction:6.1%}] {message:<60}", end="" if fraction < 1 else "\n", file=sys.stderr,
                  flush=True)
    return report


@contextlib.contextmanager
def execution_backend(scheduler: str | None) -> Iterator[None]:
    """Run joblib work locally, or on the Dask cluster at ``scheduler`` (e.g. ``tcp://10.0.0.5:8786``)."""
    if not scheduler:
        yield
        return
    from dask.distributed import Client

    with Client(scheduler) as client, joblib.parallel_config(backend="dask"):
        print(f"running on Dask cluster {client.scheduler.address}", file=sys.stderr)
        yield


def _cache(args) -> Path | None:
    return None if args.no_cache else default_cache_dir()


def _add_common(parser: argparse.ArgumentParser, *, data: bool = True, features: bool = True) -> None:
    if data:
        parser.add_argument("--data", type=Path, default=default_data_dir(),
                            help="data set folder: manifest.csv layout or class sub-folders (default: %(default)s)")
    if features:
        parser.add_argument("--features", choices=("embedding", "radiomic", "both", "acquisition"), default=None,
                            help="feature set (default: both for evaluate/train/features)")
    parser.add_argument("--n-jobs", type=int, default=-1, help="parallel workers (default: all cores)")
    parser.add_argument("--no-cache", action="store_true", help="compute every feature afresh (honest timing)")
    parser.add_argument("--scheduler", default=None, metavar="ADDRESS",
                        help="run the per-image work on this Dask scheduler (joblib's dask backend)")
    parser.add_argument("--quiet", action="store_true", help="no progress line")


def cmd_summary(args) -> int:
    from core.io.datasets import format_summary, load_dataset, summarize

    summary = summarize(load_dataset(args.data))
    print(json.dumps(summary, indent=2) if args.json else format_summary(summary))
    return 0


def cmd_features(args) -> int:
    from core.features.blocks import extract_features
    from core.io.datasets import load_dataset

    dataset = load_dataset(args.data, allow_unlabelled=True)
    with execution_backend(args.scheduler):
        result = extract_features(dataset.table["path"], args.features or "both", n_jobs=args.n_jobs,
                                  cache_dir=_cache(args), progress=_progress_printer(args.quiet))
    table = result.table.copy()
    table["file"] = [Path(p).name for p in table["file"]]
    labels = dataset.table.set_index("path")["label"]
    if dataset.layout != "unlabelled":
        table.insert(1, "label", labels.loc[result.table["file"]].to_numpy())
    args.out.parent.mkdir(parents=True, exist_ok=True)
    table.to_csv(args.out, index=False)
    for message in result.errors.values():
        print(f"skipped: {message}", file=sys.stderr)
    print(f"wrote {len(table)} rows × {table.shape[1] - 2} features to {args.out}", file=sys.stderr)
    return 1 if result.errors else 0


def format_per_site(report) -> str:
    """Leave-one-site-out: AUC of every left-out site, one column per model (stage "after" when there is one)."""
    records = report.per_site()
    stage = "after" if any(r["stage"] == "after" for r in records) else "before"
    models = list(dict.fromkeys(r["model"] for r in records))
    lines = [f"\nper left-out site (stage {stage}; AUC — where the site holds one class)",
             f"{'site':<20} {'images':>6} {'positive':>8}" + "".join(f" {m:>15}" for m in models)]
    for site in dict.fromkeys(r["site"] for r in records):
        row = [r for r in records if r["site"] == site and r["stage"] == stage]
        cells = "".join(f" {'—' if r['AUC'] is None else format(r['AUC'], '.3f'):>15}" for r in row)
        lines.append(f"{site:<20} {row[0]['n_images']:>6} {row[0]['n_positive']:>8}{cells}")
    return "\n".join(lines)


def cmd_evaluate(args) -> int:
    from core.evaluation.evaluate import format_table
    from core.workflow import check_data_set, check_options, load_feature_matrix, run_evaluation

    started = time.perf_counter()
    check_options(repeats=args.repeats, train_size=args.train_size, select_k=args.select)  # before any image
    check_data_set(args.data, split=args.split, test_source=args.test_source, train_size=args.train_size)
    with execution_backend(args.scheduler):
        matrix = load_feature_matrix(args.data, args.features or "both", task=args.task, n_jobs=args.n_jobs,
                                     cache_dir=_cache(args), progress=_progress_printer(args.quiet))
        report = run_evaluation(matrix, split=args.split, test_source=args.test_source, repeats=args.repeats,
                                train_size=args.train_size, preset=args.preset, select_k=args.select,
                                n_jobs=args.n_jobs, progress=_progress_printer(args.quiet))
    print(format_table(report))
    if report.split == "site":
        print(format_per_site(report))
    print(f"\n{len(matrix.y)} images ({int(matrix.y.sum())} {matrix.positive_label}), "
          f"{len(set(matrix.groups))} patients; {time.perf_counter() - started:.1f} s", file=sys.stderr)
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(report.summary_json(), indent=2))
    if args.full_json:
        report.to_json(args.full_json)
    return 0


def cmd_train(args) -> int:
    from core.learn.artifacts import FINGERPRINT_ENV, models_fingerprint
    from core.workflow import train

    with execution_backend(args.scheduler):
        report = train(args.data, args.out, feature_set=args.features or "both", recipe=args.recipe,
                       target_sensitivity=args.target_sensitivity, repeats=args.repeats, n_boot=args.bootstrap,
                       severity_repeats=args.severity_repeats, n_jobs=args.n_jobs, cache_dir=_cache(args),
                       progress=_progress_printer(args.quiet))
    consensus = report["consensus"]
    print(f"saved to {args.out}: recipe {report['recipe']}, threshold {consensus['threshold']:.3f} "
          f"(out-of-fold sensitivity {consensus['out_of_fold']['sensitivity']:.3f}, "
          f"specificity {consensus['out_of_fold']['specificity']:.3f}, AUC {consensus['out_of_fold']['AUC']:.3f})")
    print(f"fingerprint {models_fingerprint(args.out)} (pin it outside the folder: {FINGERPRINT_ENV}=...)")
    return 0


def cmd_contrasts(args) -> int:
    from core.evaluation.report_sites import format_site_evaluation
    from core.workflow import SITE_EVALUATION_FILE, acquisition_signatures, load_feature_matrix, site_evaluation

    if args.models is not None:  # what training measured, without recomputing
        path = args.models / SITE_EVALUATION_FILE
        if not path.is_file():
            print(f"error: {path} does not exist; train with `python -m core train` or omit --models",
                  file=sys.stderr)
            return 2
        result = json.loads(path.read_text())
    else:
        with execution_backend(args.scheduler):
            matrix = load_feature_matrix(args.data, args.features or "both", task=None, n_jobs=args.n_jobs,
                                         cache_dir=_cache(args), progress=_progress_printer(args.quiet))
            signatures = acquisition_signatures(matrix, n_jobs=args.n_jobs, cache_dir=_cache(args))
            result = site_evaluation(matrix, args.recipe, signatures=signatures, n_boot=args.bootstrap,
                                     n_jobs=args.n_jobs, progress=_progress_printer(args.quiet))
    print(format_site_evaluation(result))
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(result, indent=1))
    return 0


def _load_triage_model(models_dir, *, risk: bool = True, site_profile: Path | None = None,
                       use_environment: bool = True):
    """The saved models (``risk=False``: only what the corona score needs) with the site profile (``--site-profile``
    or ``$CXR_SITE_PROFILE``) applied, or None after printing why not."""
    from core.learn.artifacts import ModelLoadError
    from core.triage.model import TriageModel

    try:
        return TriageModel.load(models_dir, risk=risk, site_profile=site_profile, use_environment=use_environment)
    except ModelLoadError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return None


def _score_files(model, images: list[Path], scheduler: str | None):
    """Read, check and score every file through the one triage path (unreadable or refused files get an error)."""
    with execution_backend(scheduler):
        return model.predict_many([str(p) for p in images], names=[Path(p).name for p in images])


def cmd_predict(args) -> int:
    model = _load_triage_model(args.models, site_profile=args.site_profile)
    if model is None:
        return 2
    predictions = _score_files(model, args.images, args.scheduler)
    if args.json:
        print(json.dumps([p.to_json() for p in predictions], indent=2))
    else:
        for p in predictions:
            if p.error:
                print(f"{p.file}: ERROR {p.error}")
                continue
            verdict = "FLAGGED" if p.flagged else "not flagged"
            models = ", ".join(f"{k} {v:.2f}" for k, v in p.per_model.items())
            line = (f"{p.file}: risk {p.risk:.1%} ({verdict}, threshold {p.threshold:.1%}; "
                    f"{p.calibration_statement()}) — {models}")
            if p.severity:
                line += f"; corona score {p.severity['corona_score']:.0f}/100"
            print(line)
            for warning in p.warnings:
                print(f"    warning: {warning}")
    return 1 if any(p.error for p in predictions) else 0


def cmd_score(args) -> int:
    from core.lungs.zones import ZONE_NAMES
    from core.severity.brixia import BRIXIA_LETTERS

    model = _load_triage_model(args.models, risk=False)
    if model is None:
        return 2
    records = [{"file": p.file, "error": p.error} if p.error else
               {"file": p.file, **p.severity, "warnings": p.warnings}
               for p in _score_files(model, args.images, args.scheduler)]
    if args.json:
        print(json.dumps(records, indent=2))
    else:
        for record in records:
            if "error" in record:
                print(f"{record['file']}: ERROR {record['error']}")
                continue
            grades = " ".join(f"{letter} {record['zones'][zone]}" for letter, zone in zip(BRIXIA_LETTERS, ZONE_NAMES))
            print(f"{record['file']}: corona score {record['corona_score']:.0f}/100 — zone grades {grades} "
                  f"(Brixia total {record['brixia_total']}/18); extent {record['geographic_extent']:.1f}/8, "
                  f"opacity {record['opacity']:.1f}/6, affected {record['affected_fraction']:.0%}")
            for warning in record["warnings"]:
                print(f"    warning: {warning}")
    return 1 if any("error" in record for record in records) else 0


def cmd_lungs(args) -> int:
    """Write each image's lung mask to ``DIR/<stem>.png`` (input size, 0/255) and say which finder ran."""
    import numpy as np
    from PIL import Image

    from core.io.images import read_image
    from core.io.pixels import ImageReadError
    from core.lungs.fields import find_lung_fields, mask_at_size

    stems = [Path(p).stem for p in args.images]
    repeated = sorted({s for s in stems if stems.count(s) > 1})
    if repeated:
        print(f"error: several inputs would write the same mask file: {', '.join(s + '.png' for s in repeated)}",
              file=sys.stderr)
        return 2
    args.out.mkdir(parents=True, exist_ok=True)
    records = []
    for path in args.images:
        try:
            image = read_image(str(path), name=Path(path).name)
        except ImageReadError as exc:
            records.append({"file": exc.source or Path(path).name, "error": str(exc)})
            continue
        fields = find_lung_fields(image.pixels, method=args.method)
        target = args.out / f"{Path(path).stem}.png"
        mask = mask_at_size(fields, image.pixels.shape)
        Image.fromarray(np.where(mask, 255, 0).astype(np.uint8)).save(target)
        quality = fields.quality
        records.append({"file": image.source, "mask": str(target), "method": quality["method"],
                        "fallback_reason": quality["fallback_reason"], "ok": quality["ok"],
                        "warning": quality["warning"], "measures": quality["measures"]})
    if args.json:
        print(json.dumps(records, indent=2))
    for record in records:
        if "error" in record:
            print(f"{record['file']}: ERROR {record['error']}", file=sys.stderr if args.json else sys.stdout)
        elif not args.json:
            finder = record["method"] + (f" (fallback: {record['fallback_reason']})" if record["fallback_reason"]
                                         else "")
            print(f"{record['file']}: {record['mask']} — {finder}")
            if record["warning"]:
                print(f"    warning: {record['warning']}")
    return 1 if any("error" in record for record in records) else 0


def cmd_validate(args) -> int:
    from core.validation.html import write_html_report
    from core.validation.scoring import score_dataset
    from core.validation.validate import format_validation, json_ready, validation_report

    model = _load_triage_model(args.models, site_profile=args.site_profile)
    if model is None:
        return 2
    scored = score_dataset(model, args.data, n_jobs=args.n_jobs, progress=_progress_printer(args.quiet))
    report = validation_report(scored, model, n_boot=args.bootstrap)
    print(format_validation(report), flush=True)
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(json_ready(report), indent=2))
    if args.report:
        write_html_report(report, args.report)
        print(f"report: {args.report}", file=sys.stderr)
    return 0


def cmd_calibrate(args) -> int:
    from core.paths import default_site_profile
    from core.validation.calibrate import fit_site_profile, format_profile
    from core.validation.scoring import score_dataset

    if default_site_profile() is not None:
        print("note: CXR_SITE_PROFILE is ignored here: a profile is fitted on the models' own risk", file=sys.stderr)
    model = _load_triage_model(args.models, use_environment=False)
    if model is None:
        return 2
    scored = score_dataset(model, args.data, n_jobs=args.n_jobs, progress=_progress_printer(args.quiet))
    profile = fit_site_profile(scored, models_fingerprint=model.fingerprint, target_sensitivity=args.target_sensitivity,
                               name=args.name or Path(args.data).resolve().name, n_boot=args.bootstrap)
    profile.save(args.out)
    print(format_profile(profile), flush=True)
    print(f"wrote {args.out}; use it with `python -m core predict --site-profile {args.out} ...` or "
          f"CXR_SITE_PROFILE={args.out}", file=sys.stderr)
    return 0


def cmd_bench(args) -> int:
    from core.bench import DEFAULT_BENCH_PARTS, format_bench, run_bench

    parts = [part for part in args.only.split(",") if part] if args.only else DEFAULT_BENCH_PARTS
    with execution_backend(args.scheduler):
        result = run_bench(args.data, models_dir=args.models, n_images=args.images, cache_dir=_cache(args),
                           scale=[int(s) for s in args.scale.split(",") if s], scale_repeats=args.scale_repeats,
                           parts=parts)
    print(format_bench(result))
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(result, indent=2))
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m core", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)

    summary = commands.add_parser("summary", help="images per label, patients, views, sizes of a data set")
    summary.add_argument("--data", type=Path, default=default_data_dir())
    summary.add_argument("--json", action="store_true")
    summary.set_defaults(func=cmd_summary)

    features = commands.add_parser("features", help="write one row of features per image to a CSV file")
    _add_common(features)
    features.add_argument("--out", type=Path, required=True, help="CSV file to write")
    features.set_defaults(func=cmd_features)

    evaluate = commands.add_parser("evaluate", help="the four models before/after feature selection")
    _add_common(evaluate)
    _add_model_options(evaluate)
    evaluate.add_argument("--split", choices=SPLITS, default=None,
                          help="patient-grouped (default when patient ids exist), stratified random (Orange), "
                               "train on other sources and test on --test-source, or leave-one-site-out")
    evaluate.add_argument("--task", choices=tuple(TASKS), default="covid-vs-normal",
                          help="the two classes (default covid-vs-normal, the study's question; 'pneumonia' = "
                               "every label other than COVID-19 and Normal)")
    evaluate.add_argument("--test-source", default=None, help="with --split source: part of a source name")
    evaluate.add_argument("--train-size", type=float, default=0.66)
    evaluate.add_argument("--json", type=Path, default=None, help="write the summary JSON here")
    evaluate.add_argument("--full-json", type=Path, default=None,
                          help="write the full report (confusion matrices, ROC points) here")
    evaluate.set_defaults(func=cmd_evaluate)

    train = commands.add_parser("train", help="choose the model leave-one-site-out, fit the three-class triage "
                                              "model, calibrate, evaluate and save it")
    _add_common(train)
    train.add_argument("--recipe", choices=("auto", *RECIPES), default="auto",
                       help="models of the triage model; auto (default) keeps the recipe that does best "
                            "leave-one-site-out")
    train.add_argument("--repeats", type=int, default=10,
                       help="repeats of the study models' random/patient evaluations (default 10)")
    train.add_argument("--out", type=Path, default=default_models_dir(), help="models folder (default: %(default)s)")
    train.add_argument("--target-sensitivity", type=float, default=0.95,
                       help="flag threshold chosen to reach this out-of-fold sensitivity (default 0.95)")
    train.add_argument("--bootstrap", type=int, default=1000,
                       help="patient bootstrap resamples for the site evaluation's CIs (default 1000)")
    train.add_argument("--severity-repeats", type=int, default=5,
                       help="fold assignments of the corona score's cross-validated report (default 5)")
    train.set_defaults(func=cmd_train)

    contrasts = commands.add_parser("contrasts", help="how the triage model holds up at a hospital it has never "
                                                      "seen: leave-one-site-out, within-site contrasts, flag rates")
    _add_common(contrasts)
    contrasts.add_argument("--recipe", choices=tuple(RECIPES), default="linear")
    contrasts.add_argument("--models", type=Path, default=None,
                           help="print the site evaluation saved with these models instead of recomputing it")
    contrasts.add_argument("--bootstrap", type=int, default=1000, help="patient bootstrap resamples for the CIs")
    contrasts.add_argument("--json", type=Path, default=None, help="write the full result here")
    contrasts.set_defaults(func=cmd_contrasts)

    predict = commands.add_parser("predict", help="COVID-19 risk of chest X-ray files")
    predict.add_argument("images", nargs="+", type=Path)
    predict.add_argument("--models", type=Path, default=default_models_dir())
    predict.add_argument("--json", action="store_true", help="print one JSON array")
    predict.add_argument("--scheduler", default=None, metavar="ADDRESS")
    _add_site_profile(predict)
    predict.set_defaults(func=cmd_predict)

    validate = commands.add_parser("validate", help="check the tool on a site's own labelled films (AUC, "
                                   "sensitivity/specificity at the threshold, calibration, with CIs)")
    _add_site_data(validate)
    _add_site_profile(validate)
    validate.add_argument("--json", type=Path, default=None, help="write every figure as JSON here")
    validate.add_argument("--report", type=Path, default=None, help="write the printable HTML report here")
    validate.set_defaults(func=cmd_validate)

    calibrate = commands.add_parser("calibrate", help="fit a site profile (recalibrated risk, threshold for the "
                                    "target sensitivity) on a site's own labelled films")
    _add_site_data(calibrate)
    calibrate.add_argument("--out", type=Path, required=True, help="site profile JSON file to write")
    calibrate.add_argument("--target-sensitivity", type=float, default=0.95,
                           help="threshold chosen to reach this sensitivity on the site's films (default 0.95)")
    calibrate.add_argument("--name", default=None, help="name of the site / profile (default: the data folder's)")
    calibrate.set_defaults(func=cmd_calibrate)

    score = commands.add_parser("score", help="corona score (lung-zone severity) of chest X-ray files")
    score.add_argument("images", nargs="+", type=Path)
    score.add_argument("--models", type=Path, default=default_models_dir())
    score.add_argument("--json", action="store_true", help="print one JSON array")
    score.add_argument("--scheduler", default=None, metavar="ADDRESS")
    score.set_defaults(func=cmd_score)

    lungs = commands.add_parser("lungs", help="write the lung mask of chest X-ray files (DIR/<stem>.png, 0/255)")
    lungs.add_argument("images", nargs="+", type=Path)
    lungs.add_argument("--out", type=Path, required=True, help="folder for the masks")
    lungs.add_argument("--method", choices=("auto", "network", "classical"), default="auto",
                       help="lung finder: the network with the classical fallback (default), or one of them")
    lungs.add_argument("--json", action="store_true", help="print one JSON array (finder, quality, warning)")
    lungs.set_defaults(func=cmd_lungs)

    bench = commands.add_parser("bench", help="speed and memory figures (features, ndf vs ours, predict, evaluate)")
    _add_common(bench, features=False)
    bench.add_argument("--models", type=Path, default=default_models_dir())
    bench.add_argument("--images", type=int, default=32, help="reference images timed (default 32)")
    bench.add_argument("--scale", default="100,1000",
                       help="image counts for the scaling curve, comma-separated (e.g. 100,1000,10000)")
    bench.add_argument("--scale-repeats", type=int, default=10,
                       help="evaluate repeats at each scaling point (0: no evaluate; default 10)")
    bench.add_argument("--only", default=None,
                       help="parts to run, comma-separated, of features, predict, evaluate, sites, memory, scaling "
                            "and suite (default: all but suite, which times the whole test suite: several minutes)")
    bench.add_argument("--json", type=Path, default=None)
    bench.set_defaults(func=cmd_bench)
    return parser


def _add_site_profile(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--site-profile", type=Path, default=None, metavar="FILE",
                        help="apply this site profile (default: $CXR_SITE_PROFILE; none: not validated at this site)")


def _add_site_data(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--data", type=Path, required=True,
                        help="the site's labelled films: manifest.csv layout or class sub-folders")
    parser.add_argument("--models", type=Path, default=default_models_dir())
    parser.add_argument("--n-jobs", type=int, default=1, help="parallel workers (default 1)")
    parser.add_argument("--bootstrap", type=int, default=2000, help="bootstrap replicates over patients (default 2000)")
    parser.add_argument("--quiet", action="store_true", help="no progress line")


def _add_model_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--preset", choices=PRESETS, default="tuned",
                        help="hyperparameters: tuned (default) or Orange's widget defaults")
    parser.add_argument("--select", type=int, default=10, help="features kept by information gain (default 10)")
    parser.add_argument("--repeats", type=int, default=10, help="repeats of the random sampling (default 10)")


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except (ValueError, OSError) as exc:  # data set and option problems: one clear line, no traceback
        print(f"error: {exc}", file=sys.stderr)
        return 2
