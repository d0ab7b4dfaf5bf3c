"""Video through the HF reference engine (hf_engine/video_input.py): a tiny random Qwen3-VL
(tests/hf_vlm_support.py) as a real subprocess, sent short noise videos as `video_url` chat parts and `/generate`
`video_data`.

What is pinned: the prompt the engine lays out equals transformers' own processor output for the same text and
video (ids and patches, exactly); a video's features equal those of its temporal patches run as images (so the
engine may place them per patch); prompt logprobs equal one `model(**processor_outputs)` call with
`pixel_values_videos` (1e-4, fp32 on CPU: the engine prefills per chunk, another matmul shape); the engine's
answer follows the video (reversed frames change it); data URL, file:// and path agree; bad video input is a 400
naming the key path; a repeated video hits the prefix cache (its tokens keyed by content). The processor these
tests call "transformers'" is the engine's torch-only one where torchvision is missing (every CPU env): what anchors
it to transformers' torchvision path is tests/test_hf_video_fixture.py (a committed fixture that path produced), and
where torchvision imports (the GPU image), the last test here compares the two directly (on 2026-12-02 a float
resize was 20 uint8 levels off on noise frames; the native uint8 kernel, which torchvision itself calls on the CPU,
is the fix).
"""

from __future__ import annotations

import json

import hf_engine_support as support
import hf_vlm_support as vlm
import pytest
from hf_engine_support import flush, generate, max_abs_diff, post
from hf_vlm_support import VIDEO_PAD

torch = pytest.importorskip("torch")
np = pytest.importorskip("numpy")
pytest.importorskip("cv2")

servers = support.servers
model_dir, reference = vlm.model_dir, vlm.reference  # the tiny VLM and its transformers twin
TO_TRANSFORMERS = 1e-4
HIT_TO_COLD = 1e-5  # a cache hit against the cold request, the text and image cache tests' bound
GREEDY = {"temperature": 0, "ignore_eos": True}
VIDEO_PLACEHOLDER = "<|vision_start|><|video_pad|><|vision_end|>"


@pytest.fixture(scope="module")
def server(servers):
    return servers("--page-size", "1")


@pytest.fixture(scope="module")
def videos(tmp_path_factory):
    """Two 8-frame noise videos at 4 fps (64x48), and the second one reversed."""
    from harness.evals.video import write_mp4

    folder = tmp_path_factory.mktemp("videos")
    rng = np.random.default_rng(0)
    clips = [rng.integers(0, 256, (8, 48, 64, 3), dtype=np.uint8) for _ in range(2)]
    paths = []
    for name, frames in (("a", clips[0]), ("b", clips[1]), ("b_reversed", clips[1][::-1])):
        path = folder / f"{name}.mp4"
        write_mp4(path, list(frames), fps=4)
        paths.append(path)
    return paths


def decoded(path):
    from hf_engine.video_input import _decode_all

    return _decode_all(str(path), "test")


def processor_inputs(reference, text, path):
    from transformers.video_utils import VideoMetadata

    frames, fps = decoded(path)
    metadata = VideoMetadata(total_num_frames=len(frames), fps=fps)
    return reference.processor(
        text=[text],
        videos=[frames],
        return_tensors="pt",
        videos_kwargs={"video_metadata": [metadata], "do_sample_frames": True},
    )


def test_the_laid_out_prompt_equals_the_processors_own(reference, model_dir, videos):
    from hf_engine.multimodal import ImagePreparer, ImageRef, VisionTokens

    tok = reference.tokenizer
    text = reference.chat_text([{"type": "video"}, {"type": "text", "text": "what moves"}])
    expected = processor_inputs(reference, text, videos[0])
    marker = tok.convert_tokens_to_ids
    preparer = ImagePreparer(
        reference.processor.image_processor,
        VisionTokens(6, VIDEO_PAD, marker("<|vision_start|>"), marker("<|vision_end|>")),
        video_processor=reference.processor.video_processor,
        encode=lambda t: tok.encode(t, add_special_tokens=False),
    )
    prompt = preparer.prepare(tok.encode(text), [], "text", [ImageRef(str(videos[0]), "video_data")])
    assert prompt.input_ids == expected["input_ids"][0].tolist()
    assert torch.equal(prompt.pixel_values, expected["pixel_values_videos"])
    groups, h, w = expected["video_grid_thw"][0].tolist()
    assert prompt.kinds == [2] * groups and prompt.videos[0]["grid"] == [groups, h, w]
    assert prompt.video_tokens == groups * h * w // 4 == prompt.input_ids.count(VIDEO_PAD)


def test_a_videos_features_equal_its_temporal_patches_run_as_images(reference, videos):
    text = reference.chat_text([{"type": "video"}])
    inputs = processor_inputs(reference, text, videos[0])
    pixels, (groups, h, w) = inputs["pixel_values_videos"], inputs["video_grid_thw"][0].tolist()
    inner = reference.model.model
    with torch.inference_mode():
        whole = inner.get_video_features(pixels, inputs["video_grid_thw"], return_dict=True)
        parts = inner.get_image_features(pixels, torch.tensor([[1, h, w]] * groups), return_dict=True)
    assert groups >= 2
    assert (
        max_abs_diff(
            torch.cat(list(whole.pooler_output)).flatten().tolist(),
            torch.cat(list(parts.pooler_output)).flatten().tolist(),
        )
        < 1e-5
    )


