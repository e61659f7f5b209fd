"""A character-level language model on the recurrent layers of `llmcourse.rnn`, and a probe.

* `CharRNNConfig` / `load_char_text`: the sizes, and the text (a named corpus, or the generated
  "animal swaps" whose lines need a memory longer than any N-gram's).
* `CharRNNLM`: embedding -> RNN/LSTM/GRU stack -> linear head, with the course's calling
  convention `forward(idx, targets=None) -> (logits, loss)`, so it trains with `train.fit`.
  `fused=True` runs torch's nn.LSTM/GRU/RNN instead of ours: the same maths, one cuDNN call.
* `grad_norm_by_distance`: vanishing gradients, measured (the norm of dL_T/dh_t as the distance
  T-1-t grows), through the package's step-by-step layers.

References: Karpathy's char-rnn (2015) for the model; Bengio, Simard & Frasconi (1994) and
Pascanu, Mikolov & Bengio (2013) for vanishing gradients.
Left out: stateful training across batches (each window starts from a zero state), beam search.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn as nn
import torch.nn.functional as F

from llmcourse import data
from llmcourse.config import Sized
from llmcourse.generate import sample_next_token
from llmcourse.rnn import LAYERS, RNN, TORCH_LAYERS, State
from llmcourse.tasks.swap_text import SWAP_CORPUS, swap_sentences


@dataclass
class CharRNNConfig(Sized):
    corpus: str = "wikitext-2"  # llmcourse.data name (the text notebook 01 counts), or SWAP_CORPUS
    max_chars: int = 3_000_000  # cap on the characters used (0 = all)
    kind: str = "lstm"  # "rnn" | "lstm" | "gru"
    n_embd: int = 64  # character embedding width
    hidden_size: int = 512  # recurrent state width
    n_layer: int = 2  # stacked recurrent layers
    dropout: float = 0.2  # between layers and before the head
    block_size: int = 128  # training window (truncated backpropagation through time)
    batch_size: int = 64  # windows per batch
    max_steps: int = 5000  # optimizer steps (the notebook passes them to TrainConfig)
    lr: float = 3e-3  # peak learning rate (likewise)
    fused: bool = True  # train with torch's fused nn.LSTM/GRU/RNN (the same maths as ours, faster)
    prompt: str = "the "  # the characters the notebook's sample starts from

    # smoke: the generated SWAP_CORPUS, whose lines need a memory longer than any N-gram's
    smoke_overrides = {
        "corpus": "animal-swaps",
        "max_chars": 0,
        "hidden_size": 128,
        "n_layer": 1,
        "dropout": 0.0,
        "block_size": 64,
        "batch_size": 32,
        "max_steps": 800,
        "lr": 1e-2,
    }
    # LLMCOURSE_LANG=zh: Debian's fortunes-zh; smoke: its Tang and Song poems (39k characters, 2.7k
    # distinct), fewer and smaller batches with dropout, as so little text is soon learnt by heart
    language_overrides = {
        "zh": {"corpus": "fortunes-zh", "prompt": "《"},
        "zh/smoke": {"corpus": "poems-zh", "batch_size": 16, "max_steps": 160, "dropout": 0.2},
    }


def load_char_text(cfg: CharRNNConfig, seed: int = 0) -> str:
    """The configured text: `llmcourse.data.load_text(cfg.corpus)`, or 4,000 generated swap lines
    (about 180k characters) for SWAP_CORPUS; cut at `cfg.max_chars` unless it is 0."""
    text = swap_sentences(4000, seed) if cfg.corpus == SWAP_CORPUS else data.load_text(cfg.corpus)
    return text[: cfg.max_chars] if cfg.max_chars else text


class CharRNNLM(nn.Module):
    """Character-level language model: embedding -> RNN/LSTM/GRU stack -> linear head.

    forward(idx (B, T), targets (B, T) or None) -> (logits (B, T, vocab_size), loss or None),
    cross-entropy with ignore_index=-100, so it trains with `llmcourse.train.fit`.
    """

    def __init__(
        self,
        vocab_size: int,
        kind: str = "lstm",
        *,
        n_embd: int = 64,
        hidden_size: int = 256,
        n_layer: int = 1,
        dropout: float = 0.0,
        fused: bool = False,
    ):
        super().__init__()
        if kind not in LAYERS:
            raise ValueError(f"kind={kind!r}: use one of {sorted(LAYERS)}")
        self.vocab_size, self.kind = vocab_size, kind
        self.tok_emb = nn.Embedding(vocab_size, n_embd)
        if fused:  # torch's layer: same equations, parameters and state format, one C++/cuDNN call
            # torch drops out between layers only: 0 for one layer (the same) avoids its warning
            between = dropout if n_layer > 1 else 0.0
            self.rnn = TORCH_LAYERS[kind](
                n_embd, hidden_size, n_layer, dropout=between, batch_first=True
            )
        else:
            self.rnn = LAYERS[kind](n_embd, hidden_size, n_layer, dropout=dropout)
        self.drop = nn.Dropout(dropout)
        self.lm_head = nn.Linear(hidden_size, vocab_size)

    @classmethod
    def from_config(cls, cfg: CharRNNConfig, vocab_size: int) -> CharRNNLM:
        return cls(
            vocab_size,
            cfg.kind,
            n_embd=cfg.n_embd,
            hidden_size=cfg.hidden_size,
            n_layer=cfg.n_layer,
            dropout=cfg.dropout,
            fused=cfg.fused,
        )

    def forward_with_state(
        self, idx: torch.Tensor, state: State | None = None
    ) -> tuple[torch.Tensor, State]:
        """(B, T) -> logits (B, T, V) and the final recurrent state, for carrying on later."""
        out, state = self.rnn(self.tok_emb(idx), state)  # (B, T, H)
        return self.lm_head(self.drop(out)), state

    def forward(
        self, idx: torch.Tensor, targets: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        logits, _ = self.forward_with_state(idx)
        loss = None
        if targets is not None:
            loss = F.cross_entropy(logits.flatten(0, 1), targets.flatten(), ignore_index=-100)
        return logits, loss

    @torch.no_grad()
    def generate(
        self,
        idx: torch.Tensor,
        max_new_tokens: int,
        *,
        temperature: float = 1.0,
        generator: torch.Generator | None = None,
    ) -> torch.Tensor:
        """Continue idx (B, T) by sampling; the state is carried, so each step costs O(1) in T.
        temperature=0 means greedy (`generate.sample_next_token` draws every token)."""
        logits, state = self.forward_with_state(idx)
        out = [idx]
        for _ in range(max_new_tokens):
            nxt = sample_next_token(logits[:, -1], generator, temperature=temperature)  # (B, 1)
            out.append(nxt)
            logits, state = self.forward_with_state(nxt, state)
        return torch.cat(out, dim=1)


def grad_norm_by_distance(model: CharRNNLM, seq: torch.Tensor, wrt: str = "hidden") -> torch.Tensor:
    """How much the loss at the last step depends on earlier steps: vanishing gradients, measured.

    seq: (T+1,) or (B, T+1) token ids; inputs are seq[..., :-1], and L_T is the cross-entropy of
    predicting seq[..., -1] from the last input position. Returns norms (T,) ordered by distance:
    norms[d] = || dL_T / dh_{T-1-d} || (top-layer hidden state, wrt="hidden") or
    || dL_T / dx_{T-1-d} || (input embedding, wrt="input"), averaged over the batch.
    The gradient is the *total* derivative, through every path of the recurrence.

    For a vanilla RNN the norms typically fall geometrically with d; an LSTM's fall far slower.
    """
    if wrt not in ("hidden", "input"):
        raise ValueError("wrt must be 'hidden' or 'input'")
    if not isinstance(model.rnn, RNN):
        raise TypeError(
            "the probe needs the package's step-by-step layer: build the model with fused=False"
        )
    seq = seq.unsqueeze(0) if seq.dim() == 1 else seq  # (B, T+1)
    idx, target = seq[:, :-1], seq[:, -1]
    was_training = model.training
    model.eval()
    try:
        with torch.enable_grad():
            x = model.tok_emb(idx).detach().requires_grad_(True)  # (B, T, n_embd)
            steps, _ = model.rnn.forward_steps(x)
            loss = F.cross_entropy(model.lm_head(steps[-1]), target)
            wrt_tensors = steps if wrt == "hidden" else [x]
            grads = torch.autograd.grad(loss, wrt_tensors)
    finally:
        model.train(was_training)
    if wrt == "hidden":
        g = torch.stack(grads, dim=1)  # (B, T, H)
    else:
        g = grads[0]  # (B, T, n_embd)
    norms = g.norm(dim=-1).mean(0)  # (T,), in time order
    return norms.flip(0).detach()  # distance order: index 0 is the last step
