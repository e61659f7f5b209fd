"""KV-cache bytes equal the real cache, decode_speed checks tokens, top-p matches the sampler, exercises."""

import pytest
import torch

from llmcourse.course import exercises
from llmcourse.generate import KVCache, sample_next_token, top_p_filter
from llmcourse.gpt import GPT, GPTConfig
from llmcourse.cost.inference_cost import decode_speed, kv_cache_bytes, time_call


def tiny():
    torch.manual_seed(0)
    return GPT(
        GPTConfig(vocab_size=20, block_size=16, n_layer=2, n_head=2, n_embd=16, dropout=0.0)
    ).eval()


def test_formula_equals_the_allocated_cache():
    model = tiny()
    cache = KVCache.for_model(model, batch_size=3)
    assert cache.nbytes() == kv_cache_bytes(2, 3, 16, n_embd=16, bytes_per_value=4)
    # golden: 7B Llama-style, fp16, 4096 tokens = 2 * 32 * 4096 * 4096 * 2 bytes = 2 GiB
    assert kv_cache_bytes(32, 1, 4096, n_embd=4096, bytes_per_value=2) == 2 * 2**30


def test_decode_speed_reports_and_checks():
    model = tiny()
    out = decode_speed(model, torch.zeros(1, 2, dtype=torch.long), [2, 6], repeats=1)
    assert out["lengths"] == [2, 6] and all(t > 0 for t in out["cached_s"] + out["uncached_s"])
    assert out["speedup"][1] == pytest.approx(out["uncached_s"][1] / out["cached_s"][1])
    with pytest.raises(ValueError):
        decode_speed(model, torch.zeros(1, 2, dtype=torch.long), [15])
    t, value = time_call(lambda: 41 + 1, repeats=2)
    assert value == 42 and t >= 0


def test_top_p_filter_golden_and_agrees_with_sampler():
    # 0.6 < 0.7 so the 0.3 token joins; then 0.9 >= 0.7 and the 0.1 token is dropped: [0, 2/3, 1/3]
    torch.testing.assert_close(
        top_p_filter(torch.tensor([[0.1, 0.6, 0.3]]), 0.7), torch.tensor([[0.0, 2 / 3, 1 / 3]])
    )
    probs = torch.tensor([[0.05, 0.4, 0.25, 0.2, 0.1]])
    kept = top_p_filter(
        probs, 0.8
    )  # 0.4, 0.25, 0.2 (0.65 < 0.8 before 0.2; 0.85 >= 0.8 before 0.1)
    allowed = set(kept.nonzero()[:, 1].tolist())
    assert allowed == {1, 2, 3}
    g = torch.Generator().manual_seed(0)
    draws = {sample_next_token(probs.log(), g, top_p=0.8).item() for _ in range(400)}
    assert draws == allowed


def test_exercises():
    def correct(probs, p):
        s, order = probs.sort(-1, descending=True)
        before = torch.cat([torch.zeros_like(s[:, :1]), s.cumsum(-1)[:, :-1]], dim=-1)
        s = torch.where(before < p, s, torch.zeros_like(s))
        out = torch.zeros_like(probs).scatter(-1, order, s)
        return out / out.sum(-1, keepdim=True)

    def not_renormalised(probs, p):  # the classic slip: zero the tail but forget to rescale
        s, order = probs.sort(-1, descending=True)
        s = s.masked_fill(s.cumsum(-1) - s >= p, 0.0)
        return torch.zeros_like(probs).scatter(-1, order, s)

    exercises.check("09.top_p_filter", correct, seed=0)
    with pytest.raises(exercises.ExerciseError):
        exercises.check("09.top_p_filter", not_renormalised, seed=0)
    exercises.check("09.kv_cache_bytes", lambda L, B, T, d, b: 2 * L * B * T * d * b, seed=0)
    with pytest.raises(exercises.ExerciseError):  # keys only
        exercises.check("09.kv_cache_bytes", lambda L, B, T, d, b: L * B * T * d * b, seed=0)
