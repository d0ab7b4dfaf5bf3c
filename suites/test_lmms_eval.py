"""An lmms-eval task through the library against the server under test, judged by the harness's references,
for every (model, config) of thresholds.yaml that lists `lmms_eval`."""

from harness.evals.lmms_eval_suite import LmmsEval


def test_lmms_eval(harness):
    harness.check(harness.run(LmmsEval()))
