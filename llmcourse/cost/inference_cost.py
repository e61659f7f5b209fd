"""What generating text costs: KV-cache memory, measured decoding speed, the nucleus in numbers.

Notebook 09 measures before it claims. Its helpers:

* `kv_cache_bytes` is the memory formula of a KV cache: every layer keeps a key and a value vector
  of width n_embd for every position of every sequence, 2·n_layer·B·T·n_embd numbers (times
  n_kv_head/n_head with grouped-query attention: pass the cached width n_kv_head·head_dim as
  `n_embd`, as notebook 09 does). For a 7B Llama-2-style model (32 layers, 4096 wide, no GQA) in
  fp16 that is 0.5 MB per token: a 4096-token context costs 2 GB per sequence.
* `time_call` and `decode_speed` time greedy decoding with and without `llmcourse.generate`'s KV
  cache, best of a few repeats (the minimum is the least noisy estimate of the true cost on a
  shared machine), synchronising the GPU so that queued kernels are counted. They check that both
  ways produce the same tokens: a speed-up that changes the output is a bug, not a speed-up.
* the nucleus (top-p) filter lives in `llmcourse.generate.top_p_filter`, next to top-k, where the
  sampler uses it; the name is re-exported here for older imports.

Left out: measuring memory bandwidth, batching many requests, and prefill/decode timing apart.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from typing import Any

import torch

from llmcourse.config import cap_steps
from llmcourse.generate import generate


def kv_cache_bytes(
    n_layer: int, batch_size: int, seq_len: int, *, n_embd: int, bytes_per_value: int = 4
) -> int:
    """kv_cache_bytes(n_layer, batch_size, seq_len, n_embd, bytes_per_value) -> bytes of a full
    KV cache.

    A 7B Llama-style model (32 layers, 4096 wide) in fp16, one sequence of 4096 tokens:
    >>> kv_cache_bytes(32, 1, 4096, n_embd=4096, bytes_per_value=2) / 2**30
    2.0
    """
    return 2 * n_layer * batch_size * seq_len * n_embd * bytes_per_value


def time_call(
    fn: Callable[[], Any], device: torch.device | str = "cpu", repeats: int = 3
) -> tuple[float, Any]:
    """(best wall-clock seconds over `repeats` calls, the last call's result)."""
    repeats = cap_steps(repeats)  # fewer in a rehearsal (LLMCOURSE_REHEARSAL)
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


def decode_speed(
    model: torch.nn.Module, prompt: torch.Tensor, lengths: Sequence[int], *, repeats: int = 3
) -> dict[str, list[float]]:
    """Seconds to generate each of `lengths` new tokens greedily, uncached and cached.

    Returns {"lengths", "uncached_s", "cached_s", "speedup"}. Raises AssertionError if the cached
    tokens differ from the uncached ones. `prompt` (B, T) must leave room:
    T + max(lengths) <= block_size.
    """
    device = prompt.device
    if prompt.size(1) + max(lengths) > model.cfg.block_size:
        raise ValueError(
            f"prompt {prompt.size(1)} + {max(lengths)} new tokens exceed block_size="
            f"{model.cfg.block_size}: beyond it the cache is rebuilt every step (no speed-up)"
        )
    lengths = list(lengths)[: cap_steps(len(lengths))]  # the first only in a rehearsal
    result: dict[str, list[float]] = {
        "lengths": list(lengths),
        "uncached_s": [],
        "cached_s": [],
        "speedup": [],
    }
    for n in lengths:
        t_plain, plain = time_call(
            lambda: generate(model, prompt, n, temperature=0.0, use_cache=False), device, repeats
        )
        t_cache, cached = time_call(
            lambda: generate(model, prompt, n, temperature=0.0, use_cache=True), device, repeats
        )
        assert torch.equal(plain, cached), (
            f"cached and uncached greedy decoding differ at {n} new tokens"
        )
        result["uncached_s"].append(t_plain)
        result["cached_s"].append(t_cache)
        result["speedup"].append(t_plain / t_cache)
    return result
