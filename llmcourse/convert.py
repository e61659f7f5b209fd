"""Hugging Face <-> llmcourse weight conversion: the only place that knows checkpoint key names.

Our modules have readable names (`tok_emb`, `blocks.0.attn.qkv`); Hugging Face's GPT-2 uses OpenAI's
(`transformer.wte`, `transformer.h.0.attn.c_attn`). GPT-2 also stores its linear layers as `Conv1D`,
whose weight is (in_features, out_features) — the transpose of `nn.Linear`'s (out, in) — so every
matrix crosses with an explicit `.t()`. Key counts and shapes are asserted both ways, so a silent
half-conversion cannot happen.

    hf_dir = export_gpt2(model, "out/my-gpt")                   # then AutoModelForCausalLM.from_pretrained(hf_dir)
    model = gpt_from_hf(GPT2LMHeadModel.from_pretrained(path))  # real "gpt2" in Colab, a tiny one in tests

Everything works on local directories; nothing here downloads.
"""
from __future__ import annotations

from pathlib import Path

import torch

from llmcourse.gpt import GPT, GPTConfig

# our name pattern -> (HF name pattern, transpose?) ; {i} is the block index
_BLOCK_MAP = {
    "blocks.{i}.norm1.weight": ("transformer.h.{i}.ln_1.weight", False),
    "blocks.{i}.norm1.bias": ("transformer.h.{i}.ln_1.bias", False),
    "blocks.{i}.attn.qkv.weight": ("transformer.h.{i}.attn.c_attn.weight", True),
    "blocks.{i}.attn.qkv.bias": ("transformer.h.{i}.attn.c_attn.bias", False),
    "blocks.{i}.attn.proj.weight": ("transformer.h.{i}.attn.c_proj.weight", True),
    "blocks.{i}.attn.proj.bias": ("transformer.h.{i}.attn.c_proj.bias", False),
    "blocks.{i}.norm2.weight": ("transformer.h.{i}.ln_2.weight", False),
    "blocks.{i}.norm2.bias": ("transformer.h.{i}.ln_2.bias", False),
    "blocks.{i}.mlp.fc.weight": ("transformer.h.{i}.mlp.c_fc.weight", True),
    "blocks.{i}.mlp.fc.bias": ("transformer.h.{i}.mlp.c_fc.bias", False),
    "blocks.{i}.mlp.proj.weight": ("transformer.h.{i}.mlp.c_proj.weight", True),
    "blocks.{i}.mlp.proj.bias": ("transformer.h.{i}.mlp.c_proj.bias", False),
}
_TOP_MAP = {
    "tok_emb.weight": ("transformer.wte.weight", False),
    "pos_emb.weight": ("transformer.wpe.weight", False),
    "final_norm.weight": ("transformer.ln_f.weight", False),
    "final_norm.bias": ("transformer.ln_f.bias", False),
}


def _key_map(n_layer: int) -> dict[str, tuple[str, bool]]:
    out = dict(_TOP_MAP)
    for i in range(n_layer):
        out.update({ours.format(i=i): (hf.format(i=i), t) for ours, (hf, t) in _BLOCK_MAP.items()})
    return out


def hf_gpt2_config(cfg: GPTConfig):
    """The `transformers.GPT2Config` describing the same network as `cfg`."""
    from transformers import GPT2Config

    if not cfg.bias:
        raise ValueError("GPT-2 has biases everywhere: export needs GPTConfig(bias=True)")
    return GPT2Config(vocab_size=cfg.vocab_size, n_positions=cfg.block_size, n_embd=cfg.n_embd,
                      n_layer=cfg.n_layer, n_head=cfg.n_head, activation_function="gelu_new",
                      resid_pdrop=cfg.dropout, embd_pdrop=cfg.dropout, attn_pdrop=cfg.dropout,
                      layer_norm_epsilon=1e-5, tie_word_embeddings=True, bos_token_id=None,
                      eos_token_id=None)


def gpt_to_hf(model: GPT):
    """Build a `GPT2LMHeadModel` holding our model's weights."""
    from transformers import GPT2LMHeadModel

    hf = GPT2LMHeadModel(hf_gpt2_config(model.cfg))
    ours = model.state_dict()
    mapping = _key_map(model.cfg.n_layer)
    hf_state = {}
    for key, (hf_key, transpose) in mapping.items():
        tensor = ours[key].detach()
        hf_state[hf_key] = tensor.t().contiguous() if transpose else tensor.clone()
    hf_state["lm_head.weight"] = hf_state["transformer.wte.weight"]
    missing, unexpected = hf.load_state_dict(hf_state, strict=False)
    # HF may keep non-persistent buffers (e.g. a causal-mask `attn.bias`); anything else is a bug.
    missing = [k for k in missing if not k.endswith(("attn.bias", "attn.masked_bias"))]
    assert not missing and not unexpected, f"conversion mismatch: missing={missing} unexpected={unexpected}"
    return hf


def export_gpt2(model: GPT, directory: str | Path, tokenizer=None) -> Path:
    """Save our GPT as a Hugging Face GPT-2 directory (config.json + model.safetensors)."""
    directory = Path(directory)
    gpt_to_hf(model).save_pretrained(directory)
    if tokenizer is not None:
        tokenizer.save_pretrained(directory)
    return directory


def gpt_from_hf(hf_model) -> GPT:
    """Copy a `GPT2LMHeadModel` (or a path to one saved locally) into our `GPT`."""
    if isinstance(hf_model, (str, Path)):
        from transformers import GPT2LMHeadModel

        hf_model = GPT2LMHeadModel.from_pretrained(hf_model)
    hc = hf_model.config
    if hc.activation_function not in ("gelu_new", "gelu_pytorch_tanh"):
        raise ValueError(f"activation {hc.activation_function!r} differs from ours (GELU, tanh approximation)")
    if not hc.scale_attn_weights or hc.scale_attn_by_inverse_layer_idx:
        raise ValueError("only standard 1/sqrt(head_dim) attention scaling is supported")
    cfg = GPTConfig(vocab_size=hc.vocab_size, block_size=hc.n_positions, n_layer=hc.n_layer,
                    n_head=hc.n_head, n_embd=hc.n_embd, dropout=hc.resid_pdrop, bias=True)
    model = GPT(cfg)
    hf_state = hf_model.state_dict()
    ours = {}
    for key, (hf_key, transpose) in _key_map(cfg.n_layer).items():
        tensor = hf_state[hf_key].detach().float()
        ours[key] = tensor.t().contiguous() if transpose else tensor.clone()
        expected = model.state_dict()[key].shape
        assert ours[key].shape == expected, f"{hf_key}: shape {tuple(ours[key].shape)} != {tuple(expected)}"
    ours["lm_head.weight"] = ours["tok_emb.weight"]
    model.load_state_dict(ours, strict=True)
    return model
