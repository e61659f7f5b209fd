"""Chinese word segmentation for word vectors: jieba's words, filtered the way English is.

Chinese is written without spaces, so a word model first has to decide where the words are: "我爱北京
天安门" is 我 / 爱 / 北京 / 天安门. jieba does it in its default ("precise") mode: it builds a graph of
every dictionary word found at each position (a prefix dictionary of about 350,000 words with their
counts), takes the path through the sentence with the highest product of word probabilities (dynamic
programming), and cuts runs of characters that no dictionary word covers with an HMM over the tags
B/M/E/S (begin, middle, end of a word, single), decoded by Viterbi.

* `segment(text)`: per line, the words to train on, the counterpart of `word2vec.tokenize`: words with
  a Chinese character, and Latin words lower-cased (program names such as "debian", "apt");
  punctuation, digits and spaces are dropped. Lines without a word are left out.
* `WORD_GROUPS_ZH`: hand-made groups of common Chinese words (numbers, nature, colours, ...) for
  `tasks.embeddings_eval.evaluate_groups`, the Chinese counterpart of `WORD_GROUPS`.

Reference: jieba, https://github.com/fxsjy/jieba (Sun Junyi).
Left out: user dictionaries, jieba's search mode and part-of-speech tags, traditional characters
(jieba's dictionary is mostly simplified Chinese).
"""

from __future__ import annotations

import logging
import re

# a word to keep: one with a CJK ideograph, or a Latin word (lower-cased first)
_WORD = re.compile(r"[\u3400-\u4dbf\u4e00-\u9fff]|^[a-z][a-z0-9+._-]*$")

WORD_GROUPS_ZH: dict[str, list[str]] = {
    "numbers": "一 二 三 四 五 六 七 八 九 十 百 千 万".split(),
    "nature": "山 水 风 雨 雪 云 花 草 树 江 月".split(),
    "colours": "红 白 黑 青 黄 绿".split(),
    "animals": "马 鸟 鱼 牛 羊 狗 龙".split(),
    "computing": "文件 目录 命令 程序 系统 软件包 内核 脚本 配置 用户".split(),
    "programs": "apt dpkg aptitude ssh git vim tar sudo".split(),
    "people": "君子 小人 圣人 百姓 天下 父母".split(),
}


def _jieba():
    """jieba, imported on first use with its start-up log ("Building prefix dict ...") silenced."""
    import jieba

    jieba.setLogLevel(logging.WARNING)
    return jieba


def segment(text: str) -> list[list[str]]:
    """The words of each line of `text` (lines are the sentences), segmented by jieba's precise mode.

    >>> segment("我爱北京天安门。\\n\\nDebian 的 APT 工具，2024 年")
    [['我', '爱', '北京', '天安门'], ['debian', '的', 'apt', '工具', '年']]
    """
    if not isinstance(text, str):
        raise ValueError(f"segment() takes a str, got {type(text).__name__}: decode the text first")
    jieba = _jieba()
    sentences = []
    for line in text.lower().splitlines():
        if line.strip() and (words := [w for w in jieba.lcut(line) if _WORD.search(w)]):
            sentences.append(words)
    return sentences


__all__ = ["segment", "WORD_GROUPS_ZH"]
