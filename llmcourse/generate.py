"""Generation: a pure sampler, a KV cache, and cached/streaming decoding for the course GPT.

Three separate ideas, kept separate:
  * `sample_next_token(logits, generator, ...)` turns one step's logits into token ids: greedy
    (temperature 0), temperature scaling, top-k (`top_k_filter`, on logits; `top_k_probs` is notebook 09's
    exercise) and top-p (`top_p_filter`, on probabilities: the nucleus of Holtzman et al. 2019). It is a
    pure function of its inputs and an explicit `torch.Generator`, so samples are reproducible.
  * `KVCache` stores every layer's keys and values, so each new token costs one position of compute
    instead of re-running the whole context. Memory: 2 * n_layer * B * T * n_embd numbers.
  * `generate` / `stream` drive a model with or without the cache. Cached and uncached greedy
    decoding give identical tokens (tested). A model whose forward takes no `kv_cache` (a
    prompt-tuning wrapper, any plain `(logits, loss)` model) is decoded without one.

Our GPT has learned absolute positions, so once a sequence reaches `block_size` the cache cannot
slide: from then on we rebuild it from the last `block_size` tokens each step (exactly what the
uncached model sees, and no faster). Left out: batching requests of different lengths, paged memory, speculative decoding.
"""

from __future__ import annotations

import inspect
from collections.abc import Iterator

import torch
import torch.nn.functional as F

from llmcourse.config import cap_steps


def top_k_filter(logits: torch.Tensor, k: int) -> torch.Tensor:
    """(B, V) logits -> (B, V): logits below the row's k-th largest set to -inf (ties with it are kept).

    >>> top_k_filter(torch.tensor([[2.0, 1.0, 2.0, 0.5]]), 1)
    tensor([[2., -inf, 2., -inf]])
    """
    # the k-th largest logit of each row, (B, 1); k >= V keeps everything
    kth = torch.topk(logits, min(k, logits.size(-1))).values[:, -1:]
    return logits.masked_fill(logits < kth, float("-inf"))


def top_p_filter(probs: torch.Tensor, p: float) -> torch.Tensor:
    """(B, V) probabilities -> (B, V): all but the smallest set of most likely tokens whose mass reaches
    `p` set to 0, the rest renormalised (the nucleus of Holtzman et al. 2019, "The Curious Case of
    Neural Text Degeneration"). The most likely token always stays, however small `p` is.

    >>> top_p_filter(torch.tensor([[0.1, 0.6, 0.3]]), 0.7)   # 0.6 < 0.7, so 0.3 joins; 0.9 >= 0.7
    tensor([[0.0000, 0.6667, 0.3333]])
    """
    sorted_p, order = probs.sort(dim=-1, descending=True)  # (B, V) each
    # drop a token when the tokens ranked above it already reach p (the first always stays)
    drop = sorted_p.cumsum(dim=-1) - sorted_p >= p
    drop[..., 0] = False  # even a p that rounds to 0 keeps the most likely token
    kept = torch.zeros_like(probs).scatter(-1, order, sorted_p.masked_fill(drop, 0.0))
    return kept / kept.sum(dim=-1, keepdim=True)


def top_k_probs(logits: torch.Tensor, k: int) -> torch.Tensor:
    """top_k_probs(logits (B, V), k) -> (B, V): the distribution top-k sampling draws from, the softmax over
    each row's k largest logits (ties with the k-th largest kept; k >= V keeps all) and 0 elsewhere."""
    return F.softmax(top_k_filter(logits.float(), k), dim=-1)


def sample_next_token(
    logits: torch.Tensor,
    generator: torch.Generator | None = None,
    *,
    temperature: float = 1.0,
    top_k: int | None = None,
    top_p: float | None = None,
) -> torch.Tensor:
    """(B, vocab) logits -> (B, 1) next-token ids.

    >>> sample_next_token(torch.tensor([[0.1, 3.0, 0.2]]), temperature=0.0)
    tensor([[1]])
    """
    if temperature < 0:
        raise ValueError(f"temperature must be >= 0, got {temperature}")
    if top_p is not None and not 0.0 < top_p <= 1.0:
        raise ValueError(f"top_p must be in (0, 1], got {top_p}")
    # 1. temperature 0 is greedy: the single most likely token, no randomness at all
    if temperature < 1e-5:  # (tinier values would overflow logits / temperature)
        return logits.argmax(dim=-1, keepdim=True)
    # 2. temperature: < 1 sharpens the distribution, > 1 flattens it (in float32: fp16 overflows)
    logits = logits.float() / temperature
    # 3. top-k: every token below the k-th largest logit gets -inf, i.e. probability 0
    if top_k is not None:
        logits = top_k_filter(logits, top_k)
    # 4. logits -> probabilities; top-p then keeps the smallest set of likeliest tokens reaching p
    probs = F.softmax(logits, dim=-1)
    if top_p is not None and top_p < 1.0:
        probs = top_p_filter(probs, top_p)
    # 5. draw one token per row, from the caller's generator (reproducible samples)
    return torch.multinomial(probs, num_samples=1, generator=generator)


