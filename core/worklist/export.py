"""The worklist as files a person (or a spreadsheet) reads: cases and their audit trail as two CSV tables.

Readable means: words for column names, percentages rounded to 0.1, the corona score to a whole number, one
column per model and per zone (the model's grade and the radiologist's, so corrections become training labels),
times in UTC to the second, and no internal fields (row version, raw JSON, the thumbnail). The image's SHA-256
stays: it is what links a corrected grade back to its film.
"""

from __future__ import annotations

import json
import unicodedata

import pandas as pd

from core.lungs.zones import ZONE_NAMES

# What starts a formula in Excel, LibreOffice or Google Sheets, the full-width forms included (some locales
# convert them); blanks and invisible characters before it are skipped by the spreadsheet, so by the check too.
_CSV_FORMULA_PREFIXES = ("=", "+", "-", "@", "\uff1d", "\uff0b", "\uff0d", "\uff20")
# Columns a reader never needs; everything not named here or below is passed through unchanged at the end.
_INTERNAL = {"version", "per_model_json", "zones_json", "zones_corrected_json", "thumbnail_png", "risk",
             "threshold", "flagged", "corona_score", "created_at", "updated_at", "reviewer_source"}
_RENAMED = {"id": "case", "patient_id": "patient id", "study_date": "study date",
            "offset_days": "days since symptom onset", "image_name": "image", "image_sha256": "image SHA-256",
            "model_version": "model", "status": "status", "reviewer": "reviewer", "note": "note"}


def defuse_csv_formulas(frame: pd.DataFrame) -> pd.DataFrame:
    """Prefix text cells that a spreadsheet would run as a formula (CSV injection) with a quote."""
    frame = frame.copy()
    for column in frame.columns:
        if frame[column].dtype == object or pd.api.types.is_string_dtype(frame[column]):
            frame[column] = frame[column].map(lambda cell: "'" + cell if _looks_like_formula(cell) else cell)
    return frame


def _looks_like_formula(cell: object) -> bool:
    """A text cell a spreadsheet could run: a formula sign after any blanks, controls or zero-width characters."""
    if not isinstance(cell, str):
        return False
    visible = next((ch for ch in cell if not (ch.isspace() or unicodedata.category(ch) in ("Cc", "Cf", "Zs"))), "")
    return cell.startswith(("\t", "\r")) or visible.startswith(_CSV_FORMULA_PREFIXES)


def _utc_seconds(stamps: pd.Series) -> pd.Series:
    return stamps.astype("string").str.slice(0, 19).str.replace("T", " ")


def _json_column(texts: pd.Series) -> list[dict]:
    return [json.loads(text) if isinstance(text, str) and text else {} for text in texts]


def readable_cases(cases: pd.DataFrame) -> pd.DataFrame:
    """One row per case in the order given, columns as a reader expects them (see the module docstring)."""
    out = pd.DataFrame(index=cases.index)
    out["case"] = cases["id"]
    out["saved (UTC)"] = _utc_seconds(cases["created_at"])
    for column in ("patient_id", "study_date", "offset_days", "image_name", "image_sha256"):
        out[_RENAMED[column]] = cases[column]
    out["COVID-19 risk %"] = (100 * cases["risk"]).round(1)
    out["flag threshold %"] = (100 * cases["threshold"]).round(1)
    out["decision"] = cases["flagged"].map({True: "flagged", False: "not flagged"}).fillna("")
    per_model = _json_column(cases["per_model_json"])
    for name in dict.fromkeys(name for models in per_model for name in models):
        out[f"{name} %"] = [round(100 * models[name], 1) if name in models else None for models in per_model]
    out["corona score"] = cases["corona_score"].round(0).astype("Int64")
    model_grades = _json_column(cases["zones_json"])
    corrected = _json_column(cases.get("zones_corrected_json", pd.Series(None, index=cases.index)))
    for zone in ZONE_NAMES:
        label = zone.replace("_", " ")
        out[f"{label} grade (model)"] = pd.array([grades.get(zone) for grades in model_grades], dtype="Int64")
        out[f"{label} grade (radiologist)"] = pd.array([grades.get(zone) for grades in corrected], dtype="Int64")
    out["status"] = cases["status"]
    out["reviewer"] = cases["reviewer"]
    if "reviewer_source" in cases:
        out["reviewer identified by"] = cases["reviewer_source"].replace({"": "not recorded"})
    out["note"] = cases["note"]
    out["model"] = cases["model_version"]
    out["last change (UTC)"] = _utc_seconds(cases["updated_at"])
    for column in cases.columns:  # fields added later (e.g. a site profile) are exported as they are
        if column not in _INTERNAL and column not in _RENAMED:
            out[column.replace("_", " ")] = cases[column]
    return out.reset_index(drop=True)


def readable_audit(events: pd.DataFrame) -> pd.DataFrame:
    """The audit trail with readable column names and times (oldest first, as stored)."""
    out = pd.DataFrame({"event": events["id"], "case": events["case_id"], "at (UTC)": _utc_seconds(events["at"]),
                        "who": events["who"]})
    if "who_source" in events:
        out["identified by"] = events["who_source"].replace({"": "not recorded"})
    out["action"] = events["action"]
    out["from status"] = events["from_status"]
    out["to status"] = events["to_status"]
    out["note"] = events["note"]
    out["case version"] = events["case_version"]
    return out.reset_index(drop=True)
