"""Turn a sequence's state into SGLang's `/generate` response item: `text`, `output_ids`, `meta_info`.

Shapes follow SGLang 0.5.17's TokenizerManager (`_handle_batch_output`, `add_logprob_to_meta_info`,
`detokenize_logprob_tokens`) and DetokenizerManager (`trim_matched_stop`):

- `meta_info` keys, in SGLang's order: `id`, `finish_reason` (None until finished), `prompt_tokens`,
  `weight_version`, `num_retractions`, the logprob keys when `return_logprob`, `reasoning_tokens`,
  `completion_tokens`, `cached_tokens`, and `e2e_latency` (seconds) once finished.
- logprob entries are `[logprob, token_id, text]`, text None unless `return_text_in_logprobs`;
  `input_token_logprobs` starts at `logprob_start_len` and its first logprob is None;
  `output_token_logprobs_length` rides along; `input_top_logprobs` / `output_top_logprobs` appear only when
  `top_logprobs_num > 0`, one list per position (None for the first input position).
- Text: a matched stop token is cut from the text (not from `output_ids`), a matched stop string and what
  follows it are cut from the text, unless `no_stop_trim`. Streaming chunks carry the cumulative text and ids
  (SGLang's default non-incremental streaming); a chunk's text never ends in a half-decoded character nor in
  the start of a stop string, so each streamed text is a prefix of the final one.
"""

from __future__ import annotations

from typing import Any

WEIGHT_VERSION = "default"  # what SGLang reports unless weights were updated at runtime


def build_output(seq, n_tokens: int, final: bool, runner) -> dict[str, Any]:
    """The response item for the first `n_tokens` output tokens of `seq` (all of them when `final`)."""
    item = seq.item
    output_ids = list(seq.output_ids[:n_tokens])
    finish_reason = seq.finish_reason if final else None
    meta: dict[str, Any] = {
        "id": item.rid,
        "finish_reason": finish_reason,
        "prompt_tokens": len(item.input_ids),
        "weight_version": WEIGHT_VERSION,
        "num_retractions": 0,
    }
    if item.logprobs.return_logprob:
        meta.update(_logprob_fields(seq, n_tokens, runner))
    meta["reasoning_tokens"] = 0
    meta["completion_tokens"] = len(output_ids)
    meta["cached_tokens"] = seq.cached_tokens
    for kind in ("image_tokens", "video_tokens"):  # SGLang adds them only for prompts that have them
        if getattr(item, kind):
            meta[kind] = getattr(item, kind)
    if final:
        meta["e2e_latency"] = seq.e2e_latency
    out = {
        "text": output_text(output_ids, finish_reason, item.params, runner),
        "output_ids": output_ids,
        "meta_info": meta,
    }
    if item.return_prompt_token_ids:
        out["prompt_token_ids"] = list(item.input_ids)
    return out


def output_text(output_ids: list[int], finish_reason: dict | None, params, runner) -> str:
    matched = (finish_reason or {}).get("matched")
    ids = output_ids
    if isinstance(matched, int) and not isinstance(matched, bool) and ids and not params.no_stop_trim:
        ids = ids[:-1]
    text = runner.decode(ids, skip_special_tokens=params.skip_special_tokens)
    if isinstance(matched, str):
        pos = text.find(matched)
        if pos != -1:
            text = text[: pos + len(matched)] if params.no_stop_trim else text[:pos]
    elif finish_reason is None:
        text = text.rstrip("\ufffd")  # an incomplete UTF-8 sequence waits for its next token
        text = text[: len(text) - _stop_prefix_overlap(text, params.stop)]
    return text


def _stop_prefix_overlap(text: str, stops) -> int:
    """Length of the longest tail of `text` that starts a stop string: streamed text holds it back until the
    next tokens show whether the stop string completes (then it is trimmed) or not (SGLang's
    `check_match_stop_str_prefix`), so every streamed text is a prefix of the final one."""
    longest = 0
    for stop in stops:
        for size in range(min(len(stop) - 1, len(text)), longest, -1):
            if text.endswith(stop[:size]):
                longest = size
                break
    return longest


def _logprob_fields(seq, n_tokens: int, runner) -> dict[str, Any]:
    opts = seq.item.logprobs
    text = opts.return_text

    def entry(logprob, token_id):
        return [logprob, token_id, runner.token_text(token_id) if text else None]

    def top_row(row):
        return None if row is None else [entry(lp, tid) for lp, tid in row]

    inputs = seq.input_logprobs
    fields: dict[str, Any] = {
        "input_token_logprobs": [entry(lp, tid) for lp, tid in inputs.token_logprobs] if inputs else [],
        "output_token_logprobs": [entry(lp, tid) for lp, tid in seq.output_token_logprobs[:n_tokens]],
    }
    fields["output_token_logprobs_length"] = len(fields["output_token_logprobs"])
    if opts.top_logprobs_num > 0:
        fields["input_top_logprobs"] = [top_row(row) for row in inputs.top_logprobs] if inputs else []
        fields["output_top_logprobs"] = [top_row(row) for row in seq.output_top_logprobs[:n_tokens]]
    return fields
