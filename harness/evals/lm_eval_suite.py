"""Any lm-eval task as a suite: the library runs the task against the server under test, the harness judges it.

Source: EleutherAI lm-evaluation-harness (`lm_eval.simple_evaluate`, 0.4.13 pinned), its OpenAI-compatible
`local-completions` (or `local-chat-completions`) model pointed at the server's `/v1`. Options: a registered
`task` name, or a `task_yaml` (a task config file, path relative to thresholds.yaml; its
`dataset_kwargs.data_files`, when relative, are read relative to that file, so a committed task finds its local
data from any working directory: data only, nothing is templated); `num_fewshot`, `limit`; `metric`, the key of
lm-eval's results to gate as `accuracy` (e.g. "exact_match,flexible-extract"; its stderr goes to details).
Per-sample records in the harness's format (`id`, `prompt_sha256`, `output`, `parsed`, `correct`), so the baseline
comparison and cross-config agreement work on them as on the harness's own evals. Direction: higher is better.
Errors: a request that fails after lm-eval's own retries raises out of the library; the suite then errors (a
transport failure is never a wrong answer); a task whose dataset is on the hub fails offline naming the dataset.
Assumes: the `lm-eval` extra is installed (`pip install .[lm-eval]`); the core harness never imports it.
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

from harness.errors import ConfigError, HarnessError
from harness.evals.data import sha256_text
from harness.evals.types import EvalContext, EvalResult, check_options

SUITE = "lm_eval"
MODELS = ("local-completions", "local-chat-completions")
OPTIONS = {
    "task": "",
    "task_yaml": "",
    "model": "local-completions",
    "num_fewshot": None,
    "limit": None,
    "metric": "exact_match,flexible-extract",
    "num_concurrent": 16,
    "max_retries": 3,
    "max_length": 2048,
}


class LmEvalFailed(HarnessError):
    """lm-eval stopped: a request failed for good, or the task could not load its data."""


def task_spec(opts: dict, base_dir: str) -> str | dict:
    """The task as lm-eval loads it: a name, or the YAML's config with relative data files made absolute."""
    if bool(opts["task"]) == bool(opts["task_yaml"]):
        raise ConfigError(
            f"{SUITE}: give exactly one of `task` (a registered lm-eval task) and `task_yaml` (a task "
            f"config file), got task={opts['task']!r}, task_yaml={opts['task_yaml']!r}"
        )
    if opts["task"]:
        return opts["task"]
    import yaml

    path = Path(base_dir, opts["task_yaml"])
    if not path.is_file():
        raise ConfigError(f"{SUITE}.task_yaml: {path} does not exist")
    config = yaml.safe_load(path.read_text())
    files = (config.get("dataset_kwargs") or {}).get("data_files")
    if isinstance(files, dict):
        config["dataset_kwargs"]["data_files"] = {k: str((path.parent / v).resolve()) for k, v in files.items()}
    return config


def records(samples: list[dict], metric: str, split: str = "test") -> list[dict]:
    """lm-eval's logged samples of the gated filter as harness records (one per document, in document order). A
    document without an `id` is `<split>-<index>`, the id the harness's own GSM8K gives the same row."""
    name, _, filter_name = metric.partition(",")
    chosen = [s for s in samples if not filter_name or s.get("filter") == filter_name]
    out = []
    for sample in sorted(chosen, key=lambda s: s["doc_id"]):
        doc, arguments = sample.get("doc") or {}, sample.get("arguments") or {}
        first = next(iter(arguments.values()), {}) if isinstance(arguments, dict) else arguments[0]
        context = first.get("arg_0") if isinstance(first, dict) else first[0]
        filtered = sample.get("filtered_resps") or [None]
        out.append(
            {
                "id": str(doc.get("id", f"{split}-{sample['doc_id']}")),
                "prompt_sha256": sha256_text(str(context)),
                "output": (sample.get("resps") or [[""]])[0][0],
                "parsed": filtered[0],
                "correct": bool(sample.get(name)),
                "target": sample.get("target"),
            }
        )
    return out


class LmEval:
    suite = SUITE

    async def __call__(self, ctx: EvalContext) -> EvalResult:
        check_options(SUITE, ctx.options, OPTIONS)
        opts = {**OPTIONS, **ctx.options}
        if opts["model"] not in MODELS:
            from harness.errors import unknown_choice

            raise unknown_choice("lm_eval model", opts["model"], MODELS, where=f"{SUITE}.model")
        spec = task_spec(opts, ctx.base_dir)
        limit = 5 if ctx.smoke else (ctx.limit or opts["limit"])
        result = await asyncio.to_thread(self._evaluate, ctx, opts, spec, limit)  # lm-eval runs its own loop
        task_name = next(iter(result["results"]))
        scores = result["results"][task_name]
        if opts["metric"] not in scores:
            raise ConfigError(
                f"{SUITE}.metric: {opts['metric']!r} is not among lm-eval's results for {task_name}: "
                f"{', '.join(k for k in scores if not k.endswith('_stderr') and k != 'alias')}"
            )
        split = spec.get("test_split", "test") if isinstance(spec, dict) else "test"
        rows = records(result["samples"][task_name], opts["metric"], split)
        for row in rows:
            ctx.on_sample(row)
        name, _, filter_name = opts["metric"].partition(",")
        stderr = scores.get(f"{name}_stderr,{filter_name}" if filter_name else f"{name}_stderr")
        return EvalResult(
            SUITE,
            {"accuracy": float(scores[opts["metric"]])},
            len(rows),
            {
                "task": task_name,
                "metric": opts["metric"],
                "stderr": stderr,
                "model": opts["model"],
                "num_fewshot": opts["num_fewshot"],
                "lm_eval_version": _version(),
            },
        )

    @staticmethod
    def _evaluate(ctx: EvalContext, opts: dict, spec, limit) -> dict[str, Any]:
        import lm_eval
        from lm_eval.tasks import TaskManager

        route = "/v1/completions" if opts["model"] == "local-completions" else "/v1/chat/completions"
        model_args = {
            "model": ctx.model_path,
            "base_url": ctx.client.base_url + route,
            "tokenizer": ctx.tokenizer_path or ctx.model_path,
            "tokenizer_backend": "huggingface",
            "tokenized_requests": False,
            "num_concurrent": opts["num_concurrent"],
            "max_retries": opts["max_retries"],
            "max_length": opts["max_length"],
            "batch_size": 1,
        }
        try:
            return lm_eval.simple_evaluate(
                model=opts["model"],
                model_args=model_args,
                tasks=[spec],
                task_manager=TaskManager(),
                num_fewshot=opts["num_fewshot"],
                limit=limit,
                log_samples=True,
                apply_chat_template=opts["model"] != "local-completions",
            )
        except Exception as exc:
            # no "lm_eval[case]: " prefix: the harness puts the test's id before every error it reports
            raise LmEvalFailed(f"lm-eval stopped: {type(exc).__name__}: {str(exc)[:400]}") from exc


def _version() -> str:
    from importlib.metadata import version

    return version("lm_eval")
