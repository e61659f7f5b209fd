"""PEFT comparison: what each method trains (hand-counted), memory accounting, new-token rows, exercise."""

import pytest
import torch

from llmcourse import lora
from llmcourse.course import exercises
from llmcourse.recipes import peft_compare as pc
from llmcourse.course.exercises import ExerciseError
from llmcourse.gpt import GPT, GPTConfig
from llmcourse.lora import trainable_report

C, V, L = 16, 40, 2


@pytest.fixture
def base():
    torch.manual_seed(0)
    return GPT(GPTConfig(vocab_size=V, block_size=24, n_layer=L, n_head=2, n_embd=C, dropout=0.0))


def test_trainable_counts_by_hand(base):
    """LoRA r on qkv (C->3C), attn.proj (C->C), fc (C->4C), mlp.proj (4C->C): r*(in+out) each,
    per block r*(4C + 2C + 5C + 5C) = 16*r*C."""
    total = base.num_params()
    assert trainable_report(pc.make_variant(base, "full"))["trainable"] == total
    for r in (1, 4):
        assert trainable_report(pc.make_variant(base, "lora", r=r))["trainable"] == L * 16 * r * C
    assert trainable_report(pc.make_variant(base, "prompt", n_virtual=3))["trainable"] == 3 * C
    # P-Tuning: the prompt plus an MLP C -> 2C -> C with biases
    assert trainable_report(pc.make_variant(base, "ptuning", n_virtual=3))["trainable"] == 3 * C + (
        C * 2 * C + 2 * C
    ) + (2 * C * C + C)
    # P-Tuning v2: keys and values (2 * C) for each of the 3 prefix positions in each of the L layers
    assert trainable_report(pc.make_variant(base, "ptuning_v2", n_virtual=3))["trainable"] == (
        3 * L * 2 * C
    )
    # ... or 3 vectors of C numbers through an MLP C -> 5 -> L * 2 * C
    v2_mlp = pc.make_variant(base, "ptuning_v2", n_virtual=3, prefix_hidden=5)
    assert trainable_report(v2_mlp)["trainable"] == 3 * C + (C * 5 + 5) + (
        5 * L * 2 * C + L * 2 * C
    )
    rows = trainable_report(pc.make_variant(base, "lora", r=2, new_token_ids=[5, 7, 7]))[
        "trainable"
    ]
    assert rows == L * 16 * 2 * C + 2 * C  # duplicates count once
    with pytest.raises(ValueError):
        pc.make_variant(base, "adapter")


def test_control_and_final_norm_extras(base):
    """The control trains only the extras: 2 new-token rows (2*C) plus the final LayerNorm's gain (C,
    no bias in this GPT) when train_norm; LoRA with the same extras adds exactly its adapters."""
    norm = sum(p.numel() for p in base.final_norm.parameters())
    assert trainable_report(pc.make_variant(base, "tokens"))["trainable"] == 0
    control = pc.make_variant(base, "tokens", new_token_ids=[3, 9], train_norm=True)
    assert trainable_report(control)["trainable"] == 2 * C + norm
    lora8 = pc.make_variant(base, "lora", r=2, new_token_ids=[3, 9], train_norm=True)
    assert trainable_report(lora8)["trainable"] == L * 16 * 2 * C + 2 * C + norm
    prompt = pc.make_variant(base, "prompt", n_virtual=3, train_norm=True)
    assert trainable_report(prompt)["trainable"] == 3 * C + norm
    assert all(p.requires_grad for p in prompt.model.final_norm.parameters())
    deep = pc.make_variant(base, "ptuning_v2", n_virtual=3, new_token_ids=[3, 9], train_norm=True)
    assert trainable_report(deep)["trainable"] == 3 * L * 2 * C + 2 * C + norm
    assert all(p.requires_grad for p in deep.model.final_norm.parameters())


