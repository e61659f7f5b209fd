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

Also the references of notebook 06's exercises: UTF-8 bytes per character (`utf8_lengths`) and
encoding with a list of learned merges (`bpe_encode`, via `Tokenizer._encode_chunk`); its two BPE
primitives are checked against `llmcourse.bpe.get_stats` and `llmcourse.bpe.merge`.
Left out: normalisation effects, fertility per word (tokens per whitespace word), and measurements
for Hugging Face tokenizers other than through `to_hf_tokenizer`.
"""

from __future__ import annotations

from llmcourse.bpe import Tokenizer, render_token


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


# ------------------------------------------------------------------------- checked by notebook 06's exercises
def utf8_lengths(text: str) -> list[int]:
    """utf8_lengths(text) -> list[int]: the number of UTF-8 bytes of each character of `text`."""
    return [len(ch.encode("utf-8")) for ch in text]


def bpe_encode(text: str, merges: dict[tuple[int, int], int]) -> list[int]:
    """bpe_encode(text, merges) -> token ids: start from the UTF-8 bytes of `text`; while some
    adjacent pair is in `merges` ({(left id, right id): new id}), fuse the pair with the smallest
    new id (the earliest merge) everywhere, left to right."""
    tok = Tokenizer()
    tok.merges = dict(merges)
    return tok._encode_chunk(text.encode("utf-8"))
