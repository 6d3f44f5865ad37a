"""Models -> honest figures: splits, metrics, repeated evaluation before/after selection, and its report.

``splits`` (random, patient-grouped, source; the split names), ``metrics`` (AUC, CA, F1, ...), ``evaluate`` (the
four models over repeated splits), ``report`` (dataclasses that round-trip through JSON).
"""
