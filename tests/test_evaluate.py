"""Evaluation helpers against hand computations and a model whose probabilities we control."""

import math

import pytest
import torch

from llmcourse.course import exercises
from llmcourse.evaluate import (
    compare_models,
    continuation_logprob,
    exact_match,
    multiple_choice,
    perplexity,
)


class FixedModel(torch.nn.Module):
    """Predicts the same distribution `probs` at every position (a unigram model)."""

    def __init__(self, probs):
        super().__init__()
        self.logits = torch.nn.Parameter(torch.tensor(probs).log())

    def forward(self, idx, targets=None):
        return self.logits.expand(*idx.shape, -1), None


def test_perplexity_of_uniform_model_is_vocab_size():
    model = FixedModel([0.25] * 4)
    ids = torch.randint(0, 4, (101,))
    assert abs(perplexity(model, ids, block_size=10) - 4.0) < 1e-4


def test_perplexity_matches_hand_computation():
    model = FixedModel([0.5, 0.25, 0.25])
    ids = torch.tensor([0, 0, 1, 2, 0])  # targets 0,1,2,0 -> nll = ln2, ln4, ln4, ln2
    expected = math.exp((2 * math.log(2) + 2 * math.log(4)) / 4)
    assert abs(perplexity(model, ids, block_size=4) - expected) < 1e-5
    with pytest.raises(ValueError, match="more than"):
        perplexity(model, ids, block_size=8)


def test_continuation_logprob_and_multiple_choice():
    model = FixedModel([0.7, 0.2, 0.1])
    assert abs(continuation_logprob(model, [1], [0, 0]) - 2 * math.log(0.7)) < 1e-6
    encode = {"q": [1], "short": [2], "long": [0, 0, 0, 0]}.__getitem__
    res = multiple_choice(model, encode, "q", options=["short", "long"])
    # sum: log .1 = -2.30 vs 4 log .7 = -1.43 -> long; per token: -2.30 vs -0.36 -> long;
    # per character: -2.30 / 5 = -0.46 vs -1.43 / 4 = -0.36 -> long
    assert (res["choice"], res["choice_per_token"], res["choice_norm"]) == (1, 1, 1)
    res = multiple_choice(
        model, {"q": [1], "a": [0, 0, 0, 0, 0, 0, 0], "b": [1]}.__getitem__, "q", options=["a", "b"]
    )
    # sum: 7 log .7 = -2.50 < log .2 = -1.61 -> b; per token: -0.36 > -1.61 -> a (length bias
    # shown); per character (one each): the same as the sum -> b
    assert (res["choice"], res["choice_per_token"], res["choice_norm"]) == (1, 0, 1)


def test_exact_match_normalises():
    assert exact_match(["Paris.", " 42 ", "no"], ["paris", "42", "yes"]) == pytest.approx(2 / 3)
    with pytest.raises(ValueError):
        exact_match(["a"], [])


def test_compare_models_table():
    table = compare_models(
        {"u": FixedModel([0.5, 0.5]), "s": FixedModel([0.9, 0.1])},
        {"ppl": lambda m: perplexity(m, torch.zeros(11, dtype=torch.long), 5)},
    )
    assert [r["model"] for r in table] == ["u", "s"]
    assert table[0]["ppl"] == pytest.approx(2.0, rel=1e-4) and table[1]["ppl"] == pytest.approx(
        1 / 0.9, rel=1e-4
    )


def test_masked_perplexity_exercise_rejects_padding_and_mean_of_row_means():
    exercises.check(
        "16.masked_perplexity", lambda nll, mask: nll[mask].mean().exp().item(), trials=20
    )
    with pytest.raises(exercises.ExerciseError, match="wrong value"):  # padding counted as tokens
        exercises.check(
            "16.masked_perplexity", lambda nll, mask: (nll * mask).mean().exp().item(), seed=0
        )
    with pytest.raises(
        exercises.ExerciseError, match="wrong value"
    ):  # short rows weigh as much as long ones
        exercises.check(
            "16.masked_perplexity",
            lambda nll, mask: math.exp(((nll * mask).sum(1) / mask.sum(1)).mean().item()),
            seed=0,
        )
    with pytest.raises(exercises.ExerciseError, match="expected a number"):  # a tensor, not a float
        exercises.check("16.masked_perplexity", lambda nll, mask: nll[mask].mean().exp(), seed=0)


def test_continuation_logprob_exercise_matches_the_model_version_and_rejects_off_by_one():
    """The reference on a real model's logits equals `continuation_logprob(model, context, continuation)`."""
    from llmcourse.evaluate import continuation_logprob_from_logits

    model = FixedModel([0.7, 0.2, 0.1])
    ids = torch.tensor([1, 0, 2])
    logits, _ = model(ids[None])
    assert continuation_logprob_from_logits(logits[0], ids, 1) == pytest.approx(
        continuation_logprob(model, [1], [0, 2]), abs=1e-6
    )

    def correct(logits, ids, n_context):
        logp = torch.log_softmax(logits, dim=-1)
        return sum(logp[t - 1, ids[t]].item() for t in range(n_context, len(ids)))

    def same_position(logits, ids, n_context):  # the classic slip: logits[t] scores ids[t]
        logp = torch.log_softmax(logits, dim=-1)
        return sum(logp[t, ids[t]].item() for t in range(n_context, len(ids)))

    exercises.check("16.continuation_logprob", correct, trials=20)
    with pytest.raises(exercises.ExerciseError, match="wrong value"):
        exercises.check("16.continuation_logprob", same_position, seed=0)
    with pytest.raises(
        exercises.ExerciseError, match="wrong value"
    ):  # log of softmax: -inf for huge logits
        exercises.check(
            "16.continuation_logprob",
            lambda lg, ids, c: sum(
                torch.softmax(lg, -1)[t - 1, ids[t]].log().item() for t in range(c, len(ids))
            ),
            seed=0,
        )
