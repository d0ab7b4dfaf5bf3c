"""GSM8K: grade-school math word problems, exact numeric answer.

Dataset: `openai/gsm8k` (config `main`; test split, 1,319 problems; few-shot examples from the train split),
through `datasets`, or a local JSONL file in the same schema (`question`, `answer` ending in `#### n`) such as
the canary's. Source: Cobbe et al. 2021, https://github.com/openai/grade-school-math.
Prompt: SGLang's `few_shot_gsm8k` format — shots "Question: q\\nAnswer: a" joined by blank lines, then
"Question: q\\nAnswer:", greedy, stops at "Question" (native `/generate`); or the chat template through
`/v1/chat/completions` with the shots as earlier turns.
Metric: `accuracy` (flexible extraction: the last number in the output, as SGLang scores), also
`accuracy_strict` (only a `#### n` marker counts) and `invalid_rate` (no number found). Higher is better,
except `invalid_rate`.
Assumes: shots never come from the evaluated questions (SGLang's own script leaks its first five); a request
that fails after the client's retries fails the test instead of scoring as wrong.
"""

from __future__ import annotations

import re

from harness.evals.data import load_records, sha256_text, stable_subsample
from harness.evals.types import EvalContext, EvalResult, check_options

SUITE = "gsm8k"
QUESTION_TEMPLATE = "Question: {question}\nAnswer:"
SHOT_TEMPLATE = "Question: {question}\nAnswer: {answer}"
SHOT_SEPARATOR = "\n\n"
STOP_STRINGS = ["Question", "Assistant:", "<|separator|>"]
STRICT_ANSWER_RE = re.compile(r"#### *(-?[0-9][0-9,]*(?:\.[0-9]+)?)")
NUMBER_RE = re.compile(r"-?[0-9][0-9,]*(?:\.[0-9]+)?")
SMOKE_SAMPLES = 5

OPTIONS = {
    "source": "openai/gsm8k",
    "subset": "main",
    "test_split": "test",
    "train_split": "train",
    "num_shots": 5,
    "max_new_tokens": 512,
    "mode": "native",
    "limit": None,
}


def normalize_number(text: str) -> float | None:
    """'1,234' → 1234.0, '-3.50' → -3.5; None when it is not a number."""
    try:
        return float(text.replace(",", "").rstrip("."))
    except ValueError:
        return None


def extract_strict(output: str) -> float | None:
    """The number after the first `#### ` marker, or None."""
    match = STRICT_ANSWER_RE.search(output)
    return normalize_number(match.group(1)) if match else None


def extract_flexible(output: str) -> float | None:
    """The last number anywhere in the output (negatives and decimals included), or None."""
    numbers = NUMBER_RE.findall(output)
    return normalize_number(numbers[-1]) if numbers else None


def reference_answer(answer_field: str) -> float:
    """The label of a GSM8K record: the number after `####`."""
    value = extract_strict(answer_field)
    if value is None:
        raise ValueError(f"GSM8K answer has no '#### n' label: {answer_field[-80:]!r}")
    return value


def build_few_shot_prefix(shots: list[dict]) -> str:
    return "".join(SHOT_TEMPLATE.format(**shot) + SHOT_SEPARATOR for shot in shots)


def native_request(prompt: str, max_new_tokens: int) -> dict:
    """SGLang `/generate` payload for one GSM8K prompt: greedy, stopped where SGLang's script stops."""
    return {
        "text": prompt,
        "sampling_params": {"max_new_tokens": max_new_tokens, "temperature": 0, "stop": STOP_STRINGS},
    }


def build_chat_messages(shots: list[dict], question: str) -> list[dict]:
    messages = []
    for shot in shots:
        messages += [{"role": "user", "content": shot["question"]}, {"role": "assistant", "content": shot["answer"]}]
    return messages + [{"role": "user", "content": question}]


def score_output(output: str, label: float) -> dict:
    strict, flexible = extract_strict(output), extract_flexible(output)
    return {
        "extracted_strict": strict,
        "extracted_flexible": flexible,
        "correct": flexible is not None and abs(flexible - label) < 1e-6,
        "correct_strict": strict is not None and abs(strict - label) < 1e-6,
    }


class GSM8K:
    suite = SUITE

    async def __call__(self, ctx: EvalContext) -> EvalResult:
        check_options(SUITE, ctx.options, OPTIONS)
        opts = {**OPTIONS, **ctx.options}
        if opts["mode"] not in ("native", "chat"):
            raise ValueError(f"{SUITE}: mode must be 'native' or 'chat', got {opts['mode']!r}")
        test = load_records(opts["source"], opts["test_split"], subset=opts["subset"], base_dir=ctx.base_dir)
        train = load_records(opts["source"], opts["train_split"], subset=opts["subset"], base_dir=ctx.base_dir)
        shots = train[: opts["num_shots"]]
        for index, record in enumerate(test):
            record.setdefault("id", f"test-{index}")
        limit = SMOKE_SAMPLES if ctx.smoke else (ctx.limit or opts["limit"])
        questions = stable_subsample(test, limit, key=lambda r: r["question"])
        prefix = build_few_shot_prefix(shots)

        async def ask(record: dict) -> dict:
            label = reference_answer(record["answer"])
            if opts["mode"] == "native":
                prompt = prefix + QUESTION_TEMPLATE.format(question=record["question"])
                response = await ctx.client.generate(native_request(prompt, opts["max_new_tokens"]))
                output, meta = response["text"], response.get("meta_info", {})
                completion_tokens = meta.get("completion_tokens", 0)
            else:
                messages = build_chat_messages(shots, record["question"])
                prompt = repr(messages)
                response = await ctx.client.chat(
                    {
                        "model": ctx.model_path,
                        "messages": messages,
                        "max_tokens": opts["max_new_tokens"],
                        "temperature": 0,
                    }
                )
                output = response["choices"][0]["message"]["content"] or ""
                completion_tokens = response.get("usage", {}).get("completion_tokens", 0)
            sample = {
                "id": record["id"],
                "prompt_sha256": sha256_text(prompt),
                "output": output,
                "label": label,
                "completion_tokens": completion_tokens,
                **score_output(output, label),
            }
            ctx.on_sample(sample)
            return sample

        samples = await ctx.client.map(ask, questions, progress=f"{SUITE}[{ctx.case_id}]")
        n = len(samples)
        return EvalResult(
            suite=SUITE,
            n=n,
            metrics={
                "accuracy": sum(s["correct"] for s in samples) / n,
                "accuracy_strict": sum(s["correct_strict"] for s in samples) / n,
                "invalid_rate": sum(s["extracted_flexible"] is None for s in samples) / n,
            },
            details={
                "num_shots": len(shots),
                "mode": opts["mode"],
                "max_new_tokens": opts["max_new_tokens"],
                "completion_tokens": sum(s["completion_tokens"] for s in samples),
                "per_sample_correct": {s["id"]: bool(s["correct"]) for s in samples},
            },
        )
