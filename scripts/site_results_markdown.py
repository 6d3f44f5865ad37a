"""Print the README's site-generalisation tables (markdown) from a saved site evaluation.

Usage: python scripts/site_results_markdown.py [models/default/site-evaluation.json]
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

from core.evaluation.report_sites import TASK_TITLES, format_figure
from core.labels import TASKS


def main(path: Path) -> None:
    result = json.loads(path.read_text())
    print("| question | hospital never seen (leave-one-site-out) | patients never seen (hospitals known) |")
    print("| --- | --- | --- |")
    for task in TASKS:
        print(f"| {TASK_TITLES[task]} | {format_figure(result['site_held_out']['tasks'][task])} | "
              f"{format_figure(result['patient_held_out']['tasks'][task])} |")
    print("\n| within-site contrast | hospital never seen | patients never seen | sites (positive/negative images) |")
    print("| --- | --- | --- | --- |")
    for task in TASKS:
        site, patient = (result[s]["within_site"][task] for s in ("site_held_out", "patient_held_out"))
        sites = ", ".join(f"{s['site']} {s['n_positive']}/{s['n_images'] - s['n_positive']}"
                          for s in patient["per_site"])
        print(f"| {TASK_TITLES[task]} | {format_figure(site['pooled_within_site'])} | "
              f"{format_figure(patient['pooled_within_site'])} | {sites} |")
    print("\n| images | flagged, patients never seen | flagged, hospital never seen |")
    print("| --- | --- | --- |")
    for label in result["patient_held_out"]["flags"]["per_label"]:
        print(f"| {label} | {format_figure(result['patient_held_out']['flags']['per_label'][label], True)} | "
              f"{format_figure(result['site_held_out']['flags']['per_label'][label], True)} |")
    if "site_shift" in result:
        shift = result["site_shift"]
        batches = shift["batch_of_one_site"]
        print(f"\nSite-shift warning, per image: left-out site "
              f"{format_figure(shift['per_image']['left_out_site'], True)}; held-out patients of known sites "
              f"{format_figure(shift['per_image']['known_site_held_out_patients'], True)}. A whole site as one "
              f"batch (sites with >= 8 images): warned for {batches['left_out_site']['rate']:.0%} of "
              f"{batches['left_out_site']['n_batches']} left-out sites vs "
              f"{batches['known_site_held_out_patients']['rate']:.0%} of the same sites' held-out patients.")
    print("\n| target | aim | measured | met |")
    print("| --- | --- | --- | --- |")
    for target in result["targets"]:
        print(f"| {target['description']} | {target['target']} | {format_figure(target)} | "
              f"{'yes' if target['met'] else '**not met**'} |")
    if "candidates" in result:
        print("\nRecipes (selection score = mean of LOSO and within-site AUCs): " + ", ".join(
            f"{n} {c['selection_score']:.3f}" for n, c in result["candidates"].items())
            + f"; chosen {result['chosen_recipe']}.")


if __name__ == "__main__":
    main(Path(sys.argv[1] if len(sys.argv) > 1 else "models/default/site-evaluation.json"))
