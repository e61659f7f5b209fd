"""LoRA from scratch: peft's contract, checked against peft itself on a tiny random HF model."""

import copy

import pytest
import torch
from peft import LoraConfig, get_peft_model
from transformers import LlamaConfig, LlamaForCausalLM

from llmcourse.course import exercises
from llmcourse.gpt import GPT
from llmcourse.lora import (
    LoRALinear,
    apply_lora,
    lora_layers,
    lora_param_count,
    merge_lora,
    merged_weight,
    trainable_report,
)

from tiny import TINY_GPT


def tiny_llama(seed=0):
    torch.manual_seed(seed)
    cfg = LlamaConfig(
        vocab_size=64,
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=4,
        max_position_embeddings=32,
    )
    return LlamaForCausalLM(cfg).eval()


def test_initial_output_equals_base():
    torch.manual_seed(0)
    base = torch.nn.Linear(16, 8)
    lora = LoRALinear(copy.deepcopy(base), r=4, alpha=8)
    assert torch.count_nonzero(lora.lora_B) == 0 and torch.count_nonzero(lora.lora_A) > 0
    x = torch.randn(3, 16)
    torch.testing.assert_close(lora(x), base(x))
    assert not lora.base.weight.requires_grad and lora.lora_A.requires_grad


def test_matches_peft_with_the_same_A_and_B():
    ours, ref = tiny_llama(), tiny_llama()
    targets = ["q_proj", "v_proj"]
    wrapped = apply_lora(ours, targets, r=4, alpha=12, dropout=0.0)
    assert len(wrapped) == 4
    peft_model = get_peft_model(
        ref, LoraConfig(r=4, lora_alpha=12, lora_dropout=0.0, target_modules=targets)
    ).eval()
    peft_layers = {
        n: m
        for n, m in peft_model.named_modules()
        if hasattr(m, "lora_A") and hasattr(m, "base_layer")
    }
    assert len(peft_layers) == 4
    g = torch.Generator().manual_seed(3)
    with torch.no_grad():
        for name in wrapped:
            layer = ours.get_submodule(name)
            A, B = (
                torch.randn(layer.lora_A.shape, generator=g),
                torch.randn(layer.lora_B.shape, generator=g),
            )
            layer.lora_A.copy_(A)
            layer.lora_B.copy_(B)
            pl = next(m for n, m in peft_layers.items() if n.endswith(name))
            pl.lora_A["default"].weight.copy_(A)
            pl.lora_B["default"].weight.copy_(B)
            assert pl.scaling["default"] == layer.scaling == 3.0
    idx = torch.randint(0, 64, (2, 10))
    with torch.no_grad():
        torch.testing.assert_close(ours(idx).logits, peft_model(idx).logits, atol=1e-5, rtol=1e-5)
        assert not torch.allclose(
            ours(idx).logits, tiny_llama()(idx).logits, atol=1e-3
        )  # the adapters matter
    ours_n, peft_n = (
        trainable_report(ours)["trainable"],
        sum(p.numel() for p in peft_model.parameters() if p.requires_grad),
    )
    assert ours_n == peft_n == 4 * 4 * (32 + 32)


