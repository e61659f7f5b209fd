"""Configs as typed dataclasses, with two named sizes and one code path.

Every notebook and script in the course is configured by a `@dataclass` whose defaults are the
**full** size (a learner with a GPU, real data, minutes of training). The **smoke** size is the same
code on a CPU in seconds: the class lists the fields it changes in `smoke_overrides`. Which size is
used is decided by `current_size()`, one environment variable, or automatically under CI / nbmake.

Two more settings, one environment variable each, are read here so that every notebook agrees:

- `current_language()`: "en" (default) or "zh" from `LLMCOURSE_LANG`. A config class lists what
  changes for Chinese in `language_overrides` (a corpus, usually), keyed by "zh" (both sizes) and
  "zh/smoke" (the smoke size only); `for_size` applies them and fills a `language` field if the
  class has one. The notebooks run the same code in both languages.
- `current_hub()`: "huggingface" (default) or "modelscope" from `LLMCOURSE_HUB`: where models and
  data sets are downloaded from (`llmcourse.data.fetch.hub_source` maps the names). With the default, the
  `HF_ENDPOINT` variable (e.g. https://hf-mirror.com) chooses a mirror of the Hugging Face hub.

Figures with Chinese labels need a CJK font, which matplotlib's default (DejaVu Sans) lacks:
`use_cjk_font()` adds one when the system has it, and otherwise warns once how to install one.

    >>> from dataclasses import dataclass
    >>> @dataclass
    ... class Demo(Sized):
    ...     n_layer: int = 12   # transformer blocks
    ...     smoke_overrides = {"n_layer": 2}
    >>> Demo.for_size("smoke").n_layer, Demo.for_size("full", n_layer=6).n_layer
    (2, 6)

A notebook overrides fields with `dataclasses.replace(cfg, n_layer=4)` or `for_size(..., n_layer=4)`,
never by editing package code. Scripts map `--field=value` onto the dataclass with `from_cli`, which
checks that the value parses as the field's type.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import re
import types
import typing
import warnings
from pathlib import Path
from typing import Any, ClassVar, TypeVar

SIZES = ("smoke", "full")
SIZE_ENV = "LLMCOURSE_SIZE"
LANGUAGES = ("en", "zh")
LANG_ENV = "LLMCOURSE_LANG"
HUBS = ("huggingface", "modelscope")
HUB_ENV = "LLMCOURSE_HUB"
REHEARSAL_ENV = "LLMCOURSE_REHEARSAL"
REHEARSAL_ROWS_ENV = "LLMCOURSE_REHEARSAL_ROWS"

T = TypeVar("T")


def current_size() -> str:
    """Return "smoke" or "full".

    Order of precedence: "full" in a rehearsal (`rehearsal_steps()`) unless `LLMCOURSE_SIZE` says
    smoke; the `LLMCOURSE_SIZE` variable if set; otherwise "smoke" under CI
    (`CI` set, as every CI service does) or inside pytest/nbmake; otherwise "full".
    """
    return size_and_reason()[0]


def size_and_reason() -> tuple[str, str]:
    """The size `current_size()` picks, and why (notebooks print the reason)."""
    value = os.environ.get(SIZE_ENV, "").strip().lower()
    steps = rehearsal_steps()
    if steps is not None and value in ("", "full"):
        return "full", (
            f"REHEARSAL, {REHEARSAL_ENV}={steps}: full shapes and data path, every training loop "
            f"capped at {steps} steps; the results mean nothing"
        )
    if value:
        if value not in SIZES:
            raise ValueError(f"{SIZE_ENV}={value!r}: use one of {SIZES}")
        return value, f"set by {SIZE_ENV}"
    if os.environ.get("CI", "").lower() not in ("", "0", "false"):
        return "smoke", "automatic: CI is set"
    if "PYTEST_CURRENT_TEST" in os.environ or "NBMAKE" in os.environ:
        return "smoke", "automatic: running under pytest/nbmake"
    return "full", f"default; {SIZE_ENV}=smoke runs in seconds on a CPU"


def is_smoke() -> bool:
    return current_size() == "smoke"


def rehearsal_steps() -> int | None:
    """The step cap of a full-size rehearsal, from `LLMCOURSE_REHEARSAL` (a positive integer), or None.

    A rehearsal runs a notebook's full configuration (model shapes, tokenizers, batch sizes, data
    pipeline) with every long loop capped at this many steps, so that CI can execute the full path
    on a CPU in seconds against a stand-in hub (tests/standin_hub.py). `cap_steps` is the one rule;
    it is applied to training (`llmcourse.train.fit`, `estimate_loss`), to the encoder-decoder's
    decoding steps (`transformer.Seq2SeqTransformer`), to evaluation loops
    (`evaluate.perplexity`'s batches; the items `sft.generate_answers`, `sft.hf_answers`,
    `icl.accuracy`, `benchmarks.score_items` and `rag.EmbeddingRetriever` go through), to timing
    loops (`inference_cost.time_call` and `decode_speed`, `generate.cache_speedup`,
    `peft_compare.step_parts`), and to the config fields a `Sized` class lists in
    `rehearsal_caps` (word2vec's epochs, the characters sampled and questions answered in
    notebooks 09 and 15). Unset (or 0): no cap.
    """
    value = os.environ.get(REHEARSAL_ENV, "").strip()
    if value in ("", "0"):
        return None
    if not value.isdigit():
        raise ValueError(
            f"{REHEARSAL_ENV}={value!r}: use a positive number of steps (or 0 for off)"
        )
    return int(value)


def cap_steps(n: int) -> int:
    """`n` loop steps, or fewer in a rehearsal (`rehearsal_steps()`): the cap every long loop uses."""
    steps = rehearsal_steps()
    return n if steps is None else min(n, steps)


def rehearsal_rows() -> int | None:
    """A cap on batch rows for a rehearsal, from `LLMCOURSE_REHEARSAL_ROWS`, or None (no cap).

    Only a memory guard for a rehearsal on a CPU: a full-size batch that takes 11 GB of a GPU in 16-bit
    can take twice that of a CPU's memory in fp32 (notebook 18: 22.6 GB for SmolLM2-135M at 16 x 512).
    Applied to the fields a `Sized` class lists in `rehearsal_row_caps`, only while
    `LLMCOURSE_REHEARSAL` is set; the shapes of the model and of each row stay as they are.
    """
    value = os.environ.get(REHEARSAL_ROWS_ENV, "").strip()
    if value in ("", "0") or rehearsal_steps() is None:
        return None
    if not value.isdigit():
        raise ValueError(
            f"{REHEARSAL_ROWS_ENV}={value!r}: use a positive integer (batch rows), or unset it"
        )
    return int(value)


def current_language() -> str:
    """Return "en" or "zh": the language of the notebooks' texts, from `LLMCOURSE_LANG` (default "en").

    In Colab, set it in the first cell: `import os; os.environ["LLMCOURSE_LANG"] = "zh"`.
    """
    value = os.environ.get(LANG_ENV, "").strip().lower() or "en"
    if value not in LANGUAGES:
        raise ValueError(f"{LANG_ENV}={value!r}: use one of {LANGUAGES}")
    return value


def current_hub() -> str:
    """Return "huggingface" or "modelscope": where downloads come from, from `LLMCOURSE_HUB`.

    The default is "huggingface" (set `HF_ENDPOINT=https://hf-mirror.com` to use a mirror);
    "modelscope" takes the models and data sets that have a ModelScope copy from modelscope.cn.
    """
    value = os.environ.get(HUB_ENV, "").strip().lower() or "huggingface"
    if value in ("hf", "hugging_face", "hugging-face"):
        value = "huggingface"
    if value in ("ms", "model_scope", "model-scope"):
        value = "modelscope"
    if value not in HUBS:
        raise ValueError(f"{HUB_ENV}={value!r}: use one of {HUBS}")
    return value


# Fonts with Chinese glyphs, by family name (matplotlib's names), most common first.
CJK_FONTS = (
    "Noto Sans CJK SC",
    "Noto Sans SC",
    "Source Han Sans SC",
    "Source Han Sans CN",
    "WenQuanYi Zen Hei",
    "WenQuanYi Micro Hei",
    "Microsoft YaHei",
    "SimHei",
    "PingFang SC",
    "Hiragino Sans GB",
    "Heiti SC",
    "STHeiti",
    "Arial Unicode MS",
    "Noto Sans CJK JP",
    "Noto Sans CJK TC",
    "AR PL UMing CN",
)
_CJK_FILE = re.compile(
    r"cjk|wqy|wenquanyi|simhei|msyh|pingfang|sourcehan|notosanssc|ukai|uming", re.I
)
_cjk_warned = False


def use_cjk_font() -> str | None:
    """Let matplotlib draw Chinese characters: put an installed CJK font first in `font.family`
    (it draws Latin text too, and is the one font mathtext's plain text uses) and return its name.

    Without one, warn ONCE (instead of one warning per missing glyph) and return None: figures then
    show boxes for Chinese characters. Install a font and re-run, e.g. on Colab or Debian/Ubuntu
    `!apt-get -qq install fonts-noto-cjk`. Changes rcParams only; never imports pyplot.
    """
    global _cjk_warned
    import matplotlib
    from matplotlib import font_manager

    def installed() -> str | None:
        names = {f.name for f in font_manager.fontManager.ttflist}
        return next((n for n in CJK_FONTS if n in names), None)

    name = installed()
    if name is None:  # installed after matplotlib built its cache (apt-get in a running kernel)
        for path in font_manager.findSystemFonts():
            if _CJK_FILE.search(os.path.basename(path)):
                try:
                    font_manager.fontManager.addfont(path)
                except (OSError, RuntimeError, ValueError):
                    continue
        name = installed()
    if name is None:
        warnings.filterwarnings(
            "ignore", message=r"Glyph \d+ .* missing from (current )?font", category=UserWarning
        )
        if not _cjk_warned:
            _cjk_warned = True
            warnings.warn(
                "no CJK font found: Chinese characters in figures are drawn as boxes. Install "
                "one (Colab or Debian/Ubuntu: `!apt-get -qq install fonts-noto-cjk`) and re-run.",
                UserWarning,
                stacklevel=2,
            )
        return None
    # first, not a fallback: text that mixes math and Chinese ("损失 $x^2$") is drawn by mathtext,
    # which takes the first family alone; the CJK fonts carry Latin glyphs too
    # WenQuanYi Micro Hei has no bold face: matplotlib draws bold text with the regular one and
    # would log "Failed to find font weight bold" under every bold title
    logging.getLogger("matplotlib.font_manager").setLevel(logging.ERROR)
    families = [f for f in matplotlib.rcParams["font.family"] if f != name]
    matplotlib.rcParams["font.family"] = [name, *families]
    return name


class Sized:
    """Mixin for config dataclasses: defaults are the full size, `smoke_overrides` the smoke size,
    `language_overrides` what changes for another language ("zh": both sizes, "zh/smoke": smoke only).

        >>> from dataclasses import dataclass
        >>> @dataclass
        ... class Run(Sized):
        ...     language: str = "en"
        ...     corpus: str = "wikitext-2"
        ...     smoke_overrides = {"corpus": "lee"}
        ...     language_overrides = {"zh": {"corpus": "wiki-zh"}, "zh/smoke": {"corpus": "tiny-zh"}}
        >>> Run.for_size("smoke", language="zh")
        Run(language='zh', corpus='tiny-zh')
        >>> Run.for_size("full", language="zh").corpus, Run.for_size("full", language="en").corpus
        ('wiki-zh', 'wikitext-2')
    """

    smoke_overrides: ClassVar[dict[str, Any]] = {}
    language_overrides: ClassVar[dict[str, dict[str, Any]]] = {}
    # fields that count loop steps (epochs, samples, answers, timed lengths): a rehearsal caps them
    # with `cap_steps` (a tuple keeps its first items); normal runs leave them as they are
    rehearsal_caps: ClassVar[tuple[str, ...]] = ()
    # batch-row fields a rehearsal may cap with `rehearsal_rows()` (a memory guard on a CPU)
    rehearsal_row_caps: ClassVar[tuple[str, ...]] = ()

    @classmethod
    def for_size(
        cls: type[T], size: str | None = None, language: str | None = None, **overrides: Any
    ) -> T:
        """The config at `size` (default `current_size()`) for `language` (default
        `current_language()`), then `overrides`. Order: full defaults, smoke_overrides (smoke),
        language_overrides[language], language_overrides[f"{language}/{size}"], overrides."""
        size = size or current_size()
        if size not in SIZES:
            raise ValueError(f"size={size!r}: use one of {SIZES}")
        language = language or current_language()
        if language not in LANGUAGES:
            raise ValueError(f"language={language!r}: use one of {LANGUAGES}")
        by_language = cls.language_overrides  # type: ignore[attr-defined]
        known = set(LANGUAGES) | {f"{lang}/{s}" for lang in LANGUAGES for s in SIZES}
        unknown = sorted(set(by_language) - known)
        if unknown:
            raise ValueError(
                f"{cls.__name__}.language_overrides has keys {unknown}; use a language "
                f"{LANGUAGES} or 'language/size' like 'zh/smoke'"
            )
        cfg = cls()
        if size == "smoke":
            cfg = dataclasses.replace(cfg, **cls.smoke_overrides)  # type: ignore[attr-defined]
        for key in (language, f"{language}/{size}"):
            cfg = dataclasses.replace(cfg, **by_language.get(key, {}))  # type: ignore[type-var]
        if "language" in {f.name for f in dataclasses.fields(cfg)}:  # type: ignore[arg-type]
            cfg = dataclasses.replace(cfg, language=language)  # type: ignore[type-var]
        cfg = dataclasses.replace(cfg, **overrides)  # type: ignore[type-var]
        cfg = capped(cfg, cls.rehearsal_caps)
        rows = rehearsal_rows()
        if rows is None or not cls.rehearsal_row_caps:
            return cfg
        fewer = {name: min(getattr(cfg, name), rows) for name in cls.rehearsal_row_caps}
        return dataclasses.replace(cfg, **fewer)  # type: ignore[type-var]


def capped(cfg: T, names: tuple[str, ...]) -> T:
    """`cfg` with the fields `names` capped by `cap_steps`: a number to at most the cap, a tuple or
    list to its first items (at least one). Unchanged outside a rehearsal."""
    if rehearsal_steps() is None or not names:
        return cfg
    changes = {}
    for name in names:
        value = getattr(cfg, name)
        if isinstance(value, (tuple, list)):
            changes[name] = value[: max(1, cap_steps(len(value)))]
        elif isinstance(value, int) and not isinstance(value, bool):
            changes[name] = cap_steps(value)
        else:
            raise TypeError(
                f"rehearsal_caps names {name!r}, a {type(value).__name__}: use int fields or tuples"
            )
    return dataclasses.replace(cfg, **changes)  # type: ignore[type-var]


def to_dict(cfg: Any) -> dict[str, Any]:
    """A JSON-friendly dict of a config dataclass (paths become strings)."""
    out = {}
    for f in dataclasses.fields(cfg):
        v = getattr(cfg, f.name)
        out[f.name] = str(v) if isinstance(v, Path) else v
    return out


def to_json(cfg: Any, path: str | os.PathLike) -> None:
    Path(path).write_text(json.dumps(to_dict(cfg), indent=2, sort_keys=True) + "\n")


def from_dict(cls: type[T], data: dict[str, Any]) -> T:
    """Build `cls` from a dict, refusing unknown keys (a typo must not be silently ignored)."""
    names = {f.name for f in dataclasses.fields(cls)}  # type: ignore[arg-type]
    unknown = sorted(set(data) - names)
    if unknown:
        raise ValueError(f"{cls.__name__} has no field(s) {unknown}; known fields: {sorted(names)}")
    hints = typing.get_type_hints(cls)
    data = {
        k: Path(v) if hints.get(k) is Path and isinstance(v, str) else v for k, v in data.items()
    }
    return cls(**data)


def from_json(cls: type[T], path: str | os.PathLike) -> T:
    return from_dict(cls, json.loads(Path(path).read_text()))


def _parse(value: str, typ: Any, name: str) -> Any:
    origin = typing.get_origin(typ)
    if origin is typing.Union or origin is types.UnionType:
        args = [a for a in typing.get_args(typ) if a is not type(None)]
        if value.lower() in ("none", "null"):
            return None
        return _parse(value, args[0], name)
    if typ is bool:
        if value.lower() in ("1", "true", "yes", "on"):
            return True
        if value.lower() in ("0", "false", "no", "off"):
            return False
        raise ValueError(f"--{name}={value}: expected true/false")
    if typ in (int, float, str, Path):
        try:
            return typ(value)
        except ValueError:
            raise ValueError(f"--{name}={value}: expected {typ.__name__}") from None
    return json.loads(value)


def from_cli(cfg: T, argv: list[str]) -> T:
    """Apply `--field=value` arguments to a config dataclass, checking each value's type.

    >>> from dataclasses import dataclass
    >>> @dataclass
    ... class C:
    ...     lr: float = 1e-3
    ...     steps: int = 10
    >>> from_cli(C(), ["--steps=20", "--lr", "3e-4"])
    C(lr=0.0003, steps=20)
    """
    hints = typing.get_type_hints(type(cfg))
    names = {f.name for f in dataclasses.fields(cfg)}  # type: ignore[arg-type]
    changes: dict[str, Any] = {}
    args = list(argv)
    while args:
        arg = args.pop(0)
        if not arg.startswith("--"):
            raise ValueError(f"unexpected argument {arg!r}: use --field=value")
        key, eq, value = arg[2:].partition("=")
        if not eq:
            if not args:
                raise ValueError(f"--{key} needs a value")
            value = args.pop(0)
        key = key.replace("-", "_")
        if key not in names:
            raise ValueError(f"unknown option --{key}; known: {', '.join(sorted(names))}")
        changes[key] = _parse(value, hints[key], key)
    return dataclasses.replace(cfg, **changes)  # type: ignore[type-var]
