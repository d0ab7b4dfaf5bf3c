"""The HF reference engine's prefix cache keyed by image content, on a tiny random Qwen3-VL
(tests/hf_vlm_support.py) as a real subprocess, at page sizes 1 and 16: the same image and text hit all but the
last token, hits end at the first image that differs, the same image at another position gives no false hit, a hit
may end inside an image, generated tokens after an image are reused next turn. Every hit answers as the cold
request does: the same greedy tokens, logprobs within HIT_TO_COLD (tests/hf_vlm_support.py; the engine prefills
the uncached suffix alone, a different matmul shape).
"""

from __future__ import annotations

import hf_engine_support as support
import hf_vlm_support as vlm
import pytest
from hf_engine_support import flush, generate, max_abs_diff, output_logprobs, random_ids
from hf_vlm_support import GREEDY, HIT_TO_COLD, PLACEHOLDER_IDS, TO_TRANSFORMERS, data_url

servers = support.servers  # started on first use from this module's `model_dir` (the VLM), stopped at the end
# the tiny VLM, its transformers twin, and five noise images (tests/hf_vlm_support.py)
model_dir, reference, images = vlm.model_dir, vlm.reference, vlm.images


@pytest.fixture(scope="module", params=[1, 16], ids=["page1", "page16"])
def paged(request, servers):
    return request.param, servers("--page-size", str(request.param))


def ids_with_images(*pieces) -> list[int]:
    """Token ids from pieces: a list of ids as is, an int image index as its placeholder."""
    out = []
    for piece in pieces:
        out += PLACEHOLDER_IDS if isinstance(piece, int) else piece
    return out


def run_ids(server, ids: list[int], pictures, max_new_tokens: int = 4):
    return generate(
        server,
        input_ids=ids,
        image_data=[data_url(p) for p in pictures],
        return_logprob=True,
        sampling_params={"max_new_tokens": max_new_tokens, **GREEDY},
    )


def cold(server, ids, pictures):
    flush(server)
    out = run_ids(server, ids, pictures)
    assert out["meta_info"]["cached_tokens"] == 0
    return out


def assert_same_answer(hit, cold_out):
    assert hit["output_ids"] == cold_out["output_ids"]
    assert max_abs_diff(output_logprobs(hit), output_logprobs(cold_out)) < HIT_TO_COLD


def test_same_image_and_text_hits_all_but_the_last_token(paged, images):
    page, server = paged
    a = images[0][0]
    ids = ids_with_images(random_ids(40, seed=1), 0, random_ids(30, seed=2))
    first = cold(server, ids, [a])
    n = first["meta_info"]["prompt_tokens"]
    assert n == len(ids) - 1 + 4 and first["meta_info"]["image_tokens"] == 4
    again = run_ids(server, ids, [a])
    assert again["meta_info"]["cached_tokens"] == (n - 1) // page * page
    assert_same_answer(again, first)


def test_different_images_share_nothing_past_the_first_placeholder(paged, images):
    page, server = paged
    (a, _), (b, _), (c, _) = images[0], images[1], images[4]
    prefix = random_ids(37, seed=3)
    ids = ids_with_images(prefix, 0, random_ids(20, seed=4), 1, random_ids(20, seed=5))
    flush(server)
    run_ids(server, ids, [a, b])
    first_pad = len(prefix) + 1  # the <|vision_start|> before it is text, shared
    for pictures in ([c, b], [b, a]):  # the first image differs / the two are swapped
        out = run_ids(server, ids, pictures)
        assert out["meta_info"]["cached_tokens"] == first_pad // page * page
        assert_same_answer(out, cold(server, ids, pictures))
        run_ids(server, ids, [a, b])  # back to the warm state for the next case


def test_second_image_differs_hit_stops_at_it(paged, images):
    page, server = paged
    (a, _), (b, _), (c, _) = images[0], images[1], images[4]
    head = random_ids(30, seed=6)
    middle = random_ids(25, seed=7)
    ids = ids_with_images(head, 0, middle, 1, random_ids(10, seed=8))
    flush(server)
    run_ids(server, ids, [a, b])
    out = run_ids(server, ids, [a, c])
    second_pad = len(head) + 3 - 1 + 4 + len(middle) + 1  # head, image a (4 tokens), middle, <|vision_start|>
    assert out["meta_info"]["cached_tokens"] == second_pad // page * page
    assert_same_answer(out, cold(server, ids, [a, c]))


def test_same_image_at_another_position_gives_no_false_hit(paged, images):
    page, server = paged
    a = images[0][0]
    head, middle, tail = random_ids(33, seed=9), random_ids(20, seed=10, first=200), random_ids(20, seed=11)
    flush(server)
    run_ids(server, ids_with_images(head, 0, middle, tail), [a])
    moved = ids_with_images(head, middle, 0, tail)
    out = run_ids(server, moved, [a])
    assert out["meta_info"]["cached_tokens"] == len(head) // page * page  # up to where the two differ
    assert_same_answer(out, cold(server, moved, [a]))


def test_a_hit_ending_inside_an_image_equals_the_cold_request(paged, reference, images):
    """The cached prefix ends inside image a's 4 tokens at page 16 (they sit at positions 30-33)."""
    page, server = paged
    a = images[0][0]
    words = reference.tokenizer.encode(
        "alice gives away 3 apples and bob buys 12 pens, how many cups does carol have now? "
        "dave sells each box and eve gets more"
    )
    head = words[:29]
    warm_ids = ids_with_images(head, 0, random_ids(20, seed=13, first=301))
    asked = ids_with_images(head, 0, words[29:45])
    flush(server)
    run_ids(server, warm_ids, [a])
    out = generate(
        server,
        input_ids=asked,
        image_data=[data_url(a)],
        return_logprob=True,
        return_prompt_token_ids=True,
        sampling_params={"max_new_tokens": 4, **GREEDY},
    )
    pads = (len(head) + 1, len(head) + 1 + 4)
    assert out["meta_info"]["cached_tokens"] == {1: pads[1] + 1, 16: 32}[page]  # page 1: through <|vision_end|>
    assert pads[0] < 32 < pads[1]  # page 16 really cuts the image
    assert_same_answer(out, cold(server, asked, [a]))
    text = reference.tokenizer.decode(asked, skip_special_tokens=False)
    prompt, tokens, logprobs = reference.greedy(text, [a], 4)
    assert prompt == out["prompt_token_ids"]  # the processor saw the very same prompt
    assert out["output_ids"] == tokens and max_abs_diff(output_logprobs(out), logprobs) < TO_TRANSFORMERS


def test_generated_tokens_after_an_image_are_reused_next_turn(paged, images):
    page, server = paged
    a = images[2][0]
    ids = ids_with_images(random_ids(30, seed=15), 0, random_ids(20, seed=16))
    flush(server)
    turn1 = run_ids(server, ids, [a], max_new_tokens=8)
    follow_up = ids + turn1["output_ids"] + random_ids(5, seed=17)
    turn2 = run_ids(server, follow_up, [a])
    expanded = turn1["meta_info"]["prompt_tokens"] + 8
    assert turn2["meta_info"]["cached_tokens"] == expanded // page * page
    assert_same_answer(turn2, cold(server, follow_up, [a]))
