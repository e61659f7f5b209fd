"""From GPT-2 to Llama: one decoder whose config switches turn GPT-2's choices into Llama's, one at a time.

Every open model a learner meets today (Llama 2/3, Mistral, Qwen, SmolLM2) is a GPT-2 with four
changes, each a few lines here:
  1. RMSNorm instead of LayerNorm (Zhang & Sennrich 2019): scale by the root-mean-square, no mean,
     no bias. `norm="rms"`.
  2. Rotary position embeddings (RoPE, Su et al. 2021) instead of learned absolute positions: queries
     and keys are rotated by an angle proportional to their position, so q·k depends on the distance
     only. `pos="rope"`, with a configurable base `rope_theta` and Llama 3.1's frequency scaling
     (`rope_factor` > 1 stretches the long wavelengths for a longer context).
  3. A SwiGLU feed-forward (Shazeer 2020): down(silu(gate(x)) * up(x)), three matrices of width
     8C/3 in place of GPT-2's two of width 4C, so the parameter count stays the same. `mlp="swiglu"`.
  4. Grouped-query attention (Ainslie et al. 2023): `n_kv_head` < `n_head` key/value heads, each
     shared by n_head / n_kv_head query heads. The KV cache shrinks by that factor. `n_kv_head`.
Plus no biases (`bias=False`) and, optionally, untied input and output embeddings.

With `norm="layer", pos="learned", mlp="gelu", n_kv_head=n_head, bias=True` the model *is* GPT-2
(`llmcourse.gpt.GPT`; tested to float precision), so notebook 10 trains the same small model five
times, changing one switch each time. An optional mixture-of-experts feed-forward (`n_expert` > 0)
lives in `llmcourse.moe`.

Same calling convention as GPT: `logits, loss = model(idx, targets, kv_cache=None, last_only=False)`,
the same `KVCache` (holding `n_kv_head` heads), `fit`, `generate`, LoRA and SFT. Hugging Face
conversion and the GGUF loader are in `llmcourse.convert`.

`rms_norm`, `apply_rope` and `repeat_kv` are the references of notebook 10's exercises.
Left out: sliding-window attention (Mistral), QK-norm (Qwen3), RoPE on part of the head only, bias
terms in q/k/v alone (Qwen2), and any fused kernels.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn as nn
import torch.nn.functional as F

from llmcourse.config import Sized

NORMS, POSITIONS, MLPS = ("rms", "layer"), ("rope", "learned"), ("swiglu", "gelu")


@dataclass
class LlamaConfig(Sized):
    vocab_size: int = 65  # tokens (65 = characters of tiny Shakespeare; SmolLM2: 49152)
    block_size: int = 256  # longest context: learned positions / the RoPE table / the KV cache
    n_layer: int = 6  # transformer blocks
    n_head: int = 6  # query heads per block
    n_kv_head: int = 2  # key/value heads: n_head = multi-head, 1 = multi-query, between = grouped
    n_embd: int = 384  # width of the residual stream
    ffn_hidden: int = 0  # feed-forward width; 0 = as many parameters as GPT-2's 4C MLP
    norm: str = "rms"  # "rms" (Llama) or "layer" (GPT-2)
    norm_eps: float = 1e-5  # added under the square root of either norm
    pos: str = "rope"  # "rope" (Llama) or "learned" (GPT-2's position embedding table)
    rope_theta: float = 10000.0  # RoPE base: wavelengths run from 2π to about 2π·theta
    rope_factor: float = 1.0  # Llama 3.1 scaling: 1 = off; 8 stretches long wavelengths 8x
    rope_low_freq_factor: float = (
        1.0  # wavelengths above original_context / this are divided by factor
    )
    rope_high_freq_factor: float = 4.0  # wavelengths below original_context / this stay as they are
    rope_original_context: int = 8192  # the context length the model was first trained for
    mlp: str = "swiglu"  # "swiglu" (Llama) or "gelu" (GPT-2)
    bias: bool = False  # biases in every Linear and LayerNorm (GPT-2: True, Llama: False)
    tie_embeddings: bool = (
        True  # lm_head shares tok_emb's matrix (GPT-2, SmolLM2: yes; Llama 3 8B: no)
    )
    dropout: float = 0.0  # on embeddings, attention weights and residual branches
    n_expert: int = 0  # > 0: a mixture-of-experts feed-forward with this many experts
    n_expert_active: int = 2  # experts each token is routed to (top-k)
    moe_aux_weight: float = 0.01  # weight of the load-balancing loss added to the training loss
    # Full: a 6-layer model for character-level Shakespeare, like gpt.GPTConfig's "baby GPT".
    smoke_overrides = {"block_size": 64, "n_layer": 2, "n_head": 4, "n_kv_head": 2, "n_embd": 64}

    def __post_init__(self):
        for name, value, choices in (
            ("norm", self.norm, NORMS),
            ("pos", self.pos, POSITIONS),
            ("mlp", self.mlp, MLPS),
        ):
            if value not in choices:
                raise ValueError(f"LlamaConfig.{name}={value!r}: use one of {choices}")
        if self.n_embd % self.n_head:
            raise ValueError(f"n_embd={self.n_embd} must be divisible by n_head={self.n_head}")
        if not 1 <= self.n_kv_head <= self.n_head or self.n_head % self.n_kv_head:
            raise ValueError(
                f"n_kv_head={self.n_kv_head} must divide n_head={self.n_head} "
                "(each key/value head serves the same number of query heads)"
            )
        if self.pos == "rope" and self.head_dim % 2:
            raise ValueError(
                f"RoPE rotates pairs of numbers: head_dim={self.head_dim} must be even"
            )
        if self.n_expert and not 1 <= self.n_expert_active <= self.n_expert:
            raise ValueError(
                f"n_expert_active={self.n_expert_active} must be in 1..n_expert={self.n_expert}"
            )

    @property
    def head_dim(self) -> int:
        return self.n_embd // self.n_head

    @property
    def hidden(self) -> int:
        """The feed-forward width: `ffn_hidden`, or GPT-2's parameter budget of 8C² split over the
        MLP's matrices (4C for two matrices; 8C/3, rounded up to a multiple of 8, for SwiGLU's three)."""
        if self.ffn_hidden:
            return self.ffn_hidden
        return 4 * self.n_embd if self.mlp == "gelu" else 8 * math.ceil(8 * self.n_embd / 3 / 8)


def gpt2_like(cfg: LlamaConfig) -> LlamaConfig:
    """The same sizes with every switch set to GPT-2's choice: the first rung of notebook 10's ladder."""
    from dataclasses import replace

    return replace(
        cfg,
        norm="layer",
        pos="learned",
        mlp="gelu",
        n_kv_head=cfg.n_head,
        bias=True,
        tie_embeddings=True,
        ffn_hidden=0,
    )


# ------------------------------------------------------------------------------- 1. RMSNorm
class RMSNorm(nn.Module):
    """x / sqrt(mean(x²) + eps) * weight: LayerNorm without subtracting the mean and without a bias."""

    def __init__(self, dim: int, eps: float = 1e-5):
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # in float32 even under fp16/bf16: squares of activations overflow or lose precision
        x32 = x.float()
        x32 = x32 * torch.rsqrt(x32.pow(2).mean(dim=-1, keepdim=True) + self.eps)
        return self.weight * x32.to(x.dtype)


def _norm(cfg: LlamaConfig) -> nn.Module:
    if cfg.norm == "rms":
        return RMSNorm(cfg.n_embd, eps=cfg.norm_eps)
    return nn.LayerNorm(cfg.n_embd, eps=cfg.norm_eps, bias=cfg.bias)


# ------------------------------------------------------------------------------- 2. RoPE
def rope_frequencies(
    head_dim: int,
    theta: float = 10000.0,
    *,
    factor: float = 1.0,
    low_freq_factor: float = 1.0,
    high_freq_factor: float = 4.0,
    original_context: int = 8192,
) -> torch.Tensor:
    """The head_dim/2 rotation speeds (radians per position) of RoPE, with Llama 3.1's scaling.

    Pair i turns by theta^(-2i/head_dim) per position: pair 0 once per 2π positions, the last pair
    about once per 2π·theta. Llama 3.1 (factor 8, low 1, high 4, original 8192) leaves wavelengths
    under 8192/4 positions alone, slows those over 8192/1 by `factor`, and blends in between, so a
    model trained on 8k tokens reads 128k without its fast (local) pairs changing.

    >>> rope_frequencies(4, theta=100.0).tolist()
    [1.0, 0.10000000149011612]
    """
    inv_freq = 1.0 / theta ** (
        torch.arange(0, head_dim, 2, dtype=torch.float32) / head_dim
    )  # (hd/2,)
    if factor == 1.0:
        return inv_freq
    wavelen = 2 * math.pi / inv_freq
    low_wavelen, high_wavelen = (
        original_context / low_freq_factor,
        original_context / high_freq_factor,
    )
    # 0 at the long-wavelength edge (fully scaled), 1 at the short one (unchanged)
    smooth = (original_context / wavelen - low_freq_factor) / (high_freq_factor - low_freq_factor)
    blended = (1 - smooth) * inv_freq / factor + smooth * inv_freq
    scaled = torch.where(wavelen > low_wavelen, inv_freq / factor, blended)
    return torch.where(wavelen < high_wavelen, inv_freq, scaled)


def rope_cos_sin(inv_freq: torch.Tensor, n_pos: int) -> tuple[torch.Tensor, torch.Tensor]:
    """cos and sin of every position's angles, (n_pos, head_dim) each: pair i's angle at
    position p is p·inv_freq[i], written twice (for the first and the second half of the head)."""
    angles = torch.outer(torch.arange(n_pos, dtype=torch.float32), inv_freq)  # (n_pos, hd/2)
    angles = torch.cat([angles, angles], dim=-1)  # (n_pos, hd)
    return angles.cos(), angles.sin()


def apply_rope(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """apply_rope(x (B, n_head, T, head_dim), cos (T, head_dim), sin (T, head_dim)) -> x rotated: each
    pair (x[..., i], x[..., i + head_dim/2]) turned by its angle, as 2-D rotations [[cos, -sin], [sin, cos]]."""
    x1, x2 = x.chunk(2, dim=-1)  # (B, nh, T, hd/2) each: pair i is (x1[i], x2[i])
    rotated = torch.cat([-x2, x1], dim=-1)  # "rotate_half": (x1, x2) -> (-x2, x1)
    return (x * cos + rotated * sin).to(x.dtype)


# ------------------------------------------------------------------------------- 4. grouped-query attention
def repeat_kv(x: torch.Tensor, n_rep: int) -> torch.Tensor:
    """repeat_kv(x (B, n_kv_head, T, head_dim), n_rep) -> (B, n_kv_head * n_rep, T, head_dim): every
    key/value head repeated n_rep times in a row, so query head h reads kv head h // n_rep."""
    if n_rep == 1:
        return x
    B, n_kv, T, hd = x.shape
    return x[:, :, None].expand(B, n_kv, n_rep, T, hd).reshape(B, n_kv * n_rep, T, hd)


