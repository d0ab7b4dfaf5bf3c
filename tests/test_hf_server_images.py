"""The HF reference engine serving a vision-language model: a tiny random Qwen3-VL (tests/hf_vlm_support.py) as a
real subprocess. Chat with images from data URLs, file:// URLs and paths; greedy tokens and logprobs against a
direct transformers call on the processor's inputs; images that change the answer; native `/generate` with
`image_data` single and batched; bad image input; a text model unchanged. The prefix cache keyed by image content:
test_hf_server_image_cache.py.

Tolerances, fp32 on CPU: 1e-4 on logprobs against transformers (one full-prompt forward, or `generate`) and 1e-5
between a cache hit and the cold request, the bound the text cache tests use; both only absorb float summation
order (the engine prefills the uncached suffix alone, a different matmul shape). Greedy tokens must be identical.
"""

from __future__ import annotations

import json

import hf_engine_support as support
import hf_vlm_support as vlm
import pytest
from hf_engine_support import flush, generate, get, max_abs_diff, output_logprobs, post, stream
from hf_vlm_support import (
    GREEDY,
    HIT_TO_COLD,
    IMAGE_PAD,
    PLACEHOLDER,
    PLACEHOLDER_IDS,
    TO_TRANSFORMERS,
    data_url,
    image_part,
)

servers = support.servers  # started on first use from this module's `model_dir` (the VLM), stopped at the end
# the tiny VLM, its transformers twin, and five noise images (tests/hf_vlm_support.py)
model_dir, reference, images = vlm.model_dir, vlm.reference, vlm.images


@pytest.fixture(scope="module")
def server(servers):
    return servers("--page-size", "1")


def chat(server, content: list[dict], max_tokens: int = 6, **extra):
    body = {
        "messages": [{"role": "user", "content": content}],
        "max_tokens": max_tokens,
        "logprobs": True,
        **GREEDY,
        **extra,
    }
    status, out = post(server.base_url + "/v1/chat/completions", body)
    assert status == 200, out
    return out


def chat_tokens_and_logprobs(out) -> tuple[list[str], list[float]]:
    content = out["choices"][0]["logprobs"]["content"]
    return [entry["token"] for entry in content], [entry["logprob"] for entry in content]


def template_content(content: list[dict]) -> list[dict]:
    """The parts as the chat template sees them (the engine turns image_url parts into {"type": "image"})."""
    return [{"type": "image"} if part["type"] == "image_url" else part for part in content]


# -- chat against transformers ----------------------------------------------------------------------------------


def test_model_info_reports_image_understanding(server):
    for path in ("/model_info", "/get_model_info"):
        info = json.loads(get(server.base_url + path)[1])
        assert info["has_image_understanding"] is True and info["has_audio_understanding"] is False
        assert info["architectures"] == ["Qwen3VLForConditionalGeneration"] and info["model_type"] == "qwen3_vl"


@pytest.mark.parametrize("sources", [("data",), ("data", "file", "path")], ids=["1_image", "3_images"])
def test_chat_with_images_equals_transformers(server, reference, images, sources):
    picked = images[: len(sources)]
    urls = {
        "data": lambda img, path: data_url(img),
        "file": lambda img, path: path.as_uri(),
        "path": lambda img, path: str(path),
    }
    content = [{"type": "text", "text": "how many apples"}]
    for source, (image, path) in zip(sources, picked):
        content += [image_part(urls[source](image, path)), {"type": "text", "text": " and"}]
    content.append({"type": "text", "text": " does alice have?"})
    flush(server)
    out = chat(server, content, max_tokens=8)
    text = reference.chat_text(template_content(content))
    prompt, tokens, logprobs = reference.greedy(text, [image for image, _ in picked], 8)
    usage = out["usage"]
    assert usage["prompt_tokens"] == len(prompt) and usage["completion_tokens"] == 8
    assert usage["prompt_tokens_details"] == {"cached_tokens": 0, "image_tokens": prompt.count(IMAGE_PAD)}
    served_tokens, served_logprobs = chat_tokens_and_logprobs(out)
    assert served_tokens == [reference.tokenizer.decode([t]) for t in tokens]
    assert max_abs_diff(served_logprobs, logprobs) < TO_TRANSFORMERS


