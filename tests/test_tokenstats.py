"""llmcourse.tokenstats: compression measures, prefix tokenizers, OOV rate, notebook 06's exercises."""

from itertools import pairwise

import pytest

from llmcourse import bpe, tokenstats
from llmcourse.course import exercises
from llmcourse.bpe import ByteBPE
from llmcourse.bpe_regex import RegexBPE

TEXT = (
    "the cat sat on the mat. the dog sat on the log. a cat and a dog met on the mat, "
    "and the cat ran. 你好，世界。你好！"
) * 3


def test_truncated_equals_training_with_the_smaller_vocabulary():
    """BPE is greedy: the first k merges of a long run are exactly a k-merge run."""
    big = RegexBPE()
    big.train(TEXT, 256 + 40)
    for v in (256, 256 + 7, 256 + 25):
        small = RegexBPE()
        small.train(TEXT, v)
        cut = tokenstats.truncated(big, v)
        assert type(cut) is RegexBPE and cut.pattern == big.pattern
        assert cut.merges == small.merges and cut.encode(TEXT) == small.encode(TEXT)
    with pytest.raises(ValueError, match="vocab_size"):
        tokenstats.truncated(big, 256 + 41)


def test_compression_golden_cases():
    """No merges: one token per byte. 'aaaa' with the merges (a,a)->256, (256,256)->257 is 1 token
    of 4 bytes; 你 is 3 UTF-8 bytes, so at the byte level it costs 3 tokens per character."""
    tok = ByteBPE()
    assert tokenstats.bytes_per_token(tok, TEXT) == 1.0
    assert tokenstats.tokens_per_char(tok, "你好") == 3.0
    tok.train("aaaa", 256 + 2)
    assert tok.merges == {(97, 97): 256, (256, 256): 257}
    assert (
        tokenstats.bytes_per_token(tok, "aaaa") == 4.0
        and tokenstats.tokens_per_char(tok, "aaaa") == 0.25
    )
    assert tokenstats.token_strings(RegexBPE(), "é") == ["\\xc3", "\\xa9"]
    with pytest.raises(ValueError):
        tokenstats.bytes_per_token(tok, "")


def test_compression_curve_improves_with_vocabulary_and_ignores_specials():
    tok = RegexBPE(special_tokens=["<|end|>"])
    tok.train(TEXT, 256 + 30 + 1)
    assert len(tok.merges) == 30 and tok.special_tokens == {"<|end|>": 256 + 30}
    sizes = [256, 256 + 10, 256 + 20, 256 + 30]
    curve = tokenstats.compression_curve(tok, TEXT, sizes)
    assert curve["vocab_size"] == sizes and curve["bytes_per_token"][0] == 1.0
    assert curve["bytes_per_token"] == sorted(curve["bytes_per_token"])  # more merges, fewer tokens
    assert curve["tokens_per_char"] == sorted(curve["tokens_per_char"], reverse=True)
    # special-token text in the measured text is counted as ordinary text, not as one id
    assert len(tokenstats.token_strings(tok, "<|end|>")) > 1


def test_oov_rate():
    train = ["the", "cat", "sat", "on", "the", "mat", "the", "end"]
    assert tokenstats.oov_rate(train, ["the", "dog", "sat"]) == pytest.approx(1 / 3)
    assert tokenstats.oov_rate(train, ["the", "cat"], max_vocab=1) == 0.5  # only "the" is kept
    assert tokenstats.oov_rate(list("abc"), list("abcabc")) == 0.0


def _encode_in_merge_order(text, merges):
    """Replaying the merges once each, in the order they were learned, is the same encoding."""
    ids = list(text.encode("utf-8"))
    for pair, new_id in sorted(merges.items(), key=lambda kv: kv[1]):
        ids = bpe.merge(ids, pair, new_id)
    return ids


def _encode_latest_first(text, merges):
    """The typical mistake: the most recent merge first (or any order but the learned one)."""
    ids = list(text.encode("utf-8"))
    for pair, new_id in sorted(merges.items(), key=lambda kv: -kv[1]):
        ids = bpe.merge(ids, pair, new_id)
    return ids


@pytest.mark.parametrize(
    "name, correct, wrong",
    [
        (
            "06.get_stats",
            lambda ids: {p: sum(1 for q in pairwise(ids) if q == p) for p in pairwise(ids)},
            lambda ids: dict.fromkeys(pairwise(ids), 1),
        ),  # counts each pair once
        (
            "06.merge",
            bpe.merge,
            lambda ids, pair, new: [
                new if (a, b) == pair else a for a, b in pairwise([*ids, None])
            ],
        ),  # overlaps
        (
            "06.utf8_lengths",
            lambda text: [len(ch.encode("utf-8")) for ch in text],
            lambda text: [len(ch.encode("utf-16-le")) for ch in text],
        ),  # counts UTF-16 bytes
        ("06.bpe_encode", _encode_in_merge_order, _encode_latest_first),
    ],
)
def test_exercises_accept_correct_and_reject_typical_mistakes(name, correct, wrong):
    exercises.check(name, correct, trials=10)
    with pytest.raises(exercises.ExerciseError, match=f"✗ {name}"):
        exercises.check(name, wrong, trials=10)
