"""The encoder-decoder Transformer of "Attention Is All You Need" (Vaswani et al. 2017).

    src ids -> embed * sqrt(C) + positions -> N x EncoderLayer -> memory (B, S, C)
    tgt_in  -> embed * sqrt(C) + positions -> N x DecoderLayer(memory) -> lm_head -> logits

* `EncoderLayer`: self-attention, then a feed-forward net; each sub-layer wrapped in a residual
  connection and a LayerNorm. The paper normalises *after* the residual sum ("post-norm",
  `norm_first=False`); most models since normalise the sub-layer's input ("pre-norm",
  `norm_first=True`, Xiong et al. 2020), which trains more stably without warm-up tricks.
* `DecoderLayer`: unlike EncoderLayer, a *masked* (causal) self-attention, then cross-attention
  whose keys and values are the encoder's output - the descendant of Bahdanau et al. 2015's
  attention in RNN translation models - then the feed-forward net.
  Both layers copy weights from torch.nn.TransformerEncoderLayer / DecoderLayer (`copy_from_torch`).
* `Seq2SeqTransformer(config)`: `forward(src, tgt_in, targets=None) -> (logits, loss)`, the course's
  convention with ignore_index=-100, plus `greedy_decode` and `beam_search`.

Decoding recomputes the decoder over the whole prefix at every step (no KV cache: see
llmcourse.generate). Beam search is written for one source at a time, for readability.
The paper's label smoothing (sec. 5.4) is notebook 05's last exercise, not part of the model's loss.
Left out: shared source/target vocabularies
with tied input embeddings, relative positions.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.nn as nn
import torch.nn.functional as F

from llmcourse.attention import MultiHeadAttention, causal_mask
from llmcourse.config import Sized, cap_steps
from llmcourse.layers import (
    FeedForward,
    LayerNorm,
    LearnedPositionalEncoding,
    SinusoidalPositionalEncoding,
)


@dataclass
class TransformerConfig(Sized):
    src_vocab_size: int = 64  # source token ids are < this (the task's vocabulary decides)
    tgt_vocab_size: int = 64  # target token ids are < this
    n_embd: int = 256  # model width C (the paper's base model: 512)
    n_head: int = 8  # attention heads; head_dim = n_embd / n_head
    n_enc_layer: int = 3  # encoder layers (paper: 6)
    n_dec_layer: int = 3  # decoder layers (paper: 6)
    d_ff: int = 1024  # feed-forward hidden width (paper: 4 * n_embd)
    dropout: float = 0.1  # on residual branches, attention weights and embeddings (paper: 0.1)
    max_len: int = 256  # longest source or target sequence, in tokens
    norm_first: bool = False  # False: post-norm as in the paper; True: pre-norm
    activation: str = "relu"  # "relu" (paper) or "gelu"
    pos: str = "sinusoidal"  # "sinusoidal" (paper) or "learned"
    tie_embeddings: bool = True  # share target embedding and output matrix (paper sec. 3.4)
    pad_id: int = 0  # padding token (ignored by attention)
    bos_id: int = 1  # first decoder input
    eos_id: int = 2  # end of the output

    smoke_overrides = {
        "n_embd": 32,
        "n_head": 2,
        "n_enc_layer": 1,
        "n_dec_layer": 1,
        "d_ff": 64,
        "dropout": 0.0,
    }


def _copy_linear(dst: nn.Module, src: nn.Module) -> None:
    dst.load_state_dict(src.state_dict())


class EncoderLayer(nn.Module):
    """x (B, S, C) -> (B, S, C): self-attention and feed-forward, each with residual + LayerNorm."""

    def __init__(
        self,
        n_embd: int,
        n_head: int,
        d_ff: int,
        dropout: float = 0.0,
        norm_first: bool = False,
        activation: str = "relu",
    ):
        super().__init__()
        self.norm_first = norm_first
        self.self_attn = MultiHeadAttention(n_embd, n_head, dropout=dropout)
        self.ff = FeedForward(n_embd, d_ff, dropout, activation)
        self.norm1, self.norm2 = LayerNorm(n_embd), LayerNorm(n_embd)
        self.dropout = nn.Dropout(dropout)  # on each sub-layer's output, before the residual sum

    def forward(self, x: torch.Tensor, key_mask: torch.Tensor | None = None) -> torch.Tensor:
        def attend(h):
            return self.dropout(self.self_attn(h, key_mask=key_mask))

        if self.norm_first:  # x + f(norm(x))
            x = x + attend(self.norm1(x))
            return x + self.dropout(self.ff(self.norm2(x)))
        x = self.norm1(x + attend(x))  # norm(x + f(x)), the paper's order
        return self.norm2(x + self.dropout(self.ff(x)))

    def copy_from_torch(self, other: nn.TransformerEncoderLayer) -> None:
        self.self_attn.copy_from_torch(other.self_attn)
        for ours, theirs in (
            (self.ff.linear1, other.linear1),
            (self.ff.linear2, other.linear2),
            (self.norm1, other.norm1),
            (self.norm2, other.norm2),
        ):
            _copy_linear(ours, theirs)


class DecoderLayer(nn.Module):
    """Unlike EncoderLayer: causal self-attention, then cross-attention to the encoder's memory."""

    def __init__(
        self,
        n_embd: int,
        n_head: int,
        d_ff: int,
        dropout: float = 0.0,
        norm_first: bool = False,
        activation: str = "relu",
    ):
        super().__init__()
        self.norm_first = norm_first
        self.self_attn = MultiHeadAttention(n_embd, n_head, dropout=dropout)
        self.cross_attn = MultiHeadAttention(n_embd, n_head, dropout=dropout)
        self.ff = FeedForward(n_embd, d_ff, dropout, activation)
        self.norm1, self.norm2, self.norm3 = LayerNorm(n_embd), LayerNorm(n_embd), LayerNorm(n_embd)
        self.dropout = nn.Dropout(dropout)

    def forward(
        self,
        x: torch.Tensor,
        memory: torch.Tensor,
        *,
        tgt_key_mask: torch.Tensor | None = None,
        memory_key_mask: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """x: (B, T, C) decoder stream; memory: (B, S, C) encoder output; masks True = real token."""
        causal = causal_mask(x.shape[1], device=x.device)  # (T, T)
        sublayers = [
            (self.norm1, lambda h: self.self_attn(h, attn_mask=causal, key_mask=tgt_key_mask)),
            (self.norm2, lambda h: self.cross_attn(h, memory, key_mask=memory_key_mask)),
            (self.norm3, self.ff),
        ]
        for norm, f in sublayers:
            if self.norm_first:
                x = x + self.dropout(f(norm(x)))
            else:
                x = norm(x + self.dropout(f(x)))
        return x

    def copy_from_torch(self, other: nn.TransformerDecoderLayer) -> None:
        self.self_attn.copy_from_torch(other.self_attn)
        self.cross_attn.copy_from_torch(other.multihead_attn)  # torch's name for cross-attention
        for ours, theirs in (
            (self.ff.linear1, other.linear1),
            (self.ff.linear2, other.linear2),
            (self.norm1, other.norm1),
            (self.norm2, other.norm2),
            (self.norm3, other.norm3),
        ):
            _copy_linear(ours, theirs)


class Seq2SeqTransformer(nn.Module):
    """Encoder-decoder Transformer. forward(src (B, S), tgt_in (B, T), targets (B, T) or None)
    -> (logits (B, T, tgt_vocab_size), loss or None). tgt_in starts with bos_id; targets are
    tgt_in shifted left (ending with eos_id), with -100 at padded positions."""

    def __init__(self, config: TransformerConfig):
        super().__init__()
        self.config = c = config
        pos_class = {
            "sinusoidal": SinusoidalPositionalEncoding,
            "learned": LearnedPositionalEncoding,
        }[c.pos]
        self.src_emb = nn.Embedding(c.src_vocab_size, c.n_embd)
        self.tgt_emb = nn.Embedding(c.tgt_vocab_size, c.n_embd)
        self.pos = pos_class(c.n_embd, c.max_len)
        self.drop = nn.Dropout(c.dropout)
        args = (c.n_embd, c.n_head, c.d_ff, c.dropout, c.norm_first, c.activation)
        self.encoder = nn.ModuleList(EncoderLayer(*args) for _ in range(c.n_enc_layer))
        self.decoder = nn.ModuleList(DecoderLayer(*args) for _ in range(c.n_dec_layer))
        # pre-norm leaves the residual stream un-normalised: one final LayerNorm per stack
        self.enc_norm = LayerNorm(c.n_embd) if c.norm_first else nn.Identity()
        self.dec_norm = LayerNorm(c.n_embd) if c.norm_first else nn.Identity()
        self.lm_head = nn.Linear(c.n_embd, c.tgt_vocab_size, bias=False)
        for name, p in self.named_parameters():
            if p.dim() > 1 and "pos_emb" not in name:
                nn.init.xavier_uniform_(p)  # as torch.nn.Transformer does
        if c.tie_embeddings:
            self.lm_head.weight = self.tgt_emb.weight

    def _embed(self, emb: nn.Embedding, ids: torch.Tensor) -> torch.Tensor:
        # the paper multiplies embeddings by sqrt(C) so they are not drowned by the positions
        return self.drop(self.pos(emb(ids) * math.sqrt(self.config.n_embd)))  # (B, T, C)

    def encode(self, src: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """src (B, S) -> memory (B, S, C) and its key mask (B, S), True at real tokens."""
        src_mask = src != self.config.pad_id
        x = self._embed(self.src_emb, src)
        for layer in self.encoder:
            x = layer(x, key_mask=src_mask)
        return self.enc_norm(x), src_mask

    def decode(
        self, tgt_in: torch.Tensor, memory: torch.Tensor, src_mask: torch.Tensor
    ) -> torch.Tensor:
        """tgt_in (B, T) and memory -> logits (B, T, tgt_vocab_size)."""
        tgt_mask = tgt_in != self.config.pad_id
        x = self._embed(self.tgt_emb, tgt_in)
        for layer in self.decoder:
            x = layer(x, memory, tgt_key_mask=tgt_mask, memory_key_mask=src_mask)
        return self.lm_head(self.dec_norm(x))

    def forward(
        self, src: torch.Tensor, tgt_in: torch.Tensor, targets: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        memory, src_mask = self.encode(src)
        logits = self.decode(tgt_in, memory, src_mask)
        loss = None
        if targets is not None:
            loss = F.cross_entropy(logits.flatten(0, 1), targets.flatten(), ignore_index=-100)
        return logits, loss

    def _next_logprobs(self, logits: torch.Tensor) -> torch.Tensor:
        """log-softmax over the tokens a decoder may emit: never pad_id or bos_id."""
        banned = [self.config.pad_id, self.config.bos_id]
        return F.log_softmax(
            logits.float().index_fill(
                -1, torch.tensor(banned, device=logits.device), float("-inf")
            ),
            dim=-1,
        )

    def _max_new(self, src: torch.Tensor, max_new_tokens: int | None) -> int:
        # decoding steps; fewer in a rehearsal (LLMCOURSE_REHEARSAL), which decodes whole test sets
        return cap_steps(min(max_new_tokens or 2 * src.shape[1] + 10, self.config.max_len - 1))

    @torch.no_grad()
    def greedy_decode(self, src: torch.Tensor, max_new_tokens: int | None = None) -> torch.Tensor:
        """Pick the most likely next token each step. src (B, S) -> (B, L) ids after bos_id,
        ending with eos_id and then pad_id (or cut at max_new_tokens)."""
        c = self.config
        memory, src_mask = self.encode(src)
        out = torch.full((src.shape[0], 1), c.bos_id, dtype=torch.long, device=src.device)
        done = torch.zeros(src.shape[0], dtype=torch.bool, device=src.device)
        for _ in range(self._max_new(src, max_new_tokens)):
            nxt = self._next_logprobs(self.decode(out, memory, src_mask)[:, -1]).argmax(-1)  # (B,)
            nxt = torch.where(done, torch.full_like(nxt, c.pad_id), nxt)
            out = torch.cat([out, nxt[:, None]], dim=1)
            done |= nxt == c.eos_id
            if done.all():
                break
        return out[:, 1:]

    def next_token_logprobs(
        self, memory: torch.Tensor, src_mask: torch.Tensor
    ) -> Callable[[torch.Tensor], torch.Tensor]:
        """For ONE encoded source (memory (1, S, C), src_mask (1, S)): the function
        prefixes (N, t) -> (N, V) next-token log-probabilities that `beam_search` expects."""

        def step(prefixes: torch.Tensor) -> torch.Tensor:
            N = prefixes.shape[0]
            logits = self.decode(prefixes, memory.expand(N, -1, -1), src_mask.expand(N, -1))
            return self._next_logprobs(logits[:, -1])

        return step

    @torch.no_grad()
    def beam_search(
        self,
        src: torch.Tensor,
        *,
        beam_size: int = 4,
        length_penalty: float = 0.0,
        max_new_tokens: int | None = None,
    ) -> torch.Tensor:
        """Keep the beam_size best prefixes at each step (see `beam_search`). Same output format
        as greedy_decode; beam_size=1 gives greedy's output."""
        c = self.config
        rows = []
        for b in range(src.shape[0]):
            step = self.next_token_logprobs(*self.encode(src[b : b + 1]))
            tokens, _ = beam_search(
                step,
                bos_id=c.bos_id,
                eos_id=c.eos_id,
                beam_size=beam_size,
                max_new_tokens=self._max_new(src, max_new_tokens),
                length_penalty=length_penalty,
                device=src.device,
            )
            rows.append(tokens)
        L = max(len(r) for r in rows)
        out = torch.full((len(rows), L), c.pad_id, dtype=torch.long, device=src.device)
        for b, r in enumerate(rows):
            out[b, : len(r)] = torch.tensor(r, dtype=torch.long)
        return out

    @torch.no_grad()
    def sequence_logprob(self, src: torch.Tensor, out: torch.Tensor) -> torch.Tensor:
        """Sum of log p(token) over out (B, L) in greedy/beam format (the pad_id positions are
        padding), with the same distribution the decoders use (pad_id and bos_id banned)."""
        c = self.config
        bos = torch.full_like(out[:, :1], c.bos_id)
        logp = self._next_logprobs(self(src, torch.cat([bos, out[:, :-1]], 1))[0])  # (B, L, V)
        tok = logp.gather(-1, out[..., None]).squeeze(-1)  # (B, L)
        return tok.masked_fill(out == c.pad_id, 0.0).sum(1)


def length_normaliser(n: int, alpha: float) -> float:
    """GNMT's length penalty (Wu et al. 2016): ((5 + n) / 6) ** alpha; alpha=0 -> 1 (none).
    Scores are log p / penalty, so alpha > 0 stops beam search from preferring short outputs."""
    return ((5.0 + n) / 6.0) ** alpha


def beam_search(
    step_logprobs: Callable[[torch.Tensor], torch.Tensor],
    *,
    bos_id: int,
    eos_id: int,
    beam_size: int,
    max_new_tokens: int,
    length_penalty: float = 0.0,
    device: torch.device | str | None = None,
) -> tuple[list[int], float]:
    """Generic beam search over a next-token distribution; returns (tokens after bos, log p):
    the winner's total log-probability, before any length normalisation.

    step_logprobs(prefixes (N, t)) -> (N, V) log-probabilities. Each step expands every live
    prefix by every token and keeps the beam_size best by total log-probability. A prefix ending
    in eos_id is finished and takes one slot of the beam for good, so the beam shrinks; the
    search ends when no live prefix is left. The winner maximises log p / length_normaliser.
    With beam_size=1 this is exactly greedy decoding.
    """
    alive: list[tuple[list[int], float]] = [([bos_id], 0.0)]
    finished: list[tuple[list[int], float]] = []
    for _ in range(max_new_tokens):
        prefixes = torch.tensor([p for p, _ in alive], dtype=torch.long, device=device)  # (N, t)
        logp = step_logprobs(prefixes)  # (N, V)
        V = logp.shape[-1]
        total = torch.tensor([s for _, s in alive], device=logp.device)[:, None] + logp
        k = min(beam_size - len(finished), total.numel())
        top = total.flatten().topk(k)  # the k best (prefix, token) pairs
        alive = []
        for score, flat in zip(top.values.tolist(), top.indices.tolist()):
            if score == float("-inf"):  # a banned token: nothing left worth keeping
                break
            i, tok = divmod(flat, V)  # which prefix, which token
            seq = prefixes[i].tolist() + [tok]
            (finished if tok == eos_id else alive).append((seq, score))
        if not alive:
            break
    finished += alive  # unfinished ones at max_new_tokens still compete
    best, score = max(
        finished, key=lambda h: h[1] / length_normaliser(len(h[0]) - 1, length_penalty)
    )
    return best[1:], score


# ------------------------------------------------------------------------- checked by notebook 05's exercises
def decoder_mask(tgt_in: torch.Tensor, pad_id: int) -> torch.Tensor:
    """decoder_mask(tgt_in (B, T) ids, pad_id) -> (B, T, T) bool: True where query i may attend to
    key j, i.e. j <= i and token j is not padding."""
    T = tgt_in.shape[1]
    return causal_mask(T, device=tgt_in.device)[None] & (tgt_in != pad_id)[:, None, :]  # (B, T, T)