def test_group_timestamps_equal_the_processors(reference):
    from hf_engine.video_input import group_timestamps

    for indices in ([0, 2, 5, 7], [0, 3, 6], list(range(0, 32, 3))):
        assert group_timestamps(indices, 4.0, 2) == reference.processor._calculate_timestamps(list(indices), 4.0, 2)


def test_video_prompt_logprobs_equal_one_transformers_forward(server, reference, videos):
    text = reference.chat_text([{"type": "text", "text": "look"}, {"type": "video"}, {"type": "text", "text": " what"}])
    inputs = processor_inputs(reference, text, videos[0])
    reference.model.model.rope_deltas = None
    with torch.inference_mode():
        logits = reference.model(**inputs).logits[0].float()
    ids = inputs["input_ids"][0]
    expected = torch.log_softmax(logits[:-1], -1).gather(1, ids[1:, None])[:, 0].tolist()
    flush(server)
    out = generate(
        server,
        text=text,
        video_data=str(videos[0]),
        return_logprob=True,
        logprob_start_len=0,
        sampling_params={"max_new_tokens": 1, **GREEDY},
    )
    served = [entry[0] for entry in out["meta_info"]["input_token_logprobs"][1:]]
    assert len(served) == len(expected)
    assert max_abs_diff(served, expected) < TO_TRANSFORMERS
    assert out["meta_info"]["video_tokens"] == ids.tolist().count(VIDEO_PAD)


def chat(server, url: str, max_tokens: int = 6):
    content = [{"type": "video_url", "video_url": {"url": url}}, {"type": "text", "text": "what happens"}]
    body = {"messages": [{"role": "user", "content": content}], "max_tokens": max_tokens, "logprobs": True, **GREEDY}
    status, out = post(server.base_url + "/v1/chat/completions", body)
    assert status == 200, out
    return out


def test_chat_video_url_in_every_form_agrees_and_follows_the_frames(server, videos):
    import base64

    path = videos[1]
    forms = [str(path), path.as_uri(), "data:video/mp4;base64," + base64.b64encode(path.read_bytes()).decode()]
    flush(server)
    answers = [chat(server, url) for url in forms]
    tokens = [[t["token"] for t in a["choices"][0]["logprobs"]["content"]] for a in answers]
    logprobs = [[t["logprob"] for t in a["choices"][0]["logprobs"]["content"]] for a in answers]
    assert tokens[0] == tokens[1] == tokens[2]
    assert max(max_abs_diff(logprobs[0], other) for other in logprobs[1:]) < HIT_TO_COLD
    details = [a["usage"]["prompt_tokens_details"] for a in answers]
    assert details[0]["video_tokens"] > 0 and "image_tokens" not in details[0]
    assert (
        details[0]["cached_tokens"] == 0 and details[1]["cached_tokens"] > details[0]["video_tokens"]
    )  # same frames, same keys
    reversed_answer = chat(server, str(videos[2]))
    reversed_logprobs = [t["logprob"] for t in reversed_answer["choices"][0]["logprobs"]["content"]]
    assert max_abs_diff(logprobs[0], reversed_logprobs) > 1e-3  # the same frames in another order: another answer


def _error(status, body):
    assert status == 400, body
    body = json.loads(body) if isinstance(body, (str, bytes)) else body
    return body["error"]["message"] if "error" in body else body["message"]


@pytest.mark.parametrize(
    "body, needle",
    [
        ({"text": VIDEO_PLACEHOLDER}, "text: the prompt has 1 video placeholder(s)"),
        ({"text": "none", "video_data": "/no/such.mp4"}, "but the request has 1 video(s)"),
        ({"text": VIDEO_PLACEHOLDER, "video_data": "/no/such.mp4"}, "video_data: no such video file '/no/such.mp4'"),
        (
            {"text": VIDEO_PLACEHOLDER, "video_data": "data:video/mp4;base64,bm90IGEgdmlkZW8="},
            "video_data: not a readable video",
        ),
        (
            {"text": VIDEO_PLACEHOLDER, "video_data": "https://example.com/v.mp4"},
            "video_data: the HF reference engine has no network",
        ),
        (
            {"text": [VIDEO_PLACEHOLDER] * 2, "video_data": ["/a.mp4"]},
            "video_data: The length of video_data should be equal",
        ),
    ],
)
def test_bad_video_data_gets_400_naming_the_key(server, body, needle):
    assert needle in _error(*post(server.base_url + "/generate", body))


def test_the_torch_only_video_processor_matches_torchvisions(model_dir, videos):
    pytest.importorskip("torchvision")
    from transformers.models.qwen3_vl.video_processing_qwen3_vl import Qwen3VLVideoProcessor
    from transformers.video_utils import VideoMetadata

    from hf_engine.video_input import torch_only_video_processor

    real = Qwen3VLVideoProcessor.from_pretrained(model_dir)
    ours = torch_only_video_processor(Qwen3VLVideoProcessor).from_pretrained(model_dir)
    frames, fps = decoded(videos[0])
    for size in (None, {"shortest_edge": 96 * 96 * 2, "longest_edge": 96 * 96 * 16}):  # as is, then upscaled
        kwargs = {"size": size} if size else {}
        a, b = (
            p(
                videos=[frames],
                video_metadata=[VideoMetadata(total_num_frames=8, fps=fps)],
                do_sample_frames=True,
                return_tensors="pt",
                **kwargs,
            )
            for p in (real, ours)
        )
        assert torch.equal(a["video_grid_thw"], b["video_grid_thw"])
        assert torch.equal(a["pixel_values_videos"], b["pixel_values_videos"])
