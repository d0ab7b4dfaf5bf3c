"""Video decoding and frame sampling (harness/evals/video.py) and Video-MME's prompt, parser and data checks
(harness/evals/video_mme.py): pure functions, plus real mp4 files written and read back with OpenCV."""

from __future__ import annotations

import numpy as np
import pytest

from harness.errors import ConfigError
from harness.evals.video import Sampling, frame_indices
from harness.evals.video_mme import (
    check_videos,
    clustered_standard_error,
    extract_answer,
    parse_srt,
    question_text,
    subtitles_at,
)

cv2 = pytest.importorskip("cv2")

DOC = {"question": "What colour is the shape at the end of the video?", "options": ["A. red", "B. blue"], "answer": "B"}


@pytest.mark.parametrize(
    ("total", "fps", "sampling", "expected"),
    [
        (16, 4.0, Sampling("uniform", 8), np.linspace(0, 15, 8, dtype=int).tolist()),  # lmms-eval's rule
        (32, 4.0, Sampling("uniform", 4), [0, 10, 20, 31]),
        (5, 4.0, Sampling("uniform", 8), [0, 1, 2, 3, 4]),  # fewer frames than asked: each once, none repeated
        (32, 4.0, Sampling("fps", 8, fps=1.0), [0, 4, 8, 12, 16, 20, 24, 28]),  # one a second
        (32, 4.0, Sampling("fps", 4, fps=2.0), [0, 10, 20, 30]),  # 16 at 2 fps, then 4 of them spread evenly
        (0, 4.0, Sampling("uniform", 8), []),
    ],
)
def test_frame_indices(total, fps, sampling, expected):
    assert frame_indices(total, fps, sampling) == expected


def test_sampling_rejects_unknown_rules_and_no_frames():
    expected = (
        r"video_mme.sampling: unknown video sampling rule 'unifrom' \(did you mean 'uniform'\?\); "
        r"valid choices: fps, uniform"
    )
    with pytest.raises(ConfigError, match=expected):
        Sampling("unifrom")
    with pytest.raises(ConfigError, match=r"video_mme.num_frames: 0 \(must be at least 1\)"):
        Sampling("uniform", 0)


def _scenes(n: int):
    """Frame i: a white 84 px square with a 40 px block whose red channel encodes i (far apart: 20 steps)."""
    frames = []
    for i in range(n):
        frame = np.full((84, 84, 3), 255, np.uint8)
        frame[22:62, 22:62] = (20 * i, 40, 200)
        frames.append(frame)
    return frames


def test_mp4_round_trip_keeps_order_and_colours_and_is_deterministic(tmp_path):
    from harness.evals.video import read_frames, video_info, write_mp4

    write_mp4(tmp_path / "a.mp4", _scenes(12), fps=4.0)
    write_mp4(tmp_path / "b.mp4", _scenes(12), fps=4.0)
    assert (tmp_path / "a.mp4").read_bytes() == (tmp_path / "b.mp4").read_bytes()
    assert video_info(tmp_path / "a.mp4") == (12, 4.0)
    frames = read_frames(tmp_path / "a.mp4", Sampling("uniform", 4))
    assert frames.indices == [0, 3, 7, 11] and frames.total == 12
    reds = [np.asarray(im)[42, 42, 0] for im in frames.images]
    # mp4v is lossy: flat colours come back within a few levels (measured <= 4), far less than the 20-level steps
    assert all(abs(int(r) - 20 * i) <= 8 for r, i in zip(reds, frames.indices)), reds
    again = read_frames(tmp_path / "a.mp4", Sampling("uniform", 4))
    assert again.digest() == frames.digest()
    assert read_frames(tmp_path / "a.mp4", Sampling("uniform", 5)).digest() != frames.digest()


def test_max_pixels_scales_frames_down_keeping_the_aspect(tmp_path):
    from harness.evals.video import read_frames, write_mp4

    write_mp4(tmp_path / "wide.mp4", [np.zeros((40, 80, 3), np.uint8)] * 3, fps=2.0)
    assert read_frames(tmp_path / "wide.mp4", Sampling("uniform", 2)).images[0].size == (80, 40)
    assert read_frames(tmp_path / "wide.mp4", Sampling("uniform", 2, max_pixels=800)).images[0].size == (40, 20)


