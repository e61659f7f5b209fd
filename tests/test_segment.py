"""Tests for llmcourse.segment (Chinese words for word2vec) and the Chinese path of word2vec.

Hand-segmented sentences, a property against jieba itself (segmenting keeps every kept character,
in order), the evaluation groups' words being single jieba words, and `load_corpus(language="zh")`.
"""

from __future__ import annotations

import re

import pytest

from llmcourse import data
from llmcourse.segment import WORD_GROUPS_ZH, segment
from llmcourse.word2vec import Word2VecConfig, load_corpus


def test_segment_by_hand():
    text = "我爱北京天安门。\n\n  \nDebian 的 APT 工具，2024 年！\n。，！"
    assert segment(text) == [["我", "爱", "北京", "天安门"], ["debian", "的", "apt", "工具", "年"]]


def test_segment_keeps_every_word_character_in_order():
    # jieba only cuts; dropping punctuation, digits and spaces must leave the same characters
    text = "学而时习之，不亦说乎？有朋自远方来，不亦乐乎？\n用 Aptitude 安装 vim 软件包，3 次。"
    for line, words in zip(text.splitlines(), segment(text), strict=True):
        assert "".join(words) == re.sub(r"[^\u4e00-\u9fffa-z]", "", line.lower())
    assert segment(text)[1] == ["用", "aptitude", "安装", "vim", "软件包", "次"]


def test_group_words_are_single_words():
    # a group word jieba splits could never be in the vocabulary, and would silently not count
    for group, words in WORD_GROUPS_ZH.items():
        assert len(words) >= 3, group
        for w in words:
            assert segment(w) == [[w]], (group, w)
    everything = [w for ws in WORD_GROUPS_ZH.values() for w in ws]
    assert len(everything) == len(set(everything))


def test_segment_rejects_bytes():
    with pytest.raises(ValueError, match="decode"):
        segment("我爱北京".encode())


def test_load_corpus_segments_chinese_and_checks_the_language():
    text = data.load_text("tiny-zh")
    assert load_corpus("tiny-zh", language="zh") == segment(text)
    capped = load_corpus("tiny-zh", 100, language="zh")
    assert sum(map(len, capped[:-1])) < 100 <= sum(map(len, capped))
    with pytest.raises(ValueError, match="language"):
        load_corpus("tiny-zh", language="fr")


def test_chinese_config():
    zh = Word2VecConfig.for_size("smoke", language="zh")
    en = Word2VecConfig.for_size("smoke", language="en")
    assert (zh.language, zh.corpus, zh.max_words) == ("zh", "fortunes-zh", 0)
    assert (en.language, en.corpus) == ("en", "lee+shakespeare")
