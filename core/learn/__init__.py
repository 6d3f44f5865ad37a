"""Features -> fitted models: preprocessing, the four classifiers, their consensus and the flag rule.

``preprocessing`` (Orange-faithful missing-value filter and information-gain selection), ``models`` (SVM, Random
Forest, Neural Network, kNN pipelines), ``consensus`` (calibrated risk, out-of-distribution check), ``flag`` (the
flag rule), ``training`` (final fit with out-of-fold calibration), ``artifacts`` (save, verify, load).
"""
