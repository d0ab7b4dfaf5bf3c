"""An lm-eval task through the library against the server under test, judged by the harness's references,
for every (model, config) of thresholds.yaml that lists `lm_eval`."""

from harness.evals.lm_eval_suite import LmEval


def test_lm_eval(harness):
    harness.check(harness.run(LmEval()))