class Attention(nn.Module):
    """Causal self-attention with RoPE on q and k, and n_kv_head key/value heads shared by groups."""

    def __init__(self, cfg: LlamaConfig):
        super().__init__()
        self.n_head, self.n_kv_head, self.head_dim = cfg.n_head, cfg.n_kv_head, cfg.head_dim
        # peft's and Hugging Face's names: LoRA's usual targets are "q_proj" and "v_proj"
        self.q_proj = nn.Linear(cfg.n_embd, cfg.n_head * cfg.head_dim, bias=cfg.bias)
        self.k_proj = nn.Linear(
            cfg.n_embd, cfg.n_kv_head * cfg.head_dim, bias=cfg.bias
        )  # New: fewer heads
        self.v_proj = nn.Linear(cfg.n_embd, cfg.n_kv_head * cfg.head_dim, bias=cfg.bias)
        self.o_proj = nn.Linear(cfg.n_head * cfg.head_dim, cfg.n_embd, bias=cfg.bias)
        self.o_proj.residual_scale = True  # GPT-2's scaled init for residual projections
        self.attn_dropout = cfg.dropout
        self.resid_drop = nn.Dropout(cfg.dropout)

    def forward(
        self,
        x: torch.Tensor,
        rope: tuple[torch.Tensor, torch.Tensor] | None = None,
        *,
        kv_cache=None,
        layer: int = 0,
    ) -> torch.Tensor:
        B, T, C = x.shape
        # (B, T, heads * hd) -> (B, heads, T, hd)
        q = self.q_proj(x).view(B, T, self.n_head, self.head_dim).transpose(1, 2)
        k = self.k_proj(x).view(B, T, self.n_kv_head, self.head_dim).transpose(1, 2)
        v = self.v_proj(x).view(B, T, self.n_kv_head, self.head_dim).transpose(1, 2)
        if rope is not None:
            # New: rotate queries and keys by their positions' angles (values are not rotated)
            cos, sin = rope
            q, k = apply_rope(q, cos, sin), apply_rope(k, cos, sin)
        if kv_cache is not None:
            k, v = kv_cache.update(
                layer, k, v
            )  # (B, n_kv_head, T_past + T, hd): the cache holds kv heads only
        T_all = k.size(2)
        if T == T_all:
            mask, causal = None, True
        elif T == 1:  # one new token may see every cached position: no mask at all
            mask, causal = None, False
        else:  # the T queries are the last T of T_all positions
            mask = torch.ones(T, T_all, dtype=torch.bool, device=x.device).tril(diagonal=T_all - T)
            causal = False
        # New: each group of n_head / n_kv_head query heads reads the same key/value head. SDPA's
        # enable_gqa computes attention over repeat_kv(k, n_rep), repeat_kv(v, n_rep) without
        # copying the keys and values n_rep times (notebook 10 checks the two agree).
        y = F.scaled_dot_product_attention(
            q,
            k,
            v,
            attn_mask=mask,
            is_causal=causal,
            dropout_p=self.attn_dropout if self.training else 0.0,
            enable_gqa=self.n_head > self.n_kv_head,
        )
        y = y.transpose(1, 2).reshape(B, T, self.n_head * self.head_dim)  # (B, T, C)
        return self.resid_drop(self.o_proj(y))


