"""One image -> a verdict: ``acceptance`` (is this a frontal chest X-ray?) and ``model`` (risk, flag, warnings,
corona score with the saved models). The CLI's ``predict``/``score`` and the dashboard both go through it."""
