"""The prompt formats the canary is trained on and evaluated with.

Plain: SGLang's `few_shot_gsm8k` and lm-eval's gsm8k both build "Question: {q}\\nAnswer:" blocks, shots
carrying " {answer}", joined by blank lines; the model continues with " {answer}". Chat: ChatML through
the tokenizer's template, the user message being the question, the assistant message the answer.

Each builder returns segments `(text, is_target)`: training puts loss on target segments only, and
evaluation sends the concatenation of everything before the last target.
"""

from __future__ import annotations

from collections.abc import Sequence

from canary.tokenizer import EOS_TOKEN

SHOT_SEPARATOR = "\n\n"
Segments = list[tuple[str, bool]]


def plain_prompt(question: str) -> str:
    return f"Question: {question}\nAnswer:"


def plain_shot(record: dict) -> str:
    return f"{plain_prompt(record['question'])} {record['answer']}"


def few_shot_prompt(shots: Sequence[dict], question: str) -> str:
    """SGLang few_shot_gsm8k's prompt: every shot followed by a blank line, then the open question."""
    return "".join(plain_shot(s) + SHOT_SEPARATOR for s in shots) + plain_prompt(question)


def plain_segments(records: Sequence[dict]) -> Segments:
    """All but the last record act as shots; every answer is a target (each one is a k-shot example),
    and the last answer ends in EOS so the model learns to stop."""
    segments: Segments = []
    for i, r in enumerate(records):
        last = i == len(records) - 1
        segments.append((plain_prompt(r["question"]), False))
        segments.append((" " + r["answer"] + (EOS_TOKEN if last else ""), True))
        if not last:
            segments.append((SHOT_SEPARATOR, False))
    return segments


def chat_messages(question: str, shots: Sequence[dict] = ()) -> list[dict]:
    """A ChatML conversation: shots as earlier user/assistant turns, then the question."""
    messages = []
    for s in shots:
        messages += [{"role": "user", "content": s["question"]}, {"role": "assistant", "content": s["answer"]}]
    return messages + [{"role": "user", "content": question}]


def chat_segments(records: Sequence[dict]) -> Segments:
    """What the ChatML template renders for `chat_messages` with every answer filled in; each
    assistant answer plus its `<|im_end|>` is a target."""
    segments: Segments = []
    for i, r in enumerate(records):
        if i:
            segments.append(("\n", False))  # the template's newline after the previous <|im_end|>
        segments.append((f"<|im_start|>user\n{r['question']}<|im_end|>\n<|im_start|>assistant\n", False))
        segments.append((r["answer"] + EOS_TOKEN, True))
    return segments
