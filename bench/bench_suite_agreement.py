"""Two suites of one run, question by question: the harness's own eval against the library's on the same server.

    python bench/bench_suite_agreement.py RUN_DIR [--pair gsm8k:lm_eval:canary/cpu --pair mmmu:lmms_eval:canary-vlm/cpu]

Reads `RUN_DIR/samples/<suite>__<model>__<config>.jsonl` of each suite (every per-question record carries `id`,
`output`, `correct` and `parsed`, GSM8K's `extracted_flexible`), pairs them by id and prints how many questions
both asked, how many parsed answers are alike (numbers compared as numbers) and outputs identical, the 2×2 of
correctness and the exact two-sided McNemar p on the discordant pairs (harness.verdict.statistics).
The main job (`tox -e canary`) writes both pairs below; its run dir is the `report:` line it prints.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from harness.verdict.statistics import mcnemar_two_sided

PAIRS = ("gsm8k:lm_eval:canary/cpu", "mmmu:lmms_eval:canary-vlm/cpu")


def records(run_dir: Path, suite: str, case: str) -> dict[str, dict]:
    path = run_dir / "samples" / f"{suite}__{case.replace('/', '__')}.jsonl"
    if not path.is_file():
        raise SystemExit(f"{path}: not found (did the run include {suite}[{case}]?)")
    rows = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    return {str(r["id"]): r for r in rows if "id" in r and "correct" in r}


def answer(record: dict):
    """The parsed answer: `parsed`, or GSM8K's flexible extraction (the harness's gsm8k records name it so)."""
    return record.get("parsed", record.get("extracted_flexible"))


def normalized(answer) -> str:
    """One spelling per answer: GSM8K's harness parses 98.0 where lm-eval keeps the string "98"."""
    text = str(answer).strip().replace(",", "")
    try:
        return format(float(text), "g")
    except ValueError:
        return text


def agreement(run_dir: Path, ours: str, theirs: str, case: str) -> str:
    a, b = records(run_dir, ours, case), records(run_dir, theirs, case)
    shared = sorted(set(a) & set(b))
    alike = sum(normalized(answer(a[i])) == normalized(answer(b[i])) for i in shared)
    same_text = sum(a[i].get("output") == b[i].get("output") for i in shared)
    both = sum(a[i]["correct"] and b[i]["correct"] for i in shared)
    only_ours = sum(a[i]["correct"] and not b[i]["correct"] for i in shared)
    only_theirs = sum(b[i]["correct"] and not a[i]["correct"] for i in shared)
    p = mcnemar_two_sided(only_ours, only_theirs)
    return (
        f"{ours} vs {theirs} [{case}]: {len(shared)} questions in both; parsed answers alike {alike}/{len(shared)}, "
        f"outputs identical {same_text}/{len(shared)}; "
        f"correct in both {both}, only {ours} {only_ours}, only {theirs} {only_theirs} (McNemar two-sided p={p:.3g}"
        + (", below float precision" if p == 0 else "")
        + ")"
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run_dir", type=Path)
    parser.add_argument("--pair", action="append", help=f"OURS:THEIRS:MODEL/CONFIG (default: {', '.join(PAIRS)})")
    args = parser.parse_args()
    for pair in args.pair or PAIRS:
        ours, theirs, case = pair.split(":")
        print(agreement(args.run_dir, ours, theirs, case))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
