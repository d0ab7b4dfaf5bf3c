"""Build the trained canary end to end: data, tokenizer, model, evaluation, manifest.

Layout of the output directory (the same as the committed `assets/canary/`):
    model/           config.json, generation_config.json, model.safetensors, tokenizer files
    data/train.jsonl GSM8K schema; few-shot exemplars come from here
    data/test.jsonl  GSM8K schema; held out by numeric tuple from everything the model trained on
    manifest.json    sha256 of every other file, parameters, accuracies, command, seed, versions, timings
"""

from __future__ import annotations

import hashlib
import json
import os
import platform
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

from canary.evaluate import MODES, build_prompts, evaluate
from canary.prompts import plain_shot
from canary.tokenizer import save_tokenizer, train_tokenizer
from canary.train import ModelShape, TrainConfig, check_segment_tokenization, save_model, train
from harness.evals.synthetic_gsm8k import make_test_split, make_train_split, read_jsonl, train_stream, write_jsonl

TOKENIZER_VOCAB_SIZE = 512
MANIFEST = "manifest.json"
N_SHOTS = 5


@dataclass(frozen=True)
class BuildOptions:
    out: str | Path
    seed: int = 0
    evaluate: bool = True
    command: str = ""
    shape: ModelShape = field(default_factory=ModelShape)
    train: TrainConfig | None = None  # None: TrainConfig(seed=seed)


