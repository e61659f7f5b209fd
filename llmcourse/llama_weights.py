"""Llama weights in and out: Hugging Face's `LlamaForCausalLM` both ways, and llama.cpp's GGUF files.

The only place that knows Llama checkpoint key names (`llmcourse.convert` does GPT-2 and BERT).

    model = llama_from_hf(LlamaForCausalLM.from_pretrained(path))   # a local directory or model
    hf = llama_to_hf(model)                                          # and back: a LlamaForCausalLM
    model = llama_from_gguf(data_path("smollm2-135m-instruct"))      # SmolLM2-135M from the GGUF file
    model, tok = load_smollm2()                                      # the same, with its tokenizer
    folder = smollm2_hf_dir()                         # the same as a Hugging Face folder, written once

Hugging Face's names map one to one onto ours (`model.layers.3.self_attn.q_proj` is our
`blocks.3.attn.q_proj`); nothing is transposed. A Hugging Face config we cannot represent is refused
with an error that names the field, and key counts and shapes are asserted both ways.

GGUF (llama.cpp's single-file format) stores the weights quantized: in SmolLM2's Q4_1 file, blocks
of 32 weights share one scale and one minimum, and each weight is a 4-bit code (`llmcourse.quantize`
explains the idea). We dequantize with the `gguf` package to float32. One twist: llama.cpp rotates
RoPE pairs of *adjacent* numbers (Meta's original layout), while Hugging Face and we pair number i
with number i + head_dim/2, so the converter that made the file permuted the rows of every q and k
matrix. `unpermute` puts them back. Left out: GGUF files with RoPE scaling tables, mixtures of
experts and architectures other than "llama".
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np
import torch

from llmcourse.llama import Llama, LlamaConfig

_HF_TOP = {"tok_emb.weight": "model.embed_tokens.weight", "final_norm.weight": "model.norm.weight"}
_HF_BLOCK = {  # our name -> Hugging Face's ({i} is the block index)
    "blocks.{i}.norm1.weight": "model.layers.{i}.input_layernorm.weight",
    "blocks.{i}.attn.q_proj.{p}": "model.layers.{i}.self_attn.q_proj.{p}",
    "blocks.{i}.attn.k_proj.{p}": "model.layers.{i}.self_attn.k_proj.{p}",
    "blocks.{i}.attn.v_proj.{p}": "model.layers.{i}.self_attn.v_proj.{p}",
    "blocks.{i}.attn.o_proj.{p}": "model.layers.{i}.self_attn.o_proj.{p}",
    "blocks.{i}.norm2.weight": "model.layers.{i}.post_attention_layernorm.weight",
    "blocks.{i}.mlp.gate_proj.{p}": "model.layers.{i}.mlp.gate_proj.{p}",
    "blocks.{i}.mlp.up_proj.{p}": "model.layers.{i}.mlp.up_proj.{p}",
    "blocks.{i}.mlp.down_proj.{p}": "model.layers.{i}.mlp.down_proj.{p}",
}


def _hf_key_map(cfg: LlamaConfig) -> dict[str, str]:
    out = dict(_HF_TOP)
    params = ("weight", "bias") if cfg.bias else ("weight",)
    for i in range(cfg.n_layer):
        for ours, hf in _HF_BLOCK.items():
            for p in params if "{p}" in ours else ("weight",):
                out[ours.format(i=i, p=p)] = hf.format(i=i, p=p)
    if not cfg.tie_embeddings:
        out["lm_head.weight"] = "lm_head.weight"
    return out


def _refuse(field: str, value, why: str) -> None:
    raise ValueError(f"LlamaConfig.{field}={value!r} cannot be converted: {why}")


def _hf_rope(hc) -> dict:
    """The RoPE settings of a Hugging Face config: transformers 5 keeps them in `rope_parameters`,
    4.x in `rope_theta` and `rope_scaling` (whose "type" key later became "rope_type")."""
    if getattr(hc, "rope_parameters", None) is not None:
        return dict(hc.rope_parameters)
    rope = dict(getattr(hc, "rope_scaling", None) or {})
    rope.setdefault("rope_type", rope.pop("type", "default"))
    return {**rope, "rope_theta": getattr(hc, "rope_theta", 10000.0)}


def config_from_hf(hc, *, block_size: int | None = None) -> LlamaConfig:
    """Our `LlamaConfig` for a `transformers.LlamaConfig`; raises ValueError naming any field we do not
    implement. `block_size` (default: the model's `max_position_embeddings`) bounds the RoPE table
    and the KV cache, so a smaller one saves memory."""
    if getattr(hc, "model_type", "llama") != "llama":
        _refuse("model_type", hc.model_type, "only Llama-architecture configs are converted")
    if hc.hidden_act not in ("silu", "swish"):  # two Hugging Face names of x * sigmoid(x)
        _refuse("hidden_act", hc.hidden_act, "our SwiGLU uses silu ('silu' or 'swish')")
    if bool(hc.attention_bias) != bool(hc.mlp_bias):
        _refuse(
            "attention_bias",
            hc.attention_bias,
            f"we have biases everywhere or nowhere, and mlp_bias={hc.mlp_bias}",
        )
    head_dim = getattr(hc, "head_dim", None) or hc.hidden_size // hc.num_attention_heads
    if head_dim != hc.hidden_size // hc.num_attention_heads:
        _refuse(
            "head_dim",
            head_dim,
            f"ours is hidden_size // num_attention_heads = "
            f"{hc.hidden_size // hc.num_attention_heads}",
        )
    if getattr(hc, "attention_dropout", 0.0):
        _refuse(
            "attention_dropout", hc.attention_dropout, "our dropout also acts on residual branches"
        )
    if (getattr(hc, "pretraining_tp", 1) or 1) != 1:
        _refuse(
            "pretraining_tp",
            hc.pretraining_tp,
            "only 1 (no tensor-parallel slicing) is implemented",
        )
    rope = _hf_rope(hc)
    kind = rope.get("rope_type", "default")
    if kind not in ("default", "llama3"):
        _refuse(
            "rope_parameters['rope_type'] (rope_scaling in transformers 4)",
            kind,
            "only 'default' and Llama 3.1's 'llama3' are implemented",
        )
    if rope.get("partial_rotary_factor", 1.0) != 1.0:
        _refuse(
            "rope_parameters['partial_rotary_factor']",
            rope["partial_rotary_factor"],
            "RoPE covers whole heads",
        )
    scaling = {}
    if kind == "llama3":
        scaling = dict(
            rope_factor=float(rope["factor"]),
            rope_low_freq_factor=float(rope["low_freq_factor"]),
            rope_high_freq_factor=float(rope["high_freq_factor"]),
            rope_original_context=int(rope["original_max_position_embeddings"]),
        )
    return LlamaConfig(
        vocab_size=hc.vocab_size,
        block_size=block_size or hc.max_position_embeddings,
        n_layer=hc.num_hidden_layers,
        n_head=hc.num_attention_heads,
        n_kv_head=hc.num_key_value_heads,
        n_embd=hc.hidden_size,
        ffn_hidden=hc.intermediate_size,
        norm="rms",
        norm_eps=float(hc.rms_norm_eps),
        pos="rope",
        rope_theta=float(rope.get("rope_theta", 10000.0)),
        mlp="swiglu",
        bias=bool(hc.attention_bias),
        tie_embeddings=bool(hc.tie_word_embeddings),
        dropout=0.0,
        **scaling,
    )


def config_to_hf(cfg: LlamaConfig):
    """The `transformers.LlamaConfig` of the same network; refuses the GPT-2 switches and MoE."""
    from transformers import LlamaConfig as HFLlamaConfig

    for field, value, want in (
        ("norm", cfg.norm, "rms"),
        ("pos", cfg.pos, "rope"),
        ("mlp", cfg.mlp, "swiglu"),
        ("n_expert", cfg.n_expert, 0),
    ):
        if value != want:
            _refuse(field, value, f"Hugging Face's LlamaForCausalLM has {field}={want!r} only")
    rope = {"rope_type": "default", "rope_theta": cfg.rope_theta}
    if cfg.rope_factor != 1.0:
        rope.update(
            rope_type="llama3",
            factor=cfg.rope_factor,
            low_freq_factor=cfg.rope_low_freq_factor,
            high_freq_factor=cfg.rope_high_freq_factor,
            original_max_position_embeddings=cfg.rope_original_context,
        )
    if "rope_parameters" in HFLlamaConfig().to_dict():  # transformers 5
        rope_kw = {"rope_parameters": rope}
    else:  # transformers 4.x: the base and the scaling are two fields
        theta = rope.pop("rope_theta")
        rope_kw = {
            "rope_theta": theta,
            "rope_scaling": rope if rope["rope_type"] != "default" else None,
        }
    return HFLlamaConfig(
        vocab_size=cfg.vocab_size,
        hidden_size=cfg.n_embd,
        intermediate_size=cfg.hidden,
        num_hidden_layers=cfg.n_layer,
        num_attention_heads=cfg.n_head,
        num_key_value_heads=cfg.n_kv_head,
        max_position_embeddings=cfg.block_size,
        rms_norm_eps=cfg.norm_eps,
        attention_bias=cfg.bias,
        **rope_kw,
        mlp_bias=cfg.bias,
        tie_word_embeddings=cfg.tie_embeddings,
        bos_token_id=None,
        eos_token_id=None,
        pad_token_id=None,
    )


def llama_from_hf(hf_model, *, block_size: int | None = None) -> Llama:
    """Copy a Hugging Face `LlamaForCausalLM` (or a local directory holding one) into our `Llama`."""
    if isinstance(hf_model, (str, Path)):
        from transformers import LlamaForCausalLM

        hf_model = LlamaForCausalLM.from_pretrained(hf_model)
    cfg = config_from_hf(hf_model.config, block_size=block_size)
    return _load(cfg, hf_model.state_dict(), _hf_key_map(cfg), source="Hugging Face")


def llama_to_hf(model: Llama):
    """A Hugging Face `LlamaForCausalLM` holding our model's weights."""
    from transformers import LlamaForCausalLM

    hf = LlamaForCausalLM(config_to_hf(model.cfg))
    ours = model.state_dict()
    hf_state = {
        hf_key: ours[key].detach().clone() for key, hf_key in _hf_key_map(model.cfg).items()
    }
    if model.cfg.tie_embeddings:
        hf_state["lm_head.weight"] = hf_state["model.embed_tokens.weight"]
    missing, unexpected = hf.load_state_dict(hf_state, strict=False)
    missing = [k for k in missing if "rotary_emb" not in k]  # HF's non-persistent RoPE buffers
    assert not missing and not unexpected, (
        f"conversion mismatch: missing={missing} unexpected={unexpected}"
    )
    return hf.eval()


def _load(cfg: LlamaConfig, state: dict, key_map: dict[str, str], *, source: str) -> Llama:
    """Our Llama with `state[key_map[ours]]` in every parameter; every source tensor must be used."""
    model = Llama(cfg)
    expected = model.state_dict()
    ours = {}
    for key, src in key_map.items():
        if src not in state:
            raise KeyError(f"{source} weights have no {src!r} (needed for our {key})")
        tensor = torch.as_tensor(state[src]).detach().float()
        if tensor.shape != expected[key].shape:
            raise ValueError(
                f"{src}: shape {tuple(tensor.shape)} != our {key} {tuple(expected[key].shape)}"
            )
        ours[key] = tensor.clone()
    if cfg.tie_embeddings:
        ours["lm_head.weight"] = ours["tok_emb.weight"]
        tied = state.get("lm_head.weight", state.get("output.weight"))
        if tied is not None and not torch.equal(
            torch.as_tensor(tied).float(), ours["tok_emb.weight"]
        ):
            raise ValueError(
                f"{source} config says tied embeddings, but lm_head differs from the embedding"
            )
    used = set(key_map.values()) | {"lm_head.weight"}
    unused = [k for k in state if k not in used and "rotary_emb" not in k]
    assert not unused, f"{source} weights the conversion would drop: {unused}"
    model.load_state_dict(ours, strict=True)
    return model.eval()


# ----------------------------------------------------------------------------------------- GGUF
_GGUF_BLOCK = {  # our name -> llama.cpp's
    "blocks.{i}.norm1.weight": "blk.{i}.attn_norm.weight",
    "blocks.{i}.attn.q_proj.weight": "blk.{i}.attn_q.weight",
    "blocks.{i}.attn.k_proj.weight": "blk.{i}.attn_k.weight",
    "blocks.{i}.attn.v_proj.weight": "blk.{i}.attn_v.weight",
    "blocks.{i}.attn.o_proj.weight": "blk.{i}.attn_output.weight",
    "blocks.{i}.norm2.weight": "blk.{i}.ffn_norm.weight",
    "blocks.{i}.mlp.gate_proj.weight": "blk.{i}.ffn_gate.weight",
    "blocks.{i}.mlp.up_proj.weight": "blk.{i}.ffn_up.weight",
    "blocks.{i}.mlp.down_proj.weight": "blk.{i}.ffn_down.weight",
}


def unpermute(w: np.ndarray, n_heads: int) -> np.ndarray:
    """Undo llama.cpp's row order for q/k: within each head, rows (0, 1, 2, 3, ...) of pairs of adjacent
    numbers become the halves (0, 2, ... | 1, 3, ...) that rotate_half pairs. (out, in) -> (out, in)."""
    out, d_in = w.shape
    return w.reshape(n_heads, out // n_heads // 2, 2, d_in).swapaxes(1, 2).reshape(out, d_in)


def read_gguf(path: str | Path) -> tuple[dict[str, object], dict[str, np.ndarray]]:
    """(metadata, dequantized float32 tensors) of a GGUF file. Tensors are (out, in) like nn.Linear."""
    from gguf import GGUFReader
    from gguf.quants import dequantize

    reader = GGUFReader(str(path))
    meta = {}
    for key, field in reader.fields.items():
        if not key.startswith(
            "tokenizer.ggml."
        ):  # the vocabulary (49k strings) is read by the tokenizer
            meta[key] = field.contents()
    tensors = {
        t.name: np.array(dequantize(t.data, t.tensor_type), dtype=np.float32)
        for t in reader.tensors
    }
    return meta, tensors


def config_from_gguf(
    meta: dict[str, object], *, vocab_size: int, block_size: int | None = None
) -> LlamaConfig:
    arch = meta.get("general.architecture")
    if arch != "llama":
        raise ValueError(f"general.architecture={arch!r}: only 'llama' GGUF files are converted")
    n_embd, n_head = int(meta["llama.embedding_length"]), int(meta["llama.attention.head_count"])
    rope_dim = int(meta.get("llama.rope.dimension_count", n_embd // n_head))
    if rope_dim != n_embd // n_head:
        raise ValueError(
            f"llama.rope.dimension_count={rope_dim}: RoPE on part of a head is not implemented"
        )
    if "llama.rope.scaling.type" in meta:
        raise ValueError(
            f"llama.rope.scaling.type={meta['llama.rope.scaling.type']!r} is not implemented"
        )
    return LlamaConfig(
        vocab_size=vocab_size,
        block_size=block_size or int(meta["llama.context_length"]),
        n_layer=int(meta["llama.block_count"]),
        n_head=n_head,
        n_kv_head=int(meta.get("llama.attention.head_count_kv", n_head)),
        n_embd=n_embd,
        ffn_hidden=int(meta["llama.feed_forward_length"]),
        norm_eps=float(meta["llama.attention.layer_norm_rms_epsilon"]),
        rope_theta=float(meta.get("llama.rope.freq_base", 10000.0)),
        bias=False,
    )


def llama_from_gguf(path: str | Path, *, block_size: int | None = None) -> Llama:
    """Our `Llama` with the dequantized weights of a llama.cpp GGUF file (e.g. SmolLM2-135M's Q4_1)."""
    meta, tensors = read_gguf(path)
    vocab_size = tensors["token_embd.weight"].shape[0]
    cfg = replace(
        config_from_gguf(meta, vocab_size=vocab_size, block_size=block_size),
        tie_embeddings="output.weight" not in tensors,
    )  # no output matrix: tied to the embedding
    for i in range(cfg.n_layer):  # back to the rotate_half layout (see the module docstring)
        tensors[f"blk.{i}.attn_q.weight"] = unpermute(tensors[f"blk.{i}.attn_q.weight"], cfg.n_head)
        tensors[f"blk.{i}.attn_k.weight"] = unpermute(
            tensors[f"blk.{i}.attn_k.weight"], cfg.n_kv_head
        )
    key_map = {"tok_emb.weight": "token_embd.weight", "final_norm.weight": "output_norm.weight"}
    for i in range(cfg.n_layer):
        key_map.update({ours.format(i=i): src.format(i=i) for ours, src in _GGUF_BLOCK.items()})
    if not cfg.tie_embeddings:
        key_map["lm_head.weight"] = "output.weight"
    return _load(cfg, tensors, key_map, source=f"GGUF {Path(path).name}")


def load_smollm2(
    *, block_size: int = 2048, device: torch.device | str | None = None
) -> tuple[Llama, object]:
    """SmolLM2-135M-Instruct in our own `Llama`, from the offline GGUF file, and its tokenizer.

    The tokenizer is Hugging Face's, built from the same file; its `apply_chat_template` is SmolLM2's
    ChatML template (<|im_start|>role ... <|im_end|>). `block_size` 2048 (SmolLM2 reads 8192)
    keeps the RoPE table and the KV cache small. About 5 s on one CPU thread.
    """
    from transformers import AutoTokenizer

    from llmcourse.data import data_path

    path = data_path("smollm2-135m-instruct")
    tokenizer = AutoTokenizer.from_pretrained(str(path.parent), gguf_file=path.name)
    model = llama_from_gguf(path, block_size=block_size)
    return model.to(device or "cpu"), tokenizer


def smollm2_hf_dir(directory: str | Path | None = None) -> Path:
    """SmolLM2-135M-Instruct as a Hugging Face folder (config, float16 safetensors, tokenizer), written
    once from the offline GGUF file into `directory` (default: the llmcourse cache). Any loader that
    takes a hub id then takes this folder, quantization configs included: notebook 09's bitsandbytes
    demo uses it when its hub model is out of reach. Half a minute on one CPU thread and 270 MB, once."""
    import os
    import shutil
    import tempfile

    from llmcourse.data import cache_dir

    out = Path(directory) if directory is not None else cache_dir() / "smollm2-135m-instruct-hf"
    if (out / "config.json").is_file():
        return out
    model, tokenizer = load_smollm2(block_size=8192)  # SmolLM2's own context, as on the hub
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=out.parent, prefix=f".{out.name}."))
    try:  # written beside `out`, then renamed: a half-written folder never looks finished
        llama_to_hf(model).to(torch.float16).save_pretrained(tmp)
        tokenizer.save_pretrained(tmp)
        os.replace(tmp, out)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return out