def test_prompt_logprobs_equal_one_transformers_forward_and_depend_on_the_images(server, reference, images):
    (a, _), (b, _), (c, _) = images[:3]
    text = reference.chat_text(
        [
            {"type": "text", "text": "bob has"},
            {"type": "image"},
            {"type": "text", "text": " cups"},
            {"type": "image"},
            {"type": "text", "text": " how many"},
        ]
    )

    def prompt_logprobs(text, pictures):
        out = generate(
            server,
            text=text,
            image_data=[data_url(p) for p in pictures],
            return_logprob=True,
            logprob_start_len=0,
            sampling_params={"max_new_tokens": 1, **GREEDY},
        )
        return [entry[0] for entry in out["meta_info"]["input_token_logprobs"][1:]]

    served = prompt_logprobs(text, [a, b])
    assert max_abs_diff(served, reference.prompt_logprobs(text, [a, b])) < TO_TRANSFORMERS
    swapped = prompt_logprobs(text, [b, a])  # same token count (both 4 tokens), other pixels
    assert len(swapped) == len(served) and max_abs_diff(swapped, served) > 1e-2
    replaced = prompt_logprobs(text, [a, c])
    assert max_abs_diff(replaced[:5], served[:5]) < HIT_TO_COLD  # before the images nothing changes
    dropped_text = text.replace(PLACEHOLDER, "", 1)
    dropped = prompt_logprobs(dropped_text, [b])
    assert max_abs_diff(dropped, reference.prompt_logprobs(dropped_text, [b])) < TO_TRANSFORMERS
    assert max_abs_diff(dropped[-4:], served[-4:]) > 1e-2
    no_images = prompt_logprobs(text.replace(PLACEHOLDER, ""), [])  # a text-only prompt on the VLM
    assert max_abs_diff(no_images, reference.prompt_logprobs(text.replace(PLACEHOLDER, ""), [])) < TO_TRANSFORMERS


def test_streamed_chat_with_an_image_reports_image_tokens(server, images):
    content = [image_part(data_url(images[0][0])), {"type": "text", "text": "what is it"}]
    plain = chat(server, content)
    body = {
        "messages": [{"role": "user", "content": content}],
        "max_tokens": 6,
        **GREEDY,
        "stream": True,
        "stream_options": {"include_usage": True},
    }
    events = stream(server.base_url + "/v1/chat/completions", body)
    assert (
        "".join(e["choices"][0]["delta"].get("content", "") for e in events[:-2])
        == plain["choices"][0]["message"]["content"]
    )
    assert events[-2]["usage"]["prompt_tokens_details"]["image_tokens"] == 4


# -- native /generate ------------------------------------------------------------------------------------------


def test_native_image_data_single_and_batched_equals_chat(server, reference, images):
    (a, path_a), (b, _), (c, _) = images[0], images[1], images[2]
    one = [{"type": "text", "text": "the cat has"}, image_part(data_url(a)), {"type": "text", "text": " how many"}]
    two = [
        image_part(data_url(b)),
        {"type": "text", "text": "and"},
        image_part(data_url(c)),
        {"type": "text", "text": "?"},
    ]
    texts = [reference.chat_text(template_content(content)) for content in (one, two)]
    params = {"max_new_tokens": 6, **GREEDY}

    def by_chat(content):
        flush(server)
        out = chat(server, content)
        return out["usage"]["prompt_tokens"], chat_tokens_and_logprobs(out)

    def matches(native, expected):
        prompt_tokens, (tokens, logprobs) = expected
        assert native["meta_info"]["prompt_tokens"] == prompt_tokens
        assert [reference.tokenizer.decode([t]) for t in native["output_ids"]] == tokens
        assert max_abs_diff(output_logprobs(native), logprobs) < HIT_TO_COLD

    expected = [by_chat(one), by_chat(two)]
    for image_data in (str(path_a), data_url(a), [data_url(a)], {"url": path_a.as_uri()}):
        flush(server)
        matches(
            generate(server, text=texts[0], image_data=image_data, return_logprob=True, sampling_params=params),
            expected[0],
        )
    flush(server)
    batch = generate(
        server,
        text=texts,
        image_data=[[data_url(a)], [data_url(b), data_url(c)]],
        return_logprob=True,
        sampling_params=params,
    )
    for out, want in zip(batch, expected):
        matches(out, want)
    assert [out["meta_info"]["image_tokens"] for out in batch] == [4, 4 + 2]
    flush(server)
    flat = generate(
        server,
        text=[texts[0], texts[0].replace(PLACEHOLDER, "")],
        image_data=[data_url(a), None],
        return_logprob=True,
        sampling_params=params,
    )
    matches(flat[0], expected[0])
    assert "image_tokens" not in flat[1]["meta_info"]


# -- bad input ---------------------------------------------------------------------------------------------------


def _error(status, body) -> str:
    assert status == 400, body
    return body["error"]["message"] if "error" in body else body["message"]


