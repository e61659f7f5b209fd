"""Recurrent networks written out from their equations: RNN, LSTM and GRU cells and layers.

The class ladder (each rung adds one idea):

* `RNNCell`  - Elman's recurrence  h' = tanh(W_ih x + b_ih + W_hh h + b_hh).
* `LSTMCell` - adds a cell state c and three gates (Hochreiter & Schmidhuber 1997; the forget
  gate is from Gers et al. 2000):  i, f, o = sigmoid(.), g = tanh(.);  c' = f*c + i*g;
  h' = o * tanh(c').  The additive update of c is what lets gradients survive long distances.
* `GRUCell`  - two gates and no separate cell state (Cho et al. 2014):  r, z = sigmoid(.);
  n = tanh(W_in x + b_in + r * (W_hn h + b_hn));  h' = (1 - z) * n + z * h.

`RNN` -> `LSTM` / `GRU` stack cells into multi-layer, batch-first layers. Parameters are stored
exactly as torch.nn.RNN/LSTM/GRU stores them (gates stacked row-wise: i,f,g,o for the LSTM and
r,z,n for the GRU), so `layer.copy_from_torch(torch_layer)` makes the two compute the same thing.

Each cell splits its work in two: `input_proj` (x W_ih^T + b_ih) needs no recurrence, so the layer
computes it for all time steps in one matrix multiply; `step` is the truly sequential part. That
split is the "sequential bottleneck" the Transformer removes.

On top: `CharRNNLM`, a character-level language model with the course's calling convention
`forward(idx, targets=None) -> (logits, loss)`, and `grad_norm_by_distance`, a probe showing
vanishing gradients (norm of dL_T/dh_t as the distance T-1-t grows).

Left out: bidirectional layers (use torch.nn.LSTM(bidirectional=True)), packed variable-length
sequences, projections (LSTMP), cuDNN speed.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn as nn
import torch.nn.functional as F

from llmcourse import data
from llmcourse.tasks.swap_text import SWAP_CORPUS, swap_sentences
from llmcourse.config import Sized

State = torch.Tensor | tuple[torch.Tensor, torch.Tensor]


class RNNCell(nn.Module):
    """One step of a vanilla (Elman) RNN: h' = tanh(W_ih x + b_ih + W_hh h + b_hh)."""

    n_gates = 1  # how many H-sized blocks are stacked in weight_ih / weight_hh

    def __init__(self, input_size: int, hidden_size: int, bias: bool = True):
        super().__init__()
        self.input_size, self.hidden_size = input_size, hidden_size
        G = self.n_gates * hidden_size
        self.weight_ih = nn.Parameter(torch.empty(G, input_size))
        self.weight_hh = nn.Parameter(torch.empty(G, hidden_size))
        self.bias_ih = nn.Parameter(torch.empty(G)) if bias else None
        self.bias_hh = nn.Parameter(torch.empty(G)) if bias else None
        self.reset_parameters()

    def reset_parameters(self) -> None:
        # torch's init: every weight and bias ~ U(-1/sqrt(H), 1/sqrt(H))
        k = 1.0 / math.sqrt(self.hidden_size)
        for p in self.parameters():
            nn.init.uniform_(p, -k, k)

    def init_state(self, batch_size: int, like: torch.Tensor) -> State:
        return like.new_zeros(batch_size, self.hidden_size)

    @staticmethod
    def hidden(state: State) -> torch.Tensor:
        """The part of the state that is the cell's output h."""
        return state

    def input_proj(self, x: torch.Tensor) -> torch.Tensor:
        """x W_ih^T + b_ih: (..., input_size) -> (..., n_gates*H). No recurrence, so any shape."""
        return F.linear(x, self.weight_ih, self.bias_ih)

    def hidden_proj(self, h: torch.Tensor) -> torch.Tensor:
        return F.linear(h, self.weight_hh, self.bias_hh)

    def step(self, gx: torch.Tensor, state: State) -> State:
        """The recurrence, given the pre-computed input projection gx (B, n_gates*H)."""
        return torch.tanh(gx + self.hidden_proj(state))

    def forward(self, x: torch.Tensor, state: State | None = None) -> State:
        """x: (B, input_size) -> new state ((B, H), or a (h, c) pair for the LSTM)."""
        if state is None:
            state = self.init_state(x.shape[0], x)
        return self.step(self.input_proj(x), state)


