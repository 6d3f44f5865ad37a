"""Lungs + zone features -> the corona score: zone severities and grades, expert-scale estimates, progression.

``model`` (the severity estimator), ``fitting`` (fit on a data set with the grouped cross-validated report),
``noise`` (test–retest noise by perturbation), ``progression`` (trend verdict over a patient's images).
"""
