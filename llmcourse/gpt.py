"""A decoder-only Transformer (GPT) — the model the course pretrains, fine-tunes, aligns and serves.

The architecture is GPT-2's (Radford et al. 2019): token + learned position embeddings, a stack of
pre-norm blocks (LayerNorm -> causal self-attention -> residual, LayerNorm -> MLP -> residual), a final
LayerNorm, and an output head that shares its weight matrix with the token embedding ("weight tying",
Press & Wolf 2017). Because the layout matches GPT-2 exactly, `llmcourse.convert` can move weights to
and from Hugging Face's `GPT2LMHeadModel` and the logits agree to float precision.

Calling convention (shared by every model in the course):
    logits, loss = model(idx, targets)      # idx, targets: (B, T) int64; targets == -100 are ignored

`gpt_num_params` is the parameter count of a config by formula (notebook 08's exercise checks it).
Left out on purpose: rotary embeddings, RMSNorm, SwiGLU and grouped-query attention: each is a switch
of `llmcourse.llama.LlamaConfig` (notebook 10); with every switch at GPT-2's value
(`llama.gpt2_like`) that model computes what this one does. Dropout inside attention weights is kept only as a flag.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn as nn
import torch.nn.functional as F

from llmcourse.config import Sized


@dataclass
class GPTConfig(Sized):
    vocab_size: int = 65  # tokens; 65 = characters of tiny Shakespeare, 50257 = GPT-2's BPE
    block_size: int = 256  # longest context the model sees (number of position embeddings)
    n_layer: int = 6  # transformer blocks
    n_head: int = 6  # attention heads per block
    n_embd: int = 384  # width of the residual stream
    dropout: float = 0.2  # on embeddings, attention weights and residual branches
    bias: bool = True  # biases in Linear and LayerNorm (GPT-2 has them; needed for HF export)
    # The full size above is nanoGPT's "baby GPT" for character-level Shakespeare.
    smoke_overrides = {"block_size": 64, "n_layer": 2, "n_head": 2, "n_embd": 64, "dropout": 0.0}

    def __post_init__(self):
        if self.n_embd % self.n_head:
            raise ValueError(f"n_embd={self.n_embd} must be divisible by n_head={self.n_head}")

    @property
    def head_dim(self) -> int:
        return self.n_embd // self.n_head


class CausalSelfAttention(nn.Module):
    """Multi-head self-attention where position t only sees positions <= t.

    This is `attention.MultiHeadAttention` (notebook 05) with a causal mask, written for speed: q, k
    and v in one fused matrix, torch's fused attention kernel, and a KV cache for generation.
    tests/test_gpt.py copies the weights across and checks that the two agree."""

    def __init__(self, cfg: GPTConfig):
        super().__init__()
        self.n_head, self.head_dim = cfg.n_head, cfg.head_dim
        self.qkv = nn.Linear(cfg.n_embd, 3 * cfg.n_embd, bias=cfg.bias)  # q, k, v in one matmul
        self.proj = nn.Linear(cfg.n_embd, cfg.n_embd, bias=cfg.bias)
        self.proj.residual_scale = True  # marks a residual projection for GPT-2's scaled init
        self.attn_dropout = cfg.dropout
        self.resid_drop = nn.Dropout(cfg.dropout)

    def forward(self, x: torch.Tensor, *, kv_cache=None, layer: int = 0) -> torch.Tensor:
        B, T, C = x.shape
        q, k, v = self.qkv(x).split(C, dim=2)
        # (B, T, C) -> (B, n_head, T, head_dim): each head attends independently
        q, k, v = (t.view(B, T, self.n_head, self.head_dim).transpose(1, 2) for t in (q, k, v))
        if kv_cache is not None:
            # New: append this step's keys/values and attend over everything cached so far.
            k, v = kv_cache.update(layer, k, v)  # (B, n_head, T_past + T, head_dim)
        T_all = k.size(2)
        if T == T_all:
            mask, causal = None, True  # plain causal attention over the whole window
        else:
            # queries are the last T positions of T_all: query i may see keys <= T_all - T + i
            mask = torch.ones(T, T_all, dtype=torch.bool, device=x.device).tril(diagonal=T_all - T)
            causal = False
        y = F.scaled_dot_product_attention(
            q,
            k,
            v,
            attn_mask=mask,
            is_causal=causal,
            dropout_p=self.attn_dropout if self.training else 0.0,
        )
        y = y.transpose(1, 2).contiguous().view(B, T, C)  # (B, n_head, T, hd) -> (B, T, C)
        return self.resid_drop(self.proj(y))


class MLP(nn.Module):
    """Position-wise feed-forward: widen 4x, GELU (GPT-2's tanh approximation), project back."""

    def __init__(self, cfg: GPTConfig):
        super().__init__()
        self.fc = nn.Linear(cfg.n_embd, 4 * cfg.n_embd, bias=cfg.bias)
        self.act = nn.GELU(approximate="tanh")
        self.proj = nn.Linear(4 * cfg.n_embd, cfg.n_embd, bias=cfg.bias)
        self.proj.residual_scale = True
        self.drop = nn.Dropout(cfg.dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.drop(self.proj(self.act(self.fc(x))))


class Block(nn.Module):
    """Pre-norm Transformer block: x + attn(norm(x)), then x + mlp(norm(x))."""

    def __init__(self, cfg: GPTConfig):
        super().__init__()
        self.norm1 = nn.LayerNorm(cfg.n_embd, bias=cfg.bias)
        self.attn = CausalSelfAttention(cfg)
        self.norm2 = nn.LayerNorm(cfg.n_embd, bias=cfg.bias)
        self.mlp = MLP(cfg)

    def forward(self, x: torch.Tensor, *, kv_cache=None, layer: int = 0) -> torch.Tensor:
        x = x + self.attn(self.norm1(x), kv_cache=kv_cache, layer=layer)
        return x + self.mlp(self.norm2(x))


class GPT(nn.Module):
    def __init__(self, cfg: GPTConfig):
        super().__init__()
        self.cfg = cfg
        self.tok_emb = nn.Embedding(cfg.vocab_size, cfg.n_embd)
        self.pos_emb = nn.Embedding(cfg.block_size, cfg.n_embd)
        self.drop = nn.Dropout(cfg.dropout)
        self.blocks = nn.ModuleList(Block(cfg) for _ in range(cfg.n_layer))
        self.final_norm = nn.LayerNorm(cfg.n_embd, bias=cfg.bias)
        self.lm_head = nn.Linear(cfg.n_embd, cfg.vocab_size, bias=False)
        self.lm_head.weight = (
            self.tok_emb.weight
        )  # weight tying: one matrix reads and writes tokens
        self.apply(self._init_weights)

    def _init_weights(self, module: nn.Module) -> None:
        """GPT-2 initialisation: N(0, 0.02), zero biases, and residual projections scaled by
        1/sqrt(2 * n_layer) so the residual stream's variance does not grow with depth (GPT-2 paper)."""
        if isinstance(module, nn.Linear):
            std = 0.02
            if getattr(module, "residual_scale", False):
                std /= math.sqrt(2 * self.cfg.n_layer)
            nn.init.normal_(module.weight, mean=0.0, std=std)
            if module.bias is not None:
                nn.init.zeros_(module.bias)
        elif isinstance(module, nn.Embedding):
            nn.init.normal_(module.weight, mean=0.0, std=0.02)

    def num_params(self, non_embedding: bool = False) -> int:
        """Parameters, counting the tied head once; `non_embedding` drops position embeddings too."""
        n = sum(p.numel() for p in self.parameters())
        return n - self.pos_emb.weight.numel() if non_embedding else n

    def forward(
        self,
        idx: torch.Tensor,
        targets: torch.Tensor | None = None,
        *,
        kv_cache=None,
        last_only: bool = False,
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """idx (B, T) -> logits (B, T, vocab), and the mean cross-entropy if targets are given.

        With a `kv_cache`, idx holds only the new tokens and positions continue from the cache.
        `last_only=True` returns logits for the last position only, (B, 1, vocab): a generation
        shortcut that must be asked for explicitly. (Prompt tuning wraps the model instead of
        adding an argument here: `llmcourse.ptuning.PromptTuned`.)
        """
        B, T = idx.shape
        start = kv_cache.pos if kv_cache is not None else 0
        if start + T > self.cfg.block_size:
            raise ValueError(
                f"sequence of {start + T} tokens exceeds block_size={self.cfg.block_size}; "
                "crop the context (generate() does this) or use a model with a longer block_size"
            )
        x = self.tok_emb(idx)  # (B, T, C)
        pos = torch.arange(start, start + T, device=idx.device)  # (T,)
        x = self.drop(x + self.pos_emb(pos))
        for i, block in enumerate(self.blocks):
            x = block(x, kv_cache=kv_cache, layer=i)
        if kv_cache is not None:
            kv_cache.advance(T)
        x = self.final_norm(x)
        if last_only:
            x = x[:, -1:, :]
        logits = self.lm_head(x)
        loss = None
        if targets is not None:
            loss = F.cross_entropy(
                logits.reshape(-1, logits.size(-1)).float(), targets.reshape(-1), ignore_index=-100
            )
        return logits, loss

    @torch.no_grad()
    def generate(
        self,
        idx: torch.Tensor,
        max_new_tokens: int,
        *,
        temperature: float = 1.0,
        top_k: int | None = None,
        generator: torch.Generator | None = None,
    ) -> torch.Tensor:
        """The naive teaching version: re-run the whole (cropped) context for every new token.
        `llmcourse.generate` has the fast one with a KV cache, top-p and streaming."""
        for _ in range(max_new_tokens):
            context = idx[:, -self.cfg.block_size :]
            logits, _ = self(context, last_only=True)
            logits = logits[:, -1, :]
            if temperature == 0:
                nxt = logits.argmax(dim=-1, keepdim=True)
            else:
                logits = logits / temperature
                if top_k is not None:
                    kth = torch.topk(logits, min(top_k, logits.size(-1))).values[:, [-1]]
                    logits = logits.masked_fill(logits < kth, float("-inf"))
                probs = F.softmax(logits, dim=-1)
                nxt = torch.multinomial(probs, num_samples=1, generator=generator)
            idx = torch.cat([idx, nxt], dim=1)
        return idx


# ------------------------------------------------------------------------- checked by notebook 08's exercises
def gpt_num_params(vocab_size: int, *, block_size: int, n_layer: int, n_embd: int) -> int:
    """gpt_num_params(vocab_size, block_size, n_layer, n_embd) -> int: parameters of the course GPT
    (biases on, head tied to the token embedding), the number `GPT(cfg).num_params()` prints.

    The count itself is `llmcourse.cost.memory.gpt_params` (the one formula, with its derivation):
    V·C + T·C + L(12C² + 13C) + 2C. This name and argument order are notebook 08's exercise."""
    from llmcourse.cost.memory import gpt_params

    return gpt_params(n_layer, n_embd, vocab_size, block_size=block_size, tied=True)
