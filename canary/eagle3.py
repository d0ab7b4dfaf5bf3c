"""An EAGLE3 draft for the canary, in the checkpoint format SGLang's `LlamaForCausalLMEagle3` loads, trained on CPU.

Format (SGLang 0.5.17 `srt/models/llama_eagle3.py`, `srt/speculative/eagle_worker_v2.py`): a Llama config with
`architectures: [LlamaForCausalLMEagle3]`, one decoder layer (`midlayer.*`, whose q/k/v read 2 × hidden: the
token's embedding and the hidden state, each RMS-normed, concatenated), `fc` (3 × target hidden → hidden, over
the target's captured hidden states), `norm`, `lm_head` over a draft vocabulary of `draft_vocab_size` tokens and
`d2t` (draft id → target id as a difference, SGLang's hot_token_id = d2t + arange) with `t2d` (target id in the
draft vocabulary). The embedding is the target's (SGLang replaces the draft's with it); it is stored too.
The target captures, by SGLang's default for a model without `eagle_aux_hidden_state_layer_ids`, the residual
stream entering layers [2, L/2, L-3]; for the 3-layer canary that is layers 0, 1 and 2, i.e. transformers'
`hidden_states[0:3]`, concatenated in layer order.

Training (`DraftModel`, the same math in plain torch): row t of a sequence feeds the target's features at t and
the token at t+1 and predicts the target's greedy token after t+1; steps 2..`ttt_steps` feed the draft's own
pre-norm output back as the hidden state with the next token, attending to step 1's keys up to t and to the
chain's own earlier steps, as SGLang's draft decode does (EAGLE3's training-time test). Labels are the target's
argmax at every position, so the draft learns what verification accepts. The sequences are the canary's prompts in
the harness's three formats (zero-shot, SGLang's 5-shot, chat) over the training split with the canary's own greedy
answers. `scramble` writes the same draft with its `d2t` permuted: every proposal maps to a wrong token, so it is
never accepted (the gate's failure case).
"""

from __future__ import annotations

import json
import math
import random
import time
from dataclasses import asdict, dataclass
from pathlib import Path

DRAFT_VOCAB_SIZE = 256
MANIFEST = "manifest.json"


@dataclass(frozen=True)
class Eagle3Options:
    target: str = "assets/canary/model"
    data: str = "assets/canary/data"
    out: str = "assets/canary-eagle3"
    seed: int = 0
    sequences: int = 1500
    steps: int = 1200
    batch: int = 16
    lr: float = 3e-3
    ttt_steps: int = 3
    threads: int = 2


