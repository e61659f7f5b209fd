"""Sizes, presets and CLI parsing: the contract every notebook and script relies on."""

import dataclasses
import warnings
from pathlib import Path

import pytest

from llmcourse import config
from llmcourse.config import Sized


@dataclasses.dataclass
class Demo(Sized):
    n_layer: int = 12  # blocks
    lr: float = 3e-4  # learning rate
    name: str = "full-run"  # run name
    compile: bool = False  # torch.compile
    out: Path = Path("out")  # output dir
    limit: int | None = None  # optional cap
    smoke_overrides = {"n_layer": 2, "name": "smoke-run"}


def test_size_from_env(monkeypatch):
    monkeypatch.setenv("LLMCOURSE_SIZE", "full")
    assert config.current_size() == "full"
    monkeypatch.setenv("LLMCOURSE_SIZE", "smoke")
    assert config.current_size() == "smoke"
    monkeypatch.setenv("LLMCOURSE_SIZE", "huge")
    with pytest.raises(ValueError, match="smoke"):
        config.current_size()


def test_size_automatic_under_ci_and_pytest(monkeypatch):
    monkeypatch.delenv("LLMCOURSE_SIZE", raising=False)
    monkeypatch.setenv("CI", "true")
    assert config.current_size() == "smoke"
    monkeypatch.setenv("CI", "false")
    # still inside pytest, which sets PYTEST_CURRENT_TEST
    assert config.current_size() == "smoke"
    monkeypatch.delenv("PYTEST_CURRENT_TEST")
    monkeypatch.delenv("NBMAKE", raising=False)
    assert config.current_size() == "full"


def test_presets_and_overrides():
    assert Demo.for_size("full") == Demo()
    smoke = Demo.for_size("smoke")
    assert (smoke.n_layer, smoke.name, smoke.lr) == (2, "smoke-run", 3e-4)
    assert Demo.for_size("smoke", lr=1.0).lr == 1.0 and Demo.for_size("smoke", lr=1.0).n_layer == 2
    with pytest.raises(ValueError):
        Demo.for_size("tiny")
    with pytest.raises(TypeError):
        Demo.for_size("full", n_layers=3)  # a typo must not pass silently


def test_json_round_trip(tmp_path):
    cfg = Demo.for_size("smoke", limit=7)
    config.to_json(cfg, tmp_path / "c.json")
    back = config.from_json(Demo, tmp_path / "c.json")
    assert back == cfg  # paths come back as Path, not str
    assert (back.n_layer, back.limit, back.name) == (2, 7, "smoke-run")
    with pytest.raises(ValueError, match="n_layers"):
        config.from_dict(Demo, {"n_layers": 3})


def test_from_cli_types():
    cfg = config.from_cli(
        Demo(), ["--n-layer=4", "--lr", "1e-3", "--compile=true", "--limit=none", "--out=x"]
    )
    assert (cfg.n_layer, cfg.lr, cfg.compile, cfg.limit, cfg.out) == (
        4,
        1e-3,
        True,
        None,
        Path("x"),
    )
    assert config.from_cli(Demo(), ["--limit=5"]).limit == 5
    with pytest.raises(ValueError, match="expected int"):
        config.from_cli(Demo(), ["--n_layer=four"])
    with pytest.raises(ValueError, match="unknown option"):
        config.from_cli(Demo(), ["--nlayer=4"])
    with pytest.raises(ValueError, match="true/false"):
        config.from_cli(Demo(), ["--compile=maybe"])


# ------------------------------------------------------------------------------- language and hub
@dataclasses.dataclass
class Lang(Sized):
    language: str = "en"  # filled in by for_size
    corpus: str = "wikitext-2"
    steps: int = 100
    smoke_overrides = {"corpus": "lee", "steps": 2}
    language_overrides = {
        "zh": {"corpus": "wiki-zh", "steps": 120},
        "zh/smoke": {"corpus": "tiny-zh"},
    }


def test_language_from_env(monkeypatch):
    monkeypatch.delenv("LLMCOURSE_LANG", raising=False)
    assert config.current_language() == "en"
    monkeypatch.setenv("LLMCOURSE_LANG", " ZH ")
    assert config.current_language() == "zh"
    monkeypatch.setenv("LLMCOURSE_LANG", "fr")
    with pytest.raises(ValueError, match="LLMCOURSE_LANG='fr'.*'en', 'zh'"):
        config.current_language()


