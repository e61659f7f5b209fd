"""The exercises of notebook 03 (notebooks/03_rnn.ipynb).

`exercises.check("03.<name>", fn)` imports this module on first use. Each reference is the package
function that does the job, imported from its topic module; a function defined here exists only for
its exercise.
"""

from __future__ import annotations

import torch

from llmcourse.course.exercises import register, torch_generator
from llmcourse.rnn import gru_step, lstm_step, rnn_forward


# ---------------------------------------------------------------- llmcourse/rnn.py
def _lstm_inputs(rng):
    g = torch_generator(rng)
    B, C, H = rng.randint(1, 4), rng.randint(1, 5), rng.randint(1, 5)
    return (
        torch.randn(B, C, generator=g),
        torch.randn(B, H, generator=g),
        torch.randn(B, H, generator=g),
        torch.randn(4 * H, C, generator=g),
        torch.randn(4 * H, H, generator=g),
        torch.randn(4 * H, generator=g),
    )


register(
    "03.lstm_step",
    lstm_step,
    inputs=_lstm_inputs,
    hint="torch's gate order is i, f, g, o (chunk(4, -1)); "
    "c' = f*c + i*g and h' = o*tanh(c'), with sigmoid on i, f, o and tanh on g",
)


def _rnn_args(g: torch.Generator, B: int, T: int, C: int, H: int) -> tuple[torch.Tensor, ...]:
    """x (B, T, C), h0 (B, H), W_ih (H, C), W_hh (H, H), b (H,), all N(0, 1)."""
    return tuple(
        torch.randn(shape, generator=g) for shape in ((B, T, C), (B, H), (H, C), (H, H), (H,))
    )


def _rnn_inputs(rng):
    B, T, C, H = rng.randint(1, 3), rng.randint(1, 6), rng.randint(1, 5), rng.randint(1, 5)
    return _rnn_args(torch_generator(rng), B, T, C, H)


register(
    "03.rnn_forward",
    rnn_forward,
    inputs=_rnn_inputs,
    atol=1e-5,
    fixed=(_rnn_args(torch.Generator().manual_seed(3), 2, 3, 2, 4),),
    hint="loop t over dim 1 (x[:, t]); each step reads the h the previous step produced, "
    "starting from h0; stack the T states along dim 1",
)


def _gru_inputs(rng):
    g = torch_generator(rng)
    B, C, H = rng.randint(1, 4), rng.randint(1, 5), rng.randint(1, 5)
    G = 3 * H  # r, z, n stacked
    return (
        torch.randn(B, C, generator=g),
        torch.randn(B, H, generator=g),
        torch.randn(G, C, generator=g),
        torch.randn(G, H, generator=g),
        torch.randn(G, generator=g),
        torch.randn(G, generator=g),
    )


register(
    "03.gru_step",
    gru_step,
    inputs=_gru_inputs,
    atol=1e-5,
    hint="torch's gate order is r, z, n (chunk(3, -1) of each projection); r multiplies the whole "
    "hidden projection of n, bias included: n = tanh(W_in x + b_in + r*(W_hn h + b_hn)); "
    "h' = (1 - z)*n + z*h",
)
