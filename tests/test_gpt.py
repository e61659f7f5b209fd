"""The course GPT: shapes, causality, loss masking, learning, and exact interop with HF GPT-2."""

import math

import pytest
import torch
from transformers import AutoModelForCausalLM, GPT2Config, GPT2LMHeadModel

from llmcourse.convert import export_gpt2, gpt_from_hf, gpt_to_hf
from llmcourse.gpt import GPT, GPTConfig

from tiny import TINY_GPT, tiny_gpt


def test_shapes_and_tied_head():
    model = tiny_gpt()
    idx = torch.randint(0, 97, (3, 10))
    logits, loss = model(idx)
    assert logits.shape == (3, 10, 97) and loss is None
    assert model.lm_head.weight.data_ptr() == model.tok_emb.weight.data_ptr()
    last, _ = model(idx, last_only=True)
    torch.testing.assert_close(last[:, 0], logits[:, -1])


def test_initial_loss_is_near_uniform():
    """GPT-2 init gives near-uniform predictions: loss ~ log(vocab_size) before training."""
    model = tiny_gpt()
    idx, targets = torch.randint(0, 97, (2, 8, 32))
    _, loss = model(idx, targets)
    assert abs(loss.item() - math.log(97)) < 0.1


def test_causality_future_tokens_do_not_change_past_logits():
    model = tiny_gpt()
    idx = torch.randint(0, 97, (2, 16))
    changed = idx.clone()
    changed[:, 9:] = torch.randint(0, 97, (2, 7))
    a, _ = model(idx)
    b, _ = model(changed)
    torch.testing.assert_close(a[:, :9], b[:, :9])
    assert not torch.allclose(a[:, 9:], b[:, 9:])


def test_masked_targets_are_ignored():
    model = tiny_gpt()
    idx = torch.randint(0, 97, (2, 12))
    targets = idx.clone()
    targets[:, :6] = -100
    logits, loss = model(idx, targets)
    manual = torch.nn.functional.cross_entropy(
        logits[:, 6:].reshape(-1, 97), idx[:, 6:].reshape(-1)
    )
    torch.testing.assert_close(loss, manual)


def test_context_longer_than_block_size_is_a_clear_error():
    with pytest.raises(ValueError, match="block_size"):
        tiny_gpt()(torch.zeros(1, 33, dtype=torch.long))


def test_learning_happens_on_a_repeating_sequence():
    """A periodic sequence is perfectly predictable after one period: loss must fall far below log(V)."""
    torch.manual_seed(0)
    model = tiny_gpt().train()
    pattern = torch.randint(0, 97, (8,))
    seq = pattern.repeat(5)[None, :33]
    opt = torch.optim.AdamW(model.parameters(), lr=3e-3)
    for _ in range(60):
        _, loss = model(seq[:, :-1], seq[:, 1:])
        opt.zero_grad()
        loss.backward()
        opt.step()
    assert loss.item() < 0.5 * math.log(97)


def test_bad_config_is_rejected():
    with pytest.raises(ValueError, match="divisible"):
        GPTConfig(n_embd=30, n_head=4)


def random_hf_gpt2(seed: int = 1, attn_implementation: str = "sdpa", **fields) -> GPT2LMHeadModel:
    """A tiny GPT2LMHeadModel with every weight random (HF's init leaves LayerNorms at 1/0 and biases
    at 0, which would hide a swapped or missing one); `fields` override the GPT2Config."""
    torch.manual_seed(seed)
    drop = dict(resid_pdrop=0.0, embd_pdrop=0.0, attn_pdrop=0.0)
    hf_cfg = GPT2Config(
        **{**dict(vocab_size=97, n_positions=32, n_embd=32, n_layer=2, n_head=4), **drop, **fields}
    )
    hf_cfg._attn_implementation = attn_implementation
    hf = GPT2LMHeadModel(hf_cfg).eval()
    with torch.no_grad():
        for p in hf.parameters():
            p.add_(0.05 * torch.randn_like(p))
    return hf


def test_hf_gpt2_to_ours_same_logits():
    hf = random_hf_gpt2()
    ours = gpt_from_hf(hf).eval()
    idx = torch.randint(0, 97, (2, 20))
    with torch.no_grad():
        expected = hf(idx).logits
        got, _ = ours(idx)
    torch.testing.assert_close(got, expected, atol=1e-4, rtol=1e-4)