def test_language_overrides_order(monkeypatch):
    """full defaults -> smoke_overrides -> overrides["zh"] -> overrides["zh/smoke"] -> keyword overrides."""
    monkeypatch.delenv("LLMCOURSE_LANG", raising=False)
    assert Lang.for_size("smoke") == Lang("en", "lee", 2)
    assert Lang.for_size("full", language="zh") == Lang("zh", "wiki-zh", 120)
    assert Lang.for_size("smoke", language="zh") == Lang(
        "zh", "tiny-zh", 120
    )  # zh beats smoke's steps
    assert Lang.for_size("smoke", language="zh", steps=7) == Lang("zh", "tiny-zh", 7)
    monkeypatch.setenv("LLMCOURSE_LANG", "zh")
    assert Lang.for_size("full").corpus == "wiki-zh"  # the environment picks the language
    assert Demo.for_size("smoke") == Demo.for_size(
        "smoke", language="en"
    )  # no overrides, no language field
    with pytest.raises(ValueError, match="language='de'"):
        Lang.for_size("full", language="de")


def test_language_overrides_keys_are_checked():
    @dataclasses.dataclass
    class Typo(Sized):
        corpus: str = "x"
        language_overrides = {"zh-smoke": {"corpus": "y"}}

    with pytest.raises(ValueError, match="'zh-smoke'.*zh/smoke"):
        Typo.for_size("full")


def test_hub_from_env(monkeypatch):
    monkeypatch.delenv("LLMCOURSE_HUB", raising=False)
    assert config.current_hub() == "huggingface"
    for value, hub in (("modelscope", "modelscope"), ("MS", "modelscope"), ("hf", "huggingface")):
        monkeypatch.setenv("LLMCOURSE_HUB", value)
        assert config.current_hub() == hub
    monkeypatch.setenv("LLMCOURSE_HUB", "github")
    with pytest.raises(ValueError, match="LLMCOURSE_HUB='github'"):
        config.current_hub()


@pytest.fixture
def rc():
    """Restore matplotlib's rcParams and the warn-once flag after a font test."""
    import matplotlib

    saved = matplotlib.rcParams.copy()
    yield matplotlib
    matplotlib.rcParams.update(saved)
    config._cjk_warned = False


def test_cjk_font_missing_warns_once_and_silences_glyph_warnings(rc, monkeypatch):
    from matplotlib import font_manager

    no_cjk = [f for f in font_manager.fontManager.ttflist if f.name not in config.CJK_FONTS]
    monkeypatch.setattr(
        font_manager.fontManager, "ttflist", no_cjk
    )  # as on Colab or a bare CI machine
    monkeypatch.setattr(font_manager, "findSystemFonts", lambda: [])
    monkeypatch.setattr(config, "_cjk_warned", False)
    # a Latin font alone, as on a machine without CJK fonts (an earlier test in this process may
    # have put a real CJK font first)
    rc.rcParams["font.family"] = ["DejaVu Sans"]
    family = list(rc.rcParams["font.family"])
    with pytest.warns(UserWarning, match="no CJK font.*fonts-noto-cjk"):
        assert config.use_cjk_font() is None
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert config.use_cjk_font() is None  # the second call is silent
    assert list(rc.rcParams["font.family"]) == family  # nothing changed
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots()
    try:
        ax.set_title("语言模型")
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            fig.canvas.draw()
        assert any(
            "Glyph" in str(w.message) for w in caught
        )  # matplotlib's own warning, one per glyph ...
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            assert config.use_cjk_font() is None
            fig.canvas.draw()  # ... silenced: no crash, boxes, no flood
        assert not caught
    finally:
        plt.close(fig)


def test_cjk_font_found_is_put_first(rc, monkeypatch):
    from matplotlib import font_manager

    fake = font_manager.FontEntry(
        fname="/nonexistent/NotoSansCJK-Regular.ttc", name="Noto Sans CJK SC"
    )
    monkeypatch.setattr(
        font_manager.fontManager, "ttflist", [*font_manager.fontManager.ttflist, fake]
    )
    rc.rcParams["font.family"] = ["sans-serif"]
    # the first of config.CJK_FONTS, so it is chosen even where another CJK font is installed
    assert config.use_cjk_font() == "Noto Sans CJK SC"
    # first: mathtext draws the plain text of "损失 $x^2$" with the first family alone
    assert list(rc.rcParams["font.family"]) == ["Noto Sans CJK SC", "sans-serif"]
    assert config.use_cjk_font() == "Noto Sans CJK SC"
    assert list(rc.rcParams["font.family"]) == ["Noto Sans CJK SC", "sans-serif"]  # not added twice


def test_docstring_examples(monkeypatch):
    import doctest

    monkeypatch.delenv("LLMCOURSE_LANG", raising=False)
    result = doctest.testmod(config)
    assert result.attempted >= 6 and result.failed == 0
