"""The course Llama: equal to Hugging Face's LlamaForCausalLM (random odd configs), RoPE equal to HF's
rotary embedding, GPT-2 as a special case, cached decoding, clear refusals, and learning."""

import math
from dataclasses import replace

import pytest
import torch
from transformers import LlamaConfig as HFLlamaConfig
from transformers import LlamaForCausalLM

from llmcourse.generate import KVCache, generate
from llmcourse.llama import (
    Llama,
    LlamaConfig,
    RMSNorm,
    apply_rope,
    gpt2_like,
    repeat_kv,
    rms_norm,
    rope_cos_sin,
    rope_frequencies,
)
from llmcourse.llama_weights import config_from_hf, config_to_hf, llama_from_hf, llama_to_hf

from tiny import TINY_GPT, TINY_LLAMA, tiny_gpt


def hf_llama_config(**kw) -> HFLlamaConfig:
    """Hugging Face's LlamaConfig from transformers 5 field names. transformers 4.x keeps RoPE in
    `rope_theta` and `rope_scaling` and would ignore a `rope_parameters` argument."""
    rope = kw.pop("rope_parameters", None)
    if rope is not None and "rope_parameters" in HFLlamaConfig().to_dict():
        kw["rope_parameters"] = rope
    elif rope is not None:
        rope = dict(rope)
        kw["rope_theta"] = rope.pop("rope_theta", 10000.0)
        kw["rope_scaling"] = rope if rope.get("rope_type", "default") != "default" else None
    return HFLlamaConfig(**kw)


def hf_random(seed: int, **kw) -> LlamaForCausalLM:
    defaults = dict(
        vocab_size=97,
        hidden_size=36,
        intermediate_size=70,
        num_hidden_layers=2,
        num_attention_heads=6,
        num_key_value_heads=2,
        max_position_embeddings=40,
        rms_norm_eps=1e-5,
        tie_word_embeddings=False,
        bos_token_id=None,
        eos_token_id=None,
        pad_token_id=None,
        rope_parameters={"rope_type": "default", "rope_theta": 10000.0},
    )
    torch.manual_seed(seed)
    hf = LlamaForCausalLM(hf_llama_config(**{**defaults, **kw})).eval()
    with torch.no_grad():  # random norm weights too, so a swapped norm cannot hide
        for name, p in hf.named_parameters():
            if "norm" in name:
                p.copy_(1 + 0.3 * torch.randn_like(p))
    return hf


ODD_CONFIGS = [  # (seed, overrides): GQA, odd vocabulary and widths, tied and untied heads, MQA, MHA
    (0, {}),
    (1, dict(tie_word_embeddings=True, vocab_size=131)),
    (2, dict(num_attention_heads=4, num_key_value_heads=1, hidden_size=40, intermediate_size=33)),
    (
        3,
        dict(
            num_attention_heads=3,
            num_key_value_heads=3,
            hidden_size=30,
            num_hidden_layers=3,
            rope_parameters={"rope_type": "default", "rope_theta": 500.0},
        ),
    ),
    (4, dict(attention_bias=True, mlp_bias=True, rms_norm_eps=1e-2)),
    (
        5,
        dict(
            rope_parameters={
                "rope_type": "llama3",
                "rope_theta": 500000.0,
                "factor": 8.0,
                "low_freq_factor": 1.0,
                "high_freq_factor": 4.0,
                "original_max_position_embeddings": 16,
            },
            hidden_size=48,
            num_attention_heads=3,
            num_key_value_heads=1,
        ),
    ),
    (6, dict(hidden_act="swish", head_dim=6, attention_dropout=0.0, pretraining_tp=1)),
]


@pytest.mark.parametrize("seed,overrides", ODD_CONFIGS)
def test_logits_equal_hf_llama(seed, overrides):
    hf = hf_random(seed, **overrides)
    ours = llama_from_hf(hf)
    idx = torch.randint(
        0, hf.config.vocab_size, (3, 29), generator=torch.Generator().manual_seed(seed)
    )
    with torch.no_grad():
        want = hf(input_ids=idx).logits
        got, _ = ours(idx)
    assert (got - want).abs().max().item() <= 1e-4


