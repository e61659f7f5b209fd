"""Generated seq2seq tasks: every target is the right normalisation (checked by independent
parsers written here), splits are disjoint, lengths controllable, tensors well-formed."""

import datetime as dt
import re
import warnings

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from llmcourse.tasks import seq2seq_tasks as tasks

# ------------------------------------------------------------ independent parsers (test oracles)
_SMALL = {
    w: i
    for i, w in enumerate(
        "zero one two three four five six seven eight nine ten eleven twelve thirteen fourteen fifteen "
        "sixteen seventeen eighteen nineteen".split()
    )
}
_SMALL.update(
    {
        w: 10 * i
        for i, w in enumerate(
            "twenty thirty forty fifty sixty seventy eighty ninety".split(), start=2
        )
    }
)
_MULT = {"thousand": 10**3, "million": 10**6, "billion": 10**9}


def words_to_number(text: str) -> int:
    """Accumulator parse: small words add, "hundred" multiplies the current group, a scale word
    closes the group. "and" and hyphens carry no value."""
    total, group = 0, 0
    for w in text.replace("-", " ").split():
        if w == "and":
            continue
        if w in _SMALL:
            group += _SMALL[w]
        elif w == "hundred":
            group *= 100
        elif w in _MULT:
            total += group * _MULT[w]
            group = 0
        else:
            raise ValueError(w)
    return total + group


_ORDINALS = {
    "first": 1,
    "second": 2,
    "third": 3,
    "fifth": 5,
    "eighth": 8,
    "ninth": 9,
    "twelfth": 12,
    "twentieth": 20,
    "thirtieth": 30,
}


def _ordinal_to_int(w: str) -> int:
    head, _, last = w.rpartition("-")
    value = _ORDINALS.get(last) or _SMALL[last[:-2]]  # "fourth" -> "four"
    return value + (_SMALL[head] if head else 0)


def _spoken_year(words: list[str]) -> int:
    if words[:2] == ["two", "thousand"]:
        return words_to_number(" ".join(words))
    hi = words_to_number(words[0])
    rest = words[1:]
    if rest == ["hundred"]:
        return hi * 100
    if rest[0] == "oh":
        return hi * 100 + _SMALL[rest[1]]
    return hi * 100 + words_to_number(" ".join(rest))


def parse_date(text: str) -> dt.date:
    m = re.fullmatch(r"the ([a-z-]+) of ([a-z]+) (.+)", text)
    if m:  # the spoken form
        month = dt.datetime.strptime(m.group(2), "%B").month
        return dt.date(_spoken_year(m.group(3).split()), month, _ordinal_to_int(m.group(1)))
    text = re.sub(r"(\d+)(st|nd|rd|th)", r"\1", text).replace("the ", "").replace(" of ", " ")
    for fmt in (
        "%d %B %Y",
        "%B %d, %Y",
        "%d %B, %Y",
        "%d/%m/%Y",
        "%d/%m/%y",
        "%b %d %Y",
        "%A, %d %B %Y",
    ):
        try:
            return dt.datetime.strptime(text, fmt).date()
        except ValueError:
            pass
    raise ValueError(text)


# ------------------------------------------------------------------------------------- tests
def test_number_words_golden():
    assert tasks.number_to_words(0) == "zero"
    assert tasks.number_to_words(412) == "four hundred and twelve"
    assert tasks.number_to_words(1005) == "one thousand and five"
    assert tasks.number_to_words(1_000_000) == "one million"
    assert tasks.number_to_words(21_000_110) == "twenty-one million one hundred and ten"
    assert [tasks.ordinal_words(n) for n in (1, 3, 12, 20, 22, 31)] == [
        "first",
        "third",
        "twelfth",
        "twentieth",
        "twenty-second",
        "thirty-first",
    ]
    assert [tasks.ordinal_suffix(n) for n in (1, 2, 3, 11, 12, 13, 21, 22, 23, 30)] == [
        "1st",
        "2nd",
        "3rd",
        "11th",
        "12th",
        "13th",
        "21st",
        "22nd",
        "23rd",
        "30th",
    ]
    assert [tasks.year_words(y) for y in (1900, 1905, 1997, 2000, 2007, 2024)] == [
        "nineteen hundred",
        "nineteen oh five",
        "nineteen ninety-seven",
        "two thousand",
        "two thousand and seven",
        "twenty twenty-four",
    ]


@settings(max_examples=300, deadline=None)
@given(st.integers(0, 10**12 - 1))
def test_number_words_round_trip(n):
    assert words_to_number(tasks.number_to_words(n)) == n


@given(st.integers(1, 31))
def test_ordinals_round_trip(n):
    assert _ordinal_to_int(tasks.ordinal_words(n)) == n


@settings(max_examples=200, deadline=None)
@given(st.dates(dt.date(1900, 1, 1), dt.date(2099, 12, 31)))
def test_every_date_format_parses_back(d):
    for text in tasks.date_formats(d):
        assert parse_date(text) == d, text


