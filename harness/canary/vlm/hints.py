"""Attention hints: a training-only loss that shows two attention heads where the option lookup should look.

Answering a multiple-choice question by letter takes two hops: each option's tokens pick up their letter (the
"A" of "A. red"), then the last prompt position finds the option that matches the image and reads the letter
from it. With the answer loss alone the tiny model found that circuit only after a plateau of about 40 000
examples on text drills and not at all for image questions within the CPU budget (see `curriculum`). The hints
supervise the two attention patterns directly, as a cross-entropy on one head each:
    letter head   (layer `n_layers - 2`, head 0): every token of an option line attends to that line's letter;
    lookup head   (last layer, head 0): the last prompt position attends to the correct option's tokens.
What the heads attend *with* (queries from the image, keys from the option words) is still learned, now with a
direct gradient. The saved model is a plain Qwen3-VL; the hints exist only in this loss.
"""

from __future__ import annotations

LETTER_IDS = tuple(range(40, 45))  # "A" ... "E" in the canary vocabulary
PERIOD_ID = 21  # "."
ANSWER_ID = 318  # "Answer", which starts the MMMU instruction after the options
BEST_ANSWER_IDS = (206, 59, 330)  # "\n", "T", "he": Video-MME's "The best answer is:" after the options


def option_spans(ids: list[int]) -> list[tuple[int, int]]:
    """[(letter position, end)] of each option line "L. text" in a prompt's ids; [] when there are none.

    An option starts at a letter token followed by "." (A, B, ... in order); it ends where the next begins, the last
    one at the "Answer with the option's letter" instruction
    (MMMU) or at the "The best answer is:" line (Video-MME)."""
    starts, expected = [], 0
    for i in range(len(ids) - 1):
        if expected < len(LETTER_IDS) and ids[i] == LETTER_IDS[expected] and ids[i + 1] == PERIOD_ID:
            starts.append(i)
            expected += 1
    if not starts:
        return []
    n = len(BEST_ANSWER_IDS)
    after = [i for i in range(starts[-1], len(ids))
             if ids[i] == ANSWER_ID or tuple(ids[i : i + n]) == BEST_ANSWER_IDS]  # fmt: skip
    if not after:
        return []
    ends = starts[1:] + [after[0]]
    return list(zip(starts, ends))


def hint_loss(attentions, prompt_ids: list[list[int]], targets: list[list[int]]):
    """Mean of the two heads' cross-entropies over the multiple-choice rows of a batch (None if it has none).

    `attentions` are the language model's per-layer weights (batch, heads, query, key); `prompt_ids` the rows'
    prompt ids (right padding comes after them); `targets` their answer ids (the first is the letter)."""
    import torch

    letter_layer, lookup_layer = attentions[-2], attentions[-1]
    terms = []
    for row, (ids, target) in enumerate(zip(prompt_ids, targets)):
        spans = option_spans(ids)
        correct = target[0] - LETTER_IDS[0] if target else -1
        if not spans or not 0 <= correct < len(spans):
            continue
        start, end = spans[correct]
        last = len(ids) - 1  # the position that predicts the letter
        terms.append(-torch.log(lookup_layer[row, 0, last, start:end].sum() + 1e-6))
        for letter, span_end in spans:
            positions = torch.arange(letter + 2, span_end)  # the option's text after "L."
            mass = letter_layer[row, 0, positions, letter]
            terms.append(-torch.log(mass + 1e-6).mean())
    return torch.stack(terms).mean() if terms else None