class KVCache:
    """Pre-allocated keys/values for every layer: (n_layer, B, n_kv_head, max_len, head_dim) each.

    GPT has as many key/value heads as query heads; a Llama with grouped-query attention
    (`llmcourse.llama`) caches only its `n_kv_head` heads, n_head / n_kv_head times fewer bytes."""

    def __init__(
        self,
        n_layer: int,
        batch_size: int,
        *,
        n_head: int,
        head_dim: int,
        max_len: int,
        device=None,
        dtype=torch.float32,
    ):
        shape = (n_layer, batch_size, n_head, max_len, head_dim)
        # empty, not zeros: only positions below `pos` are ever read, and they have been written
        self.k = torch.empty(shape, device=device, dtype=dtype)
        self.v = torch.empty(shape, device=device, dtype=dtype)
        self.max_len = max_len
        self.pos = 0  # how many positions are filled (the same for every layer)
        # layer -> the prompt's k, v, kept aside until a next token needs the buffer
        self._prompt: dict[int, tuple[torch.Tensor, torch.Tensor]] = {}

    @classmethod
    def for_model(cls, model, batch_size: int, max_len: int | None = None) -> KVCache:
        cfg = model.cfg
        p = next(model.parameters())
        # GPT has no n_kv_head: every query head has its own keys and values
        n_kv_head = getattr(cfg, "n_kv_head", cfg.n_head)
        return cls(
            cfg.n_layer,
            batch_size,
            n_head=n_kv_head,
            head_dim=cfg.head_dim,
            max_len=max_len or cfg.block_size,
            device=p.device,
            dtype=p.dtype,
        )

    def reset(self) -> None:
        self.pos = 0
        self._prompt.clear()

    def get_pos(self) -> int:
        return self.pos

    def update(
        self, layer: int, k: torch.Tensor, v: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Write this step's (B, n_head, T, head_dim) keys/values; return all keys/values so far."""
        # T new positions: the whole prompt on the first call, then 1 per generated token
        T = k.size(2)
        if self.pos + T > self.max_len:
            raise ValueError(f"KV cache full: {self.pos} + {T} > max_len={self.max_len}")
        # 1. the prompt (nothing cached yet): attention needs exactly these k, v, so return them
        #    as they are and copy them into the buffer only when a next token comes (a prompt
        #    that is only scored never pays for the copy)
        if self.pos == 0:
            self._prompt[layer] = (k, v)
            return k, v
        # 2. the first step after the prompt: now move the prompt's k, v into positions 0..P-1
        if layer in self._prompt:
            pk, pv = self._prompt.pop(layer)
            self.k[layer, :, :, : pk.size(2)] = pk  # (B, n_head, P, head_dim)
            self.v[layer, :, :, : pv.size(2)] = pv
        # 3. write the new positions after the ones already filled. `pos` itself moves only in
        #    `advance`, once every layer has written: all layers write at the same offset
        self.k[layer, :, :, self.pos : self.pos + T] = k  # (B, n_head, T, head_dim)
        self.v[layer, :, :, self.pos : self.pos + T] = v
        # 4. return every key and value so far: the new queries attend to the past and themselves
        return self.k[layer, :, :, : self.pos + T], self.v[layer, :, :, : self.pos + T]

    def advance(self, T: int) -> None:
        """Called by the model after all layers have written T new positions."""
        self.pos += T

    def nbytes(self) -> int:
        return self.k.numel() * self.k.element_size() * 2


def context_size(model) -> int:
    """How many tokens `model` sees at once: its `cfg.block_size`, unless the model reports its own
    `block_size` (a wrapper that keeps positions for itself, as `ptuning.PromptTuned` does)."""
    size = getattr(model, "block_size", None)
    return size if size is not None else model.cfg.block_size


@torch.no_grad()
def stream(
    model,
    idx: torch.Tensor,
    max_new_tokens: int,
    *,
    generator: torch.Generator | None = None,
    temperature: float = 1.0,
    top_k: int | None = None,
    top_p: float | None = None,
    use_cache: bool = True,
    stop_token: int | None = None,
) -> Iterator[torch.Tensor]:
    """Yield (B, 1) new tokens one at a time (for printing as they arrive).

    Works for any model with the course convention `model(idx) -> (logits, loss)`. The KV cache is
    used when `use_cache` is on and the model's forward takes a `kv_cache` (GPT, Llama, with LoRA
    or not); any other model re-runs its last `context_size(model)` tokens for every new one."""
    was_training = model.training
    model.eval()
    block = context_size(model)
    takes = inspect.signature(model.forward).parameters
    # ask for last-position logits only from a model that offers the shortcut
    last = {"last_only": True} if "last_only" in takes else {}
    cache = None
    if use_cache and "kv_cache" in takes:
        # the cache holds what the model can see: the prompt and the new tokens, at most block
        max_len = min(block, idx.size(1) + max_new_tokens)
        cache = KVCache.for_model(model, idx.size(0), max_len=max_len)
    seq = idx
    finished = torch.zeros(idx.size(0), dtype=torch.bool, device=idx.device)
    try:
        for _ in range(max_new_tokens):
            if cache is None:
                logits, _ = model(seq[:, -block:], **last)
            elif cache.pos == 0 or cache.pos >= block:
                cache.reset()  # (re)fill the cache with the context the model can see
                logits, _ = model(seq[:, -block:], kv_cache=cache, **last)
            else:
                logits, _ = model(seq[:, -1:], kv_cache=cache, **last)
            nxt = sample_next_token(
                logits[:, -1, :], generator, temperature=temperature, top_k=top_k, top_p=top_p
            )
            seq = torch.cat([seq, nxt], dim=1)
            yield nxt
            if stop_token is not None:
                # stop once every row has ended its text (rows may end at different steps)
                finished |= nxt[:, 0] == stop_token
                if bool(finished.all()):
                    break
    finally:
        model.train(was_training)


def generate(
    model,
    idx: torch.Tensor,
    max_new_tokens: int,
    *,
    generator: torch.Generator | None = None,
    temperature: float = 1.0,
    top_k: int | None = None,
    top_p: float | None = None,
    use_cache: bool = True,
    stop_token: int | None = None,
) -> torch.Tensor:
    """Prompt (B, T) -> prompt followed by up to `max_new_tokens` generated tokens."""
    new = list(
        stream(
            model,
            idx,
            max_new_tokens,
            generator=generator,
            temperature=temperature,
            top_k=top_k,
            top_p=top_p,
            use_cache=use_cache,
            stop_token=stop_token,
        )
    )
    return torch.cat([idx, *new], dim=1) if new else idx


def cache_speedup(
    model, prompt: torch.Tensor, max_new_tokens: int, *, repeats: int = 5
) -> dict[str, object]:
    """Time greedy decoding of `max_new_tokens` without and with the KV cache, `repeats` times in pairs.

    Returns {"uncached_s": [...], "cached_s": [...], "ratios": [...], "speedup": median ratio}. Each
    repeat times the two ways back to back and keeps their ratio, so a slow moment of a shared
    machine hits both; the median of the ratios ignores the odd disturbed pair. Raises
    AssertionError if cached and uncached decoding give different tokens.
    """
    import statistics
    import time

    device = prompt.device
    # a rehearsal (LLMCOURSE_REHEARSAL) times fewer tokens, fewer times
    max_new_tokens, repeats = cap_steps(max_new_tokens), cap_steps(repeats)

    def timed(use_cache: bool) -> tuple[float, torch.Tensor]:
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        t0 = time.perf_counter()
        out = generate(model, prompt, max_new_tokens, temperature=0.0, use_cache=use_cache)
        if device.type == "cuda":
            torch.cuda.synchronize(device)  # kernels run asynchronously: wait for them
        return time.perf_counter() - t0, out

    timed(True)  # warm-up: first calls allocate memory and pick kernels
    result: dict[str, list[float]] = {"uncached_s": [], "cached_s": [], "ratios": []}
    for _ in range(repeats):
        t_plain, plain = timed(False)
        t_cache, cached = timed(True)
        assert torch.equal(plain, cached), "cached and uncached greedy decoding differ"
        result["uncached_s"].append(t_plain)
        result["cached_s"].append(t_cache)
        result["ratios"].append(t_plain / t_cache)
    return {**result, "speedup": statistics.median(result["ratios"])}
