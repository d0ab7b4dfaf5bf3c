"""MMMU's prompt construction, answer parsers and scoring (pure functions; harness/evals/mmmu*.py)."""

from __future__ import annotations

import pytest

from harness.errors import ConfigError
from harness.evals.mmmu import construct_prompt, content_parts, score, subject_of
from harness.evals.mmmu_answers import gold_answers, normalize, open_correct, parse_multi_choice, parse_open
from harness.verdict.statistics import mcnemar_two_sided, sign_flip_p_value

OPTIONS = ["red", "green", "blue", "yellow"]
MC = {
    "id": "validation_Art_1",
    "question": "Which shape in <image 1> matches <image 2>?",
    "options": "['circle', 'square']",
    "question_type": "multiple-choice",
    "answer": "B",
}


def test_prompt_is_lmms_evals_default():
    assert construct_prompt(MC) == (
        "Which shape in <image 1> matches <image 2>?\nA. circle\nB. square\n\n"
        "Answer with the option's letter from the given choices directly."
    )
    open_doc = {**MC, "question_type": "open", "options": "[]"}
    assert construct_prompt(open_doc).endswith("?\n\nAnswer the question using a single word or phrase.")


def test_images_interleave_at_their_tags_or_come_first():
    assert [k for k, _ in content_parts(MC)] == ["text", "image", "text", "image", "text"]
    assert [v for k, v in content_parts(MC) if k == "image"] == ["image_1", "image_2"]
    assert content_parts({**MC, "question": "<image 2> then <image 1>"}, "images_first")[:2] == [
        ("image", "image_1"),
        ("image", "image_2"),
    ]
    with pytest.raises(ValueError, match="choices: interleaved, images_first"):
        content_parts(MC, "images_last")


@pytest.mark.parametrize(
    "response, expected",
    [
        ("B", "B"),
        ("(C)", "C"),
        ("The answer is D.", "D"),
        ("A. red", "A"),
        ("b", None),
        ("", None),
        ("I think the colour of it is green, clearly", "B"),
        ("(A) no, (C)", "C"),
        ("maybe", None),
    ],
)
def test_multiple_choice_parser_never_guesses(response, expected):
    assert parse_multi_choice(response, OPTIONS) == expected


def test_open_parser_and_scoring():
    assert parse_open("The answer is 3.") == [3.0]
    assert 42.0 in parse_open("so x = 42")
    assert normalize("1,234.567") == [1234.57] and normalize("A") == [" a", "a "]
    assert open_correct("red", parse_open("It is red"))
    assert not open_correct("3", parse_open("It is 4"))
    assert gold_answers("['24/7', '3.429']") == ["24/7", "3.429"] and open_correct("['4', 'four']", ["four"])


def test_score_counts_an_unreadable_answer_as_wrong_and_unparsed():
    assert score(MC, "B") == {"parsed": "B", "unparsed": False, "correct": True}
    assert score(MC, "no idea") == {"parsed": None, "unparsed": True, "correct": False}
    assert score({**MC, "question_type": "open", "answer": "red"}, "  ") == {
        "parsed": None,
        "unparsed": True,
        "correct": False,
    }


def test_subject_from_the_id():
    assert subject_of({"id": "validation_Art_Theory_12"}) == "Art_Theory"
    with pytest.raises(ConfigError, match="does not read <split>_<Subject>_<n>"):
        subject_of({"id": "Art12"})


def test_paired_units_get_the_exact_two_sided_mcnemar_p_value():
    assert mcnemar_two_sided(0, 0) == 1.0
    assert mcnemar_two_sided(5, 0) == pytest.approx(2 / 32)
    assert mcnemar_two_sided(10, 3) == pytest.approx(2 * sum(__import__("math").comb(13, k) for k in range(4)) / 2**13)
    units = [1.0] * 10 + [-1.0] * 3 + [0.0] * 900  # 913 units: exact, no Monte Carlo
    assert sign_flip_p_value(units) == mcnemar_two_sided(10, 3)
