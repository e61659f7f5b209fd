"""Attention written out vs torch's fused function and nn.MultiheadAttention; masks; causality."""

import math

import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st

from llmcourse.attention import (
    MultiHeadAttention,
    causal_mask,
    combine_masks,
    padding_mask,
    scaled_dot_product_attention,
    split_heads,
)

TOL = dict(atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("shape", [(2, 3, 5, 4), (1, 1, 7, 8), (4, 6, 3)])
def test_sdpa_equals_torch_unmasked(shape):
    torch.manual_seed(0)
    q, k, v = torch.randn(shape), torch.randn(shape), torch.randn(shape)
    out, w = scaled_dot_product_attention(q, k, v)
    torch.testing.assert_close(out, F.scaled_dot_product_attention(q, k, v), **TOL)
    torch.testing.assert_close(w.sum(-1), torch.ones(shape[:-1]), **TOL)


def test_sdpa_equals_torch_causal_and_boolean_and_float_masks():
    torch.manual_seed(1)
    q, k, v = torch.randn(2, 3, 6, 4), torch.randn(2, 3, 6, 4), torch.randn(2, 3, 6, 5)
    out, w = scaled_dot_product_attention(q, k, v, mask=causal_mask(6))
    torch.testing.assert_close(out, F.scaled_dot_product_attention(q, k, v, is_causal=True), **TOL)
    assert torch.all(w.triu(1) == 0)  # no weight on the future
    mask = torch.rand(2, 1, 6, 6) > 0.3
    mask[..., 0] = True  # every query keeps at least one key
    out, _ = scaled_dot_product_attention(q, k, v, mask=mask)
    torch.testing.assert_close(out, F.scaled_dot_product_attention(q, k, v, attn_mask=mask), **TOL)
    fmask = torch.randn(6, 6)
    out, _ = scaled_dot_product_attention(q, k, v, mask=fmask)
    torch.testing.assert_close(out, F.scaled_dot_product_attention(q, k, v, attn_mask=fmask), **TOL)


def test_sdpa_cross_lengths():
    """Tq != Tk and dv != d."""
    torch.manual_seed(2)
    q, k, v = torch.randn(3, 4, 8), torch.randn(3, 9, 8), torch.randn(3, 9, 2)
    out, w = scaled_dot_product_attention(q, k, v)
    assert out.shape == (3, 4, 2) and w.shape == (3, 4, 9)
    torch.testing.assert_close(out, F.scaled_dot_product_attention(q, k, v), **TOL)


def test_sdpa_golden_sqrt_d():
    """Hand-derivable: d=4, one query q=(1,1,1,1), keys k0=0 and k1=q. Scores 0 and 4/sqrt(4)=2,
    weights softmax(0, 2) = (1/(1+e^2), e^2/(1+e^2)) = (0.1192, 0.8808); with v0=0, v1=1 the output
    is 0.8808. Without the 1/sqrt(d) it would be sigmoid(4) = 0.9820 - sharper, as d grows."""
    q = torch.ones(1, 4)
    k = torch.stack([torch.zeros(4), torch.ones(4)])
    v = torch.tensor([[0.0], [1.0]])
    out, w = scaled_dot_product_attention(q, k, v)
    assert abs(out.item() - math.exp(2) / (1 + math.exp(2))) < 1e-6
    assert abs(w[0, 0].item() - 0.1192) < 1e-4


def test_dropout_is_reproducible_and_unbiased_in_expectation():
    q = k = v = torch.randn(1, 5, 4, generator=torch.Generator().manual_seed(3))
    g1, g2 = torch.Generator().manual_seed(7), torch.Generator().manual_seed(7)
    a, wa = scaled_dot_product_attention(q, k, v, dropout_p=0.5, generator=g1)
    b, _ = scaled_dot_product_attention(q, k, v, dropout_p=0.5, generator=g2)
    assert torch.equal(a, b) and (wa == 0).any()
    _, w0 = scaled_dot_product_attention(q, k, v)
    kept = wa != 0
    torch.testing.assert_close(wa[kept], 2 * w0[kept])  # survivors scaled by 1/(1-p)


def test_masks_golden():
    assert causal_mask(3).tolist() == [
        [True, False, False],
        [True, True, False],
        [True, True, True],
    ]
    assert padding_mask(torch.tensor([1, 3]), 3).tolist() == [
        [True, False, False],
        [True, True, True],
    ]
    m = combine_masks(causal_mask(3), padding_mask([2, 3], 3))
    assert m.shape == (2, 1, 3, 3) and m[0, 0, 2].tolist() == [True, True, False]


def _copied_pair(E=8, H=2, seed=0):
    torch.manual_seed(seed)
    ref = nn.MultiheadAttention(E, H, batch_first=True)
    nn.init.normal_(ref.in_proj_bias), nn.init.normal_(ref.out_proj.bias)  # torch inits them to 0
    ours = MultiHeadAttention(E, H)
    ours.copy_from_torch(ref)
    return ours.eval(), ref.eval()


@pytest.mark.parametrize("E,H", [(8, 2), (12, 3), (6, 1)])
def test_mha_self_equals_torch(E, H):
    ours, ref = _copied_pair(E, H)
    x = torch.randn(3, 5, E)
    expected, w_ref = ref(x, x, x)
    ours.keep_weights = True
    torch.testing.assert_close(ours(x), expected, **TOL)
    torch.testing.assert_close(ours.attn_weights.mean(1), w_ref, **TOL)  # torch averages heads


def test_mha_cross_with_masks_equals_torch():
    """Cross-attention with a key padding mask and an attention mask. torch's boolean masks mean
    True = blocked, ours True = may attend: we pass the complement."""
    ours, ref = _copied_pair(8, 4, seed=1)
    x, ctx = torch.randn(2, 4, 8), torch.randn(2, 6, 8)
    key_mask = padding_mask([6, 3], 6)
    attn = torch.rand(4, 6) > 0.4
    attn[:, 0] = True
    expected, _ = ref(x, ctx, ctx, key_padding_mask=~key_mask, attn_mask=~attn)
    torch.testing.assert_close(ours(x, ctx, attn_mask=attn, key_mask=key_mask), expected, **TOL)


def test_mha_causal_self_with_padding_equals_torch():
    ours, ref = _copied_pair(8, 2, seed=2)
    x = torch.randn(2, 5, 8)
    km = padding_mask([5, 2], 5)
    expected, _ = ref(x, x, x, key_padding_mask=~km, attn_mask=~causal_mask(5))
    got = ours(x, attn_mask=causal_mask(5), key_mask=km)
    torch.testing.assert_close(got, expected, **TOL)
    # per-example (B, Tq, Tk) masks behave like the shared one
    got3 = ours(x, attn_mask=causal_mask(5).expand(2, 5, 5), key_mask=km)
    torch.testing.assert_close(got3, got)


@settings(max_examples=25, deadline=None)
@given(
    T=st.integers(2, 8),
    t=st.integers(0, 7),
    n_head=st.sampled_from([1, 2, 4]),
    seed=st.integers(0, 2**16),
)
def test_causal_mask_hides_the_future(T, t, n_head, seed):
    """Perturbing inputs at positions > t never changes outputs at positions <= t."""
    t = t % T
    g = torch.Generator().manual_seed(seed)
    torch.manual_seed(seed)
    mha = MultiHeadAttention(8, n_head).eval()
    x = torch.randn(2, T, 8, generator=g)
    x2 = x.clone()
    x2[:, t + 1 :] += 10 * torch.randn(2, T - t - 1, 8, generator=g)
    y, y2 = mha(x, attn_mask=causal_mask(T)), mha(x2, attn_mask=causal_mask(T))
    torch.testing.assert_close(y[:, : t + 1], y2[:, : t + 1], atol=1e-6, rtol=1e-6)
    if t + 1 < T:  # and the future does matter without the mask (the test can fail)
        assert not torch.allclose(mha(x)[:, : t + 1], mha(x2)[:, : t + 1])


def test_exercises():
    from llmcourse.course import exercises

    def mine(q, k, v, mask):
        s = (q @ k.transpose(-2, -1)) / math.sqrt(q.shape[-1])
        return torch.softmax(s.masked_fill(~mask, float("-inf")), -1) @ v

    def no_scaling(q, k, v, mask):
        s = q @ k.transpose(-2, -1)
        return torch.softmax(s.masked_fill(~mask, float("-inf")), -1) @ v

    exercises.check("04.attention", mine, trials=4, seed=0)
    with pytest.raises(exercises.ExerciseError):
        exercises.check("04.attention", no_scaling, trials=4, seed=0)
    exercises.check("04.causal_mask", lambda t: torch.ones(t, t).tril().bool(), seed=0)
    with pytest.raises(exercises.ExerciseError):  # upper instead of lower triangle
        exercises.check("04.causal_mask", lambda t: torch.ones(t, t).triu().bool(), seed=0)


def test_exercise_padding_mask_catches_off_by_one():
    from llmcourse.course import exercises

    exercises.check(
        "04.padding_mask", lambda lengths, T: torch.arange(T)[None] < lengths[:, None], trials=10
    )
    with pytest.raises(
        exercises.ExerciseError, match="case 1 of .*wrong values"
    ):  # <=: one pad too many
        exercises.check(
            "04.padding_mask", lambda lengths, T: torch.arange(T)[None] <= lengths[:, None]
        )


def test_exercise_split_heads_catches_view_without_transpose():
    """view(B, n_head, T, D) has the right shape but cuts across tokens: with x = arange(24) as
    (1, 3, 8) and 2 heads, head 0 must hold features 0..3 of each token, [[0..3], [8..11], [16..19]],
    while the bare view gives [[0..3], [4..7], [8..11]]."""
    from llmcourse.course import exercises

    x = torch.arange(24.0).view(1, 3, 8)
    assert split_heads(x, 2)[0, 0].tolist() == [[0, 1, 2, 3], [8, 9, 10, 11], [16, 17, 18, 19]]
    exercises.check(
        "04.split_heads", lambda x, h: x.unflatten(-1, (h, -1)).permute(0, 2, 1, 3), trials=10
    )
    with pytest.raises(exercises.ExerciseError, match="case 1 of .*wrong values"):
        exercises.check("04.split_heads", lambda x, h: x.reshape(x.shape[0], h, x.shape[1], -1))


@pytest.mark.parametrize("T,prefix", [(1, 0), (5, 0), (6, 2), (7, 7), (8, 3)])
def test_prefix_lm_mask_is_full_in_the_prefix_and_causal_after(T, prefix):
    from llmcourse.attention import prefix_lm_mask

    m = prefix_lm_mask(T, prefix)
    assert m.dtype == torch.bool and m.shape == (T, T)
    # within the prefix: everyone sees everyone (bidirectional)
    assert m[:prefix, :prefix].all()
    # after the prefix: exactly the causal rows
    assert torch.equal(m[prefix:], causal_mask(T)[prefix:])
    # the prefix never sees the continuation
    assert not m[:prefix, prefix:].any()
    assert torch.equal(prefix_lm_mask(T, 0), causal_mask(T))
    assert prefix_lm_mask(T, T).all()


def test_prefix_lm_mask_rejects_a_prefix_longer_than_the_sequence():
    from llmcourse.attention import prefix_lm_mask

    with pytest.raises(ValueError):
        prefix_lm_mask(4, 5)
