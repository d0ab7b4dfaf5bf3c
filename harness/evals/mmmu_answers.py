"""MMMU's answer parsers and scoring, after the official `eval_utils.py` (MMMU-Benchmark/MMMU, eval/).

In spirit, not copied: `parse_multi_choice` is `parse_multi_choice_response` except that an unreadable answer
gives None (scored wrong, counted as unparsed) where the official one picks a random option; `parse_open`,
`normalize` and `open_correct` are `parse_open_response`, `normalize_str` and `eval_open`. lmms-eval's MMMU task
uses the same functions. Pure functions; the MMMU eval (mmmu.py) and the VLM parity eval score with them.
"""

from __future__ import annotations

import ast
import re
from collections.abc import Sequence
from typing import Any


def option_letters(n: int) -> list[str]:
    return [chr(ord("A") + i) for i in range(n)]


NUMBER_PATTERNS = (
    re.compile(r"-?\b\d{1,3}(?:,\d{3})+\b"),  # 1,234,567
    re.compile(r"-?\d+(?:\.\d+)?[eE][+-]?\d+"),  # 1.5e-3
    re.compile(r"-?(?:\d+\.\d+|\.\d+|\d+\b)(?![eE][+-]?\d+)(?![,\d])"),  # 42, 3.14, .5
)
KEY_PHRASES = ("could be ", "so ", "is ", "thus ", "therefore ", "final ", "answer ", "result ")
TRIVIAL = {":", ",", ".", "!", "?", ";", "'"}


def parse_multi_choice(response: str, options: Sequence[str]) -> str | None:
    """The option letter a response names, or None. In order: "(B)", then "B " / "B.", then (only for answers
    longer than 5 words) an option's text; several candidates: the one named last. Official parser, except that
    it never guesses at random."""
    letters = option_letters(len(options))
    text = " " + response.strip().strip(",.!?;:'") + " "
    bracketed = [c for c in letters if f"({c})" in text]
    candidates = bracketed or [c for c in letters if f"{c} " in text] or [c for c in letters if f"{c}." in text]
    by_content = False
    if not candidates and len(text.split()) > 5:
        candidates = [c for c, option in zip(letters, options) if option.lower() in text.lower()]
        by_content = bool(candidates)
    if not candidates:
        return None
    if len(candidates) == 1:
        return candidates[0]
    if by_content:
        where = {c: text.lower().rfind(options[letters.index(c)].lower()) for c in candidates}
    else:
        where = {c: text.rfind(f"({c})" if bracketed else f" {c} ") for c in candidates}
    return max(candidates, key=lambda c: where[c])


def extract_numbers(text: str) -> list[str]:
    return [number for pattern in NUMBER_PATTERNS for number in pattern.findall(text)]


def normalize(value: str) -> list[str | float]:
    """A number → [float rounded to 2 places]; a word → [lowercase]; one letter padded (" a", "a ") so it is
    not found inside every word."""
    value = value.strip()
    try:
        return [round(float(value.replace(",", "")), 2)]
    except ValueError:
        value = value.lower()
        return [" " + value, value + " "] if len(value) == 1 else [value]


def parse_open(response: str) -> list[str | float]:
    """Candidate answers of an open response: the tail after a key phrase ("is ", "answer ", "=" in the last
    sentence) of each sentence, else the whole response; plus every number in them; normalized, deduplicated."""
    sentences = re.split(r"\.\s(?=[A-Z])|\n", response.strip().strip(".").lower())
    keys = []
    for index, sentence in enumerate(sentences):
        phrases = KEY_PHRASES + (("=",) if index == len(sentences) - 1 else ())
        tails = [sentence.split(p)[-1].strip() for p in phrases if p in sentence]
        shortest = min(tails, key=len) if tails else None
        if shortest and shortest not in TRIVIAL:
            keys.append(shortest)
    keys = keys or [response.strip().strip(".").lower()]
    found = keys + [n for key in keys for n in extract_numbers(key)]
    return list(dict.fromkeys(v for item in found for v in normalize(item)))


def gold_answers(answer: Any) -> list[str]:
    """An open question's gold: a string, or a list (some MMMU answers are a list literal in a string)."""
    if isinstance(answer, str) and answer.strip().startswith("["):
        try:
            return [str(a) for a in ast.literal_eval(answer)]
        except (ValueError, SyntaxError):
            return [answer]
    return [str(a) for a in answer] if isinstance(answer, list) else [str(answer)]


def open_correct(answer: Any, predictions: Sequence[str | float]) -> bool:
    """Official `eval_open`: a gold string inside a predicted string, or a gold number equal to a predicted one."""
    golds = [g for answer_text in gold_answers(answer) for g in normalize(answer_text)]
    for prediction in predictions:
        if isinstance(prediction, str):
            if any(isinstance(g, str) and g in prediction for g in golds):
                return True
        elif prediction in golds:
            return True
    return False
