"""Export of a course chat model for serving, the SSE reader, and the paged-KV / batching arithmetic."""

import json
import random

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from llmcourse import chat
from llmcourse.course import exercises
from llmcourse.gpt import GPT, GPTConfig
from llmcourse.serve.serving import (
    batch_steps,
    chat_request,
    export_chat_model,
    reserved_tokens,
    sequences_that_fit,
    sse_events,
    sse_text,
)
from llmcourse.sft import chat_tokenizer

TEXT = "the cat sat on the mat. the dog ran to the cat! 12 plus 30 is 42.\n" * 20


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    tok = chat_tokenizer(TEXT, 256 + 40 + len(chat.SPECIAL_TOKENS))
    torch.manual_seed(0)
    model = GPT(
        GPTConfig(
            vocab_size=tok.vocab_size, block_size=48, n_layer=2, n_head=2, n_embd=32, dropout=0.0
        )
    ).eval()
    return model, tok, export_chat_model(model, tok, tmp_path_factory.mktemp("export") / "chat-gpt")


CONVERSATIONS = [
    [{"role": "user", "content": "the cat?"}],
    [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": "What is 12 plus 30?"},
        {"role": "assistant", "content": "42"},
        {"role": "user", "content": "héllo wörld 🙂 猫\n  spaces"},
    ],
]


@pytest.mark.parametrize("conversation", CONVERSATIONS)
def test_served_prompt_ids_equal_the_fine_tuning_ids(exported, conversation):
    """The server renders chat.render(...) and encodes it with the exported tokenizer; that must give
    the very ids chat.encode_chat built for SFT, or the model would read a prompt it never saw."""
    from llmcourse.serve.backends import CourseBackend, load_backend

    _, tok, directory = exported
    backend = load_backend(directory, device="cpu")
    assert isinstance(backend, CourseBackend) and backend.context_length == 48
    ids, _ = chat.encode_chat(conversation, tok, add_generation_prompt=True)
    served, stops = backend.chat_ids(conversation)
    assert served == ids and stops == [chat.END]
    # a chat turn ends at <|end|>; a raw completion has no end-of-text token and runs to max_tokens
    assert backend.chat_stop_ids == {tok.special_tokens[chat.END]} and backend.eos_ids == set()
    plain = conversation[-1]["content"]
    assert backend.decode(backend.encode(plain)) == plain and backend.encode(
        plain
    ) == tok.encode_ordinary(plain)


def test_exported_weights_give_the_same_logits(exported):
    from transformers import AutoModelForCausalLM

    model, tok, directory = exported
    idx = torch.tensor([tok.encode("<|user|>the cat sat<|end|>\n<|assistant|>")])
    hf = AutoModelForCausalLM.from_pretrained(directory).eval()
    with torch.no_grad():
        torch.testing.assert_close(hf(idx).logits, model(idx)[0], atol=1e-5, rtol=1e-5)


def test_export_needs_the_chat_tokens(tmp_path):
    from llmcourse.bpe_regex import RegexBPE

    tok = RegexBPE()
    tok.train("abc", 256)
    with pytest.raises(ValueError, match="chat tokens"):
        export_chat_model(
            GPT(GPTConfig(vocab_size=256, block_size=8, n_layer=1, n_head=1, n_embd=8)),
            tok,
            tmp_path,
        )


def test_sse_reader_golden():
    body = (
        'data: {"choices": [{"delta": {"role": "assistant", "content": ""}}]}\n\n'
        ": a comment line\n\n"
        'data: {"choices": [{"delta": {"content": "Hel"}}]}\r\n\r\n'
        'event: message\ndata: {"choices": [{"delta": {"content": "lo"}}]}\n\n'
        'data: {"choices": [{"delta": {}, "finish_reason": "stop"}]}\n\n'
        'data: {"choices": [], "usage": {"completion_tokens": 2}}\n\n'
        "data: [DONE]\n\n"
        'data: {"choices": [{"delta": {"content": "after DONE"}}]}\n\n'
    )
    assert len(sse_events(body)) == 5
    assert sse_text(body) == "Hello"
    assert sse_events('data: {"a":\ndata: 1}\n\n') == [{"a": 1}]  # one event, two data lines


@given(st.lists(st.text(max_size=6), max_size=8))
@settings(max_examples=40, deadline=None)
def test_sse_text_joins_any_pieces(pieces):
    events = [{"choices": [{"delta": {"content": p}}]} for p in pieces]
    body = "".join(f"data: {json.dumps(e)}\n\n" for e in events) + "data: [DONE]\n\n"
    assert sse_text(body) == "".join(pieces)


