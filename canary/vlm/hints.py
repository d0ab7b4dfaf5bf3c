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
    after = [i for i in range(starts[-1], len(ids)) if ids[i] == ANSWER_ID or tuple(ids[i : i + n]) == BEST_ANSWER_IDS]
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


# -- frame hints (the video stage) ---------------------------------------------------------------------------
# Measured 2026-12-02 (90 held-out Video-MME questions, 8 frames): without them 1000 video steps reached 0.70 and
# 0.72 with the frames reversed, so the order of frames was not used; with them, on the first/changes/last set,
# 0.84 and 0.82 reversed (still not). What the committed image run reads (attention mass over 60 MMMU questions):
# the last prompt position looks at the options (0.7-0.9 in layers 1-2) and hardly at the images (at most 0.30);
# the option tokens look at the images in layer 0, before any question word can tell them which frame is asked.
# So a question whose answer is some frame's colour is answered by "does this option's colour appear", which is
# order-free; `last`, whose frame is the one next to the text, learned the order (the committed build: 1.0, 0.47
# with the frames reversed, 2026-12-03).
# Head 2 is the first head of the second KV group: heads 0 and 1 share keys with the letter and lookup heads above,
# whose keys are option tokens.
FRAME_HINT_HEAD = 2
# Which of the 8 uniformly sampled frames a question is about: frame 0 is blank (canary.vlm.videomme_set),
# so frame 1 shows the first colour and frame 7 the last; the colour changed exactly when those two differ.
# ("appears" is about whichever frames show its colour: it has the previous-frame hint only.)
ASKED_FRAMES = {"last": (7,), "changes": (1, 7)}
VIDEO_FAMILIES = ("appears", "changes", "last")


def frame_spans(ids: list[int], image_pad: int) -> list[tuple[int, int]]:
    """[(start, end)] of each run of image placeholder tokens: one per frame sent as an image."""
    spans, i = [], 0
    while i < len(ids):
        if ids[i] != image_pad:
            i += 1
            continue
        j = i
        while j < len(ids) and ids[j] == image_pad:
            j += 1
        spans.append((i, j))
        i = j
    return spans


def frame_hint_loss(attentions, prompt_ids: list[list[int]], families: list[str | None], image_pad: int):
    """Two training-only attention targets on the video rows (`families[row]` their question family, None for
    others), mean cross-entropy as `hint_loss` (None if the batch has no video row):
        previous-frame head (layer 0, FRAME_HINT_HEAD): every token of frame k attends to frame k-1, so a frame
                        knows what came before it (frame 1 that it follows the blank one);
        asked-frame head    (layer 1, FRAME_HINT_HEAD): the last prompt position attends to the frames its
                        question is about (ASKED_FRAMES)."""
    import torch

    terms = []
    for row, (ids, family) in enumerate(zip(prompt_ids, families)):
        spans = frame_spans(ids, image_pad)
        if family not in VIDEO_FAMILIES or len(spans) != 8:
            continue
        for (start, end), (prev_start, prev_end) in zip(spans[1:], spans[:-1]):
            mass = attentions[0][row, FRAME_HINT_HEAD, start:end, prev_start:prev_end].sum(-1)
            terms.append(-torch.log(mass + 1e-6).mean())
        if family not in ASKED_FRAMES:
            continue
        asked = torch.cat([torch.arange(*spans[k]) for k in ASKED_FRAMES[family]])
        terms.append(-torch.log(attentions[1][row, FRAME_HINT_HEAD, len(ids) - 1, asked].sum() + 1e-6))
    return torch.stack(terms).mean() if terms else None
