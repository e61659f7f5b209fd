"""Layers vs torch.nn, and hand-derivable values of the positional encodings."""

import math

import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

from llmcourse import layers

TOL = dict(atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("shape", [(2, 3, 8), (5, 16), (1, 1, 1, 4)])
@pytest.mark.parametrize("bias", [True, False])
def test_layernorm_equals_torch(shape, bias):
    torch.manual_seed(0)
    ref = nn.LayerNorm(shape[-1], eps=1e-5, bias=bias)
    nn.init.normal_(ref.weight)
    if bias:
        nn.init.normal_(ref.bias)
    ours = layers.LayerNorm(shape[-1], bias=bias)
    ours.load_state_dict(ref.state_dict())
    x = 3 * torch.randn(shape) + 1
    torch.testing.assert_close(ours(x), ref(x), **TOL)


def test_rmsnorm_equals_torch():
    torch.manual_seed(1)
    ref, ours = nn.RMSNorm(8, eps=1e-6), layers.RMSNorm(8)
    nn.init.normal_(ref.weight)
    ours.load_state_dict(ref.state_dict())
    x = torch.randn(2, 4, 8)
    torch.testing.assert_close(ours(x), ref(x), **TOL)


@pytest.mark.parametrize("approximate", ["none", "tanh"])
def test_gelu_equals_torch(approximate):
    x = torch.linspace(-6, 6, 101)
    torch.testing.assert_close(
        layers.GELU(approximate)(x), F.gelu(x, approximate=approximate), **TOL
    )


def test_gelu_golden():
    """GELU(1) = 1 * Phi(1) = 0.841345 (the normal CDF at one standard deviation); GELU(0) = 0."""
    g = layers.GELU()
    assert abs(g(torch.tensor(1.0)).item() - 0.841345) < 1e-6 and g(torch.tensor(0.0)).item() == 0


def test_feedforward_shape_and_names():
    ff = layers.FeedForward(8, 32, activation="gelu")
    x = torch.randn(2, 3, 8)
    assert ff(x).shape == (2, 3, 8)
    expected = ff.linear2(F.gelu(ff.linear1(x)))
    torch.testing.assert_close(ff(x), expected, **TOL)


def test_sinusoidal_golden_and_relative_shift():
    """PE[pos, 2i] = sin(pos / 10000^(2i/C)). For C=4: frequencies 1 and 1/100, so
    PE[3] = (sin 3, cos 3, sin .03, cos .03). A shift by k is a rotation of each (sin, cos) pair
    by angle k*freq, the same for every pos - that is why relative positions are linear to read."""
    pe = layers.SinusoidalPositionalEncoding(4, max_len=50)
    expected = torch.tensor([math.sin(3), math.cos(3), math.sin(0.03), math.cos(0.03)])
    torch.testing.assert_close(pe.encoding(4)[3], expected, **TOL)
    P = pe.encoding(50)
    k, w = 5, 1.0  # first pair, frequency 1
    rot = torch.tensor([[math.cos(k * w), -math.sin(k * w)], [math.sin(k * w), math.cos(k * w)]])
    torch.testing.assert_close(P[:45, 0:2] @ rot, P[5:50, 0:2], **TOL)
    x = torch.zeros(2, 6, 4)
    torch.testing.assert_close(pe(x, offset=3)[1], P[3:9])
    assert pe.state_dict() == {}  # a fixed function: nothing to save


def test_learned_positions_add_and_limit():
    lp = layers.LearnedPositionalEncoding(6, max_len=10)
    x = torch.randn(2, 4, 6)
    torch.testing.assert_close(lp(x, offset=2), x + lp.pos_emb.weight[2:6])
    with pytest.raises(ValueError):
        lp(torch.zeros(1, 11, 6))


def test_exercises():
    from llmcourse.course import exercises

    def pe(T, C):
        pos = torch.arange(T)[:, None].float()
        angle = pos / 10000 ** (torch.arange(0, C, 2) / C)
        return torch.stack([angle.sin(), angle.cos()], -1).reshape(T, C)  # interleave sin, cos

    def pe_halves(T, C):  # sin block then cos block: the other common layout, not the paper's
        pos = torch.arange(T)[:, None].float()
        angle = pos / 10000 ** (torch.arange(0, C, 2) / C)
        return torch.cat([angle.sin(), angle.cos()], -1)

    exercises.check("05.sinusoidal_positions", pe, trials=3, seed=0)
    with pytest.raises(exercises.ExerciseError):
        exercises.check("05.sinusoidal_positions", pe_halves, trials=3, seed=0)

    def ln(x, w, b):
        m = x.mean(-1, keepdim=True)
        return (x - m) / torch.sqrt(x.var(-1, unbiased=False, keepdim=True) + 1e-5) * w + b

    def ln_unbiased(x, w, b):
        m = x.mean(-1, keepdim=True)
        return (x - m) / torch.sqrt(x.var(-1, keepdim=True) + 1e-5) * w + b

    exercises.check("05.layer_norm", ln, trials=3, seed=0)
    with pytest.raises(exercises.ExerciseError):
        exercises.check("05.layer_norm", ln_unbiased, trials=3, seed=0)
