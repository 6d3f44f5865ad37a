"""The flag for quarantine follow-up: one rule, chosen at training time and applied everywhere.

A case is flagged when its calibrated COVID-19 risk is at or above the operating threshold. The threshold is
chosen on out-of-fold risks as the highest one that still catches the target share of COVID-19 images (default
0.95): a triage tool must not miss cases. :class:`FlagRule` carries the threshold with the model that uses it;
:func:`is_flagged` is the comparison itself, for stored cases that carry their own threshold.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


def is_flagged(risk, threshold):
    """Whether ``risk`` reaches ``threshold`` (scalars give a bool, arrays an array of bool)."""
    flagged = np.greater_equal(risk, threshold)
    return bool(flagged) if np.ndim(flagged) == 0 else flagged


@dataclass(frozen=True)
class FlagRule:
    """Flag when the calibrated risk is at or above ``threshold``.

    Attributes
    ----------
    threshold : float
        Operating threshold on the calibrated risk, in [0, 1].
    target_sensitivity : float or None
        The sensitivity the threshold was chosen for, when it was chosen that way.
    """

    threshold: float
    target_sensitivity: float | None = None

    def flags(self, risk):
        """Whether each risk is flagged (see :func:`is_flagged`)."""
        return is_flagged(risk, self.threshold)

    @classmethod
    def for_sensitivity(cls, risk: np.ndarray, y: np.ndarray, target_sensitivity: float = 0.95) -> "FlagRule":
        """The rule whose threshold reaches ``target_sensitivity`` on these (out-of-fold) risks."""
        return cls(threshold_for_sensitivity(risk, y, target_sensitivity), float(target_sensitivity))

    def operating_point(self, risk: np.ndarray, y: np.ndarray) -> dict[str, float]:
        """Sensitivity, specificity and flag rate of this rule on labelled risks."""
        return operating_point(risk, y, self.threshold)

    def to_dict(self) -> dict:
        return {"threshold": float(self.threshold), "target_sensitivity": self.target_sensitivity}

    @classmethod
    def from_dict(cls, record: dict) -> "FlagRule":
        return cls(float(record["threshold"]), record.get("target_sensitivity"))


def threshold_for_sensitivity(risk: np.ndarray, y: np.ndarray, target_sensitivity: float = 0.95) -> float:
    """Highest threshold t such that flagging ``risk >= t`` catches at least ``target_sensitivity`` of positives."""
    positives = np.sort(np.asarray(risk, dtype=float)[np.asarray(y) == 1])
    if not len(positives):
        raise ValueError("no COVID-19 images: cannot choose a threshold for a sensitivity target")
    # flagging the top ceil(target·n) positive risks: the threshold is the smallest of them
    n_needed = int(np.ceil(target_sensitivity * len(positives) - 1e-9))
    return float(positives[len(positives) - max(n_needed, 1)])


def operating_point(risk: np.ndarray, y: np.ndarray, threshold: float) -> dict[str, float]:
    """Sensitivity, specificity and flag rate of ``risk >= threshold``."""
    risk, y = np.asarray(risk, dtype=float), np.asarray(y)
    flagged = is_flagged(risk, threshold)
    return {
        "threshold": float(threshold),
        "sensitivity": float(flagged[y == 1].mean()),
        "specificity": float((~flagged[y == 0]).mean()),
        "flag_rate": float(flagged.mean()),
    }
