"""The command line against what a hostile tester tried (issue 13): every file answered, one acceptance path for
``predict`` and ``score``, and a message — never a traceback — for broken models, options and data sets."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from cli_support import assert_message_not_traceback, run_cli
from PIL import Image

from core.learn.artifacts import model_file_name
from core.paths import default_models_dir


@pytest.fixture(scope="module")
def models() -> Path:
    folder = default_models_dir()
    if not (folder / "report.json").is_file():
        pytest.skip(f"no trained model in {folder}: run `python -m core train --out {folder}`")
    return folder


@pytest.fixture(scope="module")
def films(tmp_path_factory, sample_png) -> dict[str, Path]:
    """A real chest film and what the tester made of it: blank, rotated, inverted, photograph, noise."""
    folder = tmp_path_factory.mktemp("films")
    chest = np.asarray(Image.open(sample_png).convert("L"))
    rng = np.random.default_rng(0)
    photo = np.zeros((240, 320, 3), np.uint8)
    photo[..., 0] = np.linspace(0, 255, 320)[None]
    photo[..., 2] = rng.integers(0, 255, (240, 320))
    pictures = {"chest.png": chest, "grey.png": np.full((1024, 1024), 128, np.uint8),
                "faint.png": (128 + rng.integers(0, 3, (512, 512))).astype(np.uint8),
                "rotated.png": np.rot90(chest, -1), "inverted.png": 255 - chest, "upside-down.png": chest[::-1],
                "photo.jpg": photo, "noise.png": rng.integers(0, 255, (300, 300), dtype=np.uint8)}
    for name, pixels in pictures.items():
        Image.fromarray(np.ascontiguousarray(pixels)).save(folder / name)
    return {name: folder / name for name in pictures}


@pytest.mark.parametrize("command", ["predict", "score"])
def test_both_commands_refuse_through_the_same_acceptance_checks(models, films, command):
    refused = {"grey.png": "blank film", "faint.png": "blank film", "rotated.png": "rotated 90°",
               "inverted.png": "inverted", "upside-down.png": "flipped top to bottom", "photo.jpg": "colour image",
               "noise.png": "unlike every training chest X-ray"}
    done = run_cli(command, films["chest.png"], *(films[name] for name in refused), "--models", models, "--json")
    assert_message_not_traceback(done, 1)
    records = {record["file"]: record for record in json.loads(done.stdout)}
    assert "error" not in records["chest.png"]
    for name, reason in refused.items():
        assert "not scored" in records[name]["error"] and reason in records[name]["error"], records[name]


@pytest.mark.timeout(120)
def test_predict_answers_every_file_of_a_batch_with_a_fifo_dev_zero_and_a_huge_file(models, films, tmp_path):
    fifo = tmp_path / "x.png"
    os.mkfifo(fifo)
    zero = tmp_path / "zero.dcm"
    zero.symlink_to("/dev/zero")
    huge = tmp_path / "huge.png"
    with open(huge, "wb") as handle:  # sparse: 6 GB declared, nothing written
        handle.truncate(6 * 10**9)
    done = run_cli("predict", fifo, zero, huge, films["chest.png"], "--models", models, "--json", timeout=110,
               in_process=False)
    assert_message_not_traceback(done, 1)
    records = json.loads(done.stdout)
    assert [r["file"] for r in records] == ["x.png", "zero.dcm", "huge.png", "chest.png"]
    assert "named pipe" in records[0]["error"] and "character device" in records[1]["error"]
    assert "file too large" in records[2]["error"] and 0 <= records[3]["risk"] <= 1


def _copy_models(models: Path, destination: Path) -> Path:
    shutil.copytree(models, destination)
    return destination


def _rewrite_report(folder: Path, change) -> None:
    report = json.loads((folder / "report.json").read_text())
    change(report)
    (folder / "report.json").write_text(json.dumps(report))


def _classifier_file(folder: Path) -> str:
    """The file of the first classifier the saved recipe averages (what `predict` needs and `score` does not)."""
    report = json.loads((folder / "report.json").read_text())
    return model_file_name(report["consensus"]["models"][0])


def _replace_with_matching_hash(folder: Path, name: str, content: bytes) -> None:
    (folder / name).write_bytes(content)
    _rewrite_report(folder, lambda report: report["files"].update({name: hashlib.sha256(content).hexdigest()}))


def test_broken_models_folders_get_a_message(models, films, tmp_path):
    import skops.io as sio

    blob = sio.dumps({"not": "a model"})
    no_files = _copy_models(models, tmp_path / "no-files")
    _rewrite_report(no_files, lambda report: report.pop("files"))
    wrong_classifier = _copy_models(models, tmp_path / "wrong-classifier")
    _replace_with_matching_hash(wrong_classifier, _classifier_file(wrong_classifier), blob)  # predict's
    wrong_severity = _copy_models(models, tmp_path / "wrong-severity")
    _replace_with_matching_hash(wrong_severity, "severity.skops", blob)  # score's
    extra = _copy_models(models, tmp_path / "extra-entry")
    _replace_with_matching_hash(extra, "unused.skops", blob)
    for command, folder, fragment in (("predict", no_files, "no valid 'files' list"),
                                      ("score", no_files, "no valid 'files' list"),
                                      ("predict", wrong_classifier, "holds dict, not a fitted classifier"),
                                      ("score", wrong_severity, "holds dict, not a SeverityModel"),
                                      ("predict", extra, "does not use (unused.skops)"),
                                      ("score", extra, "does not use (unused.skops)")):
        assert_message_not_traceback(run_cli(command, films["chest.png"], "--models", folder), 2, fragment)


def test_score_loads_only_what_it_needs(models, films, tmp_path):
    folder = _copy_models(models, tmp_path / "m")
    classifier = _classifier_file(folder)
    (folder / classifier).write_bytes(b"damaged")  # a classifier `score` does not use
    assert run_cli("score", films["chest.png"], "--models", folder).returncode == 0
    assert_message_not_traceback(run_cli("predict", films["chest.png"], "--models", folder), 2, classifier)


def test_a_pinned_fingerprint_refuses_a_rewritten_folder(models, films, tmp_path):
    folder = _copy_models(models, tmp_path / "m")
    pinned = hashlib.sha256((folder / "report.json").read_bytes()).hexdigest()
    assert run_cli("score", films["chest.png"], "--models", folder, env={"CXR_MODELS_FINGERPRINT": pinned}).returncode == 0
    _rewrite_report(folder, lambda report: report.update({"created": "rewritten"}))
    assert_message_not_traceback(run_cli("score", films["chest.png"], "--models", folder,
                                     env={"CXR_MODELS_FINGERPRINT": pinned}), 2, "fingerprint pinned")


@pytest.mark.parametrize("option, fragment", [("--select=0", "--select must be at least 1"),
                                              ("--repeats=0", "--repeats must be at least 1"),
                                              ("--train-size=1.5", "--train-size must be between 0 and 1")])
def test_evaluate_options_are_refused_before_any_feature_is_computed(cxr_dir, tmp_path, option, fragment):
    done = run_cli("evaluate", "--data", cxr_dir, option, "--no-cache", env={"CXR_CACHE": str(tmp_path)})
    assert_message_not_traceback(done, 2, fragment)
    assert "features:" not in done.stderr  # refused before the first image was read


@pytest.mark.parametrize("option, fragment", [("--bootstrap=0", "--bootstrap must be at least 1"),
                                              ("--severity-repeats=0", "--severity-repeats must be at least 1")])
def test_train_options_are_refused_before_any_feature_is_computed(cxr_dir, tmp_path, option, fragment):
    done = run_cli("train", "--data", cxr_dir, "--out", tmp_path / "m", option, env={"CXR_CACHE": str(tmp_path)})
    assert_message_not_traceback(done, 2, fragment)
    assert "features:" not in done.stderr and not (tmp_path / "m").exists()


@pytest.fixture(scope="module")
def tiny(cxr_dir, cxr_manifest, tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("tiny")
    (folder / "images").mkdir()
    rows = pd.concat([cxr_manifest[cxr_manifest.label == label].head(3) for label in ("COVID-19", "Normal")])
    for name in rows["file"]:
        (folder / "images" / name).symlink_to(cxr_dir / "images" / name)
    rows.to_csv(folder / "manifest.csv", index=False)
    return folder


@pytest.mark.parametrize("command", [("evaluate", "--split", "patient"), ("evaluate", "--split", "random"),
                                     ("train", "--out", "{tmp}/m")])
def test_a_tiny_data_set_is_refused_in_the_projects_words(tiny, tmp_path, command):
    args = [part.format(tmp=tmp_path) for part in command]
    done = run_cli(*args, "--data", tiny, "--features", "radiomic", "--quiet", env={"CXR_CACHE": str(tmp_path)})
    assert_message_not_traceback(done, 2, "too few images", "3 COVID-19", "3 Normal", "at least 10")
    assert "n_splits" not in done.stderr and "cross-validation but" not in done.stderr


def test_an_unwritable_app_data_folder_is_a_message(cxr_dir, tmp_path):
    blocked = tmp_path / "file-not-folder"
    blocked.write_text("a file where the app data folder should be")
    done = run_cli("features", "--data", cxr_dir, "--out", tmp_path / "f.csv",
               env={"CXR_APP_DATA": str(blocked / "data"), "CXR_CACHE": ""})
    assert_message_not_traceback(done, 2, "CXR_APP_DATA")