def test_chat_request_is_what_the_openai_client_sends():
    body = chat_request("m", "Be brief.", "Hi", max_tokens=8, stream=True)
    assert body == {
        "model": "m",
        "messages": [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hi"}],
        "max_tokens": 8,
        "temperature": 0.0,
        "stream": True,
    }


def test_reserved_tokens_and_fit_golden():
    """Blocks of 16: 1..16 tokens hold 16 positions, 17 hold 32. A budget of 10 contexts of 2048
    positions holds 10 sequences reserved up front, whatever their length; with blocks, 100-token
    sequences hold 112 positions each, so floor(20480 / 112) = 182 fit."""
    assert [reserved_tokens(n, 2048, 16) for n in (1, 16, 17, 2048)] == [16, 16, 32, 2048]
    assert reserved_tokens(5, 2048) == 2048 and reserved_tokens(5, 2048, 1) == 5
    assert sequences_that_fit(10 * 2048, 1, [100] * 500, max_len=2048) == 10
    assert sequences_that_fit(10 * 2048, 1, [100] * 500, max_len=2048, block_tokens=16) == 182
    assert (
        sequences_that_fit(10 * 2048 * 4, 4, [100] * 500, max_len=2048, block_tokens=16) == 182
    )  # bytes scale out
    with pytest.raises(ValueError):
        reserved_tokens(3000, 2048)


@given(st.lists(st.integers(1, 40), min_size=1, max_size=30), st.integers(1, 8))
@settings(max_examples=60, deadline=None)
def test_continuous_batching_never_needs_more_steps(lengths, batch_size):
    static, cont = batch_steps(lengths, batch_size, False), batch_steps(lengths, batch_size, True)
    lower = max(
        max(lengths), -(-sum(lengths) // batch_size)
    )  # the longest request; all work over all slots
    assert lower <= cont <= static
    assert batch_steps(lengths, 1, True) == batch_steps(lengths, 1, False) == sum(lengths)


def test_batch_steps_golden():
    assert batch_steps([1, 4, 1, 1], 2, False) == 5 and batch_steps([1, 4, 1, 1], 2, True) == 4
    assert batch_steps([3, 3, 3], 8, True) == 3


def batch_steps_by_simulation(lengths, batch_size, continuous):
    """Step by step: each busy slot decodes one token per step; a free slot takes the next request
    (continuous: at any step; static: only once the whole batch has finished)."""
    queue, slots, steps = list(lengths), [], 0
    while queue or slots:
        if continuous or not slots:
            while queue and len(slots) < batch_size:
                slots.append(queue.pop(0))
        steps += 1
        slots = [n - 1 for n in slots if n > 1]
    return steps


def test_batch_steps_equals_a_step_by_step_simulation():
    rng = random.Random(0)
    for _ in range(200):
        lengths = [rng.randint(1, 12) for _ in range(rng.randint(1, 10))]
        b = rng.randint(1, 4)
        for continuous in (False, True):
            assert batch_steps(lengths, b, continuous) == batch_steps_by_simulation(
                lengths, b, continuous
            )


def test_exercises_accept_the_solution_and_reject_typical_mistakes():
    exercises.check("14.sse_text", sse_text)
    exercises.check("14.reserved_tokens", reserved_tokens)
    exercises.check(
        "14.chat_request",
        lambda m, s, u, n, st: {
            "model": m,
            "messages": [{"role": "system", "content": s}, {"role": "user", "content": u}],
            "max_tokens": n,
            "temperature": 0,
            "stream": st,
        },
        trials=20,
    )
    exercises.check("14.batch_steps", batch_steps_by_simulation, trials=20)

    def no_temperature(
        model, system, user, max_tokens, stream
    ):  # the server's default sampling is not greedy
        return {
            "model": model,
            "messages": [{"role": "system", "content": system}, {"role": "user", "content": user}],
            "max_tokens": max_tokens,
            "stream": stream,
        }

    def round_robin(
        lengths, batch_size, continuous
    ):  # request i always goes to slot i % batch_size
        if not continuous:
            return batch_steps(lengths, batch_size, False)
        slots = [0] * batch_size
        for i, n in enumerate(lengths):
            slots[i % batch_size] += n
        return max(slots)

    def forgets_empty(body):  # crashes on a chunk with no choices / no content
        return "".join(e["choices"][0]["delta"]["content"] for e in sse_events(body))

    def floor_blocks(length, max_len, block_tokens=None):  # rounds down: a partial block is lost
        return max_len if block_tokens is None else length // block_tokens * block_tokens

    for name, wrong in (
        ("14.sse_text", forgets_empty),
        ("14.reserved_tokens", floor_blocks),
        ("14.chat_request", no_temperature),
        ("14.batch_steps", round_robin),
    ):
        with pytest.raises(exercises.ExerciseError):
            exercises.check(name, wrong, seed=random.Random(name).randrange(2**31))
