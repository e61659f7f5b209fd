"""RNN encoder-decoder, without and with attention: the models the Transformer replaced.

Without attention (Sutskever et al. 2014; Cho et al. 2014) the encoder squeezes the whole source
into its final state, and the decoder starts from that one vector: a bottleneck that hurts more
the longer the input is. With attention (Bahdanau et al. 2015) the decoder looks back, at every
output step, at *all* encoder states, weighting each by a learned relevance score:

    score(s_t, h_j) = v^T tanh(W_q s_t + W_k h_j)       (Bahdanau's additive score)
    a_t = softmax_j(score) over real (non-pad) source positions;   c_t = sum_j a_tj h_j
    logits_t = lm_head(tanh(W_c [s_t; c_t]))             (Luong et al. 2015's read-out)

Simplification: as in Luong et al. 2015, attention is computed from the decoder's *current*
state s_t, after its RNN step, and the context is not fed back into the next step ("input
feeding"). The decoder RNN can then run over the whole teacher-forced target in one call and
attention is computed for all steps at once. Also left out: bidirectional encoders (Bahdanau used
one), beam search (see llmcourse.transformer.beam_search).

`Seq2SeqRNN(config)` follows the course convention forward(src, tgt_in, targets=None) ->
(logits, loss) and has the Transformer's greedy_decode output format, so the two compare directly.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn as nn
import torch.nn.functional as F

from llmcourse.config import Sized
from llmcourse.rnn import LAYERS


@dataclass
class Seq2SeqRNNConfig(Sized):
    src_vocab_size: int = 64  # source token ids are < this
    tgt_vocab_size: int = 64  # target token ids are < this
    kind: str = "gru"  # "rnn" | "lstm" | "gru", for encoder and decoder
    attention: bool = True  # False: the decoder sees only the encoder's final state
    n_embd: int = 64  # token embedding width
    hidden_size: int = 256  # recurrent state width (encoder and decoder)
    n_layer: int = 1  # stacked recurrent layers
    attn_dim: int = 128  # width of the additive-attention scoring layer
    dropout: float = 0.1  # on embeddings and the read-out
    pad_id: int = 0
    bos_id: int = 1
    eos_id: int = 2

    smoke_overrides = {"hidden_size": 64, "n_embd": 32, "attn_dim": 32, "dropout": 0.0}


class AdditiveAttention(nn.Module):
    """Bahdanau's score v^T tanh(W_q q + W_k k). query (B, T, Hq), keys (B, S, Hk), key_mask
    (B, S) True at real tokens -> context (B, T, Hk) and weights (B, T, S)."""

    def __init__(self, query_dim: int, key_dim: int, attn_dim: int):
        super().__init__()
        self.W_q = nn.Linear(query_dim, attn_dim, bias=False)
        self.W_k = nn.Linear(key_dim, attn_dim, bias=True)
        self.v = nn.Linear(attn_dim, 1, bias=False)

    def forward(
        self, query: torch.Tensor, keys: torch.Tensor, key_mask: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        q = self.W_q(query)[:, :, None, :]  # (B, T, 1, A)
        k = self.W_k(keys)[:, None, :, :]  # (B, 1, S, A)
        scores = self.v(torch.tanh(q + k)).squeeze(-1)  # (B, T, S): one score per (step, source)
        if key_mask is not None:
            scores = scores.masked_fill(~key_mask[:, None, :], float("-inf"))
        weights = F.softmax(scores, dim=-1)
        return weights @ keys, weights  # (B, T, S) @ (B, S, Hk) -> (B, T, Hk)


class Seq2SeqRNN(nn.Module):
    """Encoder RNN -> (final state, all states) -> decoder RNN (+ attention) -> logits."""

    def __init__(self, config: Seq2SeqRNNConfig):
        super().__init__()
        self.config = c = config
        layer = LAYERS[c.kind]
        self.src_emb = nn.Embedding(c.src_vocab_size, c.n_embd)
        self.tgt_emb = nn.Embedding(c.tgt_vocab_size, c.n_embd)
        self.encoder = layer(c.n_embd, c.hidden_size, c.n_layer, dropout=c.dropout)
        self.decoder = layer(c.n_embd, c.hidden_size, c.n_layer, dropout=c.dropout)
        self.drop = nn.Dropout(c.dropout)
        if c.attention:
            self.attn = AdditiveAttention(c.hidden_size, c.hidden_size, c.attn_dim)
            self.combine = nn.Linear(2 * c.hidden_size, c.hidden_size)
        self.lm_head = nn.Linear(c.hidden_size, c.tgt_vocab_size)
        self.keep_weights = False  # set True to keep the last attention weights for a heatmap
        self.attn_weights: torch.Tensor | None = None  # (B, T, S)

    def encode(self, src: torch.Tensor):
        """src (B, S) -> encoder states (B, S, H), final state, source mask (B, S)."""
        src_mask = src != self.config.pad_id
        # padded steps leave the state unchanged, so the final state is each source's own
        enc_out, state = self.encoder(self.drop(self.src_emb(src)), step_mask=src_mask)
        return enc_out, state, src_mask

    def _readout(
        self, dec_out: torch.Tensor, enc_out: torch.Tensor, src_mask: torch.Tensor
    ) -> torch.Tensor:
        """Decoder states (B, T, H) -> logits (B, T, V), looking at the encoder if attention is on."""
        if self.config.attention:
            context, weights = self.attn(dec_out, enc_out, src_mask)  # (B, T, H), (B, T, S)
            if self.keep_weights:
                self.attn_weights = weights.detach()
            dec_out = torch.tanh(self.combine(torch.cat([dec_out, context], dim=-1)))  # (B, T, H)
        return self.lm_head(self.drop(dec_out))

    def forward(
        self, src: torch.Tensor, tgt_in: torch.Tensor, targets: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        enc_out, state, src_mask = self.encode(src)
        dec_out, _ = self.decoder(self.drop(self.tgt_emb(tgt_in)), state)  # teacher forcing
        logits = self._readout(dec_out, enc_out, src_mask)
        loss = None
        if targets is not None:
            loss = F.cross_entropy(logits.flatten(0, 1), targets.flatten(), ignore_index=-100)
        return logits, loss

    @torch.no_grad()
    def greedy_decode(self, src: torch.Tensor, max_new_tokens: int | None = None) -> torch.Tensor:
        """Most likely token each step, carrying the decoder state. src (B, S) -> (B, L) ids
        after bos_id, ending with eos_id then pad_id; pad_id and bos_id are never emitted.
        With keep_weights, attn_weights holds the whole (B, L, S) attention map afterwards."""
        c = self.config
        enc_out, state, src_mask = self.encode(src)
        B = src.shape[0]
        tok = torch.full((B, 1), c.bos_id, dtype=torch.long, device=src.device)
        done = torch.zeros(B, dtype=torch.bool, device=src.device)
        out, maps = [], []
        for _ in range(max_new_tokens or 2 * src.shape[1] + 10):
            dec_out, state = self.decoder(self.tgt_emb(tok), state)  # one step: (B, 1, H)
            logits = self._readout(dec_out, enc_out, src_mask)[:, -1]  # (B, V)
            if self.keep_weights and c.attention:
                maps.append(self.attn_weights)
            logits[:, [c.pad_id, c.bos_id]] = float("-inf")
            nxt = torch.where(done, c.pad_id, logits.argmax(-1))  # (B,)
            out.append(nxt)
            done |= nxt == c.eos_id
            tok = nxt[:, None]
            if done.all():
                break
        if maps:
            self.attn_weights = torch.cat(maps, dim=1)  # (B, L, S)
        return torch.stack(out, dim=1)
