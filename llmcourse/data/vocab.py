"""Word and character tokenization, and the vocabularies that turn tokens into integer ids.

A vocabulary is a list of strings, `itos` ("int to string"); a token's id is its position. Special
tokens come first (by default just "<unk>", id 0), then the tokens of the training text: a
`CharVocab` keeps them in code-point order (the usual char-level convention, so " " and "\\n" come
early and ids read like the alphabet), a `WordVocab` by decreasing frequency (ties: alphabetical),
so `max_size` keeps the commonest words. Tokens rarer than `min_count` are left out and encode to
<unk>; without an "<unk>" special, an unknown token raises KeyError. A built vocabulary keeps each
token's training count in `counts` (0 for the specials).

This is the course's one token <-> id mapping: `llmcourse.ngram.NGramVocab` (specials <unk>, </s>,
ties kept in order of first appearance) and `llmcourse.word2vec.build_vocab` (no specials: unknown
words are dropped, and `counts` drive subsampling and negative sampling) are built with it.

    >>> v = CharVocab.from_text("hello")
    >>> v.itos, v.encode("hole"), v.decode(v.encode("hole"))
    (['<unk>', 'e', 'h', 'l', 'o'], [2, 4, 3, 1], 'hole')
    >>> v.encode("hex")
    [2, 1, 0]

Subword tokenizers (BPE) have their own module later in the course; left out here: byte fallback,
normalisation beyond lower-casing, and tokenizing languages written without spaces into words
(`simple_word_tokenize` keeps a run of Chinese characters as one "word": use `CharVocab` for them).
"""

from __future__ import annotations

import json
import os
import re
from collections import Counter
from collections.abc import Iterable
from pathlib import Path

UNK = "<unk>"

# A word is a run of letters/digits/underscore, optionally joined by inner apostrophes or hyphens
# ("don't", "state-of-the-art"); every other non-space character is a token of its own.
_WORD_RE = re.compile(r"\w+(?:['’\-]\w+)*|[^\w\s]")


def simple_word_tokenize(text: str, lower: bool = True) -> list[str]:
    """Split text into words and single punctuation marks with one regex (see `_WORD_RE`).

    >>> simple_word_tokenize("Don't panic: it's state-of-the-art!")
    ["don't", 'panic', ':', "it's", 'state-of-the-art', '!']

    Numbers stay whole ("4:00" -> "4", ":", "00"); whitespace is dropped, so the tokens cannot be
    joined back into the exact original text.
    """
    return _WORD_RE.findall(text.lower() if lower else text)


_SENT_END = re.compile(r"(?<=[.!?])[\"'”’)\]]*\s+|(?<=[。！？])[”」』）]*|\n\s*\n")


def sentences(text: str) -> list[str]:
    """Split prose into sentences: after ". ! ?" followed by whitespace (closing quotes stay with
    their sentence), after the Chinese "。！？" (no space needed), and at blank lines. Stripped,
    empty pieces dropped. Abbreviations ("Mr. Smith") are split too: this is a teaching helper,
    not a parser.

    >>> sentences("It rained. Did it? 下雨了。好冷！")
    ['It rained.', 'Did it?', '下雨了。', '好冷！']
    """
    out, start = [], 0
    for m in _SENT_END.finditer(text):
        out.append(text[start : m.end()].strip())
        start = m.end()
    out.append(text[start:].strip())
    return [s for s in out if s]


