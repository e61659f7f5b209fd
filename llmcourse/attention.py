"""Attention written out: scaled dot-product attention, masks, and multi-head attention.

    Attention(Q, K, V) = softmax(Q K^T / sqrt(d_k)) V          (Vaswani et al. 2017, eq. 1)

Each query position takes a weighted average of the value vectors; the weights say how well the
query matches each key. Dividing by sqrt(d_k) keeps the dot products at unit variance when q and
k have unit-variance entries, so the softmax does not saturate as d_k grows. The idea of letting
a decoder look back at every encoder state instead of one fixed vector is Bahdanau et al. 2015.

**Mask convention (one for the whole course):** a boolean mask is True where attention is
*allowed*, as in torch.nn.functional.scaled_dot_product_attention. Beware: torch.nn.MultiheadAttention
uses the opposite (True = blocked) for its `attn_mask` and `key_padding_mask`; pass `~mask` there.
A float mask is added to the scores (0 = allowed, -inf = blocked).

A query row whose keys are all blocked has no defined average; like torch we then return NaN, and
the callers make sure that never happens (every query sees at least one real key).

Three masks make three architectures of one Transformer: all True (encoder, BERT), `causal_mask`
(decoder, GPT) and `prefix_lm_mask` (prefix LM: UniLM, GLM).

Left out: KV caching (see llmcourse.generate), fused/flash kernels, relative positions.
"""

from __future__ import annotations

import math

import torch
import torch.nn as nn
import torch.nn.functional as F


