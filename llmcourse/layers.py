"""The small layers a Transformer is built from: positions, normalisation, activation, feed-forward.

* `SinusoidalPositionalEncoding` - the fixed sines and cosines of Vaswani et al. 2017, sec. 3.5:
  PE[pos, 2i] = sin(pos / 10000^(2i/C)),  PE[pos, 2i+1] = cos(pos / 10000^(2i/C)).
  Each pair of dimensions is a clock at its own frequency; a shift by k positions is a rotation
  of every pair, which a linear map can learn to read.
* `LearnedPositionalEncoding` - one trained vector per position (BERT, GPT-2). Cannot go beyond
  max_len; the sinusoidal table at least produces *something* for longer inputs.
* `LayerNorm` - Ba et al. 2016: normalise each vector over its features, then scale and shift.
* `RMSNorm` - Zhang & Sennrich 2019: LayerNorm without the mean subtraction and the bias.
* `GELU` - Hendrycks & Gimpel 2016: x * Phi(x), exact (erf) or the tanh approximation GPT-2 uses.
* `FeedForward` - the position-wise two-layer MLP, C -> d_ff -> C (sec. 3.3 of the paper).

Left out: rotary and ALiBi positions (they change attention itself, see llmcourse.gpt), SwiGLU.
"""

from __future__ import annotations

import math

import torch
import torch.nn as nn


class SinusoidalPositionalEncoding(nn.Module):
    """forward(x (B, T, C), offset=0) -> x + PE[offset : offset+T]. No parameters.

    >>> pe = SinusoidalPositionalEncoding(4, max_len=8).encoding(2)
    >>> [round(v, 3) for v in pe[1].tolist()]   # pos 1: sin(1), cos(1), sin(1/100), cos(1/100)
    [0.841, 0.54, 0.01, 1.0]
    """

    def __init__(self, n_embd: int, max_len: int = 4096):
        super().__init__()
        if n_embd % 2:
            raise ValueError("sinusoidal encodings need an even n_embd (sin/cos pairs)")
        pos = torch.arange(max_len, dtype=torch.float32)[:, None]  # (max_len, 1)
        freq = torch.exp(-math.log(10000.0) * torch.arange(0, n_embd, 2) / n_embd)  # (C/2,)
        pe = torch.zeros(max_len, n_embd)
        pe[:, 0::2] = torch.sin(pos * freq)  # even dims: sine
        pe[:, 1::2] = torch.cos(pos * freq)  # odd dims: cosine of the same frequency
        self.register_buffer("pe", pe, persistent=False)  # a function, not a weight: not saved

    def encoding(self, T: int, offset: int = 0) -> torch.Tensor:
        if offset + T > self.pe.shape[0]:
            raise ValueError(f"position {offset + T} beyond max_len={self.pe.shape[0]}")
        return self.pe[offset : offset + T]  # (T, C)

    def forward(self, x: torch.Tensor, offset: int = 0) -> torch.Tensor:
        return x + self.encoding(x.shape[1], offset).to(x.dtype)


class LearnedPositionalEncoding(nn.Module):
    """Unlike the sinusoidal one: a trained table, nn.Embedding(max_len, C), initialised N(0, 0.02)."""

    def __init__(self, n_embd: int, max_len: int = 1024):
        super().__init__()
        self.pos_emb = nn.Embedding(max_len, n_embd)
        nn.init.normal_(self.pos_emb.weight, std=0.02)

    def encoding(self, T: int, offset: int = 0) -> torch.Tensor:
        if offset + T > self.pos_emb.num_embeddings:
            raise ValueError(f"position {offset + T} beyond max_len={self.pos_emb.num_embeddings}")
        return self.pos_emb(torch.arange(offset, offset + T, device=self.pos_emb.weight.device))

    def forward(self, x: torch.Tensor, offset: int = 0) -> torch.Tensor:
        return x + self.encoding(x.shape[1], offset)


class LayerNorm(nn.Module):
    """y = (x - mean) / sqrt(var + eps) * weight + bias, over the last dimension.

    The variance is the biased one (divide by C, not C-1), as in torch.nn.LayerNorm.
    """

    def __init__(self, n_embd: int, eps: float = 1e-5, bias: bool = True):
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(n_embd))
        self.bias = nn.Parameter(torch.zeros(n_embd)) if bias else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        mean = x.mean(-1, keepdim=True)  # (..., 1)
        var = (x - mean).pow(2).mean(-1, keepdim=True)  # (..., 1)
        y = (x - mean) * torch.rsqrt(var + self.eps) * self.weight
        return y + self.bias if self.bias is not None else y


class RMSNorm(nn.Module):
    """Unlike LayerNorm: no centring, no bias; y = x / sqrt(mean(x^2) + eps) * weight."""

    def __init__(self, n_embd: int, eps: float = 1e-6):
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(n_embd))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + self.eps) * self.weight


class GELU(nn.Module):
    """x * Phi(x), Phi the standard normal CDF: "none" uses erf, "tanh" the approximation
    0.5 x (1 + tanh(sqrt(2/pi) (x + 0.044715 x^3))) of the GPT-2 code."""

    def __init__(self, approximate: str = "none"):
        super().__init__()
        if approximate not in ("none", "tanh"):
            raise ValueError("approximate must be 'none' or 'tanh'")
        self.approximate = approximate

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.approximate == "tanh":
            return 0.5 * x * (1.0 + torch.tanh(math.sqrt(2.0 / math.pi) * (x + 0.044715 * x**3)))
        return 0.5 * x * (1.0 + torch.erf(x / math.sqrt(2.0)))


ACTIVATIONS = {"relu": nn.ReLU, "gelu": GELU}


class FeedForward(nn.Module):
    """Position-wise MLP: linear2(dropout(act(linear1(x)))), (B, T, C) -> (B, T, d_ff) -> (B, T, C).

    The names linear1/linear2 are those of torch.nn.TransformerEncoderLayer, so weights copy over
    one to one. The paper uses ReLU and d_ff = 4 * C (512 -> 2048 -> 512).
    """

    def __init__(self, n_embd: int, d_ff: int, dropout: float = 0.0, activation: str = "relu"):
        super().__init__()
        if activation not in ACTIVATIONS:
            raise ValueError(f"activation={activation!r}: use one of {sorted(ACTIVATIONS)}")
        self.linear1 = nn.Linear(n_embd, d_ff)
        self.activation = ACTIVATIONS[activation]()
        self.dropout = nn.Dropout(dropout)
        self.linear2 = nn.Linear(d_ff, n_embd)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.linear2(self.dropout(self.activation(self.linear1(x))))


# ------------------------------------------------------------------------- checked by notebook 05's exercises
def sinusoidal_positions(T: int, n_embd: int) -> torch.Tensor:
    """sinusoidal_positions(T, C) -> (T, C) float32: PE[pos, 2i] = sin(pos / 10000^(2i/C)),
    PE[pos, 2i+1] = cos(pos / 10000^(2i/C))."""
    return SinusoidalPositionalEncoding(n_embd, max_len=T).encoding(T).clone()


def layer_norm(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor) -> torch.Tensor:
    """layer_norm(x (..., C), weight (C,), bias (C,)) -> (..., C): (x - mean) / sqrt(var + 1e-5)
    * weight + bias over the last dimension, var the biased variance."""
    ln = LayerNorm(x.shape[-1])
    with torch.no_grad():
        ln.weight.copy_(weight), ln.bias.copy_(bias)
        return ln(x)
