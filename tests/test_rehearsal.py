"""The full-size rehearsal (issue 16, point 1): the stand-in hub, the step cap, and notebooks at full
configuration, offline. `tests/rehearse.py` is the runner; `tests/standin_hub.py` and
`tests/standin_repos.py` the hub the libraries download from. The loading checks run in child
processes: huggingface_hub reads `HF_ENDPOINT` once, at import, and this process may have imported
it already.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))

import rehearse  # noqa: E402
import standin_repos  # noqa: E402
from standin_hub import StandinHub  # noqa: E402

BUILD = ROOT / "build" / "rehearsal-test"
# the notebooks CI rehearses: all of them (a comma joins those that must share a checkpoint
# folder; 09, 12-14 and 16 train what they need when notebook 08's or 11's model is not there).
# Besides training steps, `config.cap_steps` caps the loops that would dominate a CPU run: word2vec
# epochs (02), the encoder-decoder's decoding steps (05), the characters sampled and the KV-cache
# timings (09), the questions answered (10-13, 16, 18: `sft.generate_answers`, `sft.hf_answers`),
# PEFT step timings (12), timing repeats (14), few-shot items, chunks embedded and RAG answers
# (15), multiple-choice items and perplexity batches (16, 18). Measured on 2026-12-05 (2-core CPU,
# shared): about 19 kernel-CPU-minutes for all 19, 7 of them notebook 18 (SmolLM2-135M trained in
# full at its batch size, 22.6 GB peak host memory); each notebook's figures are in the README.
# The rehearsal found: 04's heatmap labelled rows by characters, not tokens; 12's step timer
# needed more than the one step a rehearsal trains.
REHEARSED = [
    *("00", "01", "02", "03", "04", "05", "06", "07", "08", "09"),
    *("10", "11", "12", "13", "14", "15", "16", "17", "18", "19"),
]
# CI's two workers take a test file each (`--dist loadfile`), so the notebooks are split in two
# halves of about equal kernel time: this file rehearses HERE, tests/test_rehearsal_more.py the rest.
HERE = ["00", "01", "05", "06", "08", "10", "17", "18"]
STEPS = 1
# batch rows per step for the configs that allow a cap (`config.rehearsal_rows`): notebook 18
# trains SmolLM2-135M in fp32 here, and its full batches of 16 x 512 peak at 22.6 GB of host memory
# (measured 2026-12-05), too close to a CI machine's 24 GB beside a second worker
ROWS = {"18": 4}


def _child(code: str, env: dict) -> subprocess.CompletedProcess:
    """Run `code` in a fresh interpreter with `env` (on top of ours, offline switches removed)."""
    base = {k: v for k, v in os.environ.items() if k not in rehearse.OFFLINE_SWITCHES}
    base.pop("PYTEST_CURRENT_TEST", None)
    return subprocess.run(
        [sys.executable, "-c", code],
        env={**base, **env},
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=600,
    )


def test_step_cap_is_read_in_one_place(monkeypatch):
    from llmcourse import config, train

    cfg = train.TrainConfig(max_steps=5000, eval_batches=20)
    monkeypatch.delenv(config.REHEARSAL_ENV, raising=False)
    assert train.rehearsal_config(cfg) is cfg and config.cap_steps(500) == 500
    monkeypatch.setenv(config.REHEARSAL_ENV, "3")
    monkeypatch.setenv(config.SIZE_ENV, "full")
    capped = train.rehearsal_config(cfg)
    assert (capped.max_steps, capped.eval_batches, config.cap_steps(500)) == (3, 3, 3)
    size, reason = config.size_and_reason()
    assert size == "full" and reason.startswith("REHEARSAL")
    monkeypatch.setenv(config.SIZE_ENV, "smoke")  # an explicit smoke size wins
    assert config.current_size() == "smoke"
    monkeypatch.setenv(config.REHEARSAL_ENV, "many")
    with pytest.raises(ValueError, match="positive number"):
        config.rehearsal_steps()


def test_loops_that_are_not_training_are_capped(monkeypatch):
    """The loops that are not training steps stop at the cap: a `Sized` class's `rehearsal_caps`
    fields (a number; a tuple's first items), the items answered and the KV-cache timings; a
    decoded answer keeps its length. Unset, nothing changes."""
    import dataclasses

    import torch

    from llmcourse import chat, config, generate, sft
    from llmcourse.cost import inference_cost
    from llmcourse.gpt import GPT, GPTConfig
    from llmcourse.tasks.instructions import Example
    from llmcourse.word2vec import Word2VecConfig

    @dataclasses.dataclass
    class Bench(config.Sized):
        repeats: int = 7
        lengths: tuple = (4, 6, 8)
        rehearsal_caps = ("repeats", "lengths")

    class Tok:  # the chat template's tokens, then characters as ids
        special_tokens = {t: i for i, t in enumerate(chat.SPECIAL_TOKENS)}

        def encode(self, text):
            return [5 + ord(c) % 6 for c in text]

        encode_ordinary = encode

        def decode(self, ids):
            return "x" * len(ids)

    model = GPT(GPTConfig(vocab_size=11, block_size=32, n_layer=1, n_head=2, n_embd=8))
    prompt = torch.zeros(1, 2, dtype=torch.long)
    questions = [Example("count", f"q{i}", "1") for i in range(5)]

    def run():
        speed = inference_cost.decode_speed(
            model, prompt, Bench.for_size("full").lengths, repeats=2
        )
        return (
            Bench.for_size("full", repeats=9),
            Word2VecConfig.for_size("full").epochs,
            len(sft.generate_answers(model, Tok(), questions, max_new_tokens=3)),
            speed["lengths"],
            len(generate.cache_speedup(model, prompt, 5, repeats=3)["ratios"]),
            generate.generate(model, prompt, 5, temperature=0.0).shape[1],
        )

    monkeypatch.delenv(config.REHEARSAL_ENV, raising=False)
    assert run() == (Bench(repeats=9), 5, 5, [4, 6, 8], 3, 7)
    monkeypatch.setenv(config.REHEARSAL_ENV, "2")
    assert run() == (Bench(repeats=2, lengths=(4, 6)), 2, 2, [4, 6], 2, 7)

    @dataclasses.dataclass
    class Wrong(config.Sized):
        name: str = "x"
        rehearsal_caps = ("name",)

    with pytest.raises(TypeError, match="rehearsal_caps"):
        Wrong.for_size("full")


def test_fit_stops_at_the_cap(monkeypatch):
    import torch

    from llmcourse import train

    monkeypatch.setenv("LLMCOURSE_REHEARSAL", "2")
    model = torch.nn.Linear(3, 1)

    class Wrap(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.lin = model

        def forward(self, x, y):
            return None, ((self.lin(x) - y) ** 2).mean()

    data = [(torch.randn(4, 3), torch.randn(4, 1))]
    cfg = train.TrainConfig(max_steps=1000, eval_every=0, log_every=1)
    history = train.fit(Wrap(), data, cfg, val_data=data, progress=False)
    assert history.steps == [1, 2] and history.val_steps == [2]


LOAD_BOTH = """
import json, datasets, transformers
ds = datasets.load_dataset("stanfordnlp/sst2")
tok = transformers.AutoTokenizer.from_pretrained("bert-base-uncased")
model = transformers.AutoModelForCausalLM.from_pretrained("HuggingFaceTB/SmolLM2-360M")
print(json.dumps({
    "splits": {k: v.num_rows for k, v in ds.items()},
    "features": {k: str(v) for k, v in ds["train"].features.items()},
    "cls": tok("a fine film")["input_ids"][0],
    "params": sum(p.numel() for p in model.parameters()),
    "dtype": str(model.dtype),
    "layers": model.config.num_hidden_layers,
}))
"""


@pytest.mark.slow
def test_named_model_and_data_set_load_through_the_standin_hub(tmp_path):
    """`from_pretrained` and `load_dataset` with the hub ids, unchanged, download from the stand-in."""
    with StandinHub(BUILD / "hub") as hub:
        rehearse._build(BUILD / "hub", hub.url, models=True)
        got = _child(LOAD_BOTH, {"HF_ENDPOINT": hub.url, "HF_HOME": str(tmp_path / "hf")})
        assert got.returncode == 0, got.stderr[-3000:]
        out = json.loads(got.stdout.strip().splitlines()[-1])
        paths = {path.split("?")[0] for _, path, status in hub.requests if status == 200}
    assert out["splits"] == {"train": 136, "validation": 64, "test": 64}
    assert out["features"]["label"].startswith("ClassLabel") and "int32" in out["features"]["idx"]
    assert out["cls"] == 101  # [CLS] where bert-base-uncased has it
    assert (out["params"], out["dtype"], out["layers"]) == (361_821_120, "torch.bfloat16", 32)
    weights = "/HuggingFaceTB/SmolLM2-360M/resolve/", "/model.safetensors"
    assert any(p.startswith(weights[0]) and p.endswith(weights[1]) for p in paths)
    assert any(p.startswith("/datasets/stanfordnlp/sst2/resolve/") for p in paths)


LOAD_WIKITEXT = """
import warnings
from llmcourse import data
from llmcourse.data.resolve import OfflineFallbackWarning
warnings.simplefilter("error", OfflineFallbackWarning)  # a rehearsal treats a fallback as a failure
text = data.load_text("wikitext-2")
print(len(text), text.count(" = "))
"""


def test_a_wrong_column_in_a_standin_data_set_fails(tmp_path):
    """The package reads WikiText's "text" column: renamed, the load no longer succeeds, and the
    rehearsal reports the fallback that hides it as a failure."""
    repos = tmp_path / "hub"
    with StandinHub(repos) as hub:
        rehearse._build(repos, hub.url, models=False)
        env = {"HF_ENDPOINT": hub.url, "HF_HOME": str(tmp_path / "hf")}
        ok = _child(LOAD_WIKITEXT, {**env, "LLMCOURSE_CACHE": str(tmp_path / "c1")})
        assert ok.returncode == 0, ok.stderr[-3000:]
        assert int(ok.stdout.split()[0]) > 100_000  # the stand-in's rows, not the fallback
        standin_repos.break_column(repos, "Salesforce/wikitext", old="text", new="content")
        bad = _child(LOAD_WIKITEXT, {**env, "LLMCOURSE_CACHE": str(tmp_path / "c2")})
    assert bad.returncode != 0
    error = bad.stderr.strip().splitlines()[-1]
    assert "OfflineFallbackWarning" in error and "KeyError" in error and "'text'" in error, error
    assert rehearse.hub_fallbacks([error], rehearse.served_names()) == [error]


def rehearse_notebooks(numbers: str, *, hub: str) -> None:
    """Rehearse the notebooks `numbers` ("11" or "11,12") at full configuration, capped at STEPS
    steps, against the stand-in hub built in BUILD / `hub`; fail with the kernel's error."""
    wanted = numbers.split(",")
    notebooks = [
        p for p in sorted((ROOT / "notebooks").glob("[0-9][0-9]_*.ipynb")) if p.name[:2] in wanted
    ]
    assert len(notebooks) == len(wanted)
    out = BUILD / f"nb{numbers.replace(',', '_')}"
    cap = min((ROWS[n] for n in wanted if n in ROWS), default=None)
    rows = rehearse.rehearse(notebooks, out, STEPS, repos=BUILD / hub, batch_rows=cap)
    for row in rows:
        error = out / f"{row['notebook']}.error.txt"
        detail = error.read_text()[-3000:] if error.exists() else row["hub_fallbacks"]
        assert row["status"] == "ok", f"{row['notebook']}: {row['status']}\n{detail}"


def test_every_notebook_is_rehearsed_once():
    import test_rehearsal_more

    numbers = sorted(p.name[:2] for p in (ROOT / "notebooks").glob("[0-9][0-9]_*.ipynb"))
    halves = [n for group in HERE + test_rehearsal_more.THERE for n in group.split(",")]
    assert sorted(halves) == numbers == sorted(REHEARSED)


@pytest.mark.slow
@pytest.mark.parametrize("numbers", HERE)
def test_notebook_rehearses_at_full_size(numbers):
    """Each notebook's full configuration, capped at STEPS steps, against the stand-in hub."""
    rehearse_notebooks(numbers, hub="hub")


def test_row_cap_applies_only_in_a_rehearsal(monkeypatch):
    from llmcourse import config
    from llmcourse.recipes.adapt import CapstoneConfig

    full = CapstoneConfig.for_size("full")
    monkeypatch.setenv(config.REHEARSAL_ROWS_ENV, "4")
    assert CapstoneConfig.for_size("full") == full  # no rehearsal: the rows cap is ignored
    monkeypatch.setenv(config.REHEARSAL_ENV, "1")
    capped = CapstoneConfig.for_size("full")
    assert (
        (capped.batch_size, capped.sft_batch_size)
        == (4, 4)
        < (full.batch_size, full.sft_batch_size)
    )
    assert capped.block_size == full.block_size  # each row keeps its full shape
    monkeypatch.setenv(config.REHEARSAL_ROWS_ENV, "four")
    with pytest.raises(ValueError, match="LLMCOURSE_REHEARSAL_ROWS"):
        CapstoneConfig.for_size("full")