def test_make_variant_never_touches_the_base(base):
    before = {k: v.clone() for k, v in base.state_dict().items()}
    model = pc.make_variant(base, "lora", r=2, new_token_ids=[1])
    assert all(p.requires_grad for p in base.parameters())
    _, loss = model(torch.randint(0, V, (2, 8)), torch.randint(0, V, (2, 8)))
    loss.backward()
    assert all(torch.equal(before[k], v) for k, v in base.state_dict().items())


def test_new_token_rows_change_only_their_rows_in_embedding_and_tied_head(base):
    model = pc.make_variant(base, "lora", r=2, new_token_ids=[3, 9])
    rows = model.tok_emb.parametrizations.weight[0]
    with torch.no_grad():
        rows.delta.fill_(1.0)
    diff = model.tok_emb.weight - base.tok_emb.weight
    assert torch.equal(diff.abs().sum(1).nonzero().flatten(), torch.tensor([3, 9]))
    assert torch.equal(
        model.lm_head.weight, model.tok_emb.weight
    )  # the tied head sees the same rows
    idx = torch.randint(0, V, (2, 8))
    with torch.no_grad():
        for layer in lora.lora_layers(model):
            layer.lora_B.normal_()
        expected = model(idx)[0]
        merged = pc.merge_token_rows(lora.merge_lora(model, unwrap=True))
        torch.testing.assert_close(merged(idx)[0], expected, atol=1e-5, rtol=1e-5)
    assert merged.lm_head.weight is merged.tok_emb.weight and not lora.lora_layers(merged)


def test_training_bytes_golden(base):
    """Weights 4 bytes each (tied counted once) + 12 bytes per trainable parameter (grad 4, Adam m and v 8)."""
    n = base.num_params()
    assert pc.training_bytes(pc.make_variant(base, "full"))["total"] == 4 * n + 12 * n
    frozen = pc.make_variant(base, "prompt", n_virtual=2)
    assert pc.training_bytes(frozen) == {
        "weights": 4 * (n + 2 * C),
        "gradients": 4 * 2 * C,
        "optimizer": 8 * 2 * C,
        "total": 4 * (n + 2 * C) + 12 * 2 * C,
    }


def test_lora_forward_exercise():
    exercises.check("12.lora_forward", lambda x, W, A, B, s: x @ W.T + s * (x @ A.T) @ B.T)
    with pytest.raises(ExerciseError):  # forgot the scaling
        exercises.check("12.lora_forward", lambda x, W, A, B, s: x @ W.T + (x @ A.T) @ B.T)


def test_step_timer_drops_the_warmup_steps():
    timer = pc.StepTimer()
    timer.stamps = [
        0.0,
        1.0,
        1.002,
        1.004,
        1.010,
    ]  # step 2 took 1 s (a slow first step), then 2-6 ms
    assert timer.step_ms(warmup=1) == pytest.approx(4.0)  # median of 1000, 2, 2, 6 ms
    assert timer.step_ms(warmup=2) == pytest.approx(2.0)  # median of 2, 2, 6 ms
    with pytest.raises(ValueError, match="warmup"):
        timer.step_ms(warmup=5)


def test_step_parts_times_each_part_and_leaves_the_model_as_it_came(base):
    from llmcourse.train import TrainConfig

    for method in ("full", "lora"):
        model = pc.make_variant(base, method, r=2).eval()
        before = {k: v.clone() for k, v in model.state_dict().items()}
        idx = torch.randint(0, V, (2, 24))
        parts = pc.step_parts(model, (idx, idx), TrainConfig(max_steps=1), repeats=3, warmup=1)
        assert set(parts) == {"forward ms", "backward ms", "optimizer ms"}
        assert all(ms > 0 for ms in parts.values())
        assert not model.training  # its mode is put back too
        for k, v in model.state_dict().items():  # AdamW ran, but the weights are put back
            torch.testing.assert_close(v, before[k], rtol=0, atol=0)
