"""OpenAI response bodies from the engine's finished sequences: completions and chat completions, whole or streamed
as SSE chunks, with SGLang's extra fields (the routes are in openai_api.py)."""

from __future__ import annotations

import time
import uuid
from typing import Any

from hf_engine.output import WEIGHT_VERSION, build_output


def _usage(seqs) -> dict[str, Any]:
    prompt = sum(len(s.item.input_ids) for s in seqs)
    completion = sum(len(s.output_ids) for s in seqs)
    details = {"cached_tokens": sum(s.cached_tokens for s in seqs)}
    for kind in ("image_tokens", "video_tokens"):  # SGLang's PromptTokensDetails drops a count of 0
        count = sum(getattr(s.item, kind) for s in seqs)
        if count:
            details[kind] = count
    return {
        "prompt_tokens": prompt,
        "total_tokens": prompt + completion,
        "completion_tokens": completion,
        "prompt_tokens_details": details,
        "reasoning_tokens": 0,
    }


def _finish(seq, final: bool) -> tuple[str | None, Any]:
    reason = seq.finish_reason if final else None
    if not reason:
        return None, None
    return reason["type"], reason.get("matched")


class _Shaper:
    """Shared state of one OpenAI request: the adapted items and how to reshape their results."""

    object_name = ""
    chunk_object = ""

    def __init__(self, req: dict, items, runner):
        self.req, self.items, self.runner = req, items, runner
        self.id = items[0].rid if req.get("rid") else uuid.uuid4().hex
        self.created = int(time.time())
        self.model = req.get("model") or "default"

    def envelope(self, obj: str, choices: list, usage=None) -> dict:
        out = {"id": self.id, "object": obj, "created": self.created, "model": self.model, "choices": choices}
        if usage is not None:
            out["usage"] = usage
        return out

    def response(self, seqs) -> dict:
        choices = [self.choice(i, seq) for i, seq in enumerate(seqs)]
        out = self.envelope(self.object_name, choices, _usage(seqs))
        out["metadata"] = {"weight_version": WEIGHT_VERSION}
        return out

    async def stream(self, engine, sse):
        sent_text: dict[int, int] = {}
        sent_tokens: dict[int, int] = {}
        seqs = {}
        async for index, seq, n_tokens, final in engine.stream(self.items):
            seqs[index] = seq
            for chunk in self.chunks(index, seq, n_tokens, final, sent_text, sent_tokens):
                yield sse(chunk)
        options = self.req.get("stream_options") or {}
        if options.get("include_usage"):
            yield sse(self.envelope(self.chunk_object, [], _usage([seqs[i] for i in sorted(seqs)])))
        yield b"data: [DONE]\n\n"

    def delta(self, index, seq, n_tokens, final, sent_text, sent_tokens):
        """New text and the output-token range [start, n_tokens) since the last chunk of choice `index`."""
        text = build_output(seq, n_tokens, final, self.runner)["text"]
        start_char = sent_text.get(index, 0)
        start_token = sent_tokens.get(index, 0)
        sent_text[index] = len(text)
        sent_tokens[index] = n_tokens
        return text[start_char:], start_token


class CompletionShaper(_Shaper):
    object_name = chunk_object = "text_completion"

    def __init__(self, req, items, runner, echo: bool):
        super().__init__(req, items, runner)
        self.echo = echo

    def echo_text(self, index: int) -> str:
        prompt = self.req["prompt"]
        if isinstance(prompt, str):
            return prompt
        if isinstance(prompt[0], str):
            return prompt[index]
        return self.runner.decode(self.items[index].input_ids, skip_special_tokens=True)

    def logprobs(self, seq, start: int, end: int, with_input: bool):
        if self.req.get("logprobs") is None:
            return None
        meta = build_output(seq, end, True, self.runner)["meta_info"]
        entries = (meta["input_token_logprobs"] if with_input else []) + meta["output_token_logprobs"][start:end]
        tops = (meta.get("input_top_logprobs", []) if with_input else []) + meta.get("output_top_logprobs", [])[
            start:end
        ]
        return {
            "text_offset": [-1] * len(entries),
            "token_logprobs": [lp for lp, _, _ in entries],
            "tokens": [text for _, _, text in entries],
            "top_logprobs": [None if row is None else {t: lp for lp, _, t in row} for row in tops],
        }

    def choice(self, index, seq) -> dict:
        text = build_output(seq, len(seq.output_ids), True, self.runner)["text"]
        reason, matched = _finish(seq, True)
        return {
            "index": index,
            "text": (self.echo_text(index) if self.echo else "") + text,
            "logprobs": self.logprobs(seq, 0, len(seq.output_ids), with_input=self.echo),
            "finish_reason": reason,
            "matched_stop": matched,
        }

    def chunks(self, index, seq, n_tokens, final, sent_text, sent_tokens):
        first = index not in sent_text
        text, start = self.delta(index, seq, n_tokens, final, sent_text, sent_tokens)
        if first and self.echo:
            text = self.echo_text(index) + text
        reason, matched = _finish(seq, final)
        choice = {
            "index": index,
            "text": text,
            "logprobs": self.logprobs(seq, start, n_tokens, with_input=first and self.echo),
            "finish_reason": reason,
            "matched_stop": matched,
        }
        yield self.envelope(self.chunk_object, [choice])


class ChatShaper(_Shaper):
    object_name = "chat.completion"
    chunk_object = "chat.completion.chunk"

    def logprobs(self, seq, start: int, end: int):
        if not self.items[0].logprobs.return_logprob:
            return None
        meta = build_output(seq, end, True, self.runner)["meta_info"]
        tops = meta.get("output_top_logprobs") or [None] * len(meta["output_token_logprobs"])
        content = []
        for (logprob, _, token), row in zip(meta["output_token_logprobs"][start:end], tops[start:end]):
            top = [{"token": t, "bytes": list(t.encode("utf-8")), "logprob": lp} for lp, _, t in row or []]
            content.append(
                {"token": token, "bytes": list(token.encode("utf-8")), "logprob": logprob, "top_logprobs": top}
            )
        return {"content": content}

    def choice(self, index, seq) -> dict:
        text = build_output(seq, len(seq.output_ids), True, self.runner)["text"]
        reason, matched = _finish(seq, True)
        message = {"role": "assistant", "content": text, "reasoning_content": None, "tool_calls": None}
        return {
            "index": index,
            "message": message,
            "logprobs": self.logprobs(seq, 0, len(seq.output_ids)),
            "finish_reason": reason,
            "matched_stop": matched,
        }

    def chunks(self, index, seq, n_tokens, final, sent_text, sent_tokens):
        if index not in sent_text:
            role = {
                "index": index,
                "delta": {"role": "assistant", "content": ""},
                "logprobs": None,
                "finish_reason": None,
                "matched_stop": None,
            }
            yield self.envelope(self.chunk_object, [role])
        text, start = self.delta(index, seq, n_tokens, final, sent_text, sent_tokens)
        if text or start < n_tokens:
            choice = {
                "index": index,
                "delta": {"content": text},
                "logprobs": self.logprobs(seq, start, n_tokens),
                "finish_reason": None,
                "matched_stop": None,
            }
            yield self.envelope(self.chunk_object, [choice])
        if final:
            reason, matched = _finish(seq, final)
            done = {"index": index, "delta": {}, "logprobs": None, "finish_reason": reason, "matched_stop": matched}
            yield self.envelope(self.chunk_object, [done])