def test_unreadable_video_is_an_error_naming_the_file(tmp_path):
    from harness.evals.video import read_frames

    (tmp_path / "broken.mp4").write_bytes(b"not a video")
    with pytest.raises(ConfigError, match=r"broken\.mp4: not a readable video"):
        read_frames(tmp_path / "broken.mp4", Sampling())


@pytest.mark.parametrize(
    ("reply", "expected"),
    [
        ("B", "B"),
        ("The best answer is: C.", "C"),
        ("(D) green", "D"),
        ("Answer: A", "A"),
        ("", ""),
        ("the shape is probably one of the colours shown in the frames of this video", ""),
        ("Because", "B"),
    ],  # lmms-eval's first capital A-D anywhere, kept as it is: "Because" reads as B
)
def test_answer_extraction_is_lmms_evals(reply, expected):
    assert extract_answer(reply) == expected


def test_prompt_is_lmms_evals_with_and_without_subtitles():
    assert question_text(DOC) == (
        "Select the best answer to the following multiple-choice question based on the video. Respond with only "
        "the letter (A, B, C, or D) of the correct option.\nWhat colour is the shape at the end of the video?\n"
        "A. red\nB. blue\nThe best answer is:"
    )
    with_subs = question_text(DOC, ["hello", "there"])
    assert with_subs.startswith(
        "This video's subtitles are listed below: \nhello\nthere\nSelect the best answer "
        "to the following multiple-choice question based on the video and the subtitles."
    )
    assert "No subtitles available\n" in question_text(DOC, [])


def test_subtitles_of_the_sampled_frames():
    srt = (
        '1\n00:00:00,000 --> 00:00:01,500\n<font color="white" size=".72c">first line</font>\n\n'
        "2\n00:00:02,000 --> 00:00:03,000\nsecond line\n\n3\n00:00:05,000 --> 00:00:06,000\nnever shown\n"
    )
    cues = parse_srt(srt)
    assert cues == [(0.0, 1.5, "first line"), (2.0, 3.0, "second line"), (5.0, 6.0, "never shown")]
    assert subtitles_at(cues, [0, 10, 16], fps=4.0) == ["first line", "second line"]


def test_missing_videos_are_one_error_naming_the_files(tmp_path):
    (tmp_path / "v1.mp4").write_bytes(b"")
    docs = [{"videoID": "v1"}, {"videoID": "v2"}, {"videoID": "v3"}, {"videoID": "v2"}]
    with pytest.raises(ConfigError) as err:
        check_videos(docs, tmp_path)
    assert str(err.value) == (
        f"video_mme: 2 video file(s) missing: {tmp_path}/v2.mp4, {tmp_path}/v3.mp4 (video_mme.video_dir: {tmp_path})"
    )
    assert check_videos(docs[:1], tmp_path) == {"v1": tmp_path / "v1.mp4"}


def test_clustered_standard_error():
    scores = [1, 0, 1, 1, 0, 0]
    iid = np.std(scores, ddof=1) / np.sqrt(len(scores))
    assert clustered_standard_error(scores, range(6)) == pytest.approx(iid, rel=1e-12)
    # three questions per video answered alike: the SE grows to that of 2 independent units, not 6
    alike = [1, 1, 1, 0, 0, 0]
    assert clustered_standard_error(alike, [0, 0, 0, 1, 1, 1]) == pytest.approx(0.5, rel=1e-12)
    assert clustered_standard_error(alike, range(6)) == pytest.approx(np.std(alike, ddof=1) / np.sqrt(6), rel=1e-12)
    assert clustered_standard_error([1, 1, 0, 0], ["a", "a", "b", "b"]) == pytest.approx(0.5, rel=1e-12)
    assert clustered_standard_error([1, 0], ["a", "a"]) == 0.0
    with pytest.raises(ValueError, match="3 scores but 2 cluster labels"):
        clustered_standard_error([1, 0, 1], ["a", "b"])
