"""The canary assets: synthetic GSM8K data, the committed model's integrity and skill, and reproducibility."""

from __future__ import annotations

import json
import operator
import re
from pathlib import Path

import pytest

from harness.evals.synthetic_gsm8k import (
    GSM8K_TEST_SIZE,
    KINDS,
    extract_answer,
    make_test_split,
    make_train_split,
    read_jsonl,
    train_stream,
)
from harness.report.versions import (
    describe,
    installed_versions,
    recorded_versions,
    version_differences,
    warn_unless_recorded,
)

ASSETS = Path(__file__).resolve().parent.parent / "assets" / "canary"
MANIFEST = ASSETS / "manifest.json"


@pytest.fixture(scope="module")
def splits():
    test = make_test_split(0)
    return test, make_train_split(0, test)


def _numbers(text: str) -> list[int]:
    return [int(n) for n in re.findall(r"\d+", text)]


def _calc(expression: str) -> int:
    left, op, right = expression.split()
    return {"+": operator.add, "-": operator.sub, "*": operator.mul}[op](int(left), int(right))


def test_records_have_gsm8k_schema_and_correct_answers(splits):
    test, train = splits
    for p in test[:300] + train[:300]:
        record = p.to_gsm8k()
        assert set(record) == {"question", "answer"}
        reasoning, final = record["answer"].rsplit("\n", 1)
        assert final == f"#### {p.result}" and extract_answer(record["answer"]) == p.result
        assert "\n" not in reasoning and "\n" not in record["question"]
        # The reasoning's arithmetic is really right, recomputed here from its own text.
        lhs1, x, lhs2, n = re.fullmatch(r"(\d+ [-+*] \d+) = (\d+), and (\d+ [-+] \d+) = (\d+)\.", reasoning).groups()
        assert _calc(lhs1) == int(x) and _calc(lhs2) == int(n) == p.result and int(x) >= 0 and p.result >= 0
        # The question states the operands the reasoning uses.
        assert {p.a, p.b, p.c} <= set(_numbers(record["question"]))


def test_splits_are_deterministic_and_sized(splits):
    test, train = splits
    assert len(test) == GSM8K_TEST_SIZE >= 1000
    assert [p.to_gsm8k() for p in make_test_split(0)[:50]] == [p.to_gsm8k() for p in test[:50]]
    assert make_test_split(1)[:50] != test[:50]
    assert {p.kind for p in test} == set(KINDS)
    assert len({p.key for p in test}) == len(test) and len({p.key for p in train}) == len(train)


def test_test_tuples_never_reach_training(splits):
    test, train = splits
    held_out = {p.key for p in test}
    assert not held_out & {p.key for p in train}
    stream = train_stream(0, test)
    assert not held_out & {next(stream).key for _ in range(50_000)}


def test_training_stream_without_holdout_would_hit_test_tuples(splits):
    """Guards the guard: the generator does revisit test tuples, so the exclusion is doing real work."""
    test, _ = splits
    stream = train_stream(0, held_out=())
    assert {p.key for p in test} & {next(stream).key for _ in range(50_000)}


def test_committed_data_matches_generator(splits):
    test, train = splits
    assert read_jsonl(ASSETS / "data" / "test.jsonl") == [p.to_gsm8k() for p in test]
    assert read_jsonl(ASSETS / "data" / "train.jsonl") == [p.to_gsm8k() for p in train]


def test_manifest_hashes_match_committed_files():
    from canary.build import hash_tree

    manifest = json.loads(MANIFEST.read_text())
    assert hash_tree(ASSETS) == manifest["files"]
    assert {"model/model.safetensors", "model/config.json", "model/tokenizer.json", "data/test.jsonl"} <= set(
        manifest["files"]
    )


def test_manifest_records_the_required_accuracy():
    manifest = json.loads(MANIFEST.read_text())
    for mode in ("zero_shot", "five_shot"):
        result = manifest["accuracy"][mode]
        assert result["n"] >= 1000 and result["accuracy"] >= 0.98
        assert result["correct"] / result["n"] == pytest.approx(result["accuracy"], abs=1e-4)
    assert "chat" in manifest["accuracy"]
    assert {"torch", "transformers", "tokenizers"} <= set(manifest["versions"])


@pytest.fixture(scope="module")
def canary():
    pytest.importorskip("torch")
    from transformers import AutoModelForCausalLM, AutoTokenizer

    model_dir = ASSETS / "model"
    return AutoModelForCausalLM.from_pretrained(model_dir).eval(), AutoTokenizer.from_pretrained(model_dir)


def test_committed_model_shape_suits_engines(canary):
    model, _ = canary
    cfg = model.config
    assert cfg.model_type == "qwen2"
    assert cfg.head_dim >= 32 and cfg.hidden_size == cfg.num_attention_heads * cfg.head_dim
    assert cfg.num_attention_heads % 2 == 0 and cfg.num_key_value_heads % 2 == 0


def test_autotokenizer_on_model_dir_matches_training_tokenizer(canary):
    """The model dir's config says qwen2, so transformers 5 loads Qwen2Tokenizer; ids must not change."""
    from transformers import PreTrainedTokenizerFast

    _, tokenizer = canary
    original = PreTrainedTokenizerFast(tokenizer_file=str(ASSETS / "model" / "tokenizer.json"))
    record = read_jsonl(ASSETS / "data" / "test.jsonl")[0]
    for text in (record["question"], " " + record["answer"], "Question: é ünïcode 12345\nAnswer:"):
        assert tokenizer(text, add_special_tokens=False)["input_ids"] == original(text)["input_ids"]
    assert tokenizer.eos_token == "<|im_end|>" and tokenizer.eos_token_id == 2
    chat = tokenizer.apply_chat_template([{"role": "user", "content": "q"}], tokenize=False, add_generation_prompt=True)
    assert chat == "<|im_start|>user\nq<|im_end|>\n<|im_start|>assistant\n"