@pytest.mark.parametrize("seed,overrides", ODD_CONFIGS)
def test_round_trip_to_hf(seed, overrides):
    ours = llama_from_hf(hf_random(seed, **overrides))
    back = llama_to_hf(ours)
    assert back.config.tie_word_embeddings == ours.cfg.tie_embeddings
    idx = torch.randint(0, ours.cfg.vocab_size, (2, 17))
    with torch.no_grad():
        torch.testing.assert_close(back(input_ids=idx).logits, ours(idx)[0], atol=1e-4, rtol=0)
    assert config_from_hf(config_to_hf(ours.cfg)) == ours.cfg


def test_export_to_directory_loads_with_auto_class(tmp_path):
    from transformers import AutoModelForCausalLM

    torch.manual_seed(0)
    ours = Llama(TINY_LLAMA).eval()
    llama_to_hf(ours).save_pretrained(tmp_path)
    again = AutoModelForCausalLM.from_pretrained(tmp_path).eval()
    idx = torch.randint(0, TINY_LLAMA.vocab_size, (1, 12))
    with torch.no_grad():
        torch.testing.assert_close(again(input_ids=idx).logits, ours(idx)[0], atol=1e-4, rtol=0)
    torch.testing.assert_close(llama_from_hf(tmp_path)(idx)[0], ours(idx)[0])


@pytest.mark.parametrize("kind", ["default", "llama3"])
def test_rope_equals_hf_rotary_embedding(kind):
    from transformers.models.llama.modeling_llama import LlamaRotaryEmbedding
    from transformers.models.llama.modeling_llama import apply_rotary_pos_emb

    rope = {"rope_type": "default", "rope_theta": 10000.0}
    if kind == "llama3":
        rope = {
            "rope_type": "llama3",
            "rope_theta": 500000.0,
            "factor": 8.0,
            "low_freq_factor": 1.0,
            "high_freq_factor": 4.0,
            "original_max_position_embeddings": 64,
        }
    hc = hf_llama_config(
        hidden_size=128, num_attention_heads=2, max_position_embeddings=256, rope_parameters=rope
    )
    hf_rope = LlamaRotaryEmbedding(config=hc)  # by name: 4.x takes `dim` first
    cfg = config_from_hf(hc)
    inv = rope_frequencies(
        64,
        cfg.rope_theta,
        factor=cfg.rope_factor,
        low_freq_factor=cfg.rope_low_freq_factor,
        high_freq_factor=cfg.rope_high_freq_factor,
        original_context=cfg.rope_original_context,
    )
    torch.testing.assert_close(inv, hf_rope.inv_freq)
    if (
        kind == "llama3"
    ):  # the scaling really acts: long wavelengths slowed 8x, short ones untouched
        plain = rope_frequencies(64, 500000.0)
        assert inv[0] == plain[0] and torch.isclose(inv[-1], plain[-1] / 8)
    q, k = torch.randn(2, 2, 200, 64), torch.randn(2, 2, 200, 64)
    positions = torch.arange(200)[None].expand(2, -1)
    cos_hf, sin_hf = hf_rope(q, positions)
    cos, sin = rope_cos_sin(inv, 200)
    torch.testing.assert_close(cos, cos_hf[0])
    q_hf, k_hf = apply_rotary_pos_emb(q, k, cos_hf, sin_hf)
    torch.testing.assert_close(apply_rope(q, cos, sin), q_hf)
    torch.testing.assert_close(apply_rope(k, cos, sin), k_hf)


def test_rope_scores_depend_on_distance_only():
    """q·k after RoPE is the same for positions (m, n) and (m + s, n + s): relative position."""
    inv = rope_frequencies(16)
    cos, sin = rope_cos_sin(inv, 64)
    q, k = torch.randn(1, 1, 1, 16), torch.randn(1, 1, 1, 16)

    def score(m, n):
        return (
            apply_rope(q, cos[m : m + 1], sin[m : m + 1])
            * apply_rope(k, cos[n : n + 1], sin[n : n + 1])
        ).sum()

    torch.testing.assert_close(score(7, 3), score(40, 36), rtol=1e-4, atol=1e-4)
    assert not torch.isclose(score(7, 3), score(7, 5))


