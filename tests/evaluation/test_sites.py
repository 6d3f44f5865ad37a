"""Leave-one-site-out evaluation: the binary report's per-site records, and the three-class site evaluation."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from core.evaluation.evaluate import evaluate
from core.evaluation.report_sites import format_site_evaluation, site_tables, targets_not_met
from core.evaluation.sites import evaluate_sites, task_score, within_site_auc
from core.learn.models import MODEL_NAMES


def _sites_data(n_per_site: int = 40, shortcut: float = 0.0, seed: int = 0):
    """Three classes at four sites; the disease signal is the same everywhere, ``shortcut`` adds a site offset
    that follows the site's majority class (what a hospital shortcut looks like)."""
    rng = np.random.default_rng(seed)
    sites = np.repeat(["s1", "s2", "s3", "s4"], n_per_site)
    y = rng.integers(0, 3, len(sites))
    X = rng.normal(size=(len(sites), 12))
    X[:, 0] += 2.5 * (y >= 1)            # any pneumonia
    X[:, 1] += 2.5 * (y == 2)            # COVID-19
    for index, site in enumerate(np.unique(sites)):
        X[sites == site, 2] += shortcut * index
    groups = np.array([f"p{i // 2}" for i in range(len(sites))])
    return pd.DataFrame(X, columns=[f"f{i}" for i in range(12)]), y, groups, sites


def test_binary_site_split_reports_every_left_out_site():
    X, y, groups, sites = _sites_data()
    keep = y != 1
    target = (y[keep] == 2).astype(int)
    report = evaluate(X[keep], target, groups=groups[keep], sources=sites[keep], split="site", select_k=5,
                      models=["kNN"], task="covid-vs-normal")
    summary = report.summary_json()
    assert summary["split"] == "site" and summary["task"] == "covid-vs-normal" and summary["repeats"] == 4
    records = summary["per_site"]
    assert {r["site"] for r in records} == {"s1", "s2", "s3", "s4"} and len(records) == 4 * 2
    assert all({"site", "n_images", "model", "stage", "AUC"} <= set(r) for r in records)
    result = report.result("kNN", "after")
    pooled = np.concatenate([f.proba for f in result.out_of_fold])
    assert result.pooled["AUC"] == pytest.approx(result.pooled["AUC_pooled"])   # headline = pooled over sites
    assert len(pooled) == keep.sum()


def test_per_site_auc_is_none_where_a_site_has_one_class():
    X, y, groups, sites = _sites_data()
    keep = (y != 1) & ~((sites == "s4") & (y == 0))      # s4: COVID-19 only
    report = evaluate(X[keep], (y[keep] == 2).astype(int), groups=groups[keep], sources=sites[keep], split="site",
                      select_k=None, models=["kNN"])
    s4 = [r for r in report.per_site() if r["site"] == "s4"]
    assert s4 and all(r["AUC"] is None and r["Specificity"] is None for r in s4)


def test_task_scores_and_within_site_auc():
    p = np.array([[0.7, 0.2, 0.1], [0.1, 0.3, 0.6]])
    np.testing.assert_allclose(task_score(p, "covid-vs-normal"), [0.1, 0.6])
    np.testing.assert_allclose(task_score(p, "pneumonia-vs-normal"), [0.3, 0.9])
    np.testing.assert_allclose(task_score(p, "covid-vs-pneumonia"), [1 / 3, 2 / 3])
    # site a: perfectly separated; site b: reversed. Across sites the score looks perfect, within them it is 0.5.
    y = np.array([1, 1, 1, 0, 0, 0, 1, 1, 1, 0, 0, 0])
    sites = np.array(["a"] * 6 + ["b"] * 6)
    score = np.array([0.9, 0.8, 0.7, 0.1, 0.2, 0.3, 0.1, 0.2, 0.3, 0.9, 0.8, 0.7])
    assert within_site_auc(y, score, sites) == pytest.approx(0.5)
    shortcut = np.where(sites == "a", 0.9, 0.1) + 0.01 * score
    assert within_site_auc(y, shortcut, sites) == pytest.approx(0.5)


def test_three_class_site_evaluation_measures_every_figure_with_a_ci():
    X, y, groups, sites = _sites_data(n_per_site=50)
    signatures = np.random.default_rng(1).normal(size=(len(y), 8)) + np.repeat(np.arange(4), 50)[:, None]
    result = evaluate_sites(X, y, groups, sites, recipe="linear", signatures=signatures, n_boot=50)
    tasks = result["site_held_out"]["tasks"]
    assert set(tasks) == {"covid-vs-normal", "pneumonia-vs-normal", "covid-vs-pneumonia"}
    for figure in tasks.values():   # the disease signal is the same at every site: it carries over
        assert figure["value"] > 0.7 and figure["ci95"][0] <= figure["value"] <= figure["ci95"][1]
        assert figure["n_images"] > 0 and figure["n_patients"] > 0
    within = result["patient_held_out"]["within_site"]["covid-vs-normal"]
    assert {s["site"] for s in within["per_site"]} == {"s1", "s2", "s3", "s4"}
    assert result["flag_rule"]["target_sensitivity"] == 0.95
    assert result["patient_held_out"]["flags"]["per_label"]["COVID-19"]["value"] >= 0.95
    shift = result["site_shift"]["per_image"]
    assert shift["left_out_site"]["value"] > shift["known_site_held_out_patients"]["value"]
    assert [t["key"] for t in result["targets"]][0] == "loso_covid_vs_normal"
    text = format_site_evaluation(result)
    assert "hospital never seen" in text and "Within-site" in text
    assert set(site_tables(result)) == {"tasks", "within_site", "per_site", "flags", "targets", "shift"}
    assert isinstance(targets_not_met(result), list)


def test_site_evaluation_exposes_a_site_shortcut():
    """Site offsets that follow the class: patient-held-out AUC stays high, within-site AUC does not rise with it."""
    X, y, groups, sites = _sites_data(n_per_site=60, shortcut=0.0, seed=2)
    honest = evaluate_sites(X, y, groups, sites, recipe="linear", n_boot=20)
    assert honest["patient_held_out"]["within_site"]["covid-vs-normal"]["pooled_within_site"]["value"] > 0.7
    assert MODEL_NAMES  # the study models stay available to the recipes
