"""Any lmms-eval task as a suite: the library runs the task against the server under test, the harness judges it.

Source: EvolvingLMMs-Lab lmms-eval (`lmms_eval.evaluator.simple_evaluate`, 0.7.3 pinned), its OpenAI-compatible
chat model `openai` (alias `openai_compatible`, what SGLang's MMMU kit runs) pointed at the server's `/v1`.
Options: `task`, a task lmms-eval has registered (e.g. `mmmu_val`), or `task_yaml`, a task file (path relative to
thresholds.yaml) whose directory lmms-eval indexes and whose `task` key names it (lmms-eval resolves its listed
relative `data_files` against the file: assets/lmms_eval/canary_vlm_mmmu.yaml); `gen_kwargs`, lmms-eval's
generation overrides (`max_new_tokens`, ...); `limit` (lmms-eval's: the task's first documents); `metric`, the
task metric gated as `accuracy` (default: its first), on the task's own scale (MMMU 0-1).
Dataset: whatever the task reads; a hub dataset that cannot be read (offline) is an error naming it.
Metric direction: higher is better; a lower-is-better metric is a config error.
Per-sample records in the harness's format (`id`, `prompt_sha256`, `output`, `parsed`, `correct`), so the baseline
comparison and cross-config agreement work on them as on the harness's own evals: `correct` is the task's own
aggregation of that one sample (non-zero), `parsed` the task's parse where it logs one (MMMU: `parsed_pred`).
Errors: lmms-eval turns a request that failed on every attempt into the answer "[LMMS_EVAL_REQUEST_FAILED ...]"
and scores it; here any such answer makes the suite an error that counts them (a transport failure is never a
wrong answer).
Assumes: an answer whose letter MMMU's parser cannot read gets a random option (lmms-eval's
`parse_multi_choice_response`), scored like any other (the harness's mmmu counts it unparsed); scoring runs on one
thread after simple_evaluate's `random.seed(0)`, so a rerun picks the same. The `lmms-eval` extra is installed
(the CPU tox envs without torchvision: tests/lmms_eval_env/); the core harness never imports it.
"""

from __future__ import annotations

import asyncio
import contextlib
import io
import re
from pathlib import Path
from typing import Any

from harness.errors import ConfigError, HarnessError, did_you_mean
from harness.evals.data import sha256_text
from harness.evals.types import EvalContext, EvalResult, check_options

SUITE = "lmms_eval"
FAILED_ANSWER = "[LMMS_EVAL_REQUEST_FAILED"
LOCAL_BUILDERS = ("csv", "json", "parquet", "text", "pandas", "arrow", "imagefolder", "videofolder")
OPTIONS = {
    "task": "",
    "task_yaml": "",
    "gen_kwargs": {},
    "limit": None,
    "metric": "",
    "num_concurrent": 16,
    "max_retries": 3,
}


class LmmsEvalFailed(HarnessError):
    """lmms-eval stopped, a task could not load its data, or requests failed on every attempt."""


def task_source(opts: dict, base_dir: str) -> tuple[str, str | None]:
    """(task name, directory lmms-eval should index for it, or None for a registered task)."""
    if bool(opts["task"]) == bool(opts["task_yaml"]):
        raise ConfigError(
            f"{SUITE}: give exactly one of `task` (a registered lmms-eval task) and `task_yaml` (a task "
            f"file), got task={opts['task']!r}, task_yaml={opts['task_yaml']!r}"
        )
    if opts["task"]:
        return opts["task"], None
    path = Path(base_dir, opts["task_yaml"])
    if not path.is_file():
        raise ConfigError(f"{SUITE}.task_yaml: {path} does not exist")
    match = re.search(r"^task:\s*[\"']?([\w.-]+)", path.read_text(), re.MULTILINE)  # its tags need lmms-eval's loader
    if not match:
        raise ConfigError(f"{SUITE}.task_yaml: {path} has no top-level `task: <name>`")
    return match.group(1), str(path.resolve().parent)