def test_rms_norm_module_and_exercise_reference():
    x, w = torch.randn(3, 5, 8) * 4, torch.randn(8)
    norm = RMSNorm(8, eps=1e-6)
    with torch.no_grad():
        norm.weight.copy_(w)
    want = w * x / torch.sqrt((x**2).mean(-1, keepdim=True) + 1e-6)
    torch.testing.assert_close(norm(x), want)
    torch.testing.assert_close(rms_norm(x, w, 1e-6), want)
    torch.testing.assert_close(norm(x), torch.nn.functional.rms_norm(x, (8,), w, eps=1e-6))


def test_repeat_kv_groups_consecutive_query_heads():
    x = torch.arange(3.0).view(1, 3, 1, 1)  # kv heads 0, 1, 2
    assert repeat_kv(x, 2).flatten().tolist() == [0, 0, 1, 1, 2, 2]
    torch.testing.assert_close(repeat_kv(x, 4), torch.repeat_interleave(x, 4, dim=1))


def test_gpt2_switches_reproduce_the_course_gpt():
    """Every switch at GPT-2's value: our Llama computes what gpt.GPT computes, weight for weight."""
    gpt = tiny_gpt()
    t = TINY_GPT
    cfg = gpt2_like(
        LlamaConfig(
            vocab_size=t.vocab_size,
            block_size=t.block_size,
            n_layer=t.n_layer,
            n_head=t.n_head,
            n_embd=t.n_embd,
        )
    )
    llama = Llama(cfg).eval()
    src = gpt.state_dict()
    state = {k: v for k, v in src.items() if not k.startswith("blocks")}
    C = t.n_embd
    for i in range(t.n_layer):
        b = f"blocks.{i}."
        for ours, theirs in (("norm1", "norm1"), ("norm2", "norm2")):
            for p in ("weight", "bias"):
                state[f"{b}{ours}.{p}"] = src[f"{b}{theirs}.{p}"]
        for p in ("weight", "bias"):
            q, k, v = src[f"{b}attn.qkv.{p}"].split(C, dim=0)
            state.update(
                {
                    f"{b}attn.q_proj.{p}": q,
                    f"{b}attn.k_proj.{p}": k,
                    f"{b}attn.v_proj.{p}": v,
                    f"{b}attn.o_proj.{p}": src[f"{b}attn.proj.{p}"],
                    f"{b}mlp.up_proj.{p}": src[f"{b}mlp.fc.{p}"],
                    f"{b}mlp.down_proj.{p}": src[f"{b}mlp.proj.{p}"],
                }
            )
    llama.load_state_dict(state, strict=True)
    idx = torch.randint(0, t.vocab_size, (2, t.block_size))
    torch.testing.assert_close(llama(idx)[0], gpt(idx)[0])
    assert llama.num_params() == gpt.num_params()


@pytest.mark.parametrize("switches", [{}, dict(pos="learned"), dict(n_kv_head=1), dict(n_expert=4)])
def test_cached_decoding_equals_uncached(switches):
    torch.manual_seed(1)
    model = Llama(replace(TINY_LLAMA, **switches)).eval()
    prompt = torch.randint(0, TINY_LLAMA.vocab_size, (2, 7))
    plain = generate(model, prompt, 30, temperature=0.0, use_cache=False)
    cached = generate(model, prompt, 30, temperature=0.0, use_cache=True)
    assert torch.equal(plain, cached)
    # past the block size the cache is rebuilt from the window the model can see
    long = generate(model, prompt, 60, temperature=0.0, use_cache=True)
    assert torch.equal(long, generate(model, prompt, 60, temperature=0.0, use_cache=False))


