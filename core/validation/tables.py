"""The tables of a validation report as DataFrames of display strings (HTML report and dashboard share them)."""

from __future__ import annotations

import pandas as pd

VALUE_COLUMN = "value (95% CI)  [films]"


def percent(figure: dict | None, with_ci: bool = True) -> str:
    """``12.3% (4.5–20.1%)`` from a ``{"value", "ci"}`` figure; ``—`` when there is no value."""
    if not figure or figure.get("value") is None:
        return "—"
    interval = ci_text(figure, True) if with_ci else ""
    return f"{100 * figure['value']:.1f}%" + (f" ({interval})" if interval else "")


def number(figure: dict | None, with_ci: bool = True) -> str:
    """``0.912 (0.870–0.950)`` from a ``{"value", "ci"}`` figure."""
    if not figure or figure.get("value") is None:
        return "—"
    interval = ci_text(figure, False) if with_ci else ""
    return f"{figure['value']:.3f}" + (f" ({interval})" if interval else "")


def ci_text(figure: dict | None, as_percent: bool) -> str:
    """``4.5–20.1%`` (or ``0.870–0.950``): the figure's interval, empty when it has none."""
    low, high = (figure or {}).get("ci") or [None, None]
    if low is None or high is None:
        return ""
    return f"{100 * low:.1f}–{100 * high:.1f}%" if as_percent else f"{low:.3f}–{high:.3f}"


def events(figure: dict | None) -> str:
    return f"{figure['events']}/{figure['n']}" if figure and figure.get("n") else "0/0"


def summary_table(figures: dict, warnings: dict | None = None) -> pd.DataFrame:
    """Films, AUC, threshold, sensitivity, specificity, flag rate, Brier (and the share of OOD warnings)."""
    point = figures.get("operating_point") or {}
    rows = [("films (patients)", f"{figures['n_images']} ({figures['n_patients']})"),
            ("positive / negative films (patients)", f"{figures['n_positive']} / {figures['n_negative']} "
             f"({figures['positive_patients']} / {figures['negative_patients']})"),
            ("AUC (95% CI, bootstrap over patients)", number(figures["AUC"]))]
    if point:
        rows += [("flag threshold in use", f"{100 * point['threshold']:.1f}%"),
                 ("sensitivity at the threshold", f"{percent(point['sensitivity'])}  [{events(point['sensitivity'])}]"),
                 ("specificity at the threshold", f"{percent(point['specificity'])}  [{events(point['specificity'])}]"),
                 ("flag rate", f"{percent(point['flag_rate'])}  [{events(point['flag_rate'])}]")]
    rows.append(("Brier score (lower is better)", number(figures["brier"])))
    if warnings:
        rows.append(("films with an out-of-distribution (site-shift) warning",
                     f"{percent(warnings['out_of_distribution'])}  [{events(warnings['out_of_distribution'])}]"))
    return pd.DataFrame(rows, columns=["figure", VALUE_COLUMN])


def label_table(distributions: dict, flag_rates: dict, score_name: str = "risk") -> pd.DataFrame:
    """Per label: films, median (IQR) of the score, flagged share with its CI."""
    rows = []
    for label, dist in distributions.items():
        spread = f"{dist['median']:.3f} ({dist['q25']:.3f}–{dist['q75']:.3f})" if dist.get("n") else "—"
        rate = flag_rates.get(label)
        rows.append((label, dist["n"], spread, f"{percent(rate)}  [{events(rate)}]" if rate else "—"))
    return pd.DataFrame(rows, columns=["label", "films", f"median {score_name} (IQR)", "flagged (95% CI)  [films]"])


def calibration_table(bins: list[dict]) -> pd.DataFrame:
    rows = [(f"{b['range'][0]:.1f}–{b['range'][1]:.1f}", b["n"], f"{b['mean_risk']:.3f}",
             f"{b['observed']:.3f} ({b['observed_ci'][0]:.3f}–{b['observed_ci'][1]:.3f})") for b in bins]
    return pd.DataFrame(rows, columns=["risk bin", "films", "mean risk", "observed share (95% CI)"])


def warnings_table(warnings: dict) -> pd.DataFrame:
    rows = [("out-of-distribution (site shift): " + warnings["rule"], events(warnings["out_of_distribution"])),
            ("any warning", events(warnings["any_warning"]))]
    rows += [(kind, str(count)) for kind, count in warnings["by_kind"].items()]
    return pd.DataFrame(rows, columns=["warning", "films"])


def refused_table(refused: list[dict]) -> pd.DataFrame:
    return pd.DataFrame(refused, columns=["file", "label", "error"])
