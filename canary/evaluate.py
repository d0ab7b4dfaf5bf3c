"""Greedy accuracy of a causal LM on GSM8K-schema records, with plain transformers `generate`.

Batched with left padding (so every prompt's last token sits at the same position). The continuation is
cut at the stop strings SGLang's few_shot_gsm8k uses, then scored by GSM8K's strict `#### n` rule.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from canary.prompts import chat_messages, few_shot_prompt, plain_prompt
from harness.evals.synthetic_gsm8k import extract_answer

STOP_STRINGS = ("Question", "\n\n", "Assistant:", "<|separator|>")
MODES = ("zero_shot", "five_shot", "chat")


@dataclass(frozen=True)
class ModeResult:
    mode: str
    n: int
    correct: int

    @property
    def accuracy(self) -> float:
        return self.correct / self.n


def build_prompts(tokenizer, records: Sequence[dict], mode: str, shots: Sequence[dict] = ()) -> list[str]:
    """The prompt text for every record in `mode` (see MODES); `shots` are used by five_shot only."""
    if mode == "zero_shot":
        return [plain_prompt(r["question"]) for r in records]
    if mode == "five_shot":
        if len(shots) != 5:
            raise ValueError(f"five_shot needs exactly 5 shots, got {len(shots)}")
        return [few_shot_prompt(shots, r["question"]) for r in records]
    if mode == "chat":
        return [
            tokenizer.apply_chat_template(chat_messages(r["question"]), tokenize=False, add_generation_prompt=True)
            for r in records
        ]
    from harness.errors import unknown_choice

    raise unknown_choice("canary eval mode", mode, MODES)


def cut_at_stop(text: str) -> str:
    cut = len(text)
    for stop in STOP_STRINGS:
        i = text.find(stop)
        if i != -1:
            cut = min(cut, i)
    return text[:cut]


def generate(model, tokenizer, prompts: Sequence[str], batch_size: int = 64, max_new_tokens: int = 40) -> list[str]:
    """Greedy continuations (special tokens dropped, cut at the stop strings), in the order of `prompts`.

    Prompts are grouped by token length so batches carry little padding.
    """
    import torch

    encoded = tokenizer(list(prompts), add_special_tokens=False)["input_ids"]
    order = sorted(range(len(prompts)), key=lambda i: len(encoded[i]))
    pad = tokenizer.pad_token_id
    outputs: list[str] = [""] * len(prompts)
    for start in range(0, len(order), batch_size):
        idx = order[start : start + batch_size]
        width = max(len(encoded[i]) for i in idx)
        input_ids = torch.tensor([[pad] * (width - len(encoded[i])) + encoded[i] for i in idx])
        attention_mask = torch.tensor([[0] * (width - len(encoded[i])) + [1] * len(encoded[i]) for i in idx])
        with torch.inference_mode():
            out = model.generate(
                input_ids=input_ids.to(model.device),
                attention_mask=attention_mask.to(model.device),
                max_new_tokens=max_new_tokens,
                do_sample=False,
                pad_token_id=pad,
                eos_token_id=model.generation_config.eos_token_id,
            )
        texts = tokenizer.batch_decode(out[:, width:].cpu(), skip_special_tokens=True)
        for i, text in zip(idx, texts):
            outputs[i] = cut_at_stop(text)
    return outputs


def evaluate(model, tokenizer, records: Sequence[dict], modes=MODES, shots: Sequence[dict] = (), batch_size=64):
    """{mode: ModeResult} over all `records`; correct means the extracted number equals the label's."""
    results = {}
    for mode in modes:
        completions = generate(model, tokenizer, build_prompts(tokenizer, records, mode, shots), batch_size)
        correct = sum(
            extract_answer(c) is not None and extract_answer(c) == extract_answer(r["answer"])
            for c, r in zip(completions, records)
        )
        results[mode] = ModeResult(mode, len(records), correct)
    return results
