"""End to end through the command line on the reference data: evaluate, train, predict, features."""

from __future__ import annotations

import json

import pandas as pd
import pytest
from cli_support import run_cli

from core.labels import READING_WORDS
from core.learn.models import MODEL_NAMES
from core.learn.site_shift import SITE_SHIFT_WARNING


@pytest.fixture(scope="module")
def cli_env(tmp_path_factory):
    """``python -m core`` (in this process unless ``in_process=False``) with this module's feature cache and app
    folder; ``--quiet`` added except for the commands without a progress line."""
    env = {"CXR_CACHE": str(tmp_path_factory.mktemp("cache")), "CXR_APP_DATA": str(tmp_path_factory.mktemp("app"))}

    def run(*args, check=True, in_process=True):
        args = [*map(str, args), *(() if args[0] in ("predict", "summary") else ("--quiet",))]
        done = run_cli(*args, env=env, in_process=in_process)
        if check and done.returncode != 0:
            raise AssertionError(f"{args} exited {done.returncode}: {done.stderr[-2000:]}")
        return done
    return run


@pytest.fixture(scope="module")
def small_manifest(small_cxr_dir):
    return pd.read_csv(small_cxr_dir / "manifest.csv")


@pytest.fixture(scope="module")
def trained(small_cxr_dir, cli_env, tmp_path_factory):
    out = tmp_path_factory.mktemp("models") / "m"
    cli_env("train", "--data", small_cxr_dir, "--out", out, "--features", "radiomic", "--repeats", "2", "--n-jobs", "2",
            "--bootstrap", "200", "--severity-repeats", "1")
    return out


def test_help_of_every_command(cli_env, capsys):
    from core.cli import main

    assert "usage" in cli_env("summary", "--help", in_process=False).stdout  # the `python -m core` entry point, once
    for command in ("summary", "features", "evaluate", "train", "contrasts", "predict", "score", "lungs",
                    "validate", "calibrate", "bench"):  # in-process: one import
        with pytest.raises(SystemExit) as exited:
            main([command, "--help"])
        assert exited.value.code == 0 and "usage" in capsys.readouterr().out


@pytest.mark.slow
def test_evaluate_json_has_the_documented_shape(small_cxr_dir, small_manifest, cli_env, tmp_path):
    out = tmp_path / "eval.json"
    cli_env("evaluate", "--data", small_cxr_dir, "--features", "radiomic", "--split", "patient", "--repeats", "2",
            "--json", out, "--n-jobs", "2")
    summary = json.loads(out.read_text())
    assert summary["split"] == "patient" and summary["repeats"] == 2 and summary["target"] == "COVID-19"
    binary = small_manifest[small_manifest["label"].isin(["COVID-19", "Normal"])]
    assert summary["n_images"] == len(binary) and summary["n_patients"] == binary["patient_group"].nunique()
    rows = {(r["model"], r["stage"]) for r in summary["results"]}
    assert rows == {(m, s) for m in MODEL_NAMES for s in ("before", "after")}
    for row in summary["results"]:
        assert {"AUC", "CA", "F1", "Precision", "Recall", "Sensitivity", "Specificity"} <= set(row)
        assert 0.5 < row["AUC"] <= 1.0  # the features carry signal on unseen patients


@pytest.mark.slow
def test_binary_reproduction_of_the_study_runs_end_to_end(small_cxr_dir, cli_env, tmp_path):
    """The study's workflow: COVID-19 vs Normal, Orange preset, random sampling — unchanged by the three classes."""
    out = tmp_path / "orange.json"
    cli_env("evaluate", "--data", small_cxr_dir, "--task", "covid-vs-normal", "--preset", "orange", "--split", "random",
            "--features", "radiomic", "--repeats", "2", "--json", out, "--n-jobs", "2")
    summary = json.loads(out.read_text())
    assert summary["task"] == "covid-vs-normal" and summary["target"] == "COVID-19" and summary["split"] == "random"
    assert {(r["model"], r["stage"]) for r in summary["results"]} == {(m, s) for m in MODEL_NAMES
                                                                      for s in ("before", "after")}
    aucs = [r["AUC"] for r in summary["results"]]
    assert all(0.0 <= auc <= 1.0 for auc in aucs) and max(aucs) > 0.6  # a sample of the data: some model finds signal