def test_kv_cache_holds_only_the_kv_heads():
    model = Llama(TINY_LLAMA)  # 6 query heads, 2 kv heads
    cache = KVCache.for_model(model, batch_size=1, max_len=10)
    assert cache.k.shape == (TINY_LLAMA.n_layer, 1, 2, 10, TINY_LLAMA.head_dim)
    mha = KVCache.for_model(Llama(replace(TINY_LLAMA, n_kv_head=6)), batch_size=1, max_len=10)
    assert mha.nbytes() == 3 * cache.nbytes()


def test_parameter_budget_matches_gpt2_per_rung():
    """SwiGLU's 8C/3 width keeps the feed-forward parameters of GPT-2's 4C MLP (within rounding)."""
    cfg = LlamaConfig(n_embd=96, n_head=4, n_kv_head=4, bias=False)
    gelu = Llama(replace(cfg, mlp="gelu")).num_params()
    swiglu = Llama(cfg).num_params()
    assert abs(swiglu - gelu) / gelu < 0.01


@pytest.mark.parametrize(
    "field,value,match",
    [
        ("hidden_act", "gelu", "hidden_act"),
        ("head_dim", 12, "head_dim"),
        ("rope_parameters", {"rope_type": "yarn", "rope_theta": 1e4, "factor": 2.0}, "rope_type"),
        ("attention_bias", True, "attention_bias"),
        ("mlp_bias", True, "mlp_bias=True"),
        ("attention_dropout", 0.1, "attention_dropout"),
        ("pretraining_tp", 2, "pretraining_tp"),
        ("rope_scaling", {"rope_type": "linear", "factor": 2.0}, "rope_type.*'linear'"),
        ("rope_scaling", {"rope_type": "dynamic", "factor": 2.0}, "rope_type.*'dynamic'"),
        (
            "rope_parameters",
            {"rope_type": "default", "rope_theta": 1e4, "partial_rotary_factor": 0.5},
            "partial_rotary_factor",
        ),
        ("model_type", "mistral", "model_type"),
    ],
)
def test_unrepresentable_hf_configs_are_refused_by_name(field, value, match):
    hc = HFLlamaConfig(
        hidden_size=32,
        num_attention_heads=4,
        intermediate_size=40,
        num_hidden_layers=1,
        vocab_size=50,
    )
    setattr(hc, field, value)
    with pytest.raises(ValueError, match=match):
        config_from_hf(hc)


def test_gpt2_switches_cannot_be_exported_to_hf_llama():
    with pytest.raises(ValueError, match="norm='layer'"):
        config_to_hf(gpt2_like(TINY_LLAMA))
    with pytest.raises(ValueError, match="n_expert"):
        config_to_hf(replace(TINY_LLAMA, n_expert=4))


@pytest.mark.parametrize(
    "kw,match",
    [
        (dict(n_kv_head=4), "n_kv_head"),
        (dict(norm="batch"), "norm"),
        (dict(n_embd=42, n_head=6), "head_dim"),
    ],
)
def test_bad_configs_name_the_field(kw, match):
    with pytest.raises(ValueError, match=match):
        replace(TINY_LLAMA, **kw)


def test_learns_a_repeating_pattern_below_uniform():
    """Learning happens: on a periodic token stream the loss falls far below log(vocab_size)."""
    from llmcourse.train import TrainConfig, fit

    torch.manual_seed(0)
    model = Llama(
        replace(TINY_LLAMA, vocab_size=16, block_size=32, n_embd=32, n_head=4, n_kv_head=2)
    )
    stream = (
        torch.arange(2000) % 7 + torch.arange(2000) // 700
    )  # a slowly shifting period-7 pattern

    def batch(g: torch.Generator):
        i = torch.randint(0, len(stream) - 33, (8,), generator=g)
        x = torch.stack([stream[j : j + 33] for j in i.tolist()])
        return x[:, :-1], x[:, 1:]

    hist = fit(
        model,
        batch,
        TrainConfig(max_steps=120, lr=3e-3, warmup_steps=10, log_every=10),
        progress=False,
    )
    assert hist.train_loss[-1] < 0.3 * math.log(16)
