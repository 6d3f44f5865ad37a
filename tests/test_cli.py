"""End to end through the command line on the reference data: evaluate, train, predict, features."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from core.learn.models import MODEL_NAMES
from core.paths import REPO_ROOT


@pytest.fixture(scope="module")
def cli_env(tmp_path_factory):
    env = dict(os.environ, CXR_CACHE=str(tmp_path_factory.mktemp("cache")),
               CXR_APP_DATA=str(tmp_path_factory.mktemp("app")))

    def run(*args, check=True):
        done = subprocess.run([sys.executable, "-m", "core", *map(str, args), "--quiet"] if args[0] not in
                              ("predict", "summary") else [sys.executable, "-m", "core", *map(str, args)],
                              cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=900)
        if check and done.returncode != 0:
            raise AssertionError(f"{args} exited {done.returncode}: {done.stderr[-2000:]}")
        return done
    return run


@pytest.fixture(scope="module")
def trained(cxr_dir, cli_env, tmp_path_factory):
    out = tmp_path_factory.mktemp("models") / "m"
    cli_env("train", "--data", cxr_dir, "--out", out, "--features", "radiomic", "--repeats", "2", "--n-jobs", "2")
    return out


def test_help_of_every_command(cli_env, capsys):
    from core.cli import main

    assert "usage" in cli_env("summary", "--help").stdout  # the `python -m core` entry point, once
    for command in ("summary", "features", "evaluate", "train", "predict", "score", "validate", "calibrate",
                    "bench"):  # in-process: one import
        with pytest.raises(SystemExit) as exited:
            main([command, "--help"])
        assert exited.value.code == 0 and "usage" in capsys.readouterr().out


@pytest.mark.slow
def test_evaluate_json_has_the_documented_shape(cxr_dir, cxr_manifest, cli_env, tmp_path):
    out = tmp_path / "eval.json"
    cli_env("evaluate", "--data", cxr_dir, "--features", "radiomic", "--split", "patient", "--repeats", "2",
            "--json", out, "--n-jobs", "2")
    summary = json.loads(out.read_text())
    assert summary["split"] == "patient" and summary["repeats"] == 2 and summary["target"] == "COVID-19"
    binary = cxr_manifest[cxr_manifest["label"].isin(["COVID-19", "Normal"])]
    assert summary["n_images"] == len(binary) and summary["n_patients"] == binary["patient_id"].nunique()
    rows = {(r["model"], r["stage"]) for r in summary["results"]}
    assert rows == {(m, s) for m in MODEL_NAMES for s in ("before", "after")}
    for row in summary["results"]:
        assert {"AUC", "CA", "F1", "Precision", "Recall", "Sensitivity", "Specificity"} <= set(row)
        assert 0.5 < row["AUC"] <= 1.0  # the features carry signal on unseen patients


@pytest.mark.slow
def test_source_split_names_the_sources_when_ambiguous(cxr_dir, cli_env):
    done = cli_env("evaluate", "--data", cxr_dir, "--features", "radiomic", "--split", "source",
                   "--test-source", "nih", "--repeats", "1", check=False)
    assert done.returncode == 2 and "does not hold both" in done.stderr and "Traceback" not in done.stderr


@pytest.mark.slow
def test_train_then_predict_json(trained, cxr_dir, cxr_manifest, cli_env, tmp_path):
    report = json.loads((trained / "report.json").read_text())
    assert report["consensus"]["out_of_fold"]["sensitivity"] >= 0.95
    assert set(report["evaluation"]) == {"patient", "random", "source"}
    bad = tmp_path / "scan.png"
    bad.write_bytes(b"random bytes, not a PNG")
    images = [cxr_dir / "images" / f for f in cxr_manifest["file"].head(2)]
    done = cli_env("predict", *images, bad, "--models", trained, "--json", check=False)
    assert done.returncode == 1  # one unreadable file: non-zero, the others still scored
    records = json.loads(done.stdout)
    assert [r["file"] for r in records] == [p.name for p in images] + ["scan.png"]
    for record in records[:2]:
        assert 0 <= record["risk"] <= 1 and isinstance(record["flagged"], bool)
        assert set(record["per_model"]) == set(MODEL_NAMES) and isinstance(record["warnings"], list)
    assert set(records[2]) == {"file", "error"} and "scan.png" in records[2]["error"]


@pytest.mark.slow
def test_features_csv_of_an_unlabelled_folder(cxr_dir, cxr_manifest, cli_env, tmp_path):
    folder = tmp_path / "unlabelled"
    folder.mkdir()
    for name in cxr_manifest["file"].head(3):
        (folder / name).symlink_to(cxr_dir / "images" / name)
    out = tmp_path / "f.csv"
    cli_env("features", "--data", folder, "--out", out, "--features", "radiomic", "--n-jobs", "1")
    import pandas as pd

    table = pd.read_csv(out)
    assert len(table) == 3 and table.columns[0] == "file" and table.columns[1] == "sha256"