@pytest.mark.parametrize(
    "content, needle",
    [
        (
            [image_part("https://example.com/cat.png")],
            "messages[0].content[0].image_url.url: 'https://example.com/cat.png': "
            "the HF reference engine has no network",
        ),
        (
            [image_part("data:image/png;base64,bm90IGFuIGltYWdl")],
            "messages[0].content[0].image_url.url: cannot read the image",
        ),
        (
            [image_part("/no/such/image.png")],
            "messages[0].content[0].image_url.url: cannot open image file '/no/such/image.png'",
        ),
        ([image_part("data:image/png,raw")], "data:<mime>;base64"),
        (
            [{"type": "text", "text": "a"}, {"type": "video_url", "video_url": {"url": "v.mp4"}}],
            "messages[0].content[1].video_url.url: no such video file 'v.mp4'",
        ),
        (
            [{"type": "input_audio", "input_audio": {"data": "", "format": "wav"}}],
            "messages[0].content[0].type: 'input_audio'",
        ),
        ([{"type": "image_url", "image_url": {}}], "messages[0].content[0].image_url.url: an image part needs a URL"),
    ],
)
def test_bad_chat_images_get_400_naming_the_part(server, content, needle):
    body = {"messages": [{"role": "user", "content": content}], "max_tokens": 2}
    assert needle in _error(*post(server.base_url + "/v1/chat/completions", body))
    assert get(server.base_url + "/health_generate")[0] == 200


@pytest.mark.parametrize(
    "body, needle",
    [
        ({"text": PLACEHOLDER, "image_data": "not base64!"}, "image_data: neither a data URL"),
        ({"text": PLACEHOLDER, "image_data": []}, "text: the prompt has 1 image placeholder(s)"),
        ({"text": "no placeholder", "image_data": ["x.png"]}, "but the request has 1 image(s)"),
        (
            {"text": "<|vision_start|><|image_pad|><|image_pad|><|vision_end|>", "image_data": ["x.png"]},
            "a run of <|image_pad|>",
        ),
        ({"text": "<|vision_start|><|video_pad|><|vision_end|>"}, "text: the prompt has 1 video placeholder(s)"),
        (
            {"text": [PLACEHOLDER, PLACEHOLDER], "image_data": [["x.png"]]},
            "should be equal to the batch size (2), got 1",
        ),
        (
            {"text": [PLACEHOLDER, PLACEHOLDER], "image_data": [["/nope.png"], "/nope.png"]},
            "image_data[1]: a batch's image_data is a list of lists",
        ),
        (
            {"input_ids": PLACEHOLDER_IDS, "image_data": [{"path": "x.png"}]},
            "image_data[0].url: an image object needs a string url",
        ),
        (
            {"input_ids": PLACEHOLDER_IDS, "image_data": ["/nope.png"]},
            "image_data[0]: cannot open image file '/nope.png'",
        ),
        ({"text": PLACEHOLDER, "image_data": "x.png", "video_data": "v.mp4"}, "the prompt has 0 video placeholder(s)"),
        ({"text": PLACEHOLDER, "image_data": "x.png", "mm_hashes": ["ab"]}, "mm_hashes: not supported"),
    ],
)
def test_bad_image_data_gets_400_naming_the_key(server, body, needle):
    assert needle in _error(*post(server.base_url + "/generate", body))


def test_more_images_than_the_limit_is_a_400(servers, images):
    server = servers("--limit-mm-data-per-request", '{"image": 2}')
    assert json.loads(get(server.base_url + "/server_info")[1])["limit_mm_data_per_request"] == {"image": 2}
    urls = [data_url(image) for image, _ in images[:3]]
    message = _error(*post(server.base_url + "/generate", {"text": PLACEHOLDER * 3, "image_data": urls}))
    assert "image_data: Image count 3 exceeds limit 2 per request" in message
    content = [image_part(url) for url in urls]
    message = _error(
        *post(server.base_url + "/v1/chat/completions", {"messages": [{"role": "user", "content": content}]})
    )
    assert "messages: Image count 3 exceeds limit 2" in message
    assert (
        generate(server, text=PLACEHOLDER * 2, image_data=urls[:2], sampling_params={"max_new_tokens": 1})["meta_info"][
            "image_tokens"
        ]
        == 8
    )


# -- a text model is unchanged ----------------------------------------------------------------------------------------


def test_a_text_model_still_refuses_images_and_serves_text(tmp_path_factory, images):
    from canary.tiny import build_tiny_model

    text_dir = build_tiny_model(tmp_path_factory.mktemp("tiny_text"))
    server = support.engine_server(text_dir, tmp_path_factory.mktemp("text_logs"))
    server.start()
    try:
        assert json.loads(get(server.base_url + "/model_info")[1])["has_image_understanding"] is False
        assert "image_data: not supported" in _error(
            *post(server.base_url + "/generate", {"text": "a", "image_data": "x.png"})
        )
        content = [{"type": "text", "text": "hi"}, image_part(data_url(images[0][0]))]
        message = _error(
            *post(server.base_url + "/v1/chat/completions", {"messages": [{"role": "user", "content": content}]})
        )
        assert "messages[0].content[1].image_url.url: image parts need a vision-language model" in message
        out = chat(server, [{"type": "text", "text": "how many apples"}])
        assert out["usage"]["prompt_tokens_details"] == {"cached_tokens": 0} and out["usage"]["completion_tokens"] == 6
        assert (
            "image_tokens" not in generate(server, text="the cat", sampling_params={"max_new_tokens": 2})["meta_info"]
        )
    finally:
        server.stop()
