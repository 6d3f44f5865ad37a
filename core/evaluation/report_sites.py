"""Tables and text of a site evaluation (:func:`core.evaluation.sites.evaluate_sites`), for the CLI and the dashboard."""

from __future__ import annotations

import pandas as pd

from core.labels import TASKS

__all__ = ["site_tables", "format_site_evaluation", "format_figure", "targets_not_met"]

TASK_TITLES = {"covid-vs-normal": "COVID-19 vs Normal", "pneumonia-vs-normal": "other pneumonia vs Normal",
               "covid-vs-pneumonia": "COVID-19 vs other pneumonia"}


def format_figure(figure: dict | None, percent: bool = False) -> str:
    """``0.62 (95 % CI 0.55–0.69; n = 440 images, 300 patients)``, or ``—`` when undefined."""
    if not figure or figure.get("value") is None:
        return "—"
    low, high = figure["ci95"]

    def show(x):
        return "?" if x is None else (f"{x:.0%}" if percent else f"{x:.2f}")
    patients = f", {figure['n_patients']} patients" if "n_patients" in figure else ""
    return f"{show(figure['value'])} (95 % CI {show(low)}–{show(high)}; n = {figure['n_images']} images{patients})"


def site_tables(result: dict) -> dict[str, pd.DataFrame]:
    """The site evaluation as tables: ``tasks``, ``within_site``, ``per_site``, ``flags``, ``targets``, ``shift``."""
    rows = []
    for task in TASKS:
        for split, title in (("site_held_out", "hospital never seen (leave-one-site-out)"),
                             ("patient_held_out", "patients never seen (hospitals known)")):
            figure = result[split]["tasks"][task]
            rows.append({"question": TASK_TITLES[task], "evaluation": title, "AUC": figure["value"],
                         "95 % CI": _ci(figure), "images": figure["n_images"], "patients": figure["n_patients"]})
    tasks = pd.DataFrame(rows)
    rows = []
    for split, title in (("site_held_out", "hospital never seen"), ("patient_held_out", "patients never seen")):
        for task in TASKS:
            block = result[split]["within_site"][task]
            pooled = block["pooled_within_site"]
            sites = ", ".join(f"{s['site']} {s['value']:.2f} ({s['n_positive']}/{s['n_images'] - s['n_positive']})"
                              for s in block["per_site"] if s["value"] is not None)
            rows.append({"question": TASK_TITLES[task], "evaluation": title, "AUC within sites": pooled["value"],
                         "95 % CI": _ci(pooled), "images": pooled["n_images"], "sites (AUC, positive/negative)": sites})
    within = pd.DataFrame(rows)
    per_site = pd.DataFrame(result["site_held_out"]["per_site"])
    if not per_site.empty:
        per_site = per_site.pivot_table(index="site", columns="task", values="AUC", aggfunc="first")
    rows = []
    for split, title in (("patient_held_out", "patients never seen"), ("site_held_out", "hospital never seen")):
        for label, figure in result[split]["flags"]["per_label"].items():
            rows.append({"images": label, "evaluation": title, "flagged": figure["value"], "95 % CI": _ci(figure),
                         "n": figure["n_images"]})
    flags = pd.DataFrame(rows)
    targets = pd.DataFrame([{"target": t["description"], "aim": t["target"], "measured": t["value"],
                             "95 % CI": _ci(t), "n": t["n_images"], "met": "yes" if t["met"] else "NOT MET"}
                            for t in result["targets"]])
    shift = pd.DataFrame()
    if "site_shift" in result:
        per_image = result["site_shift"]["per_image"]
        shift = pd.DataFrame([{"images": "from a site left out of training", "warned": per_image["left_out_site"]["value"],
                               "95 % CI": _ci(per_image["left_out_site"]), "n": per_image["left_out_site"]["n_images"]},
                              {"images": "held-out patients of known sites",
                               "warned": per_image["known_site_held_out_patients"]["value"],
                               "95 % CI": _ci(per_image["known_site_held_out_patients"]),
                               "n": per_image["known_site_held_out_patients"]["n_images"]}])
    return {"tasks": tasks, "within_site": within, "per_site": per_site, "flags": flags, "targets": targets,
            "shift": shift}


def _ci(figure: dict) -> str:
    low, high = figure.get("ci95", (None, None))
    return "—" if low is None or high is None else f"{low:.2f}–{high:.2f}"


def targets_not_met(result: dict) -> list[str]:
    """One plain sentence per target the model misses."""
    return [f"{t['description']}: {'—' if t['value'] is None else format(t['value'], '.2f')} "
            f"(aim {t['target']}) — not met" for t in result["targets"] if not t["met"]]


def format_site_evaluation(result: dict) -> str:
    """Plain-text report of a site evaluation."""
    tables = site_tables(result)
    recipe = result["recipe"]
    lines = [f"Three-class model, recipe {recipe['name']} ({recipe['description']}); {result['n_images']} images, "
             f"{result['n_patients']} patients, {result['n_sites']} sites; 95 % CIs: {result['n_boot']} patient "
             "bootstrap resamples", "", "How it holds up at a hospital it has never seen (AUC):",
             tables["tasks"].to_string(index=False), "", "Within-site contrasts (pairs from the same site only):",
             tables["within_site"].to_string(index=False), "",
             f"Flag rates (threshold {result['flag_rule']['threshold']:.3f}, chosen for sensitivity "
             f"{result['flag_rule']['target_sensitivity']} on patient-held-out predictions):",
             tables["flags"].to_string(index=False)]
    if not tables["shift"].empty:
        lines += ["", "Site-shift warning fires on:", tables["shift"].to_string(index=False)]
    lines += ["", "Targets:", tables["targets"].to_string(index=False)]
    missed = targets_not_met(result)
    if missed:
        lines += ["", "NOT MET: " + "; ".join(missed)]
    if "candidates" in result:
        lines += ["", "Recipes compared (mean of LOSO and within-site AUCs): " + ", ".join(
            f"{name} {c['selection_score']:.3f}" for name, c in result["candidates"].items())
                  + f"; chosen: {result['chosen_recipe']}"]
    return "\n".join(lines)
