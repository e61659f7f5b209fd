"""Generated instruction tasks: answers are right, splits are disjoint, preferences are wrong on purpose."""

import random

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from llmcourse.tasks.instructions import (
    TASKS,
    Example,
    is_correct,
    load_alpaca,
    make_instructions,
    make_preferences,
    to_conversation,
    wrong_answer,
)


def check_answer(ex: Example) -> bool:
    """An independent solver: parse the prompt and compute the answer another way."""
    body = ex.prompt.split(": ", 1)[-1].rstrip("?")
    if ex.task == "add":
        a, b = ex.prompt.removeprefix("What is ").rstrip("?").split(" plus ")
        return int(ex.answer) == int(a) + int(b)
    if ex.task == "reverse":
        return ex.answer.split() == body.split()[::-1]
    if ex.task == "upper":
        return ex.answer == body.upper()
    if ex.task == "count":
        return int(ex.answer) == len(body.split())
    if ex.task == "sort":
        return [int(x) for x in ex.answer.split()] == sorted(int(x) for x in body.split())
    return False


@settings(max_examples=15, deadline=None)
@given(seed=st.integers(0, 10_000))
def test_every_generated_answer_is_correct(seed):
    for ex in make_instructions(50, "train", seed=seed) + make_instructions(20, "test", seed=seed):
        assert check_answer(ex), ex
        assert is_correct(ex, " " + ex.answer + ".")


def test_splits_are_disjoint_and_balanced():
    train = make_instructions(1000, "train")
    test = make_instructions(200, "test")
    assert not {e.prompt for e in train} & {e.prompt for e in test}
    assert {e.task for e in test} == set(TASKS)
    assert make_instructions(30, "test") == make_instructions(30, "test")  # deterministic


def test_rejected_answers_are_wrong():
    pairs = make_preferences(200)
    for ex, chosen, rejected in pairs:
        assert is_correct(ex, chosen) and not is_correct(ex, rejected)
    assert {ex.task for ex, _, _ in pairs} == set(TASKS)  # no task silently dropped
    upper = Example("upper", "Write in capital letters: red fox", "RED FOX")
    assert not is_correct(upper, "red fox") and is_correct(upper, "RED FOX.")
    rng = random.Random(0)
    ex = Example("reverse", "Reverse the words: a b", "b a")
    assert wrong_answer(ex, rng) == "a b"


def test_conversation_roles():
    ex = make_instructions(1)[0]
    conv = to_conversation(ex, system="Answer briefly.")
    assert [m["role"] for m in conv] == ["system", "user", "assistant"]
    assert to_conversation(ex, with_answer=False)[-1]["role"] == "user"


def test_alpaca_offline_falls_back_with_a_warning(monkeypatch):
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
    with pytest.warns(UserWarning, match="offline"):
        data = load_alpaca(50)
    assert len(data) == 50 and all(check_answer(e) for e in data)


def test_bad_split_is_an_error():
    with pytest.raises(ValueError, match="split"):
        make_instructions(3, "validation")
