"""Serving, around the server: a chat model to serve, what travels on the wire, and the arithmetic of
what a serving engine such as vLLM adds. Notebook 14 uses it with `llmcourse.serve`.

* `export_chat_model(model, tokenizer, directory)`: a course GPT plus its course tokenizer
  (`RegexBPE` with the chat special tokens, notebook 11) as a Hugging Face directory that
  `python -m llmcourse.serve --model DIR` (or any transformers code) loads. The tokenizer crosses with
  `bpe_regex.to_hf_tokenizer`, so the served model reads exactly the ids it was fine-tuned on.
* `chat_request` and `sse_text`: an OpenAI chat request body, and the text of a streamed answer read
  back from its server-sent events (`data: {json}` lines, blank line between events, `data: [DONE]`).
* `reserved_tokens`, `sequences_that_fit`: how many sequences' KV caches fit in a memory budget when
  every request reserves the model's whole context up front (a contiguous cache per request, as our
  `generate.KVCache` and early servers do) versus vLLM's *paged* cache, which hands out fixed-size
  blocks (16 tokens by default) as a sequence grows (Kwon et al. 2023, "Efficient Memory Management for
  Large Language Model Serving with PagedAttention").
* `batch_steps`: decoding steps to finish a queue of requests with `batch_size` slots, static batching
  (a batch ends when its longest answer does) versus continuous batching (a finished request's slot is
  refilled at the next step; Yu et al. 2022, "Orca").

Left out: prefill cost (every step counts as one decoded token per busy slot), prefix sharing and
copy-on-write blocks, preemption/swapping, and the memory the activations and the CUDA context take.
"""

from __future__ import annotations

import heapq
import json
import math
from collections.abc import Sequence
from pathlib import Path

from llmcourse.chat import END, SPECIAL_TOKENS


def export_chat_model(model, tokenizer, directory: str | Path) -> Path:
    """Write `model` (a course `GPT`) and `tokenizer` (a course `RegexBPE` with the chat special
    tokens) as a Hugging Face GPT-2 directory with a fast tokenizer. Returns the directory.

    No end-of-text token is declared, so a raw completion runs to `max_tokens` (or a stop string), as
    GPT-2's does when its <|endoftext|> is ignored; a chat answer still ends at "<|end|>", which the
    server's course template treats as the end of a turn. "<|end|>" doubles as the padding token."""
    from transformers import PreTrainedTokenizerFast

    from llmcourse.bpe_regex import to_hf_tokenizer
    from llmcourse.convert import export_gpt2

    missing = [s for s in SPECIAL_TOKENS if s not in getattr(tokenizer, "special_tokens", {})]
    if missing:
        raise ValueError(
            f"the tokenizer lacks the chat tokens {missing}: build it with sft.chat_tokenizer"
        )
    hf_tok = PreTrainedTokenizerFast(
        tokenizer_object=to_hf_tokenizer(tokenizer),
        pad_token=END,
        additional_special_tokens=[s for s in SPECIAL_TOKENS if s != END],
    )
    assert len(hf_tok) == tokenizer.vocab_size, "the Hugging Face tokenizer must have the same ids"
    return export_gpt2(model, directory, hf_tok)


# ---- the wire format ----
def chat_request(model: str, system: str, user: str, *, max_tokens: int, stream: bool) -> dict:
    """chat_request(model, system, user, *, max_tokens, stream) -> the JSON body (a dict) of POST
    /v1/chat/completions: a system and a user message, greedy (temperature 0).

    >>> chat_request("m", "Be brief.", "Hi", max_tokens=8, stream=False)["messages"][1]
    {'role': 'user', 'content': 'Hi'}
    """
    return {
        "model": model,
        "messages": [{"role": "system", "content": system}, {"role": "user", "content": user}],
        "max_tokens": max_tokens,
        "temperature": 0.0,
        "stream": stream,
    }


def sse_events(body: str) -> list[dict]:
    """The JSON objects of a server-sent-event stream, in order, up to `data: [DONE]`.

    Events are separated by a blank line; a line "data: X" carries X (several data lines of one
    event are joined by newlines, per the SSE spec); other fields (event:, id:, comments) are ignored.
    """
    out = []
    for block in body.replace("\r\n", "\n").split("\n\n"):
        data = "\n".join(
            line[5:].removeprefix(" ") for line in block.split("\n") if line.startswith("data:")
        )
        if not data:
            continue
        if data == "[DONE]":
            break
        out.append(json.loads(data))
    return out


def sse_text(body: str) -> str:
    """sse_text(body) -> the answer's text: the choices[0].delta.content pieces of a streamed chat
    completion (server-sent events), joined in order."""
    text = []
    for event in sse_events(body):
        for choice in event.get("choices", [])[:1]:
            text.append(choice.get("delta", {}).get("content") or "")
    return "".join(text)


# ---- KV-cache memory: reserve the whole context, or hand out blocks ----
def reserved_tokens(length: int, max_len: int, block_tokens: int | None = None) -> int:
    """reserved_tokens(length, max_len, block_tokens) -> KV-cache positions held for a sequence of
    `length` tokens: max_len when the cache is reserved up front (block_tokens None), else whole blocks.

    >>> reserved_tokens(17, 2048), reserved_tokens(17, 2048, 16)
    (2048, 32)
    """
    if not 0 < length <= max_len:
        raise ValueError(f"length must be in [1, max_len={max_len}], got {length}")
    return max_len if block_tokens is None else math.ceil(length / block_tokens) * block_tokens


def sequences_that_fit(
    budget_bytes: float,
    bytes_per_token: int,
    lengths: Sequence[int],
    *,
    max_len: int,
    block_tokens: int | None = None,
) -> int:
    """How many of `lengths` (admitted in order) have their KV caches in memory at once.

    >>> sequences_that_fit(10 * 2048, 1, [100] * 50, max_len=2048)
    10
    >>> sequences_that_fit(10 * 2048, 1, [100] * 50, max_len=2048, block_tokens=16)
    50
    """
    used, n = 0, 0
    for length in lengths:
        used += reserved_tokens(length, max_len, block_tokens) * bytes_per_token
        if used > budget_bytes:
            break
        n += 1
    return n


# ---- time: static versus continuous batching ----
def batch_steps(lengths: Sequence[int], batch_size: int, continuous: bool) -> int:
    """batch_steps(lengths, batch_size, continuous) -> decoding steps to generate `lengths[i]` tokens for
    every request, `batch_size` at a time, in order.

    Static: requests go in groups of `batch_size`; a group takes as many steps as its longest answer,
    and finished slots idle until then. Continuous: a finished request's slot takes the next waiting
    request at the next step. Golden case, lengths [1, 4, 1, 1], two slots: static max(1, 4) +
    max(1, 1) = 5 steps; continuous: the short ones take turns in one slot while the 4 runs in the
    other, 4 steps.

    >>> batch_steps([1, 4, 1, 1], 2, continuous=False), batch_steps([1, 4, 1, 1], 2, continuous=True)
    (5, 4)
    """
    if batch_size < 1 or any(n < 1 for n in lengths):
        raise ValueError("batch_size and every length must be >= 1")
    if not continuous:
        return sum(max(lengths[i : i + batch_size]) for i in range(0, len(lengths), batch_size))
    slots = [0] * min(batch_size, len(lengths))  # a heap: the step at which each slot becomes free
    for n in lengths:  # each request, in order, takes the slot that frees first
        heapq.heapreplace(slots, slots[0] + n)
    return max(slots, default=0)
