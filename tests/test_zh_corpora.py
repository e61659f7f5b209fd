"""The Chinese corpora read from Debian's fortunes-zh package: "fortunes-zh" and "poems-zh".

The clean-up (`clean_fortunes`, the registry's "fortune" transform) is checked on a small file
written here in the fortune format (ANSI colour escapes, "%" lines between entries, indentation, a
command table to drop); the fallback to "tiny-zh" with one warning that says how to install the
package; and, where the package is installed (CI installs it: `apt-get install fortunes-zh`), the
real files' size and shape.
"""

from __future__ import annotations

import os
import re
import warnings
from pathlib import Path

import pytest

import llmcourse.data as data
import llmcourse.data.registry as registry
import llmcourse.data.resolve as resolve
from llmcourse.data import Corpus, OfflineFallbackWarning
from llmcourse.data.fetch import clean_fortunes

FORTUNE_FILES = [Path(f) for f in data.get_corpus("fortunes-zh").files]
INSTALLED = all(f.is_file() for f in FORTUNE_FILES)
# on a laptop without the package the real-file checks are skipped; under CI (CI set) they run, and
# a missing package is a setup error
needs_package = pytest.mark.skipif(
    not INSTALLED and not os.environ.get("CI"),
    reason="Debian package fortunes-zh not installed (sudo apt-get install fortunes-zh)",
)

# two poems and a saying in the fortune format, a command table and an English entry, CRLF endings
HAND_MADE = (
    "\x1b[32m《静夜思》\x1b[m\r\n"
    "\x1b[33m作者：李白\x1b[m\r\n"
    "床前明月光，疑是地上霜。\r\n"
    "举头望明月，低头思故乡。\r\n"
    "%\r\n"
    "  │ apt install package-names\r\n"
    "  ├──────────────┤\r\n"
    "%\r\n"
    "表 1.3. 重要目录的用途列表\r\n"
    "┌────┬──────┐\r\n"
    "│ /  │根目录│\r\n"
    "└────┴──────┘\r\n"
    "%\r\n"
    "Talk is cheap. Show me the code.\r\n"
    "    -- Linus\r\n"
    "%\r\n"
    "\x1b[1;36m知足常乐。\x1b[;m\r\n"
    "\r\n"
    "\r\n"
    "\r\n"
    "    --《谚语》\r\n"
    "%\r\n"
    "\x1b[32m《春晓》\x1b[m\r\n"
    "\x1b[33m作者：孟浩然\x1b[m\r\n"
    "春眠不觉晓，处处闻啼鸟。\r\n"
    "夜来风雨声，花落知多少。\r\n"
)
CLEAN = (
    "《静夜思》\n作者：李白\n床前明月光，疑是地上霜。\n举头望明月，低头思故乡。\n\n"
    "表 1.3. 重要目录的用途列表\n\n知足常乐。\n\n--《谚语》\n\n"
    "《春晓》\n作者：孟浩然\n春眠不觉晓，处处闻啼鸟。\n夜来风雨声，花落知多少。\n"
)


@pytest.fixture(autouse=True)
def _isolated(tmp_path, monkeypatch):
    """A fresh cache per test, offline (as in CI), warnings not yet given, a copy of the table."""
    monkeypatch.setenv("LLMCOURSE_CACHE", str(tmp_path / "cache"))
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
    monkeypatch.setattr(resolve, "_warned", set())
    monkeypatch.setattr(registry, "_REGISTRY", dict(registry._REGISTRY))


def test_clean_fortunes_by_hand():
    assert clean_fortunes(HAND_MADE) == CLEAN
    # min_han decides which entries are Chinese enough to keep: 0 keeps every non-empty entry
    everything = clean_fortunes(HAND_MADE, min_han=0.0)
    assert "Talk is cheap." in everything and "apt install" not in everything  # a table line
    assert "\x1b" not in everything and not re.search(r"^%$", everything, re.M)
    assert clean_fortunes("%\n%\n") == ""


