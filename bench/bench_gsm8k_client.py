"""Harness vs lm-eval on the same GSM8K set and the same server, side by side in one run.

Two servers: the HF reference engine serving the canary (real answers), and a no-work echo server (only
client cost remains). For each, the harness's GSM8K eval and lm-eval's `local-completions` model (offline,
a local JSON task with the same 5-shot prompt, stops and token budget) run against it at the same
concurrency. Prints wall times, the harness/lm-eval ratio, and whether the per-question answers match.

    python bench/bench_gsm8k_client.py [--limit N] [--concurrency 16]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from harness.client.http import Client, ClientOptions  # noqa: E402
from harness.config.spec import ServerSpec  # noqa: E402
from harness.evals import gsm8k  # noqa: E402
from harness.evals.data import load_records, stable_subsample  # noqa: E402
from harness.evals.types import EvalContext  # noqa: E402
from harness.serve.engines import get_engine  # noqa: E402
from harness.serve.server import Server  # noqa: E402

CANARY = REPO / "assets" / "canary"
TASK_YAML = """\
task: canary_gsm8k_bench
dataset_path: json
dataset_kwargs:
  data_files:
    test: {test}
    train: {train}
test_split: test
fewshot_split: train
fewshot_config:
  sampler: first_n
doc_to_text: "Question: {{{{question}}}}\\nAnswer:"
doc_to_target: " {{{{answer}}}}"
target_delimiter: ""
fewshot_delimiter: "\\n\\n"
output_type: generate_until
generation_kwargs:
  until: {stops}
  do_sample: false
  temperature: 0.0
  max_gen_toks: {max_tokens}
metric_list:
  - metric: exact_match
"""


def run_harness(base_url: str, args, data_dir: Path) -> tuple[float, dict[str, float | None]]:
    answers: dict[str, float | None] = {}

    async def go():
        async with Client(base_url, ClientOptions(max_concurrency=args.concurrency)) as client:
            ctx = EvalContext(
                client=client,
                case_id="bench",
                server_info={},
                model_path=str(CANARY / "model"),
                options={"source": str(data_dir), "num_shots": 5, "max_new_tokens": args.max_tokens},
                limit=args.limit,
                on_sample=lambda s: answers.__setitem__(s["id"], s["extracted_flexible"]),
            )
            return await gsm8k.GSM8K()(ctx)

    started = time.perf_counter()
    asyncio.run(go())
    return time.perf_counter() - started, answers


def run_lm_eval(base_url: str, args, task_dir: Path) -> tuple[float, list[float | None]]:
    import lm_eval
    from lm_eval.tasks import TaskManager

    started = time.perf_counter()
    result = lm_eval.simple_evaluate(
        model="local-completions",
        model_args=dict(
            model="canary",
            base_url=f"{base_url}/v1/completions",
            tokenizer=str(CANARY / "model"),
            tokenizer_backend="huggingface",
            tokenized_requests=False,
            num_concurrent=args.concurrency,
            max_retries=1,
            max_length=2048,
            batch_size=1,
        ),
        tasks=["canary_gsm8k_bench"],
        task_manager=TaskManager(include_path=str(task_dir)),
        num_fewshot=5,
        log_samples=True,
        limit=None,
    )
    elapsed = time.perf_counter() - started
    samples = sorted(result["samples"]["canary_gsm8k_bench"], key=lambda s: s["doc_id"])
    return elapsed, [gsm8k.extract_flexible(s["resps"][0][0]) for s in samples]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--limit", type=int, default=None, help="questions (default: the whole test split)")
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--max-tokens", type=int, default=96)
    args = parser.parse_args()
    os.environ.update(HF_DATASETS_OFFLINE="1", HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1")
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        data_dir = tmp / "data"
        data_dir.mkdir()
        test = load_records(str(CANARY / "data"), "test")
        for i, record in enumerate(test):
            record.setdefault("id", f"test-{i}")
        test = stable_subsample(test, args.limit, key=lambda r: r["question"])
        (data_dir / "test.jsonl").write_text("".join(json.dumps(r) + "\n" for r in test))
        (data_dir / "train.jsonl").write_text((CANARY / "data" / "train.jsonl").read_text())
        (tmp / "task.yaml").write_text(
            TASK_YAML.format(
                test=data_dir / "test.jsonl",
                train=data_dir / "train.jsonl",
                stops=json.dumps(gsm8k.STOP_STRINGS),
                max_tokens=args.max_tokens,
            )
        )
        servers = {
            "echo": ServerSpec(model="echo", config="bench", model_path=str(CANARY / "model"), engine="echo"),
            "hf-engine": ServerSpec(model="canary", config="bench", model_path=str(CANARY / "model"), engine="hf"),
        }
        rows = []
        for name, spec in servers.items():
            engine = get_engine("hf") if name == "hf-engine" else _echo_engine()
            with Server(spec, engine, log_dir=tmp / "logs", gpu_ids=()) as server:
                # Both start from an empty prefix cache, or the second would reuse the first one's prompts.
                flush(server.base_url)
                t_lm, lm_answers = run_lm_eval(server.base_url, args, tmp)
                flush(server.base_url)
                t_h, h_answers = run_harness(server.base_url, args, data_dir)
            ordered = [h_answers[r["id"]] for r in test]
            same = sum(a == b for a, b in zip(ordered, lm_answers))
            rows.append((name, len(test), t_h, t_lm, t_h / t_lm, same))
    print(f"\n{'server':<10} {'n':>5} {'harness s':>10} {'lm-eval s':>10} {'ratio':>7} {'same answers':>13}")
    for name, n, t_h, t_lm, ratio, same in rows:
        print(f"{name:<10} {n:>5} {t_h:>10.2f} {t_lm:>10.2f} {ratio:>6.2f}x {same:>6}/{n}")


def flush(base_url: str) -> None:
    import urllib.error
    import urllib.request

    try:
        urllib.request.urlopen(urllib.request.Request(base_url + "/flush_cache", method="POST"), timeout=30)
    except urllib.error.HTTPError as exc:
        if exc.code != 404:  # the echo server has no cache to flush
            raise


def _echo_engine():
    from dataclasses import dataclass

    from harness.serve.engines.base import Engine

    @dataclass(frozen=True)
    class EchoEngine(Engine):
        name: str = "echo"
        label: str = "echo"
        health_path: str = "/health"
        requires_server_info: bool = False

        def command(self, spec, host, port):
            return [sys.executable, str(REPO / "bench" / "echo_server.py"), "--host", host, "--port", str(port)]

    return EchoEngine()


if __name__ == "__main__":
    main()