# ------------------------------------------------------------------------------- 3. SwiGLU
class MLP(nn.Module):
    """GPT-2: down(gelu(up(x))). SwiGLU: down(silu(gate(x)) * up(x)), a gated unit with one more matrix."""

    def __init__(self, cfg: LlamaConfig):
        super().__init__()
        self.swiglu = cfg.mlp == "swiglu"
        if self.swiglu:
            self.gate_proj = nn.Linear(cfg.n_embd, cfg.hidden, bias=cfg.bias)  # New: the gate
        self.up_proj = nn.Linear(cfg.n_embd, cfg.hidden, bias=cfg.bias)
        self.down_proj = nn.Linear(cfg.hidden, cfg.n_embd, bias=cfg.bias)
        self.down_proj.residual_scale = True
        self.drop = nn.Dropout(cfg.dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.swiglu:
            h = F.silu(self.gate_proj(x)) * self.up_proj(
                x
            )  # the gate decides, per unit, how much passes
        else:
            h = F.gelu(self.up_proj(x), approximate="tanh")
        return self.drop(self.down_proj(h))


class Block(nn.Module):
    """Pre-norm block, as in GPT-2: x + attn(norm(x)), then x + mlp(norm(x)) (or a mixture of experts)."""

    def __init__(self, cfg: LlamaConfig):
        super().__init__()
        self.norm1 = _norm(cfg)
        self.attn = Attention(cfg)
        self.norm2 = _norm(cfg)
        if cfg.n_expert:
            from llmcourse.moe import MoE

            self.mlp = MoE(
                cfg.n_embd, cfg.n_expert, top_k=cfg.n_expert_active, make_expert=lambda: MLP(cfg)
            )
        else:
            self.mlp = MLP(cfg)

    def forward(self, x: torch.Tensor, rope=None, *, kv_cache=None, layer: int = 0) -> torch.Tensor:
        x = x + self.attn(self.norm1(x), rope=rope, kv_cache=kv_cache, layer=layer)
        return x + self.mlp(self.norm2(x))


class Llama(nn.Module):
    """The decoder. With every switch at GPT-2's value it computes exactly what `gpt.GPT` computes."""

    def __init__(self, cfg: LlamaConfig):
        super().__init__()
        self.cfg = cfg
        self.tok_emb = nn.Embedding(cfg.vocab_size, cfg.n_embd)
        if cfg.pos == "learned":
            self.pos_emb = nn.Embedding(cfg.block_size, cfg.n_embd)
        else:  # New: no position parameters; a table of angles, rebuilt (not saved) from the config
            cos, sin = rope_cos_sin(self._inv_freq(), cfg.block_size)
            self.register_buffer("rope_cos", cos, persistent=False)
            self.register_buffer("rope_sin", sin, persistent=False)
        self.drop = nn.Dropout(cfg.dropout)
        self.blocks = nn.ModuleList(Block(cfg) for _ in range(cfg.n_layer))
        self.final_norm = _norm(cfg)
        self.lm_head = nn.Linear(cfg.n_embd, cfg.vocab_size, bias=False)
        if cfg.tie_embeddings:
            self.lm_head.weight = self.tok_emb.weight
        self.apply(self._init_weights)

    def _inv_freq(self) -> torch.Tensor:
        c = self.cfg
        return rope_frequencies(
            c.head_dim,
            c.rope_theta,
            factor=c.rope_factor,
            low_freq_factor=c.rope_low_freq_factor,
            high_freq_factor=c.rope_high_freq_factor,
            original_context=c.rope_original_context,
        )

    def _init_weights(self, module: nn.Module) -> None:
        """GPT-2's initialisation (N(0, 0.02), residual projections scaled by 1/sqrt(2·n_layer)), so
        that the rungs of the ladder differ only in their architecture. Norm weights start at 1."""
        if isinstance(module, nn.Linear):
            std = (
                0.02 / math.sqrt(2 * self.cfg.n_layer)
                if getattr(module, "residual_scale", False)
                else 0.02
            )
            nn.init.normal_(module.weight, mean=0.0, std=std)
            if module.bias is not None:
                nn.init.zeros_(module.bias)
        elif isinstance(module, nn.Embedding):
            nn.init.normal_(module.weight, mean=0.0, std=0.02)

    def num_params(self) -> int:
        """Parameters, counting a tied head once."""
        return sum(p.numel() for p in self.parameters())

    def aux_loss(self) -> torch.Tensor | None:
        """The mixture-of-experts load-balancing loss of the last forward pass, summed over blocks."""
        losses = [
            b.mlp.aux_loss for b in self.blocks if getattr(b.mlp, "aux_loss", None) is not None
        ]
        return torch.stack(losses).sum() if losses else None

    def forward(
        self,
        idx: torch.Tensor,
        targets: torch.Tensor | None = None,
        *,
        kv_cache=None,
        last_only: bool = False,
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """idx (B, T) -> logits (B, T, vocab), and the mean cross-entropy if targets are given (plus
        `moe_aux_weight` times the load-balancing loss for a mixture of experts). With a `kv_cache`,
        idx holds only the new tokens; `last_only=True` returns the last position's logits only."""
        B, T = idx.shape
        start = kv_cache.pos if kv_cache is not None else 0
        if start + T > self.cfg.block_size:
            raise ValueError(
                f"sequence of {start + T} tokens exceeds block_size={self.cfg.block_size}; "
                "crop the context (generate() does this) or raise block_size"
            )
        x = self.tok_emb(idx)  # (B, T, C)
        rope = None
        if self.cfg.pos == "learned":
            x = x + self.pos_emb(torch.arange(start, start + T, device=idx.device))
        else:  # New: positions enter inside attention, as the angles of positions start..start+T-1
            rope = (
                self.rope_cos[start : start + T],
                self.rope_sin[start : start + T],
            )  # (T, hd) each
        x = self.drop(x)
        for i, block in enumerate(self.blocks):
            x = block(x, rope=rope, kv_cache=kv_cache, layer=i)
        if kv_cache is not None:
            kv_cache.advance(T)
        if last_only:
            x = x[:, -1:, :]  # generation needs the last position only (the norm is per position)
        x = self.final_norm(x)
        logits = self.lm_head(x)
        loss = None
        if targets is not None:
            loss = F.cross_entropy(
                logits.reshape(-1, logits.size(-1)).float(), targets.reshape(-1), ignore_index=-100
            )
            aux = self.aux_loss()
            if aux is not None:
                loss = loss + self.cfg.moe_aux_weight * aux
        return logits, loss


# ------------------------------------------------------------------------- checked by notebook 10's exercises
def rms_norm(x: torch.Tensor, weight: torch.Tensor, eps: float) -> torch.Tensor:
    """rms_norm(x (..., C), weight (C,), eps) -> (..., C): x divided by the root mean square of its last
    dimension (with eps under the root), times weight."""
    return weight * (x * torch.rsqrt(x.pow(2).mean(dim=-1, keepdim=True) + eps))
