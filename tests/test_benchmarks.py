"""Multiple-choice items, formats, scoring (the length bias), and the 16.choose_normalised exercise."""

import pytest
import torch
import torch.nn as nn

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
    assert out == {"acc": 0.0, "acc_norm": 1.0, "picks_shortest": 1.0, "picks_shortest_norm": 0.0}


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


def test_score_options_matches_multiple_choice_and_crops_for_short_contexts():
    from llmcourse.evaluate import multiple_choice
    from llmcourse.gpt import GPT, GPTConfig

    torch.manual_seed(0)
    model = GPT(
        GPTConfig(vocab_size=128, block_size=16, n_layer=1, n_head=2, n_embd=16, dropout=0.0)
    )
    out = benchmarks.score_options(model, encode, "short q", options=[" ab", " abcd"])
    ref = multiple_choice(model, encode, "short q", options=[" ab", " abcd"])
    assert (
        out["scores"] == pytest.approx(ref["scores"], abs=1e-5)
        and out["choice_norm"] == ref["choice_norm"]
    )
    long = benchmarks.score_options(
        model, encode, "x" * 40, options=[" ab", " abcd"]
    )  # 40 + 5 > 16: cropped
    cropped = multiple_choice(model, encode, "x" * 12, options=[" abcd"])["scores"][
        0
    ]  # 12 + 5 = 16 + 1 ids
    assert long["scores"][1] == pytest.approx(cropped, abs=1e-5)
