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

A character-level language model on these layers, and the vanishing-gradient probe, live in
`llmcourse.char_rnn`.

Left out: bidirectional layers (use torch.nn.LSTM(bidirectional=True)), packed variable-length
sequences, projections (LSTMP), cuDNN speed.
"""

from __future__ import annotations

import math

import torch
import torch.nn as nn
import torch.nn.functional as F

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
        # the input's part (gx) plus the previous state's part, squashed into (-1, 1) by tanh:
        # the same W_hh at every step, which is why gradients shrink or grow geometrically
        return torch.tanh(gx + self.hidden_proj(state))  # (B, H)

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
        # 1. all four pre-activations in one go: input part (precomputed) + hidden part
        gates = gx + self.hidden_proj(h)  # (B, 4H)
        i, f, g, o = gates.chunk(4, dim=-1)  # 4 x (B, H), in torch's order
        # 2. the three gates are sigmoids, each entry in (0, 1): how much to let through
        i = torch.sigmoid(i)  # input gate: how much of the candidate to write
        f = torch.sigmoid(f)  # forget gate: how much of the old cell state to keep
        o = torch.sigmoid(o)  # output gate: how much of the cell to show as h
        # 3. the candidate content, in (-1, 1) like a vanilla RNN's new state
        g = torch.tanh(g)
        # 4. the additive update: keep part of c, add part of g. dc'/dc = f, no tanh and no
        #    weight matrix on this path, so gradients can survive many steps
        c = f * c + i * g
        # 5. the output: the squashed cell state, gated
        h = o * torch.tanh(c)
        return (h, c)


class GRUCell(RNNCell):
    """Unlike LSTMCell: no separate cell state; an update gate z interpolates old and new h."""

    n_gates = 3  # torch's order: reset r, update z, new n

    def step(self, gx: torch.Tensor, state: State) -> State:
        h = state
        # 1. the hidden projection is kept apart from the input's (unlike the LSTM), because the
        #    reset gate will scale only its candidate part
        gh = self.hidden_proj(h)  # (B, 3H)
        x_r, x_z, x_n = gx.chunk(3, dim=-1)  # 3 x (B, H), in torch's order r, z, n
        h_r, h_z, h_n = gh.chunk(3, dim=-1)
        # 2. reset gate r: how much of the old state the candidate may use
        r = torch.sigmoid(x_r + h_r)
        # 3. update gate z: how much of the old state to keep as it is
        z = torch.sigmoid(x_z + h_z)
        # 4. the candidate. torch (and cuDNN) apply r *after* the hidden projection:
        #    r * (W_hn h + b_hn). Cho et al. 2014 write W_hn (r * h) + b_hn: a different
        #    function, so weights do not carry over between the two forms.
        n = torch.tanh(x_n + r * h_n)
        # 5. interpolate: z near 1 copies h forward unchanged (the GRU's additive path)
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
        *,
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
        self, x: torch.Tensor, state: State | None = None, *, step_mask: torch.Tensor | None = None
    ):
        """Like forward, but returns the top layer's per-step outputs as a list of T tensors
        (B, H) — the very tensors the recurrence used, so autograd can differentiate w.r.t. them."""
        B, T, _ = x.shape
        layer_states = self._split_state(state)
        finals = []
        for k, cell in enumerate(self.cells):
            s = layer_states[k] if layer_states[k] is not None else cell.init_state(B, x)
            # the input projection needs no recurrence: all time steps in one matrix multiply
            gx = cell.input_proj(x)  # (B, T, n_gates*H)
            steps = []
            for t in range(T):  # the sequential part: step t needs step t-1
                new = cell.step(gx[:, t], s)
                # at a padded step (mask False) the state is carried over unchanged
                s = new if step_mask is None else _keep_where(step_mask[:, t], new, s)
                steps.append(cell.hidden(s))
            finals.append(s)
            x = torch.stack(steps, dim=1)  # (B, T, H), the input of the next layer
            if k < self.num_layers - 1:
                x = self.dropout(x)
        return steps, self._stack_states(finals)

    def forward(
        self, x: torch.Tensor, state: State | None = None, *, step_mask: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, State]:
        """step_mask (B, T), optional: where False (padding) the state is carried over unchanged,
        so the final state is the one after each sequence's last real token (what torch's packed
        sequences give)."""
        steps, final = self.forward_steps(x, state, step_mask=step_mask)
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
        cell.weight_ih.copy_(W_ih)
        cell.weight_hh.copy_(W_hh)
        cell.bias_ih.copy_(b)
        cell.bias_hh.zero_()
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