def sha256_file(path: str | Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def hash_tree(root: str | Path) -> dict[str, str]:
    """sha256 of every file under `root` except the manifest, keyed by POSIX relative path, sorted."""
    root = Path(root)
    files = sorted(p for p in root.rglob("*") if p.is_file() and p.name != MANIFEST)
    return {p.relative_to(root).as_posix(): sha256_file(p) for p in files}


def tokenizer_corpus(train_records: list[dict]) -> list[str]:
    """Texts in every form the tokenizer will meet: plain shots (" answer" after "Answer:"), and bare
    questions and answers as the chat template places them (after a newline, no leading space)."""
    texts = []
    for r in train_records:
        texts += [plain_shot(r), r["question"], r["answer"]]
    return texts


def library_versions() -> dict[str, str]:
    import safetensors
    import tokenizers
    import torch
    import transformers

    return {
        "python": platform.python_version(),
        "torch": torch.__version__,
        "transformers": transformers.__version__,
        "tokenizers": tokenizers.__version__,
        "safetensors": safetensors.__version__,
        "cpu_capability": torch.backends.cpu.get_cpu_capability(),
        "machine": platform.machine(),
    }


def check_reload(model_dir: Path, tokenizer, prompts: list[str]) -> None:
    """AutoTokenizer on the model dir (config.json says qwen2, so transformers 5 swaps in Qwen2Tokenizer,
    feasibility.md §2) must give the training tokenizer's ids, and its chat template must render."""
    from transformers import AutoTokenizer

    reloaded = AutoTokenizer.from_pretrained(model_dir)
    for text in prompts:
        want = tokenizer(text, add_special_tokens=False)["input_ids"]
        got = reloaded(text, add_special_tokens=False)["input_ids"]
        if want != got:
            raise AssertionError(f"{model_dir}: AutoTokenizer ids differ from the training tokenizer for {text!r}")
    messages = [{"role": "user", "content": "hi"}]
    rendered = reloaded.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
    if rendered != "<|im_start|>user\nhi<|im_end|>\n<|im_start|>assistant\n":
        raise AssertionError(f"{model_dir}: unexpected chat template rendering {rendered!r}")


def evaluate_saved(model_dir: Path, test_records: list[dict], shots: list[dict]) -> dict:
    """Accuracy of the model as loaded from disk (what gets committed), in every prompt mode."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    model = AutoModelForCausalLM.from_pretrained(model_dir).eval()
    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    results = evaluate(model, tokenizer, test_records, MODES, shots)
    return {m: {"accuracy": round(r.accuracy, 4), "correct": r.correct, "n": r.n} for m, r in results.items()}


def build(opts: BuildOptions, log=sys.stderr) -> dict:
    """Build everything into `opts.out` and return the manifest (also written as manifest.json)."""
    t_start = time.perf_counter()
    load_start = os.getloadavg()
    out = Path(opts.out)
    model_dir, data_dir = out / "model", out / "data"
    config = opts.train or TrainConfig(seed=opts.seed)
    if config.seed != opts.seed:
        raise ValueError(f"BuildOptions.seed {opts.seed} != TrainConfig.seed {config.seed}")
    timings = {}

    t = time.perf_counter()
    test = make_test_split(opts.seed)
    train_split = make_train_split(opts.seed, test)
    train_records = [p.to_gsm8k() for p in train_split]
    write_jsonl(train_records, data_dir / "train.jsonl")
    write_jsonl([p.to_gsm8k() for p in test], data_dir / "test.jsonl")
    timings["data_s"] = round(time.perf_counter() - t, 2)

    t = time.perf_counter()
    tokenizer = train_tokenizer(tokenizer_corpus(train_records), TOKENIZER_VOCAB_SIZE)
    check_segment_tokenization(tokenizer, train_split[:300])
    timings["tokenizer_s"] = round(time.perf_counter() - t, 2)

    print(f"training {opts.shape} for {config.steps} steps", file=log, flush=True)
    model, train_stats = train(tokenizer, train_stream(opts.seed, test), opts.shape, config, log=log)
    timings["train_s"] = train_stats["train_seconds"]
    n_params = sum(p.numel() for p in model.parameters())  # tied embeddings counted once
    save_model(model, model_dir)
    save_tokenizer(tokenizer, model_dir)

    test_records = read_jsonl(data_dir / "test.jsonl")
    shots = read_jsonl(data_dir / "train.jsonl")[:N_SHOTS]
    probe = test_records[:50]
    check_reload(model_dir, tokenizer, [p for m in MODES for p in build_prompts(tokenizer, probe, m, shots)])

    manifest = {
        "name": "canary-gsm8k-qwen2",
        "command": opts.command or f"python -m canary build --out {out} --seed {opts.seed}",
        "seed": opts.seed,
        "files": hash_tree(out),
        "parameters": n_params,
        "model": {**asdict(opts.shape), "vocab_size": model.config.vocab_size, "tokenizer_len": len(tokenizer)},
        "train": {**asdict(config), **{k: v for k, v in train_stats.items() if k != "train_seconds"}},
        "data": {
            "schema": "GSM8K JSONL: question, answer = reasoning + '\\n#### n'",
            "train": len(train_records),
            "test": len(test_records),
            "held_out_by": "numeric tuple (kind, a, b, c): the training stream never contains a test tuple",
        },
        "versions": library_versions(),
    }
    if opts.evaluate:
        t = time.perf_counter()
        manifest["accuracy"] = evaluate_saved(model_dir, test_records, shots)
        manifest["eval"] = {
            "decoding": "greedy, transformers generate, batched with left padding, fp32 CPU",
            "scoring": "GSM8K strict: number after '#### ' equals the label's",
            "stop": "cut at 'Question', blank line, 'Assistant:', '<|separator|>'; EOS",
            "modes": {
                "zero_shot": "Question: {q}\\nAnswer:",
                "five_shot": "SGLang few_shot_gsm8k format; shots = first 5 lines of data/train.jsonl",
                "chat": "ChatML via the tokenizer's chat template, user message = the question",
            },
        }
        timings["eval_s"] = round(time.perf_counter() - t, 1)
    return write_manifest(out, manifest, timings, config.threads, t_start, load_start)


def write_manifest(out: Path, manifest: dict, timings: dict, threads: int, t_start: float, load_start) -> dict:
    """Add the timings (total since `t_start`, threads, load averages) and write `out`/manifest.json."""
    timings["total_s"] = round(time.perf_counter() - t_start, 1)
    manifest["timings"] = {
        **timings,
        "threads": threads,
        # Timings depend on what else runs: the load averages show whether the machine was shared.
        "loadavg_1m_start_end": [round(load_start[0], 2), round(os.getloadavg()[0], 2)],
    }
    (Path(out) / MANIFEST).write_text(json.dumps(manifest, indent=2) + "\n", encoding="utf-8")
    return manifest
