"""The EAGLE3 draft's forward pass in plain torch, as SGLang 0.5.17's `LlamaForCausalLMEagle3` computes it, with the
training-time test (several draft steps unrolled) used to train it (canary.eagle3).

One layer: residual = hidden; x = [input_layernorm(embed(token)), hidden_norm(hidden)]; attention (q/k/v from 2H,
rotary, neox style); residual += o_proj; h = mlp(post_attention_layernorm(residual)); residual += h; logits =
lm_head(norm(residual)); the pre-norm residual is the hidden state of the next draft step (fc is applied only to
the target's 3H features). The saved names are those of the public EAGLE3 checkpoints (`midlayer.*`).
"""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn


class RMSNorm(nn.Module):
    def __init__(self, size: int, eps: float):
        super().__init__()
        self.weight, self.eps = nn.Parameter(torch.ones(size)), eps

    def forward(self, x):
        return x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + self.eps) * self.weight


def rotate(x, positions, theta: float):
    """Neox-style rotary embedding of x (B, heads, T, d) at integer `positions` (B, T)."""
    d = x.shape[-1]
    inv = 1.0 / theta ** (torch.arange(0, d, 2, dtype=torch.float32) / d)
    freqs = positions[:, None, :, None].float() * inv
    cos, sin = torch.cat([freqs, freqs], -1).cos(), torch.cat([freqs, freqs], -1).sin()
    half = torch.cat([-x[..., d // 2 :], x[..., : d // 2]], -1)
    return x * cos + half * sin


class DraftModel(nn.Module):
    def __init__(self, config: dict, embed: torch.Tensor):
        super().__init__()
        h, eps = config["hidden_size"], config["rms_norm_eps"]
        self.heads, self.kv_heads, self.head_dim = (
            config["num_attention_heads"],
            config["num_key_value_heads"],
            config["head_dim"],
        )
        self.theta = config["rope_theta"]
        self.embed_tokens = nn.Embedding.from_pretrained(embed, freeze=True)
        self.fc = nn.Linear(3 * config["target_hidden_size"], h, bias=False)
        self.hidden_norm, self.input_layernorm = RMSNorm(h, eps), RMSNorm(h, eps)
        self.post_attention_layernorm, self.norm = RMSNorm(h, eps), RMSNorm(h, eps)
        self.q_proj = nn.Linear(2 * h, self.heads * self.head_dim, bias=False)
        self.k_proj = nn.Linear(2 * h, self.kv_heads * self.head_dim, bias=False)
        self.v_proj = nn.Linear(2 * h, self.kv_heads * self.head_dim, bias=False)
        self.o_proj = nn.Linear(self.heads * self.head_dim, h, bias=False)
        inter = config["intermediate_size"]
        self.gate_proj, self.up_proj = nn.Linear(h, inter, bias=False), nn.Linear(h, inter, bias=False)
        self.down_proj = nn.Linear(inter, h, bias=False)
        self.lm_head = nn.Linear(h, config["draft_vocab_size"], bias=False)

    def qkv(self, tokens, hidden, positions):
        b, t = tokens.shape
        x = torch.cat([self.input_layernorm(self.embed_tokens(tokens)), self.hidden_norm(hidden)], -1)

        def split(proj, heads):
            return proj(x).view(b, t, heads, self.head_dim).transpose(1, 2)

        q = rotate(split(self.q_proj, self.heads), positions, self.theta)
        k = rotate(split(self.k_proj, self.kv_heads), positions, self.theta)
        v = split(self.v_proj, self.kv_heads)
        repeat = self.heads // self.kv_heads
        return q, k.repeat_interleave(repeat, 1), v.repeat_interleave(repeat, 1)

    def finish(self, attn, residual):
        b, _, t, _ = attn.shape
        residual = residual + self.o_proj(attn.transpose(1, 2).reshape(b, t, -1))
        h = self.post_attention_layernorm(residual)
        residual = residual + self.down_proj(nn.functional.silu(self.gate_proj(h)) * self.up_proj(h))
        return self.lm_head(self.norm(residual)), residual

    def unrolled(self, tokens, features, steps: int):
        """Draft logits for `steps` draft steps at every row t of a batch (B, T): step k reads token t+k and the
        previous step's hidden state at row t, attending to step 1's keys at rows <= t and to its own chain."""
        b, t = tokens.shape
        rows = t - 1
        base = torch.arange(rows).expand(b, rows)
        scale = self.head_dim**-0.5
        causal = torch.ones(rows, rows, dtype=torch.bool).tril()
        hidden, keys, values, out = self.fc(features[:, :rows]), [], [], []
        for k in range(1, steps + 1):
            step_tokens = torch.zeros(b, rows, dtype=torch.long)
            step_tokens[:, : t - k] = tokens[:, k:]
            q, key, value = self.qkv(step_tokens, hidden, base + (k - 1))
            keys.append(key)
            values.append(value)
            first = (q @ keys[0].transpose(-1, -2)) * scale
            first = first.masked_fill(~causal, float("-inf"))
            own = [((q * kk).sum(-1, keepdim=True)) * scale for kk in keys[1:]]
            probs = torch.softmax(torch.cat([first, *own], -1), -1)
            attn = probs[..., :rows] @ values[0]
            for j, vv in enumerate(values[1:]):
                attn = attn + probs[..., rows + j : rows + j + 1] * vv
            logits, hidden = self.finish(attn, hidden)
            out.append(logits)
        return out

    @classmethod
    def load(cls, draft_dir: str | Path) -> tuple[DraftModel, torch.Tensor]:
        """The saved draft (bf16 weights as SGLang reads them, computed in fp32) and its hot token ids."""
        import json

        from safetensors.torch import load_file

        config = json.loads(Path(draft_dir, "config.json").read_text())
        tensors = {
            k: v.float() if v.is_floating_point() else v
            for k, v in load_file(str(Path(draft_dir, "model.safetensors"))).items()
        }
        model = cls(config, tensors["embed_tokens.weight"])
        state = {
            k.removeprefix("midlayer.").removeprefix("self_attn.").removeprefix("mlp."): v
            for k, v in tensors.items()
            if k not in ("d2t", "t2d")
        }
        model.load_state_dict(state)
        return model.eval(), tensors["d2t"] + torch.arange(tensors["d2t"].shape[0])

    def save(self, out: str | Path, hot: torch.Tensor) -> Path:
        from safetensors.torch import save_file

        names = {
            "fc": self.fc,
            "norm": self.norm,
            "lm_head": self.lm_head,
            "embed_tokens": self.embed_tokens,
            "midlayer.hidden_norm": self.hidden_norm,
            "midlayer.input_layernorm": self.input_layernorm,
            "midlayer.post_attention_layernorm": self.post_attention_layernorm,
            **{f"midlayer.self_attn.{p}": getattr(self, p) for p in ("q_proj", "k_proj", "v_proj", "o_proj")},
            **{f"midlayer.mlp.{p}": getattr(self, p) for p in ("gate_proj", "up_proj", "down_proj")},
        }
        tensors = {
            f"{name}.weight": module.weight.detach().to(torch.bfloat16).contiguous() for name, module in names.items()
        }
        vocab = self.embed_tokens.weight.shape[0]
        tensors["d2t"] = (hot - torch.arange(hot.shape[0])).to(torch.int64)
        t2d = torch.zeros(vocab, dtype=torch.bool)
        t2d[hot] = True
        tensors["t2d"] = t2d
        Path(out).mkdir(parents=True, exist_ok=True)
        save_file(tensors, str(Path(out, "model.safetensors")))
        return Path(out)


def step_loss(model: DraftModel, batch, to_draft: torch.Tensor, steps: int):
    """Weighted cross-entropy (0.8^(k-1) for step k) against the target's greedy tokens, and each step's accuracy."""
    width = max(len(ids) for ids, _, _ in batch)
    b = len(batch)
    tokens = torch.zeros(b, width, dtype=torch.long)
    labels = torch.full((b, width), -100, dtype=torch.long)
    features = torch.zeros(b, width, batch[0][1].shape[-1])
    for i, (ids, aux, greedy) in enumerate(batch):
        tokens[i, : len(ids)], features[i, : len(ids)], labels[i, : len(ids)] = ids, aux, to_draft[greedy]
    outputs = model.unrolled(tokens, features, steps)
    loss, accuracies = 0.0, []
    for k, logits in enumerate(outputs, start=1):
        target = torch.full((b, width - 1), -100, dtype=torch.long)
        target[:, : width - k] = labels[:, k:]  # row t, step k predicts what the target says after token t+k
        valid = target != -100
        loss = loss + 0.8 ** (k - 1) * nn.functional.cross_entropy(
            logits.reshape(-1, logits.shape[-1]), target.reshape(-1), ignore_index=-100
        )
        accuracies.append(float((logits.argmax(-1)[valid] == target[valid]).float().mean()) if valid.any() else 0.0)
    return loss, accuracies


def accept_lengths(
    model: DraftModel,
    hot: torch.Tensor,
    tokens: torch.Tensor,
    features: torch.Tensor,
    greedy: torch.Tensor,
    prompt_len: int,
    steps: int,
) -> tuple[int, int]:
    """(completion tokens, verify steps) of greedy EAGLE with topk 1 over one generated sequence, as SGLang runs it:
    the prefill gives the first token; each verify step starting at row r commits the drafts that match the
    target's greedy tokens in a row plus its bonus token, and the next chain starts after them."""
    with torch.no_grad():
        outputs = model.unrolled(tokens[None], features[None], steps)
    proposals = [hot[o[0].argmax(-1)] for o in outputs]  # step k at row r proposes the token after r + k
    total, row, verifies = len(tokens) - prompt_len, prompt_len - 1, 0
    while row + 1 < len(tokens) - 1:
        accepted = 0
        for k in range(1, steps + 1):
            if row + k >= len(greedy) - 1 or int(proposals[k - 1][row]) != int(greedy[row + k]):
                break
            accepted += 1
        verifies += 1
        row += accepted + 1
    return total, verifies
