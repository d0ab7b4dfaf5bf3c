"""`--harness-limit` on the trained canary VLM, in real pytest runs of the harness (issue 35, item 3).

A limited mmmu run is judged on the same questions as the committed reference run's per-question records
(assets/references/mmmu.canary-vlm.json), paired; without them, by an exact binomial at the reference's accuracy
(harness.verdict.subset). `--harness-limit L` takes the first L questions by a content hash, so a run at L = 60
holds every smaller limit's subset: the 20 subsets of 20, 22, …, 58 questions are judged from its samples through
the same verdict code (`check_reference`, with the records the judge reads) instead of 20 runs of about 20 s each.
One healthy run at the issue's limit of 30 and one at 60 run for real; so does one at 60 through the fault proxy
dropping each question's last image, which must fail, as must each of its 20 subsets.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from inner_run_support import assert_clean, fault_proxy, run_inner
from test_readme_add_model import user_project

from harness.config.thresholds import load_thresholds
from harness.evals.data import stable_subsample
from harness.serve.engines import get_engine
from harness.serve.server import LifecycleOptions, Server
from harness.verdict.checks import check_reference
from harness.verdict.judge import _records

REPO = Path(__file__).resolve().parents[1]
SELECT = ("-k", "mmmu and canary_vlm and cpu and not page16 and not parity")
LIMITS = range(20, 60, 2)  # 20 subsets of 20–58 questions


@pytest.fixture
def project(tmp_path: Path) -> Path:
    return user_project(tmp_path)


def run_samples(root: Path) -> dict[str, bool]:
    (file,) = (root / "reports").glob("*/samples/mmmu__canary-vlm__cpu.jsonl")
    rows = [json.loads(line) for line in file.read_text().splitlines()]
    return {row["id"]: bool(row["correct"]) for row in rows}


def judge_subsets(answers: dict[str, bool]) -> list[tuple[int, bool, bool, str]]:
    """Each limit's subset judged paired (with the committed records) and by the binomial (without): (limit,
    paired passed, binomial passed, paired line)."""
    thresholds = load_thresholds(REPO / "thresholds.yaml")
    match = thresholds.reference_for("mmmu", "canary-vlm", "cpu", "accuracy")
    records = _records(thresholds, match)
    assert records is not None and len(records.answers) == 900
    out = []
    for limit in LIMITS:
        subset = {q: answers[q] for q in stable_subsample(sorted(answers), limit, key=str)}
        accuracy = sum(subset.values()) / limit
        paired = check_reference(match, accuracy, n=limit, subset=(subset, records))
        binomial = check_reference(match, accuracy, n=limit, subset=(subset, None))
        assert paired.kind == "paired" and "exact binomial" in binomial.judged
        out.append((limit, paired.passed, binomial.passed, paired.message()))
    return out


def test_the_issues_command_passes_at_limit_30(project):
    run = run_inner(project, *SELECT, "--harness-limit", "30")
    assert run.returncode == 0, run.output[-3000:]
    (row,) = run.results["tests"]
    assert row["verdict"] == "pass" and row["n"] == 30
    (check,) = [c for c in row["checks"] if c["metric"] == "accuracy"]
    assert check["limited"] == {"n": 30, "of": 900, "method": "paired"}
    assert (
        "mmmu[canary-vlm/cpu]: accuracy 0.933, no significant loss vs the reference's 0.933 on them (limited: 30 of 900"
        " questions; paired with the reference run on the same 30: 0 lost, 0 gained, exact McNemar p=1 ≥"
        " α=0.05/1=0.05) — thresholds.yaml references.mmmu.canary-vlm[0]"
    ) in run.output
    assert_clean(run)


def test_twenty_subsets_of_a_healthy_run_pass(project):
    run = run_inner(project, *SELECT, "--harness-limit", "60")
    assert run.returncode == 0 and run.results["tests"][0]["verdict"] == "pass", run.output[-3000:]
    answers = run_samples(project)
    assert len(answers) == 60
    judged = judge_subsets(answers)
    assert len({frozenset(stable_subsample(sorted(answers), n, key=str)) for n in LIMITS}) == 20
    assert [(limit, p, b) for limit, p, b, _ in judged] == [(limit, True, True) for limit in LIMITS], judged
    assert_clean(run)


@pytest.fixture(scope="module")
def canary_vlm_engine(tmp_path_factory):
    spec = load_thresholds(REPO / "thresholds.yaml").server_spec("canary-vlm", "cpu")
    log_dir = tmp_path_factory.mktemp("canary_vlm")
    with Server(spec, get_engine(spec.engine), log_dir=log_dir, options=LifecycleOptions(grace_period=10)) as server:
        yield server


def test_dropped_images_fail_at_every_limit(project, canary_vlm_engine):
    with fault_proxy(canary_vlm_engine.base_url, "drop-image") as url:
        run = run_inner(project, *SELECT, "--harness-limit", "60", "--harness-base-url", url)
    (row,) = run.results["tests"]
    assert run.returncode == 1 and row["verdict"] == "fail", run.output[-3000:]
    assert "(limited: 60 of 900 questions; paired with the reference run on the same 60:" in run.output
    judged = judge_subsets(run_samples(project))
    assert [(limit, p, b) for limit, p, b, _ in judged] == [(limit, False, False) for limit in LIMITS], judged
    assert_clean(run)
