"""How well does a tokenizer compress? Bytes per token, tokens per character, and how both move
with the vocabulary size; plus the word-level out-of-vocabulary rate BPE was invented to remove.

Compression is measured on text the tokenizer did not train on when possible:

    bytes_per_token   UTF-8 bytes / tokens   (1.0 for raw bytes; GPT-4's cl100k gives ~4 on English)
    tokens_per_char   tokens / characters     (what a context window of N tokens holds is N / this)

Bytes per token is comparable across scripts only with care: a Chinese character is 3 UTF-8 bytes,
an ASCII letter 1, so the same bytes per token means three times fewer characters per token in
English. Tokens per character counts what a reader sees. Both are reported.

A BPE vocabulary trained to size V is the first V - 256 merges of one trained to any larger size
(training is greedy and deterministic), so `compression_curve` trains once and evaluates prefixes
(`truncated`): one training run gives the whole curve.

Also registers notebook 06's exercises: UTF-8 bytes per character, the two BPE primitives (whose
references are `llmcourse.bpe.get_stats` and `llmcourse.bpe.merge`), and encoding with a list of
learned merges (`Tokenizer._encode_chunk`).
Left out: normalisation effects, fertility per word (tokens per whitespace word), and measurements
for Hugging Face tokenizers other than through `to_hf_tokenizer`.
"""
from __future__ import annotations

import random

from llmcourse import bpe
from llmcourse.bpe import Tokenizer, render_token
from llmcourse.course.exercises import exercise, register


def bytes_per_token(tok: Tokenizer, text: str) -> float:
    """UTF-8 bytes of `text` divided by the number of tokens `tok` makes of it (higher = better).

    >>> bytes_per_token(Tokenizer(), "héllo")   # no merges: one token per byte, é is 2 bytes
    1.0
    """
    ids = _encode(tok, text)
    if not ids:
        raise ValueError("empty text: bytes per token is undefined")
    return len(text.encode("utf-8")) / len(ids)


def tokens_per_char(tok: Tokenizer, text: str) -> float:
    """Tokens `tok` makes of `text` per character (lower = more text fits a context window).

    >>> tokens_per_char(Tokenizer(), "你好")   # 2 characters, 6 bytes, 6 tokens without merges
    3.0
    """
    if not text:
        raise ValueError("empty text: tokens per character is undefined")
    return len(_encode(tok, text)) / len(text)


def _encode(tok: Tokenizer, text: str) -> list[int]:
    # plain text only: a RegexBPE must not turn "<|end|>" in a corpus into one special id here
    return tok.encode_ordinary(text) if hasattr(tok, "encode_ordinary") else tok.encode(text)


def token_strings(tok: Tokenizer, text: str) -> list[str]:
    """The tokens of `text`, each shown readably (`render_token`): partial UTF-8 bytes as \\xNN."""
    return [render_token(tok.vocab[i]) for i in _encode(tok, text)]


def truncated(tok: Tokenizer, vocab_size: int) -> Tokenizer:
    """A copy of `tok` with only its first `vocab_size - 256` merges (same class and pattern, no
    special tokens): the tokenizer training would have produced with that vocabulary size."""
    n = vocab_size - 256
    if not 0 <= n <= len(tok.merges):
        raise ValueError(f"vocab_size={vocab_size}: choose 256..{256 + len(tok.merges)}")
    small = type(tok)()
    small.pattern = tok.pattern
    small._set(dict(list(tok.merges.items())[:n]), {})  # resets RegexBPE's chunk cache too
    return small


def compression_curve(tok: Tokenizer, text: str, vocab_sizes: list[int]) -> dict[str, list[float]]:
    """Bytes per token and tokens per character of `text` at each vocabulary size (each at most
    `tok.vocab_size` without specials), using prefixes of `tok`'s merges.

    Returns {"vocab_size": [...], "bytes_per_token": [...], "tokens_per_char": [...]}.
    """
    out: dict[str, list[float]] = {"vocab_size": [], "bytes_per_token": [], "tokens_per_char": []}
    for v in vocab_sizes:
        small = truncated(tok, v)
        out["vocab_size"].append(v)
        out["bytes_per_token"].append(bytes_per_token(small, text))
        out["tokens_per_char"].append(tokens_per_char(small, text))
    return out


