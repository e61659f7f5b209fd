"""int8 absmax quantization: error bound, memory saving, model outputs stay close."""

import copy

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from llmcourse.course import exercises
from llmcourse.gpt import GPT, GPTConfig
from llmcourse.quantize import (
    Int8Linear,
    dequantize,
    int8_roundtrip,
    quantize_absmax,
    quantize_model,
    weight_bytes,
)


@settings(max_examples=30, deadline=None)
@given(
    rows=st.integers(1, 8),
    cols=st.integers(1, 16),
    seed=st.integers(0, 10_000),
    spread=st.floats(1e-3, 1e3),
)
def test_dequantised_weights_within_half_a_step(rows, cols, seed, spread):
    w = torch.randn(rows, cols, generator=torch.Generator().manual_seed(seed)) * spread
    q, s = quantize_absmax(w)
    assert q.dtype == torch.int8 and q.abs().max() <= 127
    err = (dequantize(q, s) - w).abs()
    bound = w.abs().amax(dim=1, keepdim=True) / 254 * (1 + 1e-5) + 1e-12
    assert bool((err <= bound).all())


def test_per_channel_beats_per_tensor_with_an_outlier_row():
    w = torch.randn(4, 64)
    w[0] *= 100  # one outlier channel
    q, s = quantize_absmax(w)
    per_channel = (dequantize(q, s) - w)[1:].abs().mean()
    s_tensor = w.abs().max() / 127
    per_tensor = (torch.round(w / s_tensor) * s_tensor - w)[1:].abs().mean()
    assert per_channel < per_tensor / 10


def test_int8_linear_matches_float_linear_closely():
    torch.manual_seed(0)
    lin = torch.nn.Linear(32, 16)
    x = torch.randn(5, 32)
    y, yq = lin(x), Int8Linear(lin)(x)
    assert (yq - y).abs().max() < 0.02 * y.abs().max()


def test_quantized_gpt_is_smaller_and_predicts_nearly_the_same():
    torch.manual_seed(0)
    model = GPT(
        GPTConfig(vocab_size=64, block_size=16, n_layer=2, n_head=2, n_embd=64, dropout=0.0)
    ).eval()
    qmodel = quantize_model(copy.deepcopy(model))
    n_int8 = sum(isinstance(m, Int8Linear) for m in qmodel.modules())
    assert n_int8 == 2 * 4  # qkv, proj, fc, mlp.proj per block; lm_head skipped (tied)
    assert weight_bytes(qmodel) < 0.5 * weight_bytes(model)
    idx = torch.randint(0, 64, (2, 16))
    with torch.no_grad():
        a, _ = model(idx)
        b, _ = qmodel(idx)
    assert (a - b).abs().max() < 0.05 * a.abs().max()
    assert (a.argmax(-1) == b.argmax(-1)).float().mean() > 0.9


def test_int8_roundtrip_exercise():
    """Row [0.6, -1, 0.25]: s = 1/127, codes round(76.2) = 76, -127, round(31.75) = 32, so the round trip
    is [76, -127, 32] / 127; an all-zero row stays zero."""
    out = int8_roundtrip(torch.tensor([[0.6, -1.0, 0.25], [0.0, 0.0, 0.0]]))
    torch.testing.assert_close(out, torch.tensor([[76.0, -127.0, 32.0], [0.0, 0.0, 0.0]]) / 127)

    def correct(w):
        s = w.abs().amax(dim=1, keepdim=True) / 127
        s = torch.where(s > 0, s, torch.ones_like(s))
        return torch.round(w / s).clamp(-127, 127).to(torch.int8).float() * s

    def truncates(w):  # .to(int8) rounds toward zero
        s = w.abs().amax(dim=1, keepdim=True).clamp(min=1e-12) / 127
        return (w / s).to(torch.int8).float() * s

    def per_tensor(w):  # one scale for the whole matrix: small rows lose their precision
        s = w.abs().max().clamp(min=1e-12) / 127
        return torch.round(w / s) * s

    def zero_row_nan(w):  # 0 / 0 on an all-zero row
        s = w.abs().amax(dim=1, keepdim=True) / 127
        return torch.round(w / s) * s

    exercises.check("09.int8_roundtrip", correct, trials=20)
    for wrong in (truncates, per_tensor, zero_row_nan):
        with pytest.raises(exercises.ExerciseError):
            exercises.check("09.int8_roundtrip", wrong, seed=0)
