"""Figure text in the learner's language: titles, axis labels and legends in Chinese for the zh edition.

The Chinese edition of a notebook runs the English notebook's code (`scripts/make_zh_edition.py`), so the
strings its figures are drawn with are English. `install("zh")` (called by `notebook.start()` when
`LLMCOURSE_LANG=zh`) wraps the few matplotlib methods that put words on a figure:

    Axes.set_title / set_xlabel / set_ylabel, Figure.suptitle / supxlabel / supylabel, Legend(labels)

so each string passes through `translate()`, which looks it up in the catalog: the tab-separated files
in `llmcourse/course/figure_text_zh/` (one per notebook, plus `common.tsv` for the package's own plots),
one `English<TAB>中文` pair per line. A `{}` in the English text matches any text, which the Chinese
side repeats in order (`loss after {} steps<TAB>{} 步之后的损失`), or by number where Chinese puts them in
another order (`{} of {} vectors<TAB>{2} 个向量的 {1}`); what a `{}` matched is translated too (two levels
deep), except text in quotes, which is data (`next character after {}` keeps `'To be'`).
`\\n` stands for a line break.
Annotations and `ax.text` are left alone, and tick labels are translated only where the catalog has
their exact text (a bar chart's "inference"): they usually show data (tokens, words, numbers).

A string that is not in the catalog and still reads as English (a word of three or more Latin letters
that is not a name like GPT or a unit like nats, see `KEEP`) is a miss: it is drawn as it is, and
recorded as {"kind": "untranslated"} in `LLMCOURSE_METRICS_FILE`, so CI (tests/check_headlines.py)
names every English label left in a Chinese figure. Left out: plural rules, and text inside the axes.
"""

from __future__ import annotations

import functools
import json
import os
import re
from pathlib import Path

CATALOGS = {"zh": Path(__file__).with_name("figure_text_zh")}

# Latin words a Chinese figure keeps as they are: model and method names, units, libraries.
KEEP = frozenset(
    w.lower()
    for w in """
    GPT GPT2 BERT LoRA QLoRA BPE RNN LSTM GRU CNN MLP ViT CLIP DPO SFT PPO GRPO RLHF MNIST LLaMA Llama
    SmolLM SmolLM2 PEFT RAG BLEU ROUGE MMLU word2vec gensim jieba PyTorch torch HF nats bits bit GiB MiB
    FLOPs FLOP softmax ReLU GELU SwiGLU RoPE RMSNorm LayerNorm fp16 bf16 fp32 int8 int4 nf4 CPU GPU
    Adam AdamW SGD KV GQA MHA MQA FSDP ZeRO DeepSpeed TRL DDP DDPM DDIM UNet CFG LLaVA MoE KL AUC ROC
    tok Kneser Ney LLM LLMs NLL PPL TF IDF BM25 API JSON HTTP SSE TTFT vLLM GGUF Q4_1 QKV SVD PCA
    t-SNE UMAP top-k top-p max min log exp sin cos tanh cls CLS SEP MASK eos EOS bos BOS pad PAD
    """.split()
)
QUOTES = (
    "'\"“”‘’「」"  # what a `{}` matched between these is data (a prompt, a token): never translated
)
_ENGLISH_WORD = re.compile(r"[A-Za-z][A-Za-z'’-]{2,}")
_TEXT_ENV = "LLMCOURSE_METRICS_FILE"
_installed: dict[tuple[type, str], object] = {}
_language = "en"


def looks_english(text: str) -> bool:
    """True when `text` has a Latin word of three or more letters that `KEEP` does not list."""
    without_math = re.sub(r"\$[^$]*\$", " ", text)  # mathtext ($\alpha$, $x_t$) is not prose
    return any(w.lower().strip("'’-") not in KEEP for w in _ENGLISH_WORD.findall(without_math))


@functools.lru_cache(maxsize=None)
def catalog(language: str) -> tuple[dict[str, str], tuple[tuple[re.Pattern, str], ...]]:
    """The catalog of `language`: exact entries, and patterns made from entries with `{}`."""
    folder = CATALOGS.get(language)
    if folder is None:
        raise ValueError(
            f"no figure-text catalog for language {language!r}: use one of {sorted(CATALOGS)}"
        )
    exact: dict[str, str] = {}
    patterns: list[tuple[re.Pattern, str, int]] = []
    for path in sorted(folder.glob("*.tsv")):
        for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
            if not line.strip() or line.startswith("#"):
                continue
            if line.count("\t") != 1:
                raise ValueError(
                    f"{path.name}, line {number}: write one `English<TAB>中文` pair per line "
                    f"(found {line.count(chr(9))} tabs)"
                )
            english, translated = (part.strip().replace("\\n", "\n") for part in line.split("\t"))
            holes = english.count("{}")
            numbered = sorted(int(n) for n in re.findall(r"\{(\d)\}", translated))
            if translated.count("{}") != holes and numbered != list(range(1, holes + 1)):
                raise ValueError(
                    f"{path.name}, line {number}: {english!r} has {holes} `{{}}`; its translation must "
                    f"have as many `{{}}` (in order) or `{{1}}`..`{{{holes}}}` (any order)"
                )
            if "{}" in english:
                regex = "^" + "(.+?)".join(re.escape(p) for p in english.split("{}")) + "$"
                patterns.append(
                    (re.compile(regex, re.S), translated, len(english) - 2 * english.count("{}"))
                )
            else:
                exact[english] = translated
    patterns.sort(key=lambda p: -p[2])  # the most specific (most literal text) first
    return exact, tuple((regex, template) for regex, template, _ in patterns)


