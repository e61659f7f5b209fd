"""Sizes, presets and CLI parsing: the contract every notebook and script relies on."""
import dataclasses
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
    cfg = config.from_cli(Demo(), ["--n-layer=4", "--lr", "1e-3", "--compile=true", "--limit=none", "--out=x"])
    assert (cfg.n_layer, cfg.lr, cfg.compile, cfg.limit, cfg.out) == (4, 1e-3, True, None, Path("x"))
    assert config.from_cli(Demo(), ["--limit=5"]).limit == 5
    with pytest.raises(ValueError, match="expected int"):
        config.from_cli(Demo(), ["--n_layer=four"])
    with pytest.raises(ValueError, match="unknown option"):
        config.from_cli(Demo(), ["--nlayer=4"])
    with pytest.raises(ValueError, match="true/false"):
        config.from_cli(Demo(), ["--compile=maybe"])
