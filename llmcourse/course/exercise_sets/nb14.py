"""The exercises of notebook 14 (notebooks/14_serving.ipynb).

`exercises.check("14.<name>", fn)` imports this module on first use. Each reference is the package
function that does the job, imported from its topic module; a function defined here exists only for
its exercise.
"""

from __future__ import annotations

import json
import random

from llmcourse.course.exercises import register
from llmcourse.serve.serving import batch_steps, chat_request, reserved_tokens, sse_text


# ---------------------------------------------------------------- llmcourse/serve/serving.py
def _text(rng: random.Random) -> str:
    return "".join(rng.choice('abc XYZ?!é\n"') for _ in range(rng.randint(0, 12)))


register(
    "14.chat_request",
    chat_request,
    compare="exact",
    inputs=lambda rng: (
        rng.choice(["course-chat", "gpt-4o-mini", "m"]),
        _text(rng),
        _text(rng),
        rng.randint(1, 512),
        rng.random() < 0.5,
    ),
    fixed=(("m", "Be brief.", "Hi", 8, True),),
    hint="the keys are model, messages (a list: the system message, then the user message, each "
    "{'role': ..., 'content': ...}), max_tokens, temperature (0.0: greedy) and stream",
)


def _sse_inputs(rng: random.Random) -> tuple[str]:
    pieces = [
        "".join(rng.choice('ab \n{}:"é') for _ in range(rng.randint(0, 4)))
        for _ in range(rng.randint(0, 6))
    ]
    head = {"id": "chatcmpl-1", "object": "chat.completion.chunk", "model": "m"}
    events = [
        {
            **head,
            "choices": [
                {"index": 0, "delta": {"role": "assistant", "content": ""}, "finish_reason": None}
            ],
        }
    ]
    events += [
        {**head, "choices": [{"index": 0, "delta": {"content": p}, "finish_reason": None}]}
        for p in pieces
    ]
    events.append({**head, "choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}]})
    if rng.random() < 0.5:  # stream_options={"include_usage": True}: a last chunk with no choices
        events.append({**head, "choices": [], "usage": {"completion_tokens": len(pieces)}})
    return ("".join(f"data: {json.dumps(e)}\n\n" for e in events) + "data: [DONE]\n\n",)


register(
    "14.sse_text",
    sse_text,
    inputs=_sse_inputs,
    compare="exact",
    fixed=(
        (
            (
                'data: {"choices": [{"delta": {"content": "Hi"}}]}\n\n'
                'data: {"choices": [{"delta": {"content": " there"}}]}\n\ndata: [DONE]\n\n'
            ),
        ),
        (
            (
                'data: {"choices": [{"delta": {"role": "assistant"}}]}\n\ndata: {"choices": []}\n\n'
                "data: [DONE]\n\n"
            ),
        ),
    ),
    hint="split on blank lines; json.loads what follows 'data: '; stop at [DONE]; a chunk may have "
    "no choices, or a delta without 'content' (or with content None)",
)

register(
    "14.reserved_tokens",
    reserved_tokens,
    compare="exact",
    inputs=lambda rng: (rng.randint(1, 5000), 8192, rng.choice([None, 1, 8, 16, 32])),
    fixed=((1, 2048, None), (16, 2048, 16), (17, 2048, 16), (2048, 2048, 16)),
    hint="no block size: the whole max_len; otherwise whole blocks: ceil(length / block_tokens) blocks",
)


def _batch_inputs(rng: random.Random) -> tuple[list[int], int, bool]:
    lengths = [
        rng.choice([rng.randint(1, 4), rng.randint(1, 30)]) for _ in range(rng.randint(1, 12))
    ]
    return lengths, rng.randint(1, 4), rng.random() < 0.5


register(
    "14.batch_steps",
    batch_steps,
    inputs=_batch_inputs,
    compare="exact",
    fixed=(
        ([1, 4, 1, 1], 2, False),
        ([1, 4, 1, 1], 2, True),
        ([2, 2, 3], 2, True),
        ([3, 3, 3], 8, False),
        ([5, 1, 2, 7, 1], 1, True),
    ),
    hint="static: the sum over groups of batch_size consecutive requests of the group's longest; "
    "continuous: each request, in order, goes to the slot that becomes free FIRST (not the next "
    "slot in turn); the answer is when the last slot finishes",
)
