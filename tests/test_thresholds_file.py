"""thresholds.yaml stays data: little comment or provenance prose, one-line provenance, references in model order.

The explanations live in docs/thresholds.md. Only PyYAML and the standard library: this test reads the file as
text and as YAML, never through the harness.
"""

from pathlib import Path

import pytest
import yaml

THRESHOLDS = Path(__file__).resolve().parents[1] / "thresholds.yaml"
MAX_COMMENTARY_SHARE = 0.15
MAX_PROVENANCE_CHARS = 160
MODELINE = "# yaml-language-server: $schema=thresholds.schema.json"


def commentary_bytes(text: str) -> tuple[int, int]:
    """(comment bytes, provenance bytes) of a YAML text.

    A comment starts at a `#` that is at the start of a line or after a blank and lies outside every scalar token
    (so a `#` inside a quoted or plain string is not one), and runs to the end of its line. A line holding only a
    comment counts whole (indentation and newline); a trailing comment counts from the blank before its `#`.
    A provenance counts the source bytes of its value token, quotes or block-scalar indicator included.
    """
    tokens = list(yaml.scan(text))
    scalars = [(t.start_mark.index, t.end_mark.index) for t in tokens if isinstance(t, yaml.ScalarToken)]
    comments = 0
    line_start = 0
    for line in text.splitlines(keepends=True):
        for col, char in enumerate(line):
            at = line_start + col
            starts_comment = char == "#" and (col == 0 or line[col - 1] in " \t")
            if starts_comment and not any(start <= at < end for start, end in scalars):
                own_line = not line[:col].strip()
                comments += len((line if own_line else line[col - 1 :].rstrip("\r\n")).encode())
                break
        line_start += len(line)
    provenance = sum(len(source.encode()) for source in provenance_sources(text, tokens))
    return comments, provenance


def provenance_sources(text: str, tokens: list | None = None) -> list[str]:
    """The source text of every `provenance:` value as written (an alias's target is written once)."""
    tokens = list(yaml.scan(text)) if tokens is None else tokens
    return [
        text[value.start_mark.index : value.end_mark.index]
        for key, colon, value in zip(tokens, tokens[1:], tokens[2:])
        if isinstance(key, yaml.ScalarToken)
        and key.value == "provenance"
        and isinstance(colon, yaml.ValueToken)
        and isinstance(value, yaml.ScalarToken)
    ]


def provenances(node, path="") -> list[tuple[str, object]]:
    """Every (key path, provenance value) in a loaded document, aliases expanded."""
    if isinstance(node, dict):
        found = [(f"{path}.provenance".lstrip("."), node["provenance"])] if "provenance" in node else []
        return found + [hit for key, value in node.items() for hit in provenances(value, f"{path}.{key}")]
    if isinstance(node, list):
        return [hit for i, value in enumerate(node) for hit in provenances(value, f"{path}[{i}]")]
    return []


@pytest.fixture(scope="module")
def text() -> str:
    return THRESHOLDS.read_text(encoding="utf-8")


@pytest.fixture(scope="module")
def doc(text):
    return yaml.safe_load(text)


def test_the_measure_counts_comments_and_provenance_but_no_hash_inside_a_string():
    sample = (
        "# header\n"  # 9 bytes, the whole line
        "a: 1  # note\n"  # 7 bytes: the blank before '#' to the end
        "b: 'not # a comment'\n"
        "c: plain#still text\n"
        'd: {provenance: "x # y"}\n'  # 7 bytes with the quotes
        "e:\n"
        "  provenance: >-\n"
        "    two\n"
        "    lines\n"
    )
    comments, provenance = commentary_bytes(sample)
    assert comments == 9 + 7
    assert provenance == len('"x # y"') + len(">-\n    two\n    lines\n")


def test_comments_and_provenance_are_at_most_15_percent_of_the_file(text):
    comments, provenance = commentary_bytes(text)
    total = len(text.encode())
    share = (comments + provenance) / total
    assert share <= MAX_COMMENTARY_SHARE, (
        f"thresholds.yaml: comments {comments} + provenance {provenance} bytes = {share:.1%} of {total} bytes "
        f"(at most {MAX_COMMENTARY_SHARE:.0%}); move explanations to docs/thresholds.md"
    )


def test_every_provenance_is_one_short_line(text, doc):
    found = provenances(doc)
    assert len(found) > 50
    bad = [
        (path, value)
        for path, value in found
        if not isinstance(value, str) or "\n" in value or not value.strip() or len(value) > MAX_PROVENANCE_CHARS
    ]
    assert not bad, f"provenance must be one line of at most {MAX_PROVENANCE_CHARS} characters: {bad}"
    # A folded block (`>-`) loads as one line but is written over several: one line in the file too.
    written_over_lines = [source for source in provenance_sources(text) if "\n" in source.rstrip("\n")]
    assert not written_over_lines, f"provenance written over several lines: {written_over_lines}"


def test_inside_every_suite_the_models_follow_the_order_of_models(doc):
    order = list(doc["models"])
    for suite, models in doc["references"].items():
        unknown = [m for m in models if m not in order]
        assert not unknown, f"references.{suite}: models not under models: {unknown}"
        listed = list(models)
        assert listed == sorted(listed, key=order.index), (
            f"references.{suite}: models {listed} are not in the order of models: {order}"
        )


def test_the_first_line_is_the_schema_modeline(text):
    assert text.splitlines()[0] == MODELINE, f"thresholds.yaml: the first line must be {MODELINE!r}"
    assert text.endswith("\n")