@pytest.mark.parametrize("split", ["train", "test", "unseen_years"])
def test_dates_targets_are_correct_iso(split):
    pairs = tasks.make_dataset("dates", 400, seed=3, split=split)
    assert len(pairs) == 400 and len({s for s, _ in pairs}) == 400
    for src, tgt in pairs:
        d = dt.date.fromisoformat(tgt)
        assert d.isoformat() == tgt and parse_date(src) == d
        assert (d.year in tasks.TEST_YEARS) == (split == "unseen_years")


@pytest.mark.parametrize("split", ["train", "test", "long"])
def test_numbers_targets_are_correct_digits(split):
    pairs = tasks.make_dataset("numbers", 400, seed=4, split=split)
    for src, tgt in pairs:
        assert tgt == str(int(tgt)) and words_to_number(src) == int(tgt)
    digits = [len(t) for _, t in pairs]
    assert (min(digits) >= 7) if split == "long" else (max(digits) <= 6)


@pytest.mark.parametrize("split", ["train", "test", "long"])
def test_reverse_targets_and_lengths(split):
    pairs = tasks.make_dataset("reverse", 300, seed=2, split=split, max_digits=8)
    assert all(src.isdigit() and tgt == src[::-1] for src, tgt in pairs)
    lengths = {len(src) for src, _ in pairs}
    assert lengths == (set(range(9, 13)) if split == "long" else set(range(2, 9)))


def test_date_error_kinds():
    kind = tasks.date_error_kind
    assert kind("1943-05-02", "1943-05-02") == "correct"
    assert kind("1934-05-02", "1943-05-02") == "year: right digits, wrong order"
    assert kind("1944-05-02", "1943-05-02") == "year: other digits"
    assert kind("1943-02-05", "1943-05-02") == kind("1943-05-20", "1943-05-02") == "day or month"
    assert kind("1934-02-05", "1943-05-02") == "year and day or month"
    assert kind("1943-05", "1943-05-02") == kind("", "1943-05-02") == "not a date"


@pytest.mark.parametrize(
    "task,hard", [("dates", "unseen_years"), ("numbers", "long"), ("reverse", "long")]
)
def test_splits_are_disjoint_and_deterministic(task, hard):
    train = tasks.make_dataset(task, 1500, seed=0, split="train")
    test = tasks.make_dataset(task, 500, seed=0, split="test")
    harder = tasks.make_dataset(task, 300, seed=0, split=hard)
    for a, b in ((train, test), (train, harder), (test, harder)):
        assert not {s for s, _ in a} & {s for s, _ in b}
        assert not {t for _, t in a} & {t for _, t in b}  # not even the same value
    if task == "dates":  # no year of unseen_years occurs in train or test
        assert not {t[:4] for _, t in train + test} & {t[:4] for _, t in harder}
    assert tasks.make_dataset(task, 50, seed=0) == train[:50]  # deterministic prefix
    assert tasks.make_dataset(task, 50, seed=1) != train[:50]


def test_length_bounds_and_more_words_is_longer():
    short = tasks.make_dataset("numbers", 100, seed=5, max_len=20)
    long = tasks.make_dataset("numbers", 100, seed=5, min_len=60)
    assert all(len(s) <= 20 for s, _ in short) and all(len(s) >= 60 for s, _ in long)
    assert max(len(t) for _, t in short) < min(len(t) for _, t in long)
    with pytest.raises(ValueError):
        tasks.make_dataset("dates", 10, max_len=3)
    with pytest.raises(ValueError):
        tasks.make_dataset("dates", 10, split="long")
    with pytest.raises(ValueError):
        tasks.make_dataset("numbers", 10, split="unseen_years")


def test_encode_pairs_layout_and_decode():
    vocab = tasks.task_vocab()
    pairs = tasks.make_dataset("dates", 20, seed=6)
    b = tasks.encode_pairs(pairs, vocab)
    assert vocab.itos[tasks.PAD_ID] == "<pad>" and vocab.itos[tasks.EOS_ID] == "<eos>"
    for i, (src, tgt) in enumerate(pairs):
        assert vocab.decode(b["src"][i][b["src"][i] != 0]) == src
        n = len(tgt)
        assert b["tgt_in"][i, 0] == tasks.BOS_ID and torch.equal(
            b["tgt_in"][i, 1 : n + 1], b["targets"][i, :n]
        )
        assert b["targets"][i, n] == tasks.EOS_ID and torch.all(b["targets"][i, n + 1 :] == -100)
        assert tasks.decode_output(b["targets"][i].clamp_min(0), vocab) == tgt
    assert tasks.exact_match(b["targets"].clamp_min(0), pairs, vocab) == 1.0
    sample = tasks.batch_sampler(b, 8)
    batch = sample(torch.Generator().manual_seed(0))
    assert batch["src"].shape == (8, b["src"].shape[1]) and set(batch) == {
        "src",
        "tgt_in",
        "targets",
    }


def test_parallel_corpus_falls_back_offline(monkeypatch):
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
    from llmcourse.data import OfflineFallbackWarning

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        pairs = tasks.load_parallel_corpus("multi30k", max_pairs=30)
    assert len(pairs) == 30 and any(issubclass(w.category, OfflineFallbackWarning) for w in caught)


def test_config_sizes():
    assert tasks.TaskConfig.for_size("smoke").n_train < tasks.TaskConfig.for_size("full").n_train


def test_doctests():
    import doctest

    assert doctest.testmod(tasks).failed == 0