class Vocab:
    """Token <-> id mapping shared by `CharVocab` and `WordVocab` (use those)."""

    def __init__(self, itos: list[str], specials: Iterable[str] = (UNK,)):
        self.itos = list(itos)
        self.specials = list(specials)
        if self.itos[: len(self.specials)] != self.specials:
            raise ValueError(f"specials {self.specials} must be the first tokens of itos")
        self.stoi = {t: i for i, t in enumerate(self.itos)}
        if len(self.stoi) != len(self.itos):
            raise ValueError("duplicate tokens in itos")
        self.unk_id: int | None = self.stoi.get(UNK) if UNK in self.specials else None
        self.counts: list[int] | None = (
            None  # training count per id, set by `build` (0 for specials)
        )

    @classmethod
    def build(
        cls,
        tokens: Iterable[str],
        min_count: int = 1,
        max_size: int | None = None,
        *,
        specials: Iterable[str] = (UNK,),
        ties: str = "alphabetical",
    ):
        """Count `tokens`, drop those seen fewer than `min_count` times, keep the `max_size` most
        frequent (max_size counts the specials too), order them (see the module docstring).
        Equally frequent tokens are kept in alphabetical order, or with `ties="first_seen"` in the
        order they first appear (`collections.Counter.most_common`'s order).

        >>> v = Vocab.build("b a b c".split(), ties="first_seen")
        >>> v.itos, v.counts
        (['<unk>', 'b', 'a', 'c'], [0, 2, 1, 1])
        """
        if ties not in ("alphabetical", "first_seen"):
            raise ValueError(f"ties={ties!r}: use 'alphabetical' or 'first_seen'")
        specials = list(specials)
        counts = Counter(t for t in tokens if t not in specials)
        # sorted() is stable, so with the count alone as key ties keep the Counter's first-seen order
        key = (lambda t: (-counts[t], t)) if ties == "alphabetical" else (lambda t: -counts[t])
        kept = sorted((t for t, n in counts.items() if n >= min_count), key=key)
        if max_size is not None:
            if max_size < len(specials):
                raise ValueError(
                    f"max_size={max_size} is smaller than the {len(specials)} specials"
                )
            kept = kept[: max_size - len(specials)]
        vocab = cls(specials + cls._order(kept), specials)
        vocab.counts = [counts.get(t, 0) for t in vocab.itos]
        return vocab

    @staticmethod
    def _order(tokens: list[str]) -> list[str]:
        return tokens

    def __len__(self) -> int:
        return len(self.itos)

    def __contains__(self, token: str) -> bool:
        return token in self.stoi

    def __repr__(self) -> str:
        shown = ", ".join(repr(t) for t in self.itos[:8])
        return (
            f"{type(self).__name__}(size={len(self)}, [{shown}{', ...' if len(self) > 8 else ''}])"
        )

    def lookup(self, token: str) -> int:
        """The token's id; an unknown token gets <unk>'s id (KeyError without an "<unk>" special)."""
        i = self.stoi.get(token, self.unk_id)
        if i is None:
            raise KeyError(
                f"token {token!r} is not in the vocabulary and it has no {UNK!r} special"
            )
        return i

    def encode_tokens(self, tokens: Iterable[str]) -> list[int]:
        return [self.lookup(t) for t in tokens]

    def decode_tokens(self, ids: Iterable[int]) -> list[str]:
        """ids (ints, or a 1-D tensor/array) -> token strings."""
        return [self.itos[int(i)] for i in ids]

    def _extra(self) -> dict:
        return {}

    def save(self, path: str | os.PathLike) -> None:
        """Write the vocabulary as JSON (human-readable, no pickle)."""
        data = {
            "type": type(self).__name__,
            "itos": self.itos,
            "specials": self.specials,
            **self._extra(),
            **({"counts": self.counts} if self.counts is not None else {}),
        }
        Path(path).write_text(
            json.dumps(data, ensure_ascii=False, indent=1) + "\n", encoding="utf-8"
        )

    @classmethod
    def load(cls, path: str | os.PathLike):
        data = json.loads(Path(path).read_text(encoding="utf-8"))
        if data.get("type") != cls.__name__:
            raise ValueError(f"{path} holds a {data.get('type')}, not a {cls.__name__}")
        vocab = cls._from_json(data)
        vocab.counts = data.get("counts")
        return vocab

    @classmethod
    def _from_json(cls, data: dict):
        return cls(data["itos"], data["specials"])

    def __eq__(self, other: object) -> bool:
        return type(self) is type(other) and vars(self) == vars(other)


class CharVocab(Vocab):
    """Characters as tokens. `decode(encode(s)) == s` for any text made of vocabulary characters;
    an unknown character encodes to <unk> and decodes to the string "<unk>"."""

    @staticmethod
    def _order(tokens: list[str]) -> list[str]:
        return sorted(tokens)

    @classmethod
    def from_text(
        cls,
        text: str,
        min_count: int = 1,
        max_size: int | None = None,
        *,
        specials: Iterable[str] = (UNK,),
    ) -> CharVocab:
        return cls.build(text, min_count, max_size, specials=specials)

    def encode(self, text: str) -> list[int]:
        return self.encode_tokens(text)

    def decode(self, ids: Iterable[int]) -> str:
        return "".join(self.decode_tokens(ids))


class WordVocab(Vocab):
    """Words (from `simple_word_tokenize`) as tokens; `decode` joins them with single spaces, so
    `decode(encode(s)) == s` holds for text that is in-vocabulary words separated by single spaces
    (and already lowercase when `lower=True`)."""

    def __init__(self, itos: list[str], specials: Iterable[str] = (UNK,), lower: bool = True):
        super().__init__(itos, specials)
        self.lower = lower

    @classmethod
    def from_text(
        cls,
        text: str,
        min_count: int = 1,
        max_size: int | None = None,
        *,
        specials: Iterable[str] = (UNK,),
        lower: bool = True,
    ) -> WordVocab:
        vocab = cls.build(simple_word_tokenize(text, lower), min_count, max_size, specials=specials)
        vocab.lower = lower
        return vocab

    def tokenize(self, text: str) -> list[str]:
        return simple_word_tokenize(text, self.lower)

    def encode(self, text: str | list[str]) -> list[int]:
        """A string is tokenized first; a list is taken as tokens already."""
        return self.encode_tokens(self.tokenize(text) if isinstance(text, str) else text)

    def decode(self, ids: Iterable[int]) -> str:
        return " ".join(self.decode_tokens(ids))

    def _extra(self) -> dict:
        return {"lower": self.lower}

    @classmethod
    def _from_json(cls, data: dict) -> WordVocab:
        return cls(data["itos"], data["specials"], data.get("lower", True))
