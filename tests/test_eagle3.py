"""The canary's EAGLE3 draft (canary/eagle3.py): the committed checkpoint is what SGLang 0.5.17's
LlamaForCausalLMEagle3 loads, its manifest matches its files, and the draft really drafts.

Names: SGLang's loader maps `midlayer.*` to `layers.0.*`, folds q/k/v into `qkv_proj` and gate/up into
`gate_up_proj`, prefixes `model.`, reads `d2t` as hot ids (d2t + arange) and skips `t2d`; every tensor here must
land on one of the parameters that model has (listed from llama_eagle3.py for a one-layer draft). The draft's
greedy accept length, simulated on CPU over 24 of spec_accept_length's questions (SGLang measured 2.72 on all 200
on the H200 where this simulation predicted 2.72), must be above 2.3; the scrambled copy's must be near 1.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from canary.build import hash_tree

REPO = Path(__file__).resolve().parents[1]
DRAFT = REPO / "assets" / "canary-eagle3"
CANARY = REPO / "assets" / "canary"
# LlamaForCausalLMEagle3's parameters for num_hidden_layers=1, tie_word_embeddings=False, no fc_norm/input_norm
SGLANG_PARAMS = {
    "model.embed_tokens.weight",
    "model.fc.weight",
    "model.norm.weight",
    "lm_head.weight",
    "model.layers.0.self_attn.qkv_proj.weight",
    "model.layers.0.self_attn.o_proj.weight",
    "model.layers.0.mlp.gate_up_proj.weight",
    "model.layers.0.mlp.down_proj.weight",
    "model.layers.0.input_layernorm.weight",
    "model.layers.0.post_attention_layernorm.weight",
    "model.layers.0.hidden_norm.weight",
}
STACKED = (
    (".q_proj", ".qkv_proj"),
    (".k_proj", ".qkv_proj"),
    (".v_proj", ".qkv_proj"),
    (".gate_proj", ".gate_up_proj"),
    (".up_proj", ".gate_up_proj"),
)


def sglang_name(name: str) -> str | None:
    """Where llama_eagle3.py's load_weights puts a checkpoint tensor (None: read as a map, not a parameter)."""
    name = name.replace("midlayer", "layers.0")
    if "d2t" in name or "t2d" in name:
        return None
    for old, new in STACKED:
        if old in name:
            name = name.replace(old, new)
            break
    return name if name in SGLANG_PARAMS else f"model.{name}"


def test_the_committed_draft_is_in_the_format_sglang_loads():
    from safetensors.torch import load_file

    config = json.loads((DRAFT / "config.json").read_text())
    target = json.loads((CANARY / "model" / "config.json").read_text())
    assert config["architectures"] == ["LlamaForCausalLMEagle3"] and config["num_hidden_layers"] == 1
    assert (config["hidden_size"], config["vocab_size"]) == (target["hidden_size"], target["vocab_size"])
    tensors = load_file(str(DRAFT / "model.safetensors"))
    mapped = {sglang_name(n) for n in tensors} - {None}
    assert mapped == SGLANG_PARAMS
    h = config["hidden_size"]
    assert tensors["fc.weight"].shape == (h, 3 * h)  # three captured target layers
    assert tensors["midlayer.self_attn.q_proj.weight"].shape[1] == 2 * h  # [embedding, hidden]
    assert tensors["lm_head.weight"].shape == (config["draft_vocab_size"], h)
    hot = tensors["d2t"] + __import__("torch").arange(config["draft_vocab_size"])
    assert hot.tolist() == sorted(set(hot.tolist())) and int(hot.min()) >= 0 and int(hot.max()) < config["vocab_size"]
    assert int(tensors["t2d"].sum()) == config["draft_vocab_size"] and bool(tensors["t2d"][hot].all())


def test_the_manifest_hashes_the_committed_files():
    manifest = json.loads((DRAFT / "manifest.json").read_text())
    assert manifest["files"] == {k: v for k, v in hash_tree(DRAFT).items() if k != "manifest.json"}
    assert manifest["simulated_accept_length"]["accept_length"] > 2.5


@pytest.fixture(scope="module")
def scrambled(tmp_path_factory):
    from canary.eagle3 import scramble

    return scramble(str(DRAFT), str(tmp_path_factory.mktemp("scrambled")))


def test_the_trained_draft_is_accepted_and_the_scrambled_one_is_not(scrambled):
    from canary.eagle3 import simulated_accept_length

    trained = simulated_accept_length(str(DRAFT), str(CANARY / "model"), str(CANARY / "data"), n=24)
    broken = simulated_accept_length(str(scrambled), str(CANARY / "model"), str(CANARY / "data"), n=24)
    assert trained["completion_tokens"] == broken["completion_tokens"]  # the same greedy answers either way
    assert trained["accept_length"] > 2.3, trained
    assert broken["accept_length"] < 1.15, broken
