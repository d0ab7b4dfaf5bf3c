"""Answer extraction and prompt building of the GSM8K eval, pinned on exact strings."""

import pytest

from harness.evals import gsm8k


@pytest.mark.parametrize(
    ("output", "strict", "flexible"),
    [
        (" Tom has 3 + 4 = 7 pens.\n#### 7", 7.0, 7.0),
        (" so she pays $1,234.50.\n#### 1,234.50", 1234.5, 1234.5),
        (" It drops to -12 degrees.\n#### -12", -12.0, -12.0),
        (" The answer is 42.", None, 42.0),
        (" I do not know.", None, None),
        ("#### 5\nQuestion: 9", 5.0, 9.0),
    ],
)
def test_strict_and_flexible_extraction(output, strict, flexible):
    assert gsm8k.extract_strict(output) == strict
    assert gsm8k.extract_flexible(output) == flexible


def test_trailing_period_is_not_part_of_the_number():
    assert gsm8k.extract_flexible("The total is 18.") == 18.0


def test_reference_answer_reads_the_label_after_the_marker():
    assert gsm8k.reference_answer("Natalia sold 48/2 = 24 clips.\n#### 72") == 72.0


def test_reference_answer_without_marker_names_the_problem():
    with pytest.raises(ValueError, match="has no '#### n' label"):
        gsm8k.reference_answer("no label here")


def test_few_shot_prompt_matches_sglang_format():
    shots = [{"question": "Q1?", "answer": "A1\n#### 1"}, {"question": "Q2?", "answer": "A2\n#### 2"}]
    prompt = gsm8k.build_few_shot_prefix(shots) + gsm8k.QUESTION_TEMPLATE.format(question="Q3?")
    assert prompt == "Question: Q1?\nAnswer: A1\n#### 1\n\nQuestion: Q2?\nAnswer: A2\n#### 2\n\nQuestion: Q3?\nAnswer:"


def test_chat_messages_put_shots_as_earlier_turns():
    messages = gsm8k.build_chat_messages([{"question": "Q1?", "answer": "A1"}], "Q2?")
    assert [m["role"] for m in messages] == ["user", "assistant", "user"]
    assert messages[-1]["content"] == "Q2?"


def test_score_output_marks_wrong_and_invalid_answers():
    assert gsm8k.score_output(" 3 + 4 = 8\n#### 8", 7.0)["correct"] is False
    invalid = gsm8k.score_output(" no idea", 7.0)
    assert invalid["correct"] is False and invalid["extracted_flexible"] is None