@pytest.mark.parametrize(
    "fields",
    [
        dict(activation_function="gelu_new"),
        dict(activation_function="gelu_pytorch_tanh"),
        dict(activation_function="gelu_fast"),
        dict(reorder_and_upcast_attn=True, attn_implementation="eager"),
        dict(n_inner=128, layer_norm_epsilon=1e-5, tie_word_embeddings=True),
        dict(resid_pdrop=0.1, embd_pdrop=0.1, attn_pdrop=0.1),  # one rate: carried over
    ],
)
def test_supported_gpt2_fields_convert_with_the_same_logits(fields):
    hf = random_hf_gpt2(seed=3, **fields)
    ours = gpt_from_hf(hf).eval()
    assert ours.cfg.dropout == hf.config.resid_pdrop
    idx = torch.randint(0, 97, (2, 20), generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        expected = hf.eval()(idx).logits
        got, _ = ours(idx)
    torch.testing.assert_close(got, expected, atol=1e-4, rtol=1e-4)


@pytest.mark.parametrize(
    "field,value",
    [
        ("activation_function", "gelu"),  # exact erf GELU: close to ours, not equal
        ("activation_function", "relu"),
        ("scale_attn_weights", False),
        ("scale_attn_by_inverse_layer_idx", True),
        ("layer_norm_epsilon", 1e-2),
        ("tie_word_embeddings", False),
        ("n_inner", 48),
        ("add_cross_attention", True),
        ("attn_pdrop", 0.2),
        ("embd_pdrop", 0.3),
    ],
)
def test_gpt2_fields_we_cannot_represent_are_refused_by_name(field, value):
    # eager attention: transformers 4.x's SDPA path ignores scale_attn_weights
    hf = random_hf_gpt2(attn_implementation="eager", **{field: value})
    with pytest.raises(ValueError, match=rf"GPT2Config\.{field}={value!r} cannot be converted"):
        gpt_from_hf(hf)
    if field in ("layer_norm_epsilon", "tie_word_embeddings", "scale_attn_weights"):
        # the refusal matters: the same weights under the default value give other logits
        idx = torch.randint(0, 97, (1, 12))
        default = random_hf_gpt2(
            attn_implementation="eager", **{field: GPT2Config().to_dict()[field]}
        )
        default.load_state_dict(hf.state_dict(), strict=False)
        with torch.no_grad():
            assert (hf(idx).logits - default(idx).logits).abs().max() > 1e-2


def test_gpt_from_hf_refuses_other_gpt2_classes():
    from transformers import GPT2Model

    with pytest.raises(TypeError, match="GPT2LMHeadModel"):
        gpt_from_hf(
            GPT2Model(GPT2Config(vocab_size=97, n_positions=32, n_embd=32, n_layer=1, n_head=4))
        )


def test_ours_to_hf_directory_loads_offline_with_same_logits(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    model = tiny_gpt(seed=2)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.05 * torch.randn_like(p))
    path = export_gpt2(model, tmp_path / "hf-gpt")
    assert (path / "model.safetensors").exists() and (path / "config.json").exists()
    hf = AutoModelForCausalLM.from_pretrained(path).eval()
    idx = torch.randint(0, 97, (2, 20))
    with torch.no_grad():
        expected, _ = model(idx)
        got = hf(idx).logits
    torch.testing.assert_close(got, expected, atol=1e-4, rtol=1e-4)
    # and back again: a round trip loses nothing
    back = gpt_from_hf(path).eval()
    for (k, a), (_, b) in zip(model.state_dict().items(), back.state_dict().items()):
        torch.testing.assert_close(a, b, msg=k)


def test_export_needs_biases():
    with pytest.raises(ValueError, match="bias"):
        gpt_to_hf(tiny_gpt(bias=False))


@pytest.mark.parametrize(
    "vocab_size, block_size, n_layer, n_head, n_embd",
    [(65, 256, 6, 6, 384), (97, 32, 2, 4, 32), (5, 8, 1, 2, 16), (1000, 64, 3, 1, 8)],
)
def test_num_params_exercise_reference_counts_the_model(
    vocab_size, block_size, n_layer, n_head, n_embd
):
    """V·C + T·C + L(12C² + 13C) + 2C: e.g. nanoGPT's shape with biases, 10,770,816 parameters."""
    from llmcourse.gpt import gpt_num_params

    model = GPT(
        GPTConfig(
            vocab_size=vocab_size,
            block_size=block_size,
            n_layer=n_layer,
            n_head=n_head,
            n_embd=n_embd,
        )
    )
    assert (
        gpt_num_params(vocab_size, block_size=block_size, n_layer=n_layer, n_embd=n_embd)
        == model.num_params()
    )


def test_num_params_exercise_rejects_an_untied_head():
    from llmcourse.course import exercises
    from llmcourse.gpt import gpt_num_params

    exercises.check(
        "08.num_params",
        lambda v, t, n, c: v * c + t * c + n * (12 * c * c + 13 * c) + 2 * c,
        seed=0,
    )
    with pytest.raises(
        exercises.ExerciseError, match="08.num_params"
    ):  # counts the tied head twice
        exercises.check(
            "08.num_params",
            lambda v, t, n, c: gpt_num_params(v, block_size=t, n_layer=n, n_embd=c) + v * c,
            seed=0,
        )


def test_gpt_attention_equals_the_attention_lesson_with_a_causal_mask():
    """gpt.CausalSelfAttention is notebook 05's MultiHeadAttention with a causal mask, written for
    speed (one fused q/k/v matrix, torch's fused kernel, a KV cache): with the same weights, the
    same output, with and without the cache."""
    from llmcourse.attention import MultiHeadAttention, causal_mask
    from llmcourse.generate import KVCache

    model = tiny_gpt(seed=3)
    ours = model.blocks[0].attn
    C = TINY_GPT.n_embd
    lesson = MultiHeadAttention(C, TINY_GPT.n_head).eval()
    with torch.no_grad():
        for i, proj in enumerate((lesson.q_proj, lesson.k_proj, lesson.v_proj)):
            proj.weight.copy_(ours.qkv.weight[i * C : (i + 1) * C])
            proj.bias.copy_(ours.qkv.bias[i * C : (i + 1) * C])
        lesson.out_proj.load_state_dict(ours.proj.state_dict())
    x = torch.randn(2, 7, C)
    expected = lesson(x, attn_mask=causal_mask(7))
    torch.testing.assert_close(ours(x), expected)
    # the cached path: a 4-token prompt, then 3 tokens one at a time
    cache = KVCache.for_model(model, batch_size=2)
    steps = [ours(x[:, :4], kv_cache=cache)]
    cache.advance(4)
    for t in range(4, 7):
        steps.append(ours(x[:, t : t + 1], kv_cache=cache))
        cache.advance(1)
    torch.testing.assert_close(torch.cat(steps, dim=1), expected)
    # and a mask that lets position 0 see position 1 gives something else: the test can fail
    leaky = causal_mask(7).clone()
    leaky[0, 1] = True
    assert not torch.allclose(lesson(x, attn_mask=leaky), expected)
