"""Patient progression: the corona scores of one patient's images over time and a trend verdict.

:func:`trend` fits a least-squares line of score against time and calls its change from the first to the last
image *worsening* or *improving* when it exceeds ``z`` = 1.96 standard errors of that change, computed from the
score's test–retest noise (:mod:`core.severity.noise`); otherwise *stable*.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

# Corona-score points: pooled within-image sd over 4 perturbations of each of the 64 expert-scored images of the
# reference data (perturbation_noise at training, seed 42: 4.39; median image 2.0, 90th percentile 5.5).
NOISE_SD = 4.4
Z_CRITICAL = 1.96
VERDICTS = ("worsening", "stable", "improving")
NO_VERDICT = "no verdict"


def _as_days(times: pd.Series) -> np.ndarray:
    """Numbers stay as they are (days since onset, study order); dates and date strings become days since the first."""
    if pd.api.types.is_numeric_dtype(times):
        return times.to_numpy(dtype=float)
    stamps = pd.to_datetime(times, errors="coerce")
    return ((stamps - stamps.min()) / pd.Timedelta(days=1)).to_numpy(dtype=float)


def trend(series: pd.DataFrame, noise_sd: float | None = None, z: float = Z_CRITICAL) -> dict:
    """Trend verdict of one patient's corona scores.

    Parameters
    ----------
    series : DataFrame
        Columns ``time`` (days as numbers, or dates / ISO date strings) and ``corona_score`` (0-100); rows with
        either missing are ignored.
    noise_sd : float, optional
        Noise of one score in points (default ``NOISE_SD``, measured).
    z : float
        Standard errors the fitted change must exceed (1.96: a two-sided 5 % test).

    Returns
    -------
    dict
        ``verdict`` (``worsening``, ``stable``, ``improving``, or ``no verdict`` with a ``reason``), ``rule`` (text),
        ``n_images``, ``noise_sd``, and with a verdict: ``change`` (fitted change first -> last image, points),
        ``threshold`` (points the change had to exceed), ``slope_per_day`` and ``span_days``.
    """
    noise_sd = NOISE_SD if noise_sd is None else float(noise_sd)
    times, scores = _as_days(series["time"]), pd.to_numeric(series["corona_score"], errors="coerce").to_numpy(float)
    keep = np.isfinite(times) & np.isfinite(scores)
    times, scores = times[keep], scores[keep]
    result = {"n_images": int(keep.sum()), "noise_sd": noise_sd,
              "rule": (f"least-squares change of the corona score from the first to the last image beyond ±{z:g} "
                       f"standard errors (per-image noise {noise_sd:.1f} points; two images: a difference of more "
                       f"than {z * np.sqrt(2) * noise_sd:.1f}) → worsening / improving, else stable")}
    if times.size < 2:
        return {**result, "verdict": NO_VERDICT, "reason": "a trend needs at least two dated images"}
    centred = times - times.mean()
    spread = float(np.sum(centred**2))
    if spread == 0:
        return {**result, "verdict": NO_VERDICT, "reason": "all images were taken at the same time"}
    slope = float(np.sum(centred * (scores - scores.mean())) / spread)
    span = float(np.ptp(times))
    change = slope * span
    threshold = z * noise_sd * span / np.sqrt(spread)
    verdict = "worsening" if change > threshold else "improving" if change < -threshold else "stable"
    return {**result, "verdict": verdict, "change": round(change, 2), "threshold": round(float(threshold), 2),
            "slope_per_day": slope, "span_days": span}


def patient_trends(table: pd.DataFrame, scores: pd.Series, noise_sd: float | None = None) -> pd.DataFrame:
    """Trend of every patient with images on two or more days.

    Parameters
    ----------
    table : DataFrame
        Data set rows with ``patient_id``, ``offset_days`` (days since symptom onset) and ``label``.
    scores : Series
        Corona score of each row (same index as ``table``).
    noise_sd : float, optional

    Returns
    -------
    DataFrame
        One row per patient: ``patient_id``, ``label``, ``n_images``, ``days`` and ``scores`` (lists, oldest first),
        ``verdict``, ``change``, ``threshold``.
    """
    dated = table.assign(corona_score=scores).dropna(subset=["offset_days", "corona_score"])
    rows = []
    for patient, images in dated.groupby("patient_id", sort=True):
        if images["offset_days"].nunique() < 2:
            continue
        images = images.sort_values("offset_days")
        verdict = trend(images.rename(columns={"offset_days": "time"}), noise_sd=noise_sd)
        rows.append({"patient_id": patient, "label": images["label"].iloc[0], "n_images": len(images),
                     "days": images["offset_days"].tolist(), "scores": images["corona_score"].round(1).tolist(),
                     "verdict": verdict["verdict"], "change": verdict.get("change"),
                     "threshold": verdict.get("threshold")})
    return pd.DataFrame(rows)


def _least_squares_change(times: np.ndarray, values: np.ndarray) -> float:
    centred = times - times.mean()
    return float(np.sum(centred * (values - values.mean())) / np.sum(centred**2) * np.ptp(times))


def trend_agreement(series: pd.DataFrame, *, noise_sd: float, expert_band: float, z: float = Z_CRITICAL) -> dict:
    """How the trend verdict agrees with the experts' own trend over the same dated images.

    Parameters
    ----------
    series : DataFrame
        Columns ``patient`` (series key), ``time`` (days), ``corona_score`` (the tool's score, 0–100, e.g. out of
        fold) and ``expert`` (the experts' score on the same 0–100 scale); rows with a missing value are ignored.
    noise_sd : float
        The score's test–retest noise (points), as :func:`trend` uses it.
    expert_band : float
        Least-squares change (first to last image, 0–100 points) within which the experts' trend counts as stable.
    z : float

    Returns
    -------
    dict
        ``n_series`` (patients with images on >= 2 days), ``agreement`` (share of identical verdicts),
        ``cohen_kappa``, ``direction_agreement`` (among series both call worsening or improving, the share in the
        same direction; NaN without any), ``confusion`` (counts, expert verdict -> tool verdict) and ``series``
        (per patient: days, tool and expert verdicts and changes).
    """
    from sklearn.metrics import cohen_kappa_score

    rows = []
    complete = series.dropna(subset=["time", "corona_score", "expert"])
    for patient, images in complete.groupby("patient", sort=True):
        if images["time"].nunique() < 2:
            continue
        images = images.sort_values("time")
        tool = trend(images[["time", "corona_score"]], noise_sd=noise_sd, z=z)
        change = _least_squares_change(images["time"].to_numpy(float), images["expert"].to_numpy(float))
        expert = "worsening" if change > expert_band else "improving" if change < -expert_band else "stable"
        rows.append({"patient": patient, "days": images["time"].tolist(), "tool": tool["verdict"],
                     "tool_change": tool["change"], "expert": expert, "expert_change": round(change, 2)})
    table = pd.DataFrame(rows, columns=["patient", "days", "tool", "expert", "tool_change", "expert_change"])
    if table.empty:
        return {"n_series": 0}
    both_moving = table[(table["tool"] != "stable") & (table["expert"] != "stable")]
    confusion = pd.crosstab(table["expert"], table["tool"]).reindex(index=VERDICTS, columns=VERDICTS, fill_value=0)
    return {"n_series": int(len(table)), "agreement": float((table["tool"] == table["expert"]).mean()),
            "cohen_kappa": float(cohen_kappa_score(table["expert"], table["tool"], labels=list(VERDICTS))),
            "direction_agreement": float((both_moving["tool"] == both_moving["expert"]).mean())
            if len(both_moving) else float("nan"),
            "confusion": {f"expert {e}": {f"tool {t}": int(confusion.loc[e, t]) for t in VERDICTS} for e in VERDICTS},
            "series": table.to_dict(orient="records")}
