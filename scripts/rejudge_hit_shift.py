"""Re-judge scripts/cache_sensitivity.py's per-prompt hit_shift units at several min_effects with the harness's own
sign-flip test: per suite and shift, how many runs fail.

    python scripts/rejudge_hit_shift.py RUN_DIR [--set-size 32]     (RUN_DIR/launch*/<model>__<config>*.json)
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from harness.verdict.checks import ShiftTest, check_shift  # noqa: E402

MIN_EFFECTS = (0.005, 0.0075, 0.01)
ALPHA = 0.01  # thresholds.yaml's &hit_shift


def rejudge(files: list[Path]) -> dict[tuple[str, str], dict]:
    rows: dict[tuple[str, str], dict] = {}
    for path in files:
        record = json.loads(path.read_text())
        size = record["set_size"]
        for suite, block in record["suites"].items():
            for shift, result in block.items():
                if not isinstance(result, dict) or "units" not in result:
                    continue
                units = result["units"]
                row = rows.setdefault((suite, shift), {"runs": 0, "means": [], **dict.fromkeys(MIN_EFFECTS, 0)})
                for start in range(0, len(units) - size + 1, size):
                    chunk = units[start : start + size]
                    row["runs"] += 1
                    row["means"].append(sum(chunk) / len(chunk))
                    for effect in MIN_EFFECTS:
                        verdict = check_shift("rejudge", "hit_shift", chunk, ShiftTest(ALPHA, min_effect=effect))
                        row[effect] += not verdict.passed
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run_dir", type=Path)
    args = parser.parse_args()
    rows = rejudge(sorted(args.run_dir.glob("launch*/*.json")))
    effects = ", ".join(f"{m:g}" for m in MIN_EFFECTS)
    print(f"| suite | shift (nats) | runs | hit_shift per run: min, max | failed at min_effect {effects} |")
    print("|---|---|---|---|" + "---|" * len(MIN_EFFECTS))
    for (suite, shift), row in rows.items():
        fails = " | ".join(f"{row[m]}/{row['runs']}" for m in MIN_EFFECTS)
        print(f"| {suite} | {shift} | {row['runs']} | {min(row['means']):+.4f}, {max(row['means']):+.4f} | {fails} |")


if __name__ == "__main__":
    main()