def draft_config(target: dict, draft_vocab_size: int = DRAFT_VOCAB_SIZE) -> dict:
    """The draft's config.json, shaped like the target (hidden size, heads, rope) with one layer."""
    return {
        "architectures": ["LlamaForCausalLMEagle3"],
        "model_type": "llama",
        "hidden_size": target["hidden_size"],
        "intermediate_size": target["intermediate_size"],
        "num_attention_heads": target["num_attention_heads"],
        "num_key_value_heads": target["num_key_value_heads"],
        "head_dim": target.get("head_dim", target["hidden_size"] // target["num_attention_heads"]),
        "num_hidden_layers": 1,
        "hidden_act": "silu",
        "rms_norm_eps": target["rms_norm_eps"],
        "max_position_embeddings": target["max_position_embeddings"],
        "rope_theta": target.get("rope_parameters", {}).get("rope_theta", target.get("rope_theta", 10000.0)),
        "vocab_size": target["vocab_size"],
        "draft_vocab_size": draft_vocab_size,
        "target_hidden_size": target["hidden_size"],
        "tie_word_embeddings": False,
        "torch_dtype": "bfloat16",
        "eos_token_id": target.get("eos_token_id"),
        "pad_token_id": target.get("pad_token_id"),
    }


def training_sequences(target_dir: str, data_dir: str, n: int, seed: int) -> list[list[int]]:
    """Token ids of `n` prompts (zero-shot, 5-shot, chat in turn) from the training split, each with the canary's
    own greedy answer appended (so the draft sees what the target says, cut as the harness's stops cut it)."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from canary.evaluate import build_prompts, generate
    from harness.evals.synthetic_gsm8k import read_jsonl

    tokenizer = AutoTokenizer.from_pretrained(target_dir)
    model = AutoModelForCausalLM.from_pretrained(target_dir).eval()
    records = read_jsonl(Path(data_dir, "train.jsonl"))
    shots, pool = records[:5], records[5:]
    picked = random.Random(seed).sample(pool, n)
    modes = ("zero_shot", "five_shot", "chat")
    prompts = [build_prompts(tokenizer, [r], modes[i % 3], shots)[0] for i, r in enumerate(picked)]
    answers = generate(model, tokenizer, prompts, batch_size=64, max_new_tokens=48)
    # the stop the server would have matched (a blank line before the next "Question") stays in the text
    return [tokenizer(p + a + "\n\n", add_special_tokens=False)["input_ids"] for p, a in zip(prompts, answers)]


def target_features(target_dir: str, sequences: list[list[int]]):
    """Per sequence: the target's captured hidden states (T × 3H, fp32) and its greedy next token at each position."""
    import torch
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(target_dir).eval()
    out = []
    with torch.no_grad():
        for ids in sequences:
            aux, greedy = captured(model, torch.tensor(ids))
            out.append((torch.tensor(ids), aux, greedy))
    return out, model.get_input_embeddings().weight.detach().clone()


def captured(model, ids):
    """What SGLang hands the draft for one sequence: the residual stream entering layers 0, 1 and 2, concatenated
    (T × 3H), and the target's greedy next token at each position."""
    import torch

    res = model(ids[None], output_hidden_states=True)
    return torch.cat(res.hidden_states[0:3], dim=-1)[0], res.logits[0].argmax(-1)


def draft_vocabulary(features, vocab_size: int, draft_vocab_size: int):
    """The `draft_vocab_size` target tokens the target predicts most often (ties by id), ascending by id."""
    import torch

    counts = torch.zeros(vocab_size, dtype=torch.long)
    for _, _, labels in features:
        counts += torch.bincount(labels, minlength=vocab_size)
    order = sorted(range(vocab_size), key=lambda i: (-int(counts[i]), i))
    return torch.tensor(sorted(order[:draft_vocab_size])), counts


def train_draft(opts: Eagle3Options, log=print) -> dict:
    """Build, train and write the draft into `opts.out`; returns the manifest."""
    import torch

    from canary.eagle3_model import DraftModel, step_loss

    started = time.perf_counter()
    torch.manual_seed(opts.seed)
    torch.set_num_threads(opts.threads)
    target = json.loads(Path(opts.target, "config.json").read_text())
    config = draft_config(target)
    sequences = training_sequences(opts.target, opts.data, opts.sequences, opts.seed)
    features, embed = target_features(opts.target, sequences)
    hot, counts = draft_vocabulary(features, target["vocab_size"], config["draft_vocab_size"])
    to_draft = torch.full((target["vocab_size"],), -100, dtype=torch.long)
    to_draft[hot] = torch.arange(len(hot))
    coverage = float(counts[hot].sum()) / float(counts.sum())
    log(
        f"eagle3: {len(features)} sequences, {sum(len(f[0]) for f in features)} tokens; the draft vocabulary "
        f"covers {coverage:.4f} of the target's predictions"
    )

    model = DraftModel(config, embed)
    params = [p for name, p in model.named_parameters() if name != "embed_tokens.weight"]
    optimizer = torch.optim.AdamW(params, lr=opts.lr, weight_decay=0.0)
    rng = random.Random(opts.seed)
    history = []
    for step in range(opts.steps):
        lr = opts.lr * 0.5 * (1 + math.cos(math.pi * step / opts.steps))
        for group in optimizer.param_groups:
            group["lr"] = lr
        batch = [features[i] for i in rng.sample(range(len(features)), opts.batch)]
        loss, accuracies = step_loss(model, batch, to_draft, opts.ttt_steps)
        optimizer.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        optimizer.step()
        if step % 100 == 0 or step == opts.steps - 1:
            history.append({"step": step, "loss": round(loss.item(), 4), "accuracy": [round(a, 4) for a in accuracies]})
            log(
                f"eagle3 step {step}/{opts.steps}: loss {loss.item():.4f}, draft accuracy per step "
                + ", ".join(f"{a:.3f}" for a in accuracies)
            )
    model.save(opts.out, hot)
    Path(opts.out, "config.json").write_text(json.dumps(config, indent=2) + "\n")
    simulated = simulated_accept_length(opts.out, opts.target, opts.data)
    log(
        f"eagle3: simulated accept length {simulated['accept_length']} "
        f"(2 steps, topk 1, {simulated['questions']} questions)"
    )
    manifest = {
        "name": "canary-eagle3-draft",
        "command": f"python -m canary eagle3 --out {opts.out} --seed {opts.seed}",
        "options": asdict(opts),
        "target": opts.target,
        "draft_vocab_coverage": round(coverage, 4),
        "train": history,
        "simulated_accept_length": simulated,
        "seconds": round(time.perf_counter() - started, 1),
    }
    from canary.build import hash_tree

    manifest["files"] = {k: v for k, v in hash_tree(opts.out).items() if k != MANIFEST}
    Path(opts.out, MANIFEST).write_text(json.dumps(manifest, indent=2) + "\n")
    return manifest


def simulated_accept_length(draft_dir: str, target_dir: str, data_dir: str, n: int = 200, steps: int = 2) -> dict:
    """The accept length SGLang should measure with `spec_accept_length`'s prompts (5-shot GSM8K test questions,
    greedy, its stops) and topk 1: the target generates on CPU, the saved draft proposes at every verify step
    (canary.eagle3_model.accept_lengths). A prediction to hold the GPU run against, not a reference."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from canary.eagle3_model import DraftModel, accept_lengths
    from harness.evals.data import stable_subsample
    from harness.evals.gsm8k import QUESTION_TEMPLATE, STOP_STRINGS, build_few_shot_prefix
    from harness.evals.synthetic_gsm8k import read_jsonl

    tokenizer = AutoTokenizer.from_pretrained(target_dir)
    target = AutoModelForCausalLM.from_pretrained(target_dir).eval()
    draft, hot = DraftModel.load(draft_dir)
    prefix = build_few_shot_prefix(read_jsonl(Path(data_dir, "train.jsonl"))[:5])
    questions = stable_subsample(read_jsonl(Path(data_dir, "test.jsonl")), n, key=lambda r: r["question"])
    tokens_total, verifies_total = 0, 0
    with torch.no_grad():
        for record in questions:
            prompt = tokenizer(
                prefix + QUESTION_TEMPLATE.format(question=record["question"]), add_special_tokens=False
            )["input_ids"]
            ids = target.generate(torch.tensor([prompt]), max_new_tokens=96, do_sample=False)[0]
            generated = ids[len(prompt) :].tolist()
            for cut in range(1, len(generated) + 1):  # the server stops at the token that completes a stop string
                if any(stop in tokenizer.decode(generated[:cut]) for stop in STOP_STRINGS):
                    generated = generated[:cut]
                    break
            full = torch.tensor(prompt + generated)
            aux, greedy = captured(target, full)
            made, verifies = accept_lengths(draft, hot, full, aux, greedy, len(prompt), steps)
            tokens_total, verifies_total = tokens_total + made, verifies_total + verifies
    return {
        "accept_length": round(tokens_total / max(verifies_total, 1), 4),
        "completion_tokens": tokens_total,
        "verify_steps": verifies_total,
        "questions": len(questions),
        "num_steps": steps,
        "topk": 1,
    }


def scramble(draft_dir: str, out: str, seed: int = 0) -> Path:
    """A copy of the draft whose d2t sends every draft id to another draft id's target token (a derangement)."""
    import shutil

    import torch
    from safetensors.torch import load_file, save_file

    Path(out).mkdir(parents=True, exist_ok=True)
    shutil.copy(Path(draft_dir, "config.json"), Path(out, "config.json"))
    tensors = load_file(str(Path(draft_dir, "model.safetensors")))
    hot = tensors["d2t"] + torch.arange(tensors["d2t"].shape[0])
    n = hot.shape[0]
    shift = 1 + random.Random(seed).randrange(n - 1)
    tensors["d2t"] = hot[(torch.arange(n) + shift) % n] - torch.arange(n)
    save_file(tensors, str(Path(out, "model.safetensors")))
    return Path(out)