def oov_rate(train_units: list[str], test_units: list[str], max_vocab: int | None = None) -> float:
    """Share of `test_units` (words, characters) missing from the vocabulary of `train_units`,
    optionally only its `max_vocab` most frequent units (ties broken by first appearance).

    >>> oov_rate(["the", "cat", "the"], ["the", "dog"])
    0.5
    """
    if not test_units:
        raise ValueError("no test units")
    counts: dict[str, int] = {}
    for u in train_units:
        counts[u] = counts.get(u, 0) + 1
    vocab = sorted(counts, key=lambda u: -counts[u])[:max_vocab] if max_vocab else counts
    known = set(vocab)
    return sum(u not in known for u in test_units) / len(test_units)


# ------------------------------------------------------------------ notebook 06's exercises
def _ids_inputs(rng: random.Random) -> list[int]:
    alphabet = rng.sample(range(300), rng.randint(1, 4))  # few symbols, so pairs repeat
    return [rng.choice(alphabet) for _ in range(rng.randint(0, 16))]


def _merge_inputs(rng: random.Random) -> tuple[list[int], tuple[int, int], int]:
    ids = _ids_inputs(rng)
    if len(ids) >= 2 and rng.random() < 0.8:  # usually a pair that occurs
        i = rng.randrange(len(ids) - 1)
        pair = (ids[i], ids[i + 1])
    else:
        pair = (rng.randrange(300), rng.randrange(300))
    return ids, pair, 300 + rng.randrange(100)


register("06.get_stats", bpe.get_stats, inputs=lambda rng: (_ids_inputs(rng),), compare="exact",
         fixed=(([],), ([5],), ([7, 7, 7],), ([1, 2, 3, 1, 2],)),
         hint="count every adjacent (overlapping) pair: zip(ids, ids[1:]); [7, 7, 7] has (7, 7) twice")
register("06.merge", bpe.merge, inputs=_merge_inputs, compare="exact",
         fixed=(([7, 7, 7], (7, 7), 9), ([1, 2, 3, 1, 2], (1, 2), 4), ([], (1, 2), 3), ([1], (1, 2), 3)),
         hint="scan left to right; after replacing a pair skip both its ids, so [7, 7, 7] with (7, 7) "
              "becomes [9, 7]")


_SCRIPTS = ("abc xyz", "naïve café", "Привет мир", "你好，世界。", "🙂🚀👍🏽", "ab 你 é 🙂")  # 1-4 bytes/char


def _text_inputs(rng: random.Random) -> tuple[str]:
    alphabet = rng.choice(_SCRIPTS)
    return ("".join(rng.choice(alphabet) for _ in range(rng.randint(0, 12))),)


def _encode_inputs(rng: random.Random) -> tuple[str, dict[tuple[int, int], int]]:
    alphabet = rng.choice(("ab", "abc ", "aé", "你好", "你好 ab"))
    sample = "".join(rng.choice(alphabet) for _ in range(rng.randint(8, 40)))
    merges = bpe.train_merges({sample.encode("utf-8"): 1}, rng.randint(1, 8))  # {pair: new id}
    return "".join(rng.choice(alphabet) for _ in range(rng.randint(0, 16))), merges


@exercise("06.utf8_lengths", inputs=_text_inputs, compare="exact", fixed=(("",), ("aï你🙂",)),
          hint="encode each character on its own: len(ch.encode('utf-8')); 'aï你🙂' gives [1, 2, 3, 4]")
def utf8_lengths(text: str) -> list[int]:
    """utf8_lengths(text) -> list[int]: the number of UTF-8 bytes of each character of `text`."""
    return [len(ch.encode("utf-8")) for ch in text]


@exercise("06.bpe_encode", inputs=_encode_inputs, compare="exact",
          fixed=(("aaa", {(97, 97): 256}), ("aaaa", {(97, 97): 256, (256, 256): 257}), ("", {(97, 97): 256}),
                 ("abab", {(98, 97): 256, (97, 98): 257})),
          hint="repeat: among the adjacent pairs present, take the one with the SMALLEST merge id "
               "(learned first) and fuse it everywhere; stop when no pair is a learned merge")
def bpe_encode(text: str, merges: dict[tuple[int, int], int]) -> list[int]:
    """bpe_encode(text, merges) -> token ids: start from the UTF-8 bytes of `text`; while some
    adjacent pair is in `merges` ({(left id, right id): new id}), fuse the pair with the smallest
    new id (the earliest merge) everywhere, left to right."""
    tok = Tokenizer()
    tok.merges = dict(merges)
    return tok._encode_chunk(text.encode("utf-8"))