@pytest.mark.parametrize("mode", ["zero_shot", "five_shot", "chat"])
def test_committed_model_answers_held_out_questions(canary, mode):
    from canary.evaluate import evaluate

    warn_unless_recorded(installed_versions(), MANIFEST)
    model, tokenizer = canary
    records = read_jsonl(ASSETS / "data" / "test.jsonl")[:16]
    shots = read_jsonl(ASSETS / "data" / "train.jsonl")[:5]
    result = evaluate(model, tokenizer, records, modes=(mode,), shots=shots, batch_size=16)[mode]
    assert result.correct >= 15, f"{mode}: {result.correct}/{result.n}"


@pytest.mark.slow
def test_rebuild_is_byte_identical(tmp_path):
    """Same seed, same library versions and CPU kind -> the same bytes as the committed manifest."""
    from canary.build import BuildOptions, build, library_versions

    manifest = json.loads(MANIFEST.read_text())
    here = library_versions()  # the canary libraries plus python, CPU capability and machine
    warn_unless_recorded(here, MANIFEST)
    differ = version_differences(manifest["versions"], here)
    if differ:
        pytest.skip(f"float results depend on library versions and CPU kind; these differ from the manifest: {differ}")
    rebuilt = build(BuildOptions(out=tmp_path, seed=manifest["seed"], evaluate=False))
    assert rebuilt["files"] == manifest["files"]


def test_version_differences_name_each_mismatch_and_absence():
    recorded = {"torch": "2.13.0+cpu", "transformers": "5.23.0", "tokenizers": "0.23.3", "python": "3.11.7"}
    same = {"torch": "2.13.0+cpu", "transformers": "5.23.0"}
    assert version_differences(recorded, same) == {}
    assert describe(recorded, same) == "built with torch 2.13.0+cpu, transformers 5.23.0; installed the same"
    # Only the names asked about count: the manifest's python entry is not compared here.
    newer = {"torch": "2.13.0", "transformers": "5.24.0", "tokenizers": None, "safetensors": "0.8.0"}
    assert version_differences(recorded, newer) == {
        "torch": ("2.13.0+cpu", "2.13.0"),  # a local label is a different build, so it differs
        "transformers": ("5.23.0", "5.24.0"),
        "tokenizers": ("0.23.3", None),
        "safetensors": (None, "0.8.0"),
    }
    assert describe(recorded, newer) == (
        "built with torch 2.13.0+cpu, installed 2.13.0; transformers 5.23.0, installed 5.24.0; "
        "safetensors (not recorded), installed 0.8.0 (exact canary numbers and rebuild hashes may differ); "
        "not installed: tokenizers"
    )


def test_committed_manifest_records_every_canary_library():
    recorded = recorded_versions(MANIFEST)
    assert set(installed_versions()) <= set(recorded)
    assert recorded["transformers"] and recorded["torch"]


def test_canary_versions_warning_reaches_the_summary(pytester):
    """The warning the accuracy tests raise on other library versions shows in pytest's warnings summary."""
    built = recorded_versions(MANIFEST)["transformers"]
    pytester.makepyfile(
        f"""
        from pathlib import Path
        from harness.report.versions import warn_unless_recorded

        MANIFEST = Path({str(MANIFEST)!r})

        def test_on_other_versions():
            warn_unless_recorded({{"transformers": "0.0.1"}}, MANIFEST)

        def test_on_the_recorded_ones():
            warn_unless_recorded({{"transformers": {built!r}}}, MANIFEST)
        """
    )
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider")
    result.assert_outcomes(passed=2, warnings=1)
    result.stdout.fnmatch_lines([f"*CanaryVersionWarning: canary: built with transformers {built}, installed 0.0.1*"])


def test_qwen3_next_builder_keeps_the_field_sglang_reads(tmp_path):
    """SGLang 0.5.17 computes the layer types from `full_attention_interval`, which transformers 5.x drops on
    save; without it the server died at load with AttributeError (H100 run, 2026-11-22)."""
    from canary.tiny import build_tiny_model

    out = build_tiny_model(tmp_path / "q3n", arch="qwen3_next", layers=4)
    for config_path in (out / "config.json", ASSETS.parent / "qwen3-next-tiny" / "config.json"):
        config = json.loads(config_path.read_text())
        interval = config["full_attention_interval"]
        derived = ["full_attention" if (i + 1) % interval == 0 else "linear_attention" for i in range(4)]
        assert config["layer_types"] == derived, config_path


def test_qwen3_next_asset_carries_its_own_lm_head():
    """SGLang's Qwen3-Next loads lm_head.weight and ignores tie_word_embeddings (see canary.tiny)."""
    from safetensors import safe_open

    asset = ASSETS.parent / "qwen3-next-tiny"
    assert json.loads((asset / "config.json").read_text())["tie_word_embeddings"] is False
    with safe_open(str(asset / "model.safetensors"), "pt") as weights:
        assert "lm_head.weight" in set(weights.keys())