class LSTMCell(RNNCell):
    """Unlike RNNCell: a cell state c updated additively, gated by input/forget/output gates."""

    n_gates = 4  # torch's order: input i, forget f, cell candidate g, output o

    def init_state(self, batch_size: int, like: torch.Tensor) -> State:
        z = like.new_zeros(batch_size, self.hidden_size)
        return (z, z.clone())

    @staticmethod
    def hidden(state: State) -> torch.Tensor:
        return state[0]

    def step(self, gx: torch.Tensor, state: State) -> State:
        h, c = state
        gates = gx + self.hidden_proj(h)  # (B, 4H)
        i, f, g, o = gates.chunk(4, dim=-1)  # 4 x (B, H)
        i, f, o = torch.sigmoid(i), torch.sigmoid(f), torch.sigmoid(o)
        c = f * c + i * torch.tanh(g)  # the additive path: dc'/dc = f, no squashing
        h = o * torch.tanh(c)
        return (h, c)


class GRUCell(RNNCell):
    """Unlike LSTMCell: no separate cell state; an update gate z interpolates old and new h."""

    n_gates = 3  # torch's order: reset r, update z, new n

    def step(self, gx: torch.Tensor, state: State) -> State:
        h = state
        gh = self.hidden_proj(h)  # (B, 3H)
        x_r, x_z, x_n = gx.chunk(3, dim=-1)
        h_r, h_z, h_n = gh.chunk(3, dim=-1)
        r = torch.sigmoid(x_r + h_r)
        z = torch.sigmoid(x_z + h_z)
        # torch (and cuDNN) apply r *after* the hidden projection: r * (W_hn h + b_hn).
        # Cho et al. 2014 write W_hn (r * h) + b_hn: a different function, so weights do not
        # carry over between the two forms.
        n = torch.tanh(x_n + r * h_n)
        return (1 - z) * n + z * h


def _keep_where(mask: torch.Tensor, new: State, old: State) -> State:
    """new where mask (B,) is True, old elsewhere; works on a tensor or an (h, c) pair."""
    if isinstance(new, tuple):
        return tuple(_keep_where(mask, n, o) for n, o in zip(new, old))
    return torch.where(mask[:, None], new, old)


class RNN(nn.Module):
    """A stack of `num_layers` cells over a batch-first sequence, like torch.nn.RNN(batch_first=True).

    forward(x (B, T, input_size), state=None) -> (out (B, T, H), final state); the state is
    (num_layers, B, H) — for the LSTM an (h, c) pair of those — exactly torch's format.
    """

    cell_class: type[RNNCell] = RNNCell

    def __init__(
        self,
        input_size: int,
        hidden_size: int,
        num_layers: int = 1,
        bias: bool = True,
        dropout: float = 0.0,
    ):
        super().__init__()
        self.input_size, self.hidden_size, self.num_layers = input_size, hidden_size, num_layers
        self.cells = nn.ModuleList(
            self.cell_class(input_size if k == 0 else hidden_size, hidden_size, bias)
            for k in range(num_layers)
        )
        self.dropout = nn.Dropout(dropout)  # between layers, never after the last (as torch)

    # --- state format conversion: torch's stacked (L, B, H) <-> one state per layer ---------
    def _split_state(self, state: State | None) -> list:
        if state is None:
            return [None] * self.num_layers
        return list(state.unbind(0))

    def _stack_states(self, states: list) -> State:
        return torch.stack(states, 0)

    def forward_steps(
        self, x: torch.Tensor, state: State | None = None, step_mask: torch.Tensor | None = None
    ):
        """Like forward, but returns the top layer's per-step outputs as a list of T tensors
        (B, H) — the very tensors the recurrence used, so autograd can differentiate w.r.t. them."""
        B, T, _ = x.shape
        layer_states = self._split_state(state)
        finals = []
        for k, cell in enumerate(self.cells):
            s = layer_states[k] if layer_states[k] is not None else cell.init_state(B, x)
            gx = cell.input_proj(x)  # (B, T, n_gates*H): all time steps at once
            steps = []
            for t in range(T):  # the sequential part: step t needs step t-1
                new = cell.step(gx[:, t], s)
                s = new if step_mask is None else _keep_where(step_mask[:, t], new, s)
                steps.append(cell.hidden(s))
            finals.append(s)
            x = torch.stack(steps, dim=1)  # (B, T, H), the input of the next layer
            if k < self.num_layers - 1:
                x = self.dropout(x)
        return steps, self._stack_states(finals)

    def forward(
        self, x: torch.Tensor, state: State | None = None, step_mask: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, State]:
        """step_mask (B, T), optional: where False (padding) the state is carried over unchanged,
        so the final state is the one after each sequence's last real token (what torch's packed
        sequences give)."""
        steps, final = self.forward_steps(x, state, step_mask)
        return torch.stack(steps, dim=1), final  # (B, T, H)

    def copy_from_torch(self, other: nn.Module) -> None:
        """Copy weights from a torch.nn.RNN/LSTM/GRU of the same shape.

        torch names them weight_ih_l{k}, weight_hh_l{k}, bias_ih_l{k}, bias_hh_l{k}; ours live in
        cells[k] under the same names without the suffix. The tensors are identical in layout.
        """
        if getattr(other, "bidirectional", False) or getattr(other, "proj_size", 0):
            raise ValueError("only unidirectional torch layers without projections can be copied")
        ours = {}
        for name, value in other.state_dict().items():
            base, layer = name.rsplit("_l", 1)  # "weight_ih_l1" -> ("weight_ih", "1")
            ours[f"cells.{layer}.{base}"] = value
        self.load_state_dict(ours)


