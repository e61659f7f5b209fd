"""Named corpora for the course, loaded offline first: `load_text("wikitext-2")` and friends.

Every text (and the one small model) the course uses has a single name; `list_corpora()` shows them
all and which ones work offline on this machine. The package is split by idea:

* `llmcourse.data.registry`: the table of named corpora (`Corpus`, `register`, `get_corpus`,
  `list_corpora`), with notes on what each file really holds;
* `llmcourse.data.resolve`: name -> file, offline first (cache -> installed package -> URL or hub),
  and the offline fallback with its one `OfflineFallbackWarning` ("wikitext-2" -> "lee"); the same
  for the hub data sets and models of the full size (`hub_table`, `hub_model_dir`), every fallback
  announced in one line by `warn_fallback`;
* `llmcourse.data.fetch`: safe downloads (atomic, sha256-checked), hubs and mirrors, clean-ups;
* `llmcourse.data.vocab` and `llmcourse.data.batches`: tokenizers, vocabularies, batch samplers.

This module holds the loading API (`load_text`, the evaluation-set parsers, `lm_tokens`) and
re-exports the names notebooks use, so `from llmcourse import data; data.load_text(...)` is all a
notebook needs.

    >>> text = load_text("tiny-en")
    >>> "language model" in text
    True

Chinese has no spaces between words: `lm_tokens` splits it into characters, English into words.
Sources: the corpora's own papers and licences, listed in `llmcourse.data.registry` and the README.
Left out: streaming corpora bigger than memory, multi-split corpora (use `train_val_split`), dataset
licences beyond the table in the README.
"""

from __future__ import annotations

import os

from llmcourse.config import current_language
from llmcourse.data.batches import next_token_batches, sequential_batches, train_val_split
from llmcourse.data.fetch import (
    ChecksumError,
    NoModelScopeCopy,
    fetch_url,
    is_offline,
    strip_gutenberg,
)
from llmcourse.data.registry import (
    Corpus,
    cache_dir,
    format_corpora,
    get_corpus,
    list_corpora,
    register,
)
from llmcourse.data.resolve import (
    OfflineFallbackWarning,
    data_path,
    hub_model_dir,
    hub_table,
    locate,
    warn_fallback,
)
from llmcourse.data.vocab import CharVocab, WordVocab, sentences, simple_word_tokenize

__all__ = [
    "Corpus",
    "OfflineFallbackWarning",
    "ChecksumError",
    "register",
    "get_corpus",
    "cache_dir",
    "data_path",
    "load_text",
    "list_corpora",
    "format_corpora",
    "fetch_url",
    "is_offline",
    "strip_gutenberg",
    "load_word_similarity",
    "load_analogies",
    "load_movie_reviews",
    "train_val_split",
    "next_token_batches",
    "sequential_batches",
    "CharVocab",
    "WordVocab",
    "simple_word_tokenize",
    "sentences",
    "lm_tokens",
    "NoModelScopeCopy",
    "hub_table",
    "hub_model_dir",
    "warn_fallback",
]


# ------------------------------------------------------------------------------------------ loading
def load_text(
    name: str, max_chars: int | None = None, *, cache: str | os.PathLike | None = None
) -> str:
    """The corpus as one string, newlines normalised to "\\n" (may be a fallback corpus, see above)."""
    if get_corpus(name).kind == "model":
        raise TypeError(f"{name!r} is a model file, not text: use data_path({name!r})")
    if get_corpus(name).kind == "image":
        raise TypeError(f"{name!r} is an image set, not text: use llmcourse.tasks.mnist")
    path, encoding = locate(name, cache)
    text = path.read_bytes().decode(encoding).replace("\r\n", "\n")
    return text if max_chars is None else text[:max_chars]


# ------------------------------------------------------------------------------------------- tokens
def lm_tokens(text: str, language: str | None = None) -> list[str]:
    """The tokens a count-based language model uses: lowercased words and punctuation for English
    (`simple_word_tokenize`); for Chinese, written without spaces, every character except
    whitespace. `language` defaults to `config.current_language()`.

    >>> lm_tokens("The cat sat.", "en"), lm_tokens("今天 天气很好。", "zh")
    (['the', 'cat', 'sat', '.'], ['今', '天', '天', '气', '很', '好', '。'])
    """
    language = language or current_language()
    if language == "zh":
        return [ch for ch in text if not ch.isspace()]
    if language == "en":
        return simple_word_tokenize(text)
    raise ValueError(f"language={language!r}: use 'en' or 'zh'")


# ------------------------------------------------------------------------------------------ parsers
def load_word_similarity(name: str = "wordsim353") -> list[tuple[str, str, float]]:
    """(word1, word2, human score) triples from "wordsim353" or "simlex999" (tab-separated, '#'
    comment lines skipped; scores on a 0-10 scale)."""
    if name not in ("wordsim353", "simlex999"):
        raise ValueError(f"{name!r} is not a word-similarity set; use 'wordsim353' or 'simlex999'")
    out = []
    for line in data_path(name).read_text(encoding="utf-8").splitlines():
        if line.strip() and not line.startswith("#"):
            w1, w2, score = line.split("\t")[:3]
            out.append((w1, w2, float(score)))
    return out


def load_analogies() -> dict[str, list[tuple[str, str, str, str]]]:
    """word2vec's analogy questions: {section: [(a, b, c, d), ...]} meaning a:b :: c:d. Sections
    starting with "gram" are syntactic, the others semantic; case is kept ("Athens Greece ...")."""
    sections: dict[str, list[tuple[str, str, str, str]]] = {}
    current = None
    for line in data_path("questions-words").read_text(encoding="utf-8").splitlines():
        if line.startswith(":"):
            current = line[1:].strip()
            sections[current] = []
        elif line.strip():
            if current is None:
                raise ValueError("questions-words: a question before the first ': section' line")
            a, b, c, d = line.split()
            sections[current].append((a, b, c, d))
    return sections


def load_movie_reviews() -> list[tuple[str, str]]:
    """(sentence, label) pairs, label "pos" or "neg", from the fastText-format "movie-reviews"
    file: lowercased sentences with punctuation split off by spaces, in file order (neg first)."""
    out = []
    for line in load_text("movie-reviews").splitlines():
        label, _, text = line.partition(" ")
        if label.startswith("__label__"):
            out.append((text.strip(), label[len("__label__") :]))
    return out