@pytest.mark.slow
def test_leave_one_site_out_per_site_json(small_cxr_dir, small_manifest, cli_env, tmp_path):
    out = tmp_path / "site.json"
    done = cli_env("evaluate", "--data", small_cxr_dir, "--split", "site", "--task", "pneumonia-vs-normal", "--features",
                   "radiomic", "--select", "5", "--preset", "orange", "--json", out, "--n-jobs", "2")
    summary = json.loads(out.read_text())
    assert summary["split"] == "site" and summary["target"] == "other pneumonia"
    rows = small_manifest[small_manifest["label"] != "COVID-19"]
    assert summary["n_images"] == len(rows)
    per_site = summary["per_site"]
    assert {r["site"] for r in per_site} <= set(rows["site"]) and "nih" in {r["site"] for r in per_site}
    nih = [r for r in per_site if r["site"] == "nih"]
    assert all(r["AUC"] is not None for r in nih)                 # NIH holds both classes
    one_class = [r for r in per_site if r["n_positive"] in (0, r["n_images"])]
    assert one_class and all(r["AUC"] is None for r in one_class)
    assert "per left-out site" in done.stdout


@pytest.mark.slow
def test_source_split_names_the_sources_when_ambiguous(small_cxr_dir, cli_env):
    done = cli_env("evaluate", "--data", small_cxr_dir, "--features", "radiomic", "--split", "source",
                   "--test-source", "nih", "--repeats", "1", check=False)
    assert done.returncode == 2 and "does not hold both" in done.stderr and "Traceback" not in done.stderr


@pytest.mark.slow
def test_train_then_predict_json(trained, cxr_dir, cxr_manifest, cli_env, tmp_path):
    report = json.loads((trained / "report.json").read_text())
    assert report["consensus"]["out_of_fold"]["sensitivity"] >= 0.95
    assert report["classes"] == ["Normal", "other pneumonia", "COVID-19"]
    assert set(report["evaluation"]) == {"patient", "random", "source", "site"}
    site = json.loads((trained / "site-evaluation.json").read_text())   # chosen leave-one-site-out
    assert site["chosen_recipe"] == report["recipe"] and set(site["candidates"]) == {"linear", "study"}
    assert site["candidates"][site["chosen_recipe"]]["selection_score"] == max(
        c["selection_score"] for c in site["candidates"].values())
    bad = tmp_path / "scan.png"
    bad.write_bytes(b"random bytes, not a PNG")
    images = [cxr_dir / "images" / f for f in cxr_manifest["file"].head(2)]
    done = cli_env("predict", *images, bad, "--models", trained, "--json", check=False)
    assert done.returncode == 1  # one unreadable file: non-zero, the others still scored
    records = json.loads(done.stdout)
    assert [r["file"] for r in records] == [p.name for p in images] + ["scan.png"]
    for record in records[:2]:
        assert 0 <= record["risk"] <= record["pneumonia"] <= 1 and isinstance(record["flagged"], bool)
        assert record["reading"] in READING_WORDS.values()
        assert set(record["per_model"]) == set(report["consensus"]["models"]) and isinstance(record["warnings"], list)
        assert {"threshold", "out_of_distribution", "top_features", "corona_score", "site_shift"} <= set(record)
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


@pytest.mark.slow
def test_site_shift_warning_fires_on_films_of_a_synthetic_site(trained, cxr_dir, cxr_manifest, cli_env, tmp_path):
    """Reference films re-exported through another intensity pipeline: a hospital the model never saw."""
    import numpy as np
    from PIL import Image

    from core.io.images import read_image

    names = cxr_manifest.sample(6, random_state=3)["file"]
    shifted = []
    for name in names:
        pixels = read_image(cxr_dir / "images" / name).pixels
        other = (0.25 + 0.5 * pixels ** 0.5)                      # lifted blacks, compressed range, gamma 0.5
        path = tmp_path / f"other-site-{name}"
        Image.fromarray(np.round(255 * other).astype(np.uint8)).save(path)
        shifted.append(path)
    records = json.loads(cli_env("predict", *shifted, "--models", trained, "--json").stdout)
    warned = [SITE_SHIFT_WARNING in r["warnings"] for r in records]
    assert sum(warned) >= 4, [r["site_shift"] for r in records]
    originals = json.loads(cli_env("predict", *[cxr_dir / "images" / n for n in names], "--models", trained,
                                   "--json").stdout)
    assert sum(SITE_SHIFT_WARNING in r["warnings"] for r in originals) <= 1
