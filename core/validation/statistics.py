"""Confidence intervals for figures measured on one site's films.

Films of one patient are not independent (several films per patient are common in COVID-19 series), so:

- AUC, Brier score and the threshold get a percentile **bootstrap over patients** (each replicate draws patients
  with replacement and keeps all their films);
- proportions (sensitivity, specificity, flag rates) get an exact **Clopper–Pearson** interval computed on the
  number of *patients* behind them (effective sample size; Korn & Graubard 1998) — conservative when patients have
  several films, and never the degenerate [1, 1] a bootstrap gives at 100 %.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
from scipy import sparse
from scipy.stats import beta

N_BOOTSTRAP = 2000
CONFIDENCE = 0.95


def clopper_pearson(k: float, n: float, confidence: float = CONFIDENCE) -> tuple[float, float]:
    """Exact binomial interval of ``k`` events in ``n`` trials (fractional ``k`` allowed); NaNs when ``n`` is 0."""
    if n <= 0:
        return float("nan"), float("nan")
    alpha = (1.0 - confidence) / 2.0
    low = 0.0 if k <= 0 else float(beta.ppf(alpha, k, n - k + 1))
    high = 1.0 if k >= n else float(beta.ppf(1.0 - alpha, k + 1, n - k))
    return low, high


def proportion(events: np.ndarray, groups: np.ndarray, confidence: float = CONFIDENCE) -> dict:
    """Share of films with ``events``, with a Clopper–Pearson interval on the number of patients.

    Parameters
    ----------
    events : (n_films,) bool
    groups : (n_films,) patient of each film
    """
    events = np.asarray(events, dtype=bool)
    n_patients = int(pd.unique(np.asarray(groups)).size) if len(events) else 0
    if not len(events):
        return {"value": None, "ci": [None, None], "n": 0, "events": 0, "patients": 0}
    value = float(events.mean())
    low, high = clopper_pearson(value * n_patients, n_patients, confidence)
    return {"value": value, "ci": [low, high], "n": int(len(events)), "events": int(events.sum()),
            "patients": n_patients}


def patient_bootstrap_weights(groups: np.ndarray, n_boot: int = N_BOOTSTRAP, random_state: int = 0) -> np.ndarray:
    """How often each film is drawn in each replicate of a bootstrap over patients, shape (n_boot, n_films)."""
    codes, uniques = pd.factorize(pd.Series(np.asarray(groups, dtype=object)))
    rng = np.random.default_rng(random_state)
    counts = rng.multinomial(len(uniques), np.full(len(uniques), 1.0 / len(uniques)), size=n_boot)
    return counts[:, codes]


def weighted_auc(y: np.ndarray, score: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """ROC AUC (Mann–Whitney, ties count one half) of each row of film ``weights``, shape (n_rows,).

    Unit weights give exactly ``sklearn.metrics.roc_auc_score``; a row without both classes gives NaN.
    """
    y = np.asarray(y).astype(bool)
    weights = np.atleast_2d(np.asarray(weights, dtype=float))
    values, inverse = np.unique(np.asarray(score, dtype=float), return_inverse=True)
    onehot = sparse.csr_matrix((np.ones(len(inverse)), (np.arange(len(inverse)), inverse)),
                               shape=(len(inverse), len(values)))
    positive = np.asarray((onehot[y].T @ weights[:, y].T).T)      # (rows, distinct scores)
    negative = np.asarray((onehot[~y].T @ weights[:, ~y].T).T)
    below = np.cumsum(negative, axis=1) - negative                  # negative weight strictly below each score
    numerator = (positive * (below + 0.5 * negative)).sum(axis=1)
    denominator = positive.sum(axis=1) * negative.sum(axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(denominator > 0, numerator / np.where(denominator > 0, denominator, 1.0), np.nan)


def weighted_threshold_for_sensitivity(risk: np.ndarray, weights: np.ndarray, target: float) -> np.ndarray:
    """:func:`core.learn.flag.threshold_for_sensitivity` of the positives' ``risk`` under each row of weights.

    ``risk``: (n_positives,); ``weights``: (n_rows, n_positives). Unit weights give the unweighted threshold.
    """
    weights = np.atleast_2d(np.asarray(weights, dtype=float))
    order = np.argsort(-np.asarray(risk, dtype=float), kind="stable")
    ranked = np.asarray(risk, dtype=float)[order]
    caught = np.cumsum(weights[:, order], axis=1)
    needed = np.maximum(target * caught[:, -1] - 1e-9, 1e-12)
    first = np.argmax(caught >= needed[:, None], axis=1)
    return np.where(caught[:, -1] > 0, ranked[first], np.nan)


def percentile_interval(replicates: np.ndarray, confidence: float = CONFIDENCE) -> list[float | None]:
    """Percentile interval of bootstrap replicates (NaN replicates left out)."""
    finite = np.asarray(replicates, dtype=float)
    finite = finite[np.isfinite(finite)]
    if not len(finite):
        return [None, None]
    alpha = (1.0 - confidence) / 2.0
    return [float(np.quantile(finite, alpha)), float(np.quantile(finite, 1.0 - alpha))]


def calibration_bins(y: np.ndarray, risk: np.ndarray, n_bins: int = 10,
                     confidence: float = CONFIDENCE) -> list[dict]:
    """Equal-width risk bins: range, films, mean risk, observed share of positives with its exact interval."""
    y, risk = np.asarray(y, dtype=int), np.asarray(risk, dtype=float)
    edges = np.linspace(0.0, 1.0, n_bins + 1)
    index = np.clip(np.digitize(risk, edges[1:-1], right=False), 0, n_bins - 1)
    bins = []
    for b in range(n_bins):
        inside = index == b
        n = int(inside.sum())
        if not n:
            continue
        events = int(y[inside].sum())
        low, high = clopper_pearson(events, n, confidence)
        bins.append({"range": [float(edges[b]), float(edges[b + 1])], "n": n, "mean_risk": float(risk[inside].mean()),
                     "observed": events / n, "observed_ci": [low, high]})
    return bins


def distribution(values: np.ndarray, n_bins: int = 20) -> dict:
    """Quantiles and a histogram (equal-width bins over [0, 1]) of risks."""
    values = np.asarray(values, dtype=float)
    values = values[np.isfinite(values)]
    counts, edges = np.histogram(values, bins=n_bins, range=(0.0, 1.0))
    if not len(values):
        return {"n": 0, "histogram": {"edges": edges.tolist(), "counts": counts.tolist()}}
    q = np.quantile(values, [0.0, 0.25, 0.5, 0.75, 1.0])
    return {"n": int(len(values)), "min": float(q[0]), "q25": float(q[1]), "median": float(q[2]),
            "q75": float(q[3]), "max": float(q[4]), "mean": float(values.mean()),
            "histogram": {"edges": edges.tolist(), "counts": counts.tolist()}}


def positives_needed(target_sensitivity: float, margin: float, confidence: float = CONFIDENCE) -> int:
    """Fewest positive patients for which catching the target share leaves the exact lower confidence bound of the
    sensitivity within ``margin`` of the target (e.g. 0.95 and 0.10: the bound must reach 0.85)."""
    for n in range(1, 100_000):
        caught = math.ceil(target_sensitivity * n - 1e-9)
        if clopper_pearson(caught, n, confidence)[0] >= target_sensitivity - margin:
            return n
    raise ValueError(f"no sample size reaches sensitivity {target_sensitivity} within {margin}")