def generation_overrides(gen_kwargs: dict) -> str | None:
    """simple_evaluate's `gen_kwargs` string ("k=v,k=v"); its parser splits on commas, so values cannot hold one."""
    for key, value in gen_kwargs.items():
        if "," in str(value) or "=" in str(value):
            raise ConfigError(
                f"{SUITE}.gen_kwargs.{key}: {value!r} holds ',' or '=', on which lmms-eval's parser "
                f"splits its gen_kwargs string"
            )
    return ",".join(f"{k}={v}" for k, v in gen_kwargs.items()) or None


def failed_requests(samples: list[dict]) -> list[str]:
    return [output(s) for s in samples if output(s).startswith(FAILED_ANSWER)]


def output(sample: dict) -> str:
    first = (sample.get("resps") or [""])[0]
    return str((first[0] if first else "") if isinstance(first, list) else first)


def records(samples: list[dict], metric: str, aggregate, split: str) -> list[dict]:
    """lmms-eval's logged samples as harness records, in document order. The prompt hash is lmms-eval's logged
    context with `<image N>` and `<image>` made alike: its MMMU utils flip a module-level `interleaved_format` when
    they first build chat messages, so a process's first run logs `<image 1>` and later runs `<image>`."""
    out = []
    for sample in sorted(samples, key=lambda s: s["doc_id"]):
        doc, value = sample.get("doc") or {}, sample.get(metric)
        context = next((a for a in sample.get("arguments") or [] if isinstance(a, str)), "")
        if isinstance(value, (bool, int, float)):
            score = float(value)
        else:  # a per-sample record the task's aggregation scores (MMMU's {id, answer, parsed_pred, ...})
            with contextlib.redirect_stdout(io.StringIO()):  # MMMU's aggregation prints its table per call
                score = float(aggregate([value]))
        parsed = value.get("parsed_pred", value.get("pred")) if isinstance(value, dict) else None
        parsed = parsed[0] if isinstance(parsed, list) and len(parsed) == 1 else parsed
        if isinstance(parsed, list):  # MMMU's open candidates come out of a set: sorted, so reruns read alike
            parsed = sorted(parsed, key=str)
        out.append(
            {
                "id": str(doc.get("id", f"{split}-{sample['doc_id']}")),
                "prompt_sha256": sha256_text(re.sub(r"<image \d+>", "<image>", context)),
                "output": output(sample),
                "parsed": parsed if parsed is not None else (sample.get("filtered_resps") or [None])[0],
                "correct": score > 0,
                "score": score,
                "target": sample.get("target"),
            }
        )
    return out