def scaled_dot_product_attention(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    *,
    mask: torch.Tensor | None = None,
    dropout_p: float = 0.0,
    generator: torch.Generator | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """softmax(q k^T / sqrt(d) + mask) v, returning (output, weights).

    q: (..., Tq, d), k: (..., Tk, d), v: (..., Tk, dv); mask broadcastable to (..., Tq, Tk),
    boolean (True = may attend) or float (added). Returns output (..., Tq, dv) and the attention
    weights (..., Tq, Tk), each row summing to 1 (before dropout, which zeroes weights at random
    and rescales the rest by 1/(1-p), as torch does).

    >>> q = k = torch.tensor([[1.0, 0.0], [0.0, 1.0]]); v = torch.tensor([[1.0], [3.0]])
    >>> out, w = scaled_dot_product_attention(q, k, v, mask=causal_mask(2))
    >>> [round(x, 3) for x in out.squeeze(-1).tolist()]   # 0 sees only itself; 1 favours key 1
    [1.0, 2.34]
    """
    d = q.shape[-1]
    # 1. how well each query matches each key: one dot product per (query, key) pair, scaled by
    #    1/sqrt(d) so the scores keep unit variance however wide the heads are (Vaswani et al.)
    scores = q @ k.transpose(-2, -1) / math.sqrt(d)  # (..., Tq, d) @ (..., d, Tk) -> (..., Tq, Tk)
    # 2. the mask: a blocked score becomes -inf, so its softmax weight is exactly 0. The causal
    #    mask blocks every key after the query's own position: no peeking at the future
    if mask is not None:
        if mask.dtype == torch.bool:
            scores = scores.masked_fill(~mask, float("-inf"))
        else:
            scores = scores + mask  # a float mask is added: 0 = allowed, -inf = blocked
    # 3. each query's scores -> a distribution over the keys (each row sums to 1)
    weights = F.softmax(scores, dim=-1)  # (..., Tq, Tk)
    # 4. attention dropout (training only): drop weights at random, scale the rest by 1/(1-p)
    #    so the expected output is unchanged
    if dropout_p > 0.0:
        keep = torch.rand(weights.shape, generator=generator, device=weights.device) >= dropout_p
        weights = weights * keep / (1.0 - dropout_p)
    # 5. each query's output: the average of the values, weighted by its attention weights
    return weights @ v, weights  # (..., Tq, Tk) @ (..., Tk, dv) -> (..., Tq, dv)


def causal_mask(T: int, device: torch.device | str | None = None) -> torch.Tensor:
    """(T, T) boolean, True on and below the diagonal: position t may attend to positions <= t.

    >>> causal_mask(3).int().tolist()
    [[1, 0, 0], [1, 1, 0], [1, 1, 1]]
    """
    return torch.ones(T, T, dtype=torch.bool, device=device).tril()


def prefix_lm_mask(T: int, prefix: int, device: torch.device | str | None = None) -> torch.Tensor:
    """(T, T) boolean: the first `prefix` positions see each other in full (bidirectional), every
    later position sees the whole prefix and the positions up to itself (causal).

    One Transformer covers three architectures by its mask alone (UniLM, Dong et al. 2019):
    all True is an encoder (BERT), `causal_mask` a decoder (GPT), and this a prefix LM, the
    attention of GLM's blank infilling (Du et al. 2022) and of T5's prefix-LM variant.
    `prefix_lm_mask(T, 0)` equals `causal_mask(T)`; `prefix_lm_mask(T, T)` is all True.

    >>> prefix_lm_mask(4, 2).int().tolist()
    [[1, 1, 0, 0], [1, 1, 0, 0], [1, 1, 1, 0], [1, 1, 1, 1]]
    """
    if not 0 <= prefix <= T:
        raise ValueError(f"prefix must be in [0, {T}], got {prefix}")
    mask = causal_mask(T, device=device)
    # the prefix block is bidirectional: every prefix position may also look to its right
    mask[:prefix, :prefix] = True
    return mask


def padding_mask(lengths: torch.Tensor | list[int], T: int) -> torch.Tensor:
    """padding_mask(lengths (B,) ints, T) -> (B, T) bool: True at the real tokens t < lengths[b],
    False at the padding after them (a *key* mask: True = may attend).

    >>> padding_mask([2, 3], 4).int().tolist()
    [[1, 1, 0, 0], [1, 1, 1, 0]]
    """
    lengths = torch.as_tensor(lengths)
    return torch.arange(T, device=lengths.device)[None, :] < lengths[:, None]


def combine_masks(
    attn_mask: torch.Tensor | None, key_mask: torch.Tensor | None
) -> torch.Tensor | None:
    """Merge an (Tq, Tk) or (B, Tq, Tk) attention mask and a (B, Tk) key mask into one boolean
    mask broadcastable to (B, n_head, Tq, Tk)."""
    mask = None
    if attn_mask is not None:
        if attn_mask.dtype != torch.bool:
            raise ValueError("use boolean masks (True = may attend)")
        mask = attn_mask if attn_mask.dim() == 2 else attn_mask[:, None]  # (B, 1, Tq, Tk)
    if key_mask is not None:
        km = key_mask[:, None, None, :]  # (B, 1, 1, Tk)
        mask = km if mask is None else mask & km
    return mask


def split_heads(x: torch.Tensor, n_head: int) -> torch.Tensor:
    """split_heads(x (B, T, C), n_head) -> (B, n_head, T, C // n_head): head h holds features
    h*D .. (h+1)*D - 1 (D = C // n_head) of every token, as multi-head attention splits them."""
    B, T, C = x.shape
    return x.view(B, T, n_head, C // n_head).transpose(1, 2)  # (B, n_head, T, head_dim)


class MultiHeadAttention(nn.Module):
    """n_head attentions side by side, each in its own head_dim = n_embd / n_head subspace.

    forward(x, context=None, attn_mask=None, key_mask=None) -> (B, Tq, n_embd).
    Self-attention when context is None; cross-attention (queries from x, keys and values from
    context, e.g. the encoder output) otherwise. Masks: attn_mask (Tq, Tk) or (B, Tq, Tk) and
    key_mask (B, Tk), both boolean with True = may attend.

    Set `keep_weights = True` to keep the last attention weights (B, n_head, Tq, Tk) in
    `attn_weights` for plotting.
    """

    def __init__(self, n_embd: int, n_head: int, *, dropout: float = 0.0, bias: bool = True):
        super().__init__()
        if n_embd % n_head:
            raise ValueError(f"n_embd={n_embd} is not divisible by n_head={n_head}")
        self.n_embd, self.n_head, self.head_dim = n_embd, n_head, n_embd // n_head
        self.q_proj = nn.Linear(n_embd, n_embd, bias=bias)
        self.k_proj = nn.Linear(n_embd, n_embd, bias=bias)
        self.v_proj = nn.Linear(n_embd, n_embd, bias=bias)
        self.out_proj = nn.Linear(n_embd, n_embd, bias=bias)
        self.dropout = dropout  # on the attention weights, as in the paper and torch
        self.keep_weights = False
        self.attn_weights: torch.Tensor | None = None

    def _split_heads(self, x: torch.Tensor) -> torch.Tensor:
        return split_heads(x, self.n_head)  # (B, T, C) -> (B, n_head, T, head_dim)

    def forward(
        self,
        x: torch.Tensor,
        context: torch.Tensor | None = None,
        *,
        attn_mask: torch.Tensor | None = None,
        key_mask: torch.Tensor | None = None,
    ) -> torch.Tensor:
        # 1. self-attention reads keys and values from x itself; cross-attention from `context`
        context = x if context is None else context
        B, Tq, C = x.shape
        # 2. project to queries, keys and values (all n_head heads in one matrix each), then give
        #    each head its own head_dim slice of the features
        q = self._split_heads(self.q_proj(x))  # (B, n_head, Tq, head_dim)
        k = self._split_heads(self.k_proj(context))  # (B, n_head, Tk, head_dim)
        v = self._split_heads(self.v_proj(context))  # (B, n_head, Tk, head_dim)
        # 3. one boolean mask for every head: causal/attention mask AND key padding mask
        mask = combine_masks(attn_mask, key_mask)  # broadcastable to (B, n_head, Tq, Tk)
        # 4. every head attends independently (the head axis is just a batch axis here)
        p = self.dropout if self.training else 0.0
        y, w = scaled_dot_product_attention(q, k, v, mask=mask, dropout_p=p)
        # y: (B, n_head, Tq, head_dim), w: (B, n_head, Tq, Tk)
        if self.keep_weights:
            self.attn_weights = w.detach()
        # 5. put the heads side by side again: back to n_embd features per token
        y = y.transpose(1, 2).reshape(B, Tq, C)  # (B, Tq, n_head, head_dim) -> (B, Tq, C)
        # 6. the output projection mixes what the heads found
        return self.out_proj(y)

    def copy_from_torch(self, other: nn.MultiheadAttention) -> None:
        """Copy the weights of a torch.nn.MultiheadAttention (same n_embd, n_head).

        torch stacks the three input projections into in_proj_weight (3*n_embd, n_embd) in the
        order q, k, v; we keep three separate Linear layers (easier to read).
        """
        if other.in_proj_weight is None:
            raise ValueError("only torch MultiheadAttention with kdim == vdim == embed_dim")
        wq, wk, wv = other.in_proj_weight.detach().chunk(3, dim=0)  # 3 x (C, C)
        with torch.no_grad():
            for lin, w in ((self.q_proj, wq), (self.k_proj, wk), (self.v_proj, wv)):
                lin.weight.copy_(w)
            if other.in_proj_bias is not None:
                bq, bk, bv = other.in_proj_bias.detach().chunk(3)
                self.q_proj.bias.copy_(bq), self.k_proj.bias.copy_(bk), self.v_proj.bias.copy_(bv)
            self.out_proj.weight.copy_(other.out_proj.weight)
            if other.out_proj.bias is not None:
                self.out_proj.bias.copy_(other.out_proj.bias)


# ------------------------------------------------------------------------- checked by notebook 04's exercises
def attention(
    q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, mask: torch.Tensor
) -> torch.Tensor:
    """attention(q (B, Tq, d), k (B, Tk, d), v (B, Tk, dv), mask (B, Tq, Tk) bool, True = may
    attend) -> (B, Tq, dv): softmax(q k^T / sqrt(d)) v with blocked scores set to -inf."""
    return scaled_dot_product_attention(q, k, v, mask=mask)[0]