def translate(text: str, *, language: str | None = None) -> str:
    """`text` in `language` (default: the installed one) if the catalog has it, else `text` itself.

    A multi-line string that is not in the catalog as a whole is translated line by line.
    """
    language = language or _language
    if language == "en" or not isinstance(text, str) or not text.strip():
        return text
    exact, patterns = catalog(language)
    found = _lookup(text.strip(), exact, patterns)
    if found is None and "\n" in text:
        lines = [_lookup(line.strip(), exact, patterns) for line in text.split("\n")]
        if all(
            t is not None or not looks_english(line) for t, line in zip(lines, text.split("\n"))
        ):
            found = "\n".join(
                t if t is not None else line for t, line in zip(lines, text.split("\n"))
            )
    if found is None:
        if looks_english(text):
            _record_miss(text, language)
        return text
    return found


def translate_known(text: str, *, language: str | None = None) -> str:
    """`text` translated only where the catalog has it exactly; anything else, silently as it is."""
    language = language or _language
    if language == "en" or not isinstance(text, str):
        return text
    return catalog(language)[0].get(text.strip(), text)


def _lookup(text: str, exact: dict[str, str], patterns, depth: int = 0) -> str | None:
    """The translation of `text`, or None. What a `{}` matched is translated in turn (two levels deep):
    a part that stays English makes the whole a miss."""
    if text in exact:
        return exact[text]
    if depth > 2:
        return None
    for regex, template in patterns:
        match = regex.match(text)
        if not match:
            continue
        groups = []
        for group in match.groups():
            if len(group) > 1 and group[0] in QUOTES and group[-1] in QUOTES:  # quoted: data, kept
                groups.append(group)
                continue
            found = _lookup(group.strip(), exact, patterns, depth + 1)
            if found is None and looks_english(group):
                break
            groups.append(group if found is None else found)
        else:
            if "{}" not in template:  # numbered: {1} is what the first `{}` matched, and so on
                return re.sub(r"\{(\d)\}", lambda m: groups[int(m[1]) - 1], template)
            parts = template.split("{}")
            return parts[0] + "".join(g + rest for g, rest in zip(groups, parts[1:]))
    return None


def _record_miss(text: str, language: str) -> None:
    path = os.environ.get(_TEXT_ENV)
    if not path:
        return
    record = {
        "notebook": os.environ.get("LLMCOURSE_NOTEBOOK", ""),
        "kind": "untranslated",
        "text": text,
        "lang": language,
    }
    with open(path, "a", encoding="utf-8") as f:
        f.write(json.dumps(record, ensure_ascii=False) + "\n")


def install(language: str) -> None:
    """Translate the text of every figure drawn from now on into `language` ("en" undoes it)."""
    global _language
    from matplotlib.axes import Axes
    from matplotlib.figure import FigureBase
    from matplotlib.legend import Legend

    if language != "en":
        catalog(language)  # a malformed catalog fails here, not at the first figure
    _language = language
    if _installed:
        return
    for cls, name in [(Axes, "set_title"), (Axes, "set_xlabel"), (Axes, "set_ylabel")] + [
        (FigureBase, n) for n in ("suptitle", "supxlabel", "supylabel")
    ]:
        original = getattr(cls, name)
        _installed[(cls, name)] = original

        @functools.wraps(original)
        def first_argument_translated(self, text, *args, _original=original, **kwargs):
            return _original(self, translate(text), *args, **kwargs)

        setattr(cls, name, first_argument_translated)
    # tick labels are mostly data (tokens, words, numbers): translated only where the catalog has the
    # exact text (a bar chart's "inference"), never recorded as misses
    from matplotlib.axis import Axis
    from matplotlib.category import StrCategoryFormatter

    original_ticklabels = Axis.set_ticklabels
    _installed[(Axis, "set_ticklabels")] = original_ticklabels

    @functools.wraps(original_ticklabels)
    def ticklabels(self, labels, *args, **kwargs):
        labels = [translate_known(t) if isinstance(t, str) else t for t in labels]
        return original_ticklabels(self, labels, *args, **kwargs)

    Axis.set_ticklabels = ticklabels
    original_format = StrCategoryFormatter.format_ticks
    _installed[(StrCategoryFormatter, "format_ticks")] = original_format

    @functools.wraps(original_format)
    def category_ticks(self, values):
        return [translate_known(t) for t in original_format(self, values)]

    StrCategoryFormatter.format_ticks = category_ticks
    original_init = Legend.__init__
    _installed[(Legend, "__init__")] = original_init

    @functools.wraps(original_init)
    def legend_init(self, parent, handles, labels, *args, **kwargs):
        original_init(self, parent, handles, [translate(str(t)) for t in labels], *args, **kwargs)

    Legend.__init__ = legend_init


def uninstall() -> None:
    """Put matplotlib's own methods back (tests use it)."""
    global _language
    for (cls, name), original in _installed.items():
        setattr(cls, name, original)
    _installed.clear()
    _language = "en"