def _peft_and_ours(dtype: torch.dtype, targets=("q_proj", "v_proj")):
    """The same tiny Llama in `dtype` twice: one under our LoRA, one under peft's, with the same
    random A and B (B nonzero, so the adapters matter)."""
    ours, ref = tiny_llama().to(dtype), tiny_llama().to(dtype)
    wrapped = apply_lora(ours, list(targets), r=4, alpha=12)
    peft_model = get_peft_model(ref, LoraConfig(r=4, lora_alpha=12, target_modules=list(targets)))
    g = torch.Generator().manual_seed(5)
    with torch.no_grad():
        for name in wrapped:
            layer = ours.get_submodule(name)
            pl = peft_model.get_submodule("base_model.model." + name)
            A, B = (
                torch.randn(layer.lora_A.shape, generator=g),
                torch.randn(layer.lora_B.shape, generator=g),
            )
            for mine, theirs in (
                (layer.lora_A, pl.lora_A["default"]),
                (layer.lora_B, pl.lora_B["default"]),
            ):
                assert (
                    mine.dtype == theirs.weight.dtype == torch.float32
                )  # peft's autocast_adapter_dtype
                assert mine.device == theirs.weight.device
            layer.lora_A.copy_(A)
            layer.lora_B.copy_(B)
            pl.lora_A["default"].weight.copy_(A)
            pl.lora_B["default"].weight.copy_(B)
    return ours.eval(), peft_model.eval(), wrapped


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_half_precision_base_matches_peft(dtype):
    """Learners load SmolLM2 in bf16 or fp16: float32 adapters on a half-precision base, the output
    in the base's dtype, equal to peft's; a training step gives float32 gradients to A and B only;
    merging adds the float32 update and rounds once, as peft's merge does."""
    ours, peft_model, wrapped = _peft_and_ours(dtype)
    idx = torch.randint(0, 64, (2, 10), generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        got, want = ours(idx).logits, peft_model(idx).logits
        base = tiny_llama().to(dtype)(idx).logits
    assert got.dtype == want.dtype == dtype
    torch.testing.assert_close(got, want, atol=0, rtol=0)
    assert (got.float() - base.float()).abs().max() > 0.1  # the adapters matter
    logits = ours(idx).logits.float()
    loss = torch.nn.functional.cross_entropy(logits.flatten(0, 1), idx.flatten())
    loss.backward()
    layer = ours.get_submodule(wrapped[0])
    assert layer.lora_A.grad.dtype == torch.float32 and layer.lora_B.grad.abs().sum() > 0
    assert layer.base.weight.grad is None
    with torch.no_grad():
        merge_lora(ours)
        merged_ref = peft_model.merge_and_unload()
        for name in wrapped:
            torch.testing.assert_close(
                ours.get_submodule(name).base.weight,
                merged_ref.get_submodule(name).weight,
                atol=0,
                rtol=0,
            )
        assert ours.get_submodule(wrapped[0]).base.weight.dtype == dtype


def test_merged_equals_unmerged_and_unmerge_restores(tiny_gpt_model):
    model = tiny_gpt_model
    before = copy.deepcopy(model.state_dict())
    apply_lora(model, ["qkv", "fc"], r=2, alpha=4)
    with torch.no_grad():
        for layer in lora_layers(model):
            layer.lora_B.normal_()
    idx = torch.randint(0, model.cfg.vocab_size, (2, 16))
    unmerged, _ = model(idx)
    for layer in lora_layers(model):
        layer.merge()
    merged, _ = model(idx)
    torch.testing.assert_close(merged, unmerged, atol=1e-5, rtol=1e-5)
    for layer in lora_layers(model):
        layer.unmerge()
    sd = {k.replace(".base", ""): v for k, v in model.state_dict().items() if "lora_" not in k}
    for k, v in before.items():
        torch.testing.assert_close(sd[k], v, atol=1e-6, rtol=0)
    plain = merge_lora(model, unwrap=True)
    assert not lora_layers(plain)
    torch.testing.assert_close(plain(idx)[0], unmerged, atol=1e-5, rtol=1e-5)


def test_only_lora_parameters_train_and_report_counts():
    model = GPT(TINY_GPT)  # 2 layers of width 32
    total = trainable_report(model)["total"]
    apply_lora(model, ["qkv"], r=4)
    rep = trainable_report(model)
    assert rep["trainable"] == 2 * 4 * (32 + 96)
    assert rep["total"] == total + rep["trainable"]
    names = [n for n, p in model.named_parameters() if p.requires_grad]
    assert names and all("lora_" in n for n in names)


def test_dropout_applies_to_the_lora_path_only():
    torch.manual_seed(0)
    base = torch.nn.Linear(8, 8)
    lora = LoRALinear(
        copy.deepcopy(base), r=2, dropout=0.9
    ).train()  # B == 0: the LoRA path adds nothing
    x = torch.randn(4, 8)
    torch.testing.assert_close(lora(x), base(x))


def test_typo_in_target_names_is_a_clear_error():
    model = GPT(TINY_GPT)
    with pytest.raises(ValueError, match="qkv"):
        apply_lora(model, ["q_proj"])
    with pytest.raises(ValueError, match="rank"):
        LoRALinear(torch.nn.Linear(4, 4), r=0)


def test_lora_param_count_equals_what_apply_lora_trains():
    """The exercise's count, on the course GPT's real layer names and shapes, equals the parameters that
    apply_lora makes trainable; the hand count: r * (in + out) = 4 * (32 + 96) for one qkv layer."""
    assert (
        lora_param_count(
            [("blocks.0.attn.qkv", 96, 32), ("blocks.0.attn.proj", 32, 32)], ["qkv"], 4
        )
        == 512
    )
    for targets in (["qkv"], ["proj"], ["attn.proj", "fc"]):
        torch.manual_seed(0)
        model = GPT(TINY_GPT)
        layers = [
            (n, m.out_features, m.in_features)
            for n, m in model.named_modules()
            if isinstance(m, torch.nn.Linear)
        ]
        apply_lora(model, targets, r=4)
        assert lora_param_count(layers, targets, 4) == trainable_report(model)["trainable"]


def test_merged_weight_equals_the_merged_layer():
    torch.manual_seed(0)
    layer = LoRALinear(torch.nn.Linear(6, 5, bias=False), r=3, alpha=12.0)
    with torch.no_grad():
        layer.lora_B.normal_()
    expected = merged_weight(
        layer.base.weight.detach().clone(), layer.lora_A.detach(), layer.lora_B.detach(), alpha=12.0
    )
    layer.merge()
    torch.testing.assert_close(layer.base.weight.detach(), expected)


def test_lora_exercises_accept_solutions_and_catch_classic_mistakes():
    def count(layers, targets, r):
        return sum(
            r * (i + o)
            for n, o, i in layers
            if any(n.split(".")[-len(t.split(".")) :] == t.split(".") for t in targets)
        )

    def count_substring(layers, targets, r):  # "proj" in "attn.c_proj": matches a different layer
        return sum(r * (i + o) for n, o, i in layers if any(t in n for t in targets))

    def count_full_matrix(
        layers, targets, r
    ):  # r * in * out: the size of the update, not of A and B
        return sum(
            r * i * o for n, o, i in layers if any(n == t or n.endswith("." + t) for t in targets)
        )

    exercises.check("12.lora_param_count", count, trials=20)
    for wrong in (count_substring, count_full_matrix):
        with pytest.raises(exercises.ExerciseError):
            exercises.check("12.lora_param_count", wrong, seed=0)

    exercises.check(
        "12.merged_weight", lambda W, A, B, alpha: W + alpha / A.shape[0] * B @ A, trials=20
    )
    with pytest.raises(exercises.ExerciseError):  # scaled by alpha, not alpha / r
        exercises.check("12.merged_weight", lambda W, A, B, alpha: W + alpha * B @ A, seed=0)