class LmmsEval:
    suite = SUITE

    async def __call__(self, ctx: EvalContext) -> EvalResult:
        check_options(SUITE, ctx.options, OPTIONS)
        opts = {**OPTIONS, **ctx.options}
        name, include_path = task_source(opts, ctx.base_dir)
        gen_kwargs = generation_overrides(opts["gen_kwargs"])
        limit = 5 if ctx.smoke else (ctx.limit or opts["limit"])
        manager, task, dataset = await asyncio.to_thread(self._load, name, include_path)  # reads the dataset
        metric = gated_metric(task, name, opts["metric"])
        result = await asyncio.to_thread(self._run, ctx, opts, manager, task, limit, gen_kwargs)  # its own threads
        scores, samples = result["results"][name], result["samples"][name]
        failed = failed_requests(samples)
        if failed:
            raise LmmsEvalFailed(
                f"{len(failed)} of {len(samples)} requests failed after lmms-eval's "
                f"{opts['max_retries']} attempt(s) each (it scores them as answers; here they are "
                f"errors): {failed[0][:300]}"
            )
        rows = records(samples, metric, task.aggregation()[metric], task.config.test_split or "test")
        for row in rows:
            ctx.on_sample(row)
        stderr = scores.get(f"{metric}_stderr,none")
        return EvalResult(
            SUITE,
            {"accuracy": float(scores[f"{metric},none"])},
            len(rows),
            {
                "task": name,
                "metric": f"{metric},none",
                "dataset_path": dataset,
                "stderr": stderr if isinstance(stderr, float) else None,  # MMMU's: "N/A"
                "gen_kwargs": opts["gen_kwargs"],
                "lmms_eval_version": _version(),
            },
        )

    @staticmethod
    def _load(name: str, include_path: str | None):
        """lmms-eval's task manager and the task, built for chat models: lmms-eval builds a task given as a config
        dict as a plain-text one whatever the model, so tasks are named, and `task_yaml` is indexed, not merged."""
        from lmms_eval.tasks import TaskManager, get_task_dict
        from lmms_eval.utils import load_yaml_config

        manager = TaskManager(include_path=include_path)
        where = f"{SUITE}.task_yaml" if include_path else f"{SUITE}.task"
        if name not in manager.all_tasks:  # a thousand names: the closest one, and how to list them
            raise ConfigError(
                f"{where}: unknown lmms-eval task {name!r}{did_you_mean(name, manager.all_subtasks)}; "
                f"valid choices: the {len(manager.all_subtasks)} of `lmms-eval --tasks list`"
                + (f" or the tasks under {include_path}" if include_path else "")
            )
        if manager.task_index[name]["type"] != "task":
            raise ConfigError(f"{where}: {name!r} is an lmms-eval {manager.task_index[name]['type']}, not one task")
        dataset = load_yaml_config(manager.task_index[name]["yaml_path"], mode="simple").get("dataset_path", "")
        try:
            return manager, get_task_dict([name], manager, "chat")[name], dataset
        except Exception as exc:
            hub = dataset not in LOCAL_BUILDERS and not Path(dataset).is_dir()
            needs = (
                f"dataset {dataset!r} from the Hugging Face hub; offline it needs a local copy (a task_yaml with "
                f"dataset_path: parquet and dataset_kwargs.data_files, as assets/lmms_eval/canary_vlm_mmmu.yaml)"
                if hub
                else f"its local dataset ({dataset})"
            )
            raise LmmsEvalFailed(f"task {name} could not load {needs}: {type(exc).__name__}: {str(exc)[:300]}") from exc

    @staticmethod
    def _run(ctx: EvalContext, opts: dict, manager, task, limit, gen_kwargs: str | None) -> dict[str, Any]:
        import lmms_eval.evaluator
        from lmms_eval.models import get_model

        # 0.7.3 patches filelock 3's FileLockMeta (`filelock._api`), gone in the pinned filelock 4, and the import
        # fails; the patch only serves dataset loading across ranks, and this is one process: mark it done.
        if not _has_module("filelock._api"):
            lmms_eval.evaluator._enable_reentrant_filelocks._patched = True
        # Straight to the server under test, never through a proxy of the environment. Each of lmms-eval's attempts
        # is one call of the openai client, which retries a 5xx twice itself.
        model = get_model("openai")(
            model=ctx.model_path,
            base_url=ctx.client.base_url + "/v1",
            api_key="EMPTY",
            max_retries=opts["max_retries"],
            num_concurrent=opts["num_concurrent"],
            httpx_trust_env=False,
        )
        try:
            return lmms_eval.evaluator.simple_evaluate(
                model=model,
                tasks=[task],
                task_manager=manager,
                limit=limit,
                log_samples=True,
                gen_kwargs=gen_kwargs,
                process_docs_parallel=1,
            )
        except Exception as exc:
            raise LmmsEvalFailed(f"lmms-eval stopped: {type(exc).__name__}: {str(exc)[:400]}") from exc


def gated_metric(task, name: str, option: str) -> str:
    """The metric gated as accuracy: `option` ("mmmu_acc" or "mmmu_acc,none"), or the task's first."""
    metrics = task.aggregation()
    metric = option.removesuffix(",none") or next(iter(metrics))
    if metric not in metrics:
        raise ConfigError(
            f"{SUITE}.metric: {option!r} is not a metric of lmms-eval task {name}; valid choices: {', '.join(metrics)}"
        )
    if task.higher_is_better().get(metric) is False:
        raise ConfigError(f"{SUITE}.metric: {metric} of {name} is lower-is-better; the suite gates accuracy")
    return metric


def _has_module(name: str) -> bool:
    import importlib.util

    try:
        return importlib.util.find_spec(name) is not None
    except ModuleNotFoundError:
        return False


def _version() -> str:
    from importlib.metadata import version

    return version("lmms_eval")