class LSTM(RNN):
    """Unlike RNN: LSTM cells; the state is a pair (h, c), each (num_layers, B, H)."""

    cell_class = LSTMCell

    def _split_state(self, state: State | None) -> list:
        if state is None:
            return [None] * self.num_layers
        h, c = state
        return list(zip(h.unbind(0), c.unbind(0)))

    def _stack_states(self, states: list) -> State:
        return (torch.stack([s[0] for s in states]), torch.stack([s[1] for s in states]))


class GRU(RNN):
    """Unlike RNN: GRU cells (same state format as RNN)."""

    cell_class = GRUCell


LAYERS: dict[str, type[RNN]] = {"rnn": RNN, "lstm": LSTM, "gru": GRU}
TORCH_LAYERS: dict[str, type[nn.Module]] = {"rnn": nn.RNN, "lstm": nn.LSTM, "gru": nn.GRU}


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
            self.rnn = TORCH_LAYERS[kind](
                n_embd, hidden_size, n_layer, dropout=dropout, batch_first=True
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
            cfg.n_embd,
            cfg.hidden_size,
            cfg.n_layer,
            cfg.dropout,
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
        temperature: float = 1.0,
        generator: torch.Generator | None = None,
    ) -> torch.Tensor:
        """Continue idx (B, T) by sampling; the state is carried, so each step costs O(1) in T.
        temperature=0 means greedy."""
        logits, state = self.forward_with_state(idx)
        out = [idx]
        for _ in range(max_new_tokens):
            last = logits[:, -1]  # (B, V)
            if temperature == 0:
                nxt = last.argmax(-1, keepdim=True)
            else:
                probs = F.softmax(last / temperature, dim=-1)
                nxt = torch.multinomial(probs, 1, generator=generator)  # (B, 1)
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


# ------------------------------------------------------------------------- checked by notebook 03's exercises
def lstm_step(
    x: torch.Tensor,
    h: torch.Tensor,
    c: torch.Tensor,
    W_ih: torch.Tensor,
    W_hh: torch.Tensor,
    b: torch.Tensor,
) -> tuple[torch.Tensor, torch.Tensor]:
    """lstm_step(x (B, C), h (B, H), c (B, H), W_ih (4H, C), W_hh (4H, H), b (4H,)) -> (h', c'):
    one LSTM step, gates stacked in torch's order i, f, g, o."""
    cell = LSTMCell(x.shape[1], h.shape[1], bias=False)
    with torch.no_grad():
        cell.weight_ih.copy_(W_ih), cell.weight_hh.copy_(W_hh)
    return cell.step(cell.input_proj(x) + b, (h, c))


# fixed case: B=2 != T=3, so a loop over the wrong axis shows; T > 1, so does a state not carried over
def rnn_forward(
    x: torch.Tensor, h0: torch.Tensor, W_ih: torch.Tensor, W_hh: torch.Tensor, b: torch.Tensor
) -> torch.Tensor:
    """rnn_forward(x (B, T, C), h0 (B, H), W_ih (H, C), W_hh (H, H), b (H,)) -> (B, T, H): run
    h_t = tanh(W_ih x_t + W_hh h_{t-1} + b) from h0 over the T steps and return every h_t."""
    layer = RNN(x.shape[-1], h0.shape[-1])
    cell = layer.cells[0]
    with torch.no_grad():
        (
            cell.weight_ih.copy_(W_ih),
            cell.weight_hh.copy_(W_hh),
            cell.bias_ih.copy_(b),
            cell.bias_hh.zero_(),
        )
        return layer(x, h0[None])[0]


def gru_step(
    x: torch.Tensor,
    h: torch.Tensor,
    W_ih: torch.Tensor,
    W_hh: torch.Tensor,
    b_ih: torch.Tensor,
    b_hh: torch.Tensor,
) -> torch.Tensor:
    """gru_step(x (B, C), h (B, H), W_ih (3H, C), W_hh (3H, H), b_ih (3H,), b_hh (3H,)) -> h' (B, H):
    one GRU step as torch.nn.GRUCell computes it, gates stacked in the order r, z, n."""
    cell = GRUCell(x.shape[1], h.shape[1])
    cell.load_state_dict({"weight_ih": W_ih, "weight_hh": W_hh, "bias_ih": b_ih, "bias_hh": b_hh})
    with torch.no_grad():
        return cell(x, h)
