"""Multiple-choice items, formats, scoring (the length bias), and the 16.choose_normalised exercise."""

import pytest
import torch
import torch.nn as nn

from llmcourse.evaluate import multiple_choice
from llmcourse.tasks import benchmarks
from llmcourse.course import exercises
from llmcourse.tasks.benchmarks import BUILTIN, FORMATS, MCItem


def encode(text: str) -> list[int]:
    return [ord(c) % 128 for c in text]


class Uniform(nn.Module):
    """Every next token equally likely: log p = -log 128 per token, whatever the context."""

    def __init__(self):
        super().__init__()
        self.dummy = nn.Parameter(torch.zeros(1))

    def forward(self, idx, targets=None):
        return torch.zeros(idx.shape[0], idx.shape[1], 128) + self.dummy, None


def test_builtin_items_are_well_formed():
    assert len(BUILTIN) == 40
    for item in BUILTIN:
        assert 0 <= item.answer < len(item.options) == 4 and len(set(item.options)) == 4
    assert len({item.answer for item in BUILTIN}) > 1  # the shuffle spreads the correct position


def test_formats_render():
    item = MCItem("2+2?", ("3", "4"), 1)
    assert [benchmarks.render(item, f) for f in FORMATS] == [
        "Question: 2+2?\nAnswer:",
        "2+2?",
        "2+2?\nChoices:\n- 3\n- 4\nThe correct choice is:",
    ]


def test_raw_sum_prefers_short_options():
    """Under a uniform model an option of n characters scores -n log 128: the shortest always wins."""
    items = [MCItem("q", ("a long option", "short"), 0), MCItem("q", ("xx", "yyyyyy", "z"), 1)]
    out = benchmarks.score_items(Uniform(), encode, items)
    assert out["picks_shortest"] == 1.0 and out["acc"] == 0.0


def test_per_token_average_removes_the_length_penalty():
    """The model puts p = e^5 / (e^5 + 127) = 0.539 on 'y' and 1 / (e^5 + 127) = 0.0036 on every other
    character. Options " y" (2 tokens) and " yyyyyyyyyy" (11 tokens): raw sums are lp(' ') + lp(y) = -6.24
    and lp(' ') + 10 lp(y) = -11.8, so raw picks the short one; per token -3.12 and -1.07, so the
    average picks the long one, which is the answer here."""
    model = Uniform()
    bias = torch.zeros(128)
    bias[ord("y")] = 5.0
    model.forward = lambda idx, targets=None: (bias.expand(idx.shape[0], idx.shape[1], 128), None)
    out = benchmarks.score_items(model, encode, [MCItem("q", ("y", "yyyyyyyyyy"), 1)])
    assert out == {
        "acc": 0.0,
        "acc_norm": 1.0,
        "acc_per_token": 1.0,
        "picks_shortest": 1.0,
        "picks_shortest_norm": 0.0,
        "picks_shortest_per_token": 0.0,
    }


def test_acc_norm_divides_by_characters_and_acc_per_token_by_tokens():
    """A hand example where the two normalisations disagree. A word-level tokenizer: " it" is two
    tokens (20, 31), " elephant" one (31). The model puts log p = -0.618 on token 20 and -5.618 on
    every other token (as above). Sums: " it" -6.236, " elephant" -5.618 (raw picks elephant).
    Per token: -3.118 against -5.618, so acc_per_token picks " it". Per character of the choice
    (lm-evaluation-harness's acc_norm, without the " " before it): -6.236 / 2 = -3.118 against
    -5.618 / 8 = -0.702, so acc_norm picks "elephant"."""
    vocab = {"q": [10], "Question: q\nAnswer:": [10], " it": [20, 31], " elephant": [31]}
    bias = torch.zeros(128)
    bias[20] = 5.0
    model = Uniform()
    model.forward = lambda idx, targets=None: (bias.expand(idx.shape[0], idx.shape[1], 128), None)
    out = multiple_choice(model, vocab.__getitem__, "q", options=["it", "elephant"], prefix=" ")
    assert out["lengths"] == [2, 1] and out["chars"] == [2, 8]
    assert out["scores"] == pytest.approx([-6.236, -5.618], abs=1e-3)
    assert (out["choice"], out["choice_norm"], out["choice_per_token"]) == (1, 1, 0)
    assert benchmarks.choose_normalised(out["scores"], out["lengths"]) == 0  # per token
    assert benchmarks.choose_normalised(out["scores"], out["chars"]) == 1  # per character
    res = benchmarks.score_items(model, vocab.__getitem__, [MCItem("q", ("it", "elephant"), 1)])
    assert (res["acc"], res["acc_norm"], res["acc_per_token"]) == (1.0, 1.0, 0.0)


def test_offline_arc_falls_back_to_builtin(monkeypatch):
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
    with pytest.warns(UserWarning, match="built-in"):
        assert benchmarks.load_arc_easy(5) == list(BUILTIN)


def test_choose_normalised_exercise():
    exercises.check("16.choose_normalised", benchmarks.choose_normalised)

    def raw_argmax(scores, lengths):  # the typical mistake: forgetting to divide by the length
        return max(range(len(scores)), key=scores.__getitem__)

    with pytest.raises(exercises.ExerciseError):
        exercises.check("16.choose_normalised", raw_argmax, seed=0)


def test_multiple_choice_crops_the_question_for_short_contexts():
    from llmcourse.gpt import GPT, GPTConfig

    torch.manual_seed(0)
    model = GPT(
        GPTConfig(vocab_size=128, block_size=16, n_layer=1, n_head=2, n_embd=16, dropout=0.0)
    )
    long = multiple_choice(model, encode, "x" * 40, options=[" ab", " abcd"])  # 40 + 5 > 16
    cropped = multiple_choice(model, encode, "x" * 12, options=[" abcd"])  # 12 + 5 = 16 + 1 ids
    assert long["scores"][1] == pytest.approx(cropped["scores"][0], abs=1e-5)
    with pytest.raises(ValueError):  # without the crop the model refuses the long context
        from llmcourse.evaluate import continuation_logprob

        continuation_logprob(model, encode("x" * 40), encode(" abcd"))
