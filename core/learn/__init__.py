"""Features -> fitted models: preprocessing, the classifiers (the study's four and a linear model), three-class
training, their consensus, the flag rule and the site-shift check.

``preprocessing`` (Orange-faithful missing-value filter and information-gain selection), ``models`` (SVM, Random
Forest, Neural Network, kNN pipelines), ``consensus`` (calibrated risk, out-of-distribution check), ``flag`` (the
flag rule), ``training`` (final fit with out-of-fold calibration), ``artifacts`` (save, verify, load).
"""
