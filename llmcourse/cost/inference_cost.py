"""What generating text costs: KV-cache memory, measured decoding speed, the nucleus in numbers.

Notebook 09 measures before it claims. Three helpers:

* `kv_cache_bytes` is the memory formula of a KV cache: every layer keeps a key and a value vector
  of width n_embd for every position of every sequence, 2·n_layer·B·T·n_embd numbers (times
  n_kv_head/n_head with grouped-query attention, left out here). For a 7B Llama-style model (32
  layers, 4096 wide) in fp16 that is 0.5 MB per token: a 4096-token context costs 2 GB per sequence.
* `time_call` and `decode_speed` time greedy decoding with and without `llmcourse.generate`'s KV
  cache, best of a few repeats (the minimum is the least noisy estimate of the true cost on a
  shared machine), synchronising the GPU so that queued kernels are counted. They check that both
  ways produce the same tokens: a speed-up that changes the output is a bug, not a speed-up.
* `top_p_filter` is the nucleus of Holtzman et al. (2019, "The Curious Case of Neural Text
  Degeneration") as probabilities: the smallest set of most likely tokens whose mass reaches p,
  renormalised. It is the same rule `generate.sample_next_token(top_p=...)` applies to logits.

Left out: measuring memory bandwidth, batching many requests, and prefill/decode timing apart.
"""
from __future__ import annotations

import random
import time
from collections.abc import Callable, Sequence
from typing import Any

import torch

from llmcourse.course.exercises import exercise, torch_generator
from llmcourse.generate import generate


@exercise("09.kv_cache_bytes", compare="exact",
          inputs=lambda rng: (rng.randint(1, 80), rng.randint(1, 64), rng.randint(1, 8192),
                              rng.choice([64, 768, 4096, 8192]), rng.choice([1, 2, 4])),
          fixed=((1, 1, 1, 1, 1),), hint="keys AND values: 2 x n_layer x batch x seq_len x n_embd x bytes")
def kv_cache_bytes(n_layer: int, batch_size: int, seq_len: int, n_embd: int, bytes_per_value: int = 4) -> int:
    """kv_cache_bytes(n_layer, batch_size, seq_len, n_embd, bytes_per_value) -> bytes of a full KV cache.

    >>> kv_cache_bytes(32, 1, 4096, 4096, 2) / 2**30   # a 7B Llama-style model, fp16, 4096 tokens
    2.0
    """
    return 2 * n_layer * batch_size * seq_len * n_embd * bytes_per_value


def time_call(fn: Callable[[], Any], device: torch.device | str = "cpu", repeats: int = 3) -> tuple[float, Any]:
    """(best wall-clock seconds over `repeats` calls, the last call's result)."""
    device = torch.device(device)
    best, out = float("inf"), None
    for _ in range(repeats):
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        t0 = time.perf_counter()
        out = fn()
        if device.type == "cuda":
            torch.cuda.synchronize(device)  # kernels run asynchronously: wait for them to finish
        best = min(best, time.perf_counter() - t0)
    return best, out


def decode_speed(model: torch.nn.Module, prompt: torch.Tensor, lengths: Sequence[int],
                 repeats: int = 3) -> dict[str, list[float]]:
    """Seconds to generate each of `lengths` new tokens greedily, uncached and cached.

    Returns {"lengths", "uncached_s", "cached_s", "speedup"}. Raises AssertionError if the cached
    tokens differ from the uncached ones. `prompt` (B, T) must leave room: T + max(lengths) <= block_size.
    """
    device = prompt.device
    if prompt.size(1) + max(lengths) > model.cfg.block_size:
        raise ValueError(f"prompt {prompt.size(1)} + {max(lengths)} new tokens exceed block_size="
                         f"{model.cfg.block_size}: beyond it the cache is rebuilt every step (no speed-up)")
    result: dict[str, list[float]] = {"lengths": list(lengths), "uncached_s": [], "cached_s": [], "speedup": []}
    for n in lengths:
        t_plain, plain = time_call(lambda: generate(model, prompt, n, temperature=0.0, use_cache=False), device, repeats)
        t_cache, cached = time_call(lambda: generate(model, prompt, n, temperature=0.0, use_cache=True), device, repeats)
        assert torch.equal(plain, cached), f"cached and uncached greedy decoding differ at {n} new tokens"
        result["uncached_s"].append(t_plain)
        result["cached_s"].append(t_cache)
        result["speedup"].append(t_plain / t_cache)
    return result


def _probs_inputs(rng: random.Random) -> tuple[torch.Tensor, float]:
    g = torch_generator(rng)
    logits = torch.randn(rng.randint(1, 3), rng.randint(2, 12), generator=g) * rng.choice([0.5, 2.0, 5.0])
    return logits.softmax(dim=-1), rng.choice([0.1, 0.5, 0.8, 0.9, 0.95, 1.0])


@exercise("09.top_p_filter", inputs=_probs_inputs, atol=1e-6,
          fixed=((torch.tensor([[0.5, 0.3, 0.2]]), 0.45), (torch.tensor([[0.1, 0.6, 0.3]]), 0.7),
                 (torch.tensor([[0.25, 0.25, 0.5]]), 1.0)),
          hint="sort descending; keep a token if the mass of the tokens ranked ABOVE it is still < p; "
               "the most likely token is always kept; renormalise what is kept")
def top_p_filter(probs: torch.Tensor, p: float) -> torch.Tensor:
    """top_p_filter(probs (B, V), p) -> (B, V): zero all but the smallest top set reaching mass p, renormalised.

    >>> top_p_filter(torch.tensor([[0.1, 0.6, 0.3]]), 0.7)   # 0.6 < 0.7, so 0.3 joins; 0.9 >= 0.7
    tensor([[0.0000, 0.6667, 0.3333]])
    """
    sorted_p, order = probs.sort(dim=-1, descending=True)
    above = sorted_p.cumsum(dim=-1) - sorted_p  # mass of the tokens ranked above each one
    sorted_p = sorted_p.masked_fill(above >= p, 0.0)
    kept = torch.zeros_like(probs).scatter(-1, order, sorted_p)
    return kept / kept.sum(dim=-1, keepdim=True)