def test_a_registered_fortune_file_is_cleaned_and_cached(tmp_path):
    src = tmp_path / "poems"
    src.write_bytes(HAND_MADE.encode("utf-8"))
    data.register(
        Corpus(
            "hand-made-fortunes",
            "two poems in the fortune format",
            "this test",
            "public domain",
            package="deb:fortunes-zh",
            files=(str(src), str(src)),
            transform="fortune",
            fallback="tiny-zh",
        )
    )
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # the files are there: no fallback, no warning
        text = data.load_text("hand-made-fortunes")
    assert text == CLEAN + "\n\n" + CLEAN  # several files: cleaned one by one, then joined
    path, encoding = data.locate("hand-made-fortunes")
    assert path.parent == registry.cache_dir() and encoding == "utf-8"
    src.unlink()  # the cached clean text is used from now on
    assert data.load_text("hand-made-fortunes") == text


@pytest.mark.parametrize("name", ["fortunes-zh", "poems-zh"])
def test_without_the_package_one_warning_says_how_to_install_it(monkeypatch, name):
    real = registry.package_files
    monkeypatch.setattr(
        registry, "package_files", lambda c: None if c.package == "deb:fortunes-zh" else real(c)
    )
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        text = data.load_text(name)
        again = data.load_text(name)
    assert text == again == data.load_text("tiny-zh")
    fallbacks = [w for w in caught if issubclass(w.category, OfflineFallbackWarning)]
    assert len(fallbacks) == 1, [str(w.message) for w in caught]
    message = str(fallbacks[0].message)
    assert f"'{name}'" in message and "'tiny-zh'" in message
    assert "sudo apt-get install fortunes-zh" in message and "Colab" in message
    assert fallbacks[0].filename == __file__  # points at the caller, not the package


def test_an_unknown_transform_is_an_error(tmp_path):
    src = tmp_path / "a.txt"
    src.write_text("文本\n", encoding="utf-8")
    data.register(
        Corpus("odd", "x", "this test", "MIT", package="deb:x", files=(str(src),), transform="rot")
    )
    with pytest.raises(ValueError, match="'rot'.*'fortune'"):
        data.load_text("odd")


@needs_package
def test_the_installed_package_gives_a_megabyte_of_chinese():
    text = data.load_text("fortunes-zh")
    assert len(text.encode("utf-8")) >= 1_000_000
    han = sum("\u4e00" <= ch <= "\u9fff" for ch in text)
    assert han > 0.6 * sum(not ch.isspace() for ch in text)  # mostly Chinese characters
    assert "\x1b" not in text and not re.search(r"^%$", text, re.M)
    assert "─" not in text  # the command tables' borders are gone


@needs_package
def test_poems_zh_is_titled_poems_in_lines_of_five_or_seven():
    text = data.load_text("poems-zh")
    poems = re.split(r"\n{2,}", text.strip())
    assert len(poems) >= 380  # 300 Tang poems + 100 Song ci (a few merged or split)
    titled = [p for p in poems if "《" in p.split("\n")[0] and "作者" in p.split("\n")[1]]
    assert len(titled) >= 0.9 * len(poems)  # long poems have stanzas: untitled paragraphs
    clauses = [c for c in re.split(r"[，。？！；、]", text) if c and "\n" not in c]
    five_or_seven = sum(len(c) in (5, 7) for c in clauses)
    assert five_or_seven > 0.6 * len(clauses)  # regular verse dominates (the ci are irregular)
    assert text[:2000] in data.load_text("fortunes-zh")  # the poems are part of fortunes-zh


@needs_package
def test_a_changed_clean_up_is_never_met_by_a_stale_cached_copy(tmp_path):
    """The cleaned text of an installed package is made afresh: a cached copy from an older clean-up
    (or any other file at that path) is replaced, not returned."""
    from llmcourse.data import resolve

    stale = tmp_path / "corpora" / "poems-zh.txt"
    stale.parent.mkdir(parents=True)
    stale.write_text("an old clean-up's output", encoding="utf-8")
    path, _ = resolve.locate("poems-zh", cache=tmp_path)
    text = path.read_text(encoding="utf-8")
    assert "《" in text and "old clean-up" not in text
