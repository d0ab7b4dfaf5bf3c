"""The multimodal evals (mmmu, mmmu_parity, mm_prefix_cache) against the HF engine serving a tiny random Qwen3-VL.

The random model answers nothing right on purpose; what is tested here is the machinery: MMMU data in the hub's
schema read from a local parquet tree, every image sent where its tag stands, answers parsed and scored, the
breakdown per domain and subject, per-sample records; parity of two engines question by question; the
multimodal cache suite passing on a correct cache (page 1 and 16) and catching a cache keyed by text alone
(`HARNESS_HF_FAULT=text-keyed-mm-cache`, an injected engine bug). Accuracy-sensitive faults (a dropped or
reordered image) are tested on the trained canary VLM in tests/test_mm_canary.py.
Tolerances: fp32 on CPU, the hit and the cold run agree to summation order, so kl_div < 1e-8 and |hit_shift|
< 1e-5 nats/token (the text cache tests' bound).
"""

from __future__ import annotations

import asyncio
from pathlib import Path

import hf_engine_support as support
import pytest
from hf_vlm_support import build_tiny_qwen3_vl, random_image

from canary import tiny_vl
from harness.client.http import Client
from harness.errors import ConfigError
from harness.evals.mm_prefix_cache import MMPrefixCache
from harness.evals.mmmu import MMMU, load_questions
from harness.evals.mmmu_parity import MMMUParity
from harness.evals.types import EvalContext

servers = support.servers
datasets = pytest.importorskip("datasets")

SUBJECTS = ("Art", "Math")


def write_mmmu(root, subjects=SUBJECTS, per_subject: int = 6):
    """A small MMMU validation set in the hub's schema (noise images): multiple choice with one or two images,
    and open."""
    return tiny_vl.write_mmmu(root, subjects, per_subject, image=random_image)


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    return build_tiny_qwen3_vl(tmp_path_factory.mktemp("tiny_qwen3_vl"))


@pytest.fixture(scope="module")
def mmmu_dir(tmp_path_factory):
    return write_mmmu(tmp_path_factory.mktemp("mmmu"))


def run_eval(evaluation, server, model_dir, options, reference=None, samples=None):
    async def main():
        async with Client(server.base_url) as client:
            ref_client = Client(reference.base_url) if reference else None
            try:
                ctx = EvalContext(
                    client,
                    "tiny-vl/test",
                    server.info,
                    options,
                    str(model_dir),
                    str(model_dir),
                    on_sample=(samples.append if samples is not None else lambda r: None),
                    reference=(lambda: ref_client) if ref_client else None,
                )
                return await evaluation(ctx)
            finally:
                if ref_client:
                    await ref_client.close()

    return asyncio.run(main())


def test_load_questions_reads_the_hub_schema_from_a_local_parquet_tree(mmmu_dir):
    docs = load_questions(str(mmmu_dir), "validation", list(SUBJECTS))
    assert [d["id"] for d in docs[:2]] == ["validation_Art_1", "validation_Art_2"]
    assert len(docs) == 12 and docs[0]["image_1"].size == (64, 64) and docs[0]["image_2"] is None


def test_load_questions_names_a_missing_subject_and_a_misspelt_one(mmmu_dir):
    with pytest.raises(
        ConfigError, match=r"no validation-\*\.parquet for subject\(s\) Physics \(subjects present: Art, Math\)"
    ):
        load_questions(str(mmmu_dir), "validation", ["Art", "Physics"])
    with pytest.raises(ConfigError, match="did you mean 'Math'"):
        load_questions(str(mmmu_dir), "validation", ["Maths"])


def test_mmmu_asks_every_question_with_its_images_and_reports_the_breakdown(servers, model_dir, mmmu_dir):
    samples = []
    result = run_eval(
        MMMU(),
        servers("--page-size", "1"),
        model_dir,
        {"source": str(mmmu_dir), "subjects": list(SUBJECTS)},
        samples=samples,
    )
    assert result.n == 12 and len(samples) == 12
    assert set(result.details["domains"]) == {"Art and Design", "Science"}
    assert result.details["subjects"]["Math"]["n"] == 6
    assert result.details["multi_image_questions"] == 4 and result.details["open_questions"] == 2
    assert {s["images"] for s in samples} == {1, 2}
    accuracy = sum(s["correct"] for s in samples) / 12
    assert result.metrics["accuracy"] == pytest.approx(accuracy)
    assert result.metrics["unparsed_rate"] == pytest.approx(sum(s["unparsed"] for s in samples) / 12)


@pytest.mark.parametrize("page", ["1", "16"])
def test_mm_prefix_cache_passes_on_a_cache_keyed_by_image_content(servers, model_dir, mmmu_dir, page):
    result = run_eval(
        MMPrefixCache(),
        servers("--page-size", page),
        model_dir,
        {"source": str(mmmu_dir), "subjects": list(SUBJECTS), "num_samples": 8},
    )
    assert result.metrics["false_hits"] == 0, result.notes
    assert result.metrics["hit_rate"] == 1.0
    assert result.metrics["kl_div"] < 1e-8
    assert abs(result.metrics["hit_shift"]) < 1e-5
    assert result.details["cache_report"] == "native /generate meta_info.cached_tokens"


def test_mm_prefix_cache_catches_a_cache_keyed_by_text_alone(servers, model_dir, mmmu_dir):
    server = servers("--page-size", "1", env={"HARNESS_HF_FAULT": "text-keyed-mm-cache"})
    result = run_eval(
        MMPrefixCache(), server, model_dir, {"source": str(mmmu_dir), "subjects": list(SUBJECTS), "num_samples": 8}
    )
    assert result.metrics["false_hits"] == 8  # every "same text, different image" request hits past the image
    assert result.notes[0] == "mm_prefix_cache: 8 false cache hit(s); the first:"
    assert "different image: cached_tokens" in result.notes[1]


def test_mmmu_parity_of_two_engines_on_the_same_weights(servers, model_dir, mmmu_dir):
    samples = []
    result = run_eval(
        MMMUParity(),
        servers("--page-size", "1"),
        model_dir,
        {"source": str(mmmu_dir), "subjects": list(SUBJECTS)},
        reference=servers("--page-size", "16"),
        samples=samples,
    )
    assert result.metrics["answer_agreement"] == 1.0
    assert result.metrics["accuracy_gap"] == 0.0 and result.units["accuracy_gap"] == [0.0] * 12
    assert result.notes == ["mmmu_parity[tiny-vl/test]: 0 of 12 answers differ"]
    assert all(s["agree"] for s in samples)


@pytest.mark.slow
def test_the_committed_tiny_vlm_rebuilds_byte_identical(tmp_path):
    import filecmp
    import subprocess
    import sys

    committed = Path(__file__).resolve().parents[1] / "assets" / "qwen3-vl-tiny"
    subprocess.run(
        [sys.executable, "-m", "canary.tiny_vl", "--out", str(tmp_path), "--seed", "0"],
        check=True,
        cwd=committed.parents[1],
        capture_output=True,
    )
    files = sorted(str(p.relative_to(committed)) for p in committed.rglob("*") if p.is_file())
    match, mismatch, errors = filecmp.cmpfiles(committed, tmp_path, files, shallow=False)
    assert (mismatch, errors) == ([], []) and len(match) == len(files) == 39
