"""Hugging Face <-> llmcourse weight conversion: the only place that knows checkpoint key names.

Our modules have readable names (`tok_emb`, `blocks.0.attn.qkv`); Hugging Face's GPT-2 uses OpenAI's
(`transformer.wte`, `transformer.h.0.attn.c_attn`). GPT-2 also stores its linear layers as `Conv1D`,
whose weight is (in_features, out_features) — the transpose of `nn.Linear`'s (out, in) — so every
matrix crosses with an explicit `.t()`. Key counts and shapes are asserted both ways, and every
config field that changes what the network computes (activation, LayerNorm epsilon, attention
scaling, tied or untied head, position type, dropout) is either carried over or refused with an
error that names it, so a silent half-conversion cannot happen.

    hf_dir = export_gpt2(model, "out/my-gpt")                   # then AutoModelForCausalLM.from_pretrained(hf_dir)
    model = gpt_from_hf(GPT2LMHeadModel.from_pretrained(path))  # real "gpt2" in Colab, a tiny one in tests

Everything works on local directories; nothing here downloads.
"""

from __future__ import annotations

import math
from pathlib import Path

import torch

from llmcourse.bert import BertConfig, BertForMaskedLM, BertForPreTraining
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
    return GPT2Config(
        vocab_size=cfg.vocab_size,
        n_positions=cfg.block_size,
        n_embd=cfg.n_embd,
        n_layer=cfg.n_layer,
        n_head=cfg.n_head,
        activation_function="gelu_new",
        resid_pdrop=cfg.dropout,
        embd_pdrop=cfg.dropout,
        attn_pdrop=cfg.dropout,
        layer_norm_epsilon=1e-5,
        tie_word_embeddings=True,
        bos_token_id=None,
        eos_token_id=None,
    )


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
    assert not missing and not unexpected, (
        f"conversion mismatch: missing={missing} unexpected={unexpected}"
    )
    return hf


def export_gpt2(model: GPT, directory: str | Path, tokenizer=None) -> Path:
    """Save our GPT as a Hugging Face GPT-2 directory (config.json + model.safetensors)."""
    directory = Path(directory)
    gpt_to_hf(model).save_pretrained(directory)
    if tokenizer is not None:
        tokenizer.save_pretrained(directory)
    return directory


def _refuse(hc, field: str, supported: str) -> None:
    raise ValueError(
        f"{type(hc).__name__}.{field}={getattr(hc, field)!r} cannot be converted: {supported}"
    )


def _same_dropout(hc, fields: tuple[str, ...]) -> None:
    """Our models have one dropout rate; differing HF rates would change fine-tuning silently."""
    for field in fields[1:]:
        if getattr(hc, field) != getattr(hc, fields[0]):
            _refuse(
                hc,
                field,
                f"our model has one dropout rate, here {fields[0]}={getattr(hc, fields[0])!r}; "
                f"set config.{field} = config.{fields[0]} first if one rate is acceptable",
            )


# GELU's tanh approximation under its three Hugging Face names (gelu_fast is the same formula)
GPT2_ACTIVATIONS = ("gelu_new", "gelu_pytorch_tanh", "gelu_fast")


def gpt_config_from_hf(hc) -> GPTConfig:
    """Our `GPTConfig` for a `transformers.GPT2Config`; a field that would change the computation
    and that `GPT` cannot represent raises ValueError naming it. `reorder_and_upcast_attn` is
    accepted: it computes the same scores in float32, which is what the converted model holds."""
    if hc.activation_function not in GPT2_ACTIVATIONS:
        _refuse(
            hc, "activation_function", f"our MLP uses GELU's tanh form, one of {GPT2_ACTIVATIONS}"
        )
    if not hc.scale_attn_weights:
        _refuse(
            hc, "scale_attn_weights", "our attention always divides by sqrt(head_dim): True only"
        )
    if hc.scale_attn_by_inverse_layer_idx:
        _refuse(
            hc, "scale_attn_by_inverse_layer_idx", "ours has no 1/(layer+1) scaling: False only"
        )
    if not math.isclose(hc.layer_norm_epsilon, 1e-5, rel_tol=1e-6):
        _refuse(hc, "layer_norm_epsilon", "GPTConfig has no epsilon; its LayerNorms use 1e-5 only")
    if not hc.tie_word_embeddings:
        _refuse(hc, "tie_word_embeddings", "our GPT's lm_head is the token embedding: True only")
    if hc.n_inner not in (None, 4 * hc.n_embd):
        _refuse(hc, "n_inner", f"our MLP widens 4x: None or {4 * hc.n_embd} only")
    if hc.add_cross_attention:
        _refuse(hc, "add_cross_attention", "our GPT is decoder-only: False only")
    _same_dropout(hc, ("resid_pdrop", "embd_pdrop", "attn_pdrop"))
    return GPTConfig(
        vocab_size=hc.vocab_size,
        block_size=hc.n_positions,
        n_layer=hc.n_layer,
        n_head=hc.n_head,
        n_embd=hc.n_embd,
        dropout=hc.resid_pdrop,
        bias=True,
    )


def gpt_from_hf(hf_model) -> GPT:
    """Copy a `GPT2LMHeadModel` (or a path to one saved locally) into our `GPT`."""
    if isinstance(hf_model, (str, Path)):
        from transformers import GPT2LMHeadModel

        hf_model = GPT2LMHeadModel.from_pretrained(hf_model)
    if type(hf_model).__name__ != "GPT2LMHeadModel":
        raise TypeError(f"expected a transformers GPT2LMHeadModel, got {type(hf_model).__name__}")
    cfg = gpt_config_from_hf(hf_model.config)
    model = GPT(cfg)
    hf_state = hf_model.state_dict()
    mapping = _key_map(cfg.n_layer)
    ours = {}
    for key, (hf_key, transpose) in mapping.items():
        tensor = hf_state[hf_key].detach().float()
        ours[key] = tensor.t().contiguous() if transpose else tensor.clone()
        expected = model.state_dict()[key].shape
        assert ours[key].shape == expected, (
            f"{hf_key}: shape {tuple(ours[key].shape)} != {tuple(expected)}"
        )
    if not torch.equal(hf_state["lm_head.weight"].float(), ours["tok_emb.weight"]):
        raise ValueError("config says tied embeddings, but lm_head.weight differs from wte.weight")
    ours["lm_head.weight"] = ours["tok_emb.weight"]
    used = {hf_key for hf_key, _ in mapping.values()} | {"lm_head.weight"}
    unused = [k for k in hf_state if k not in used and not k.endswith(("attn.bias", "masked_bias"))]
    assert not unused, f"weights the conversion would drop: {unused}"
    model.load_state_dict(ours, strict=True)
    return model


# ----------------------------------------------------------------------------------------- BERT

# Hugging Face's BERT keeps Google's TensorFlow names. Its Linear layers are nn.Linear (out, in)
# like ours, so nothing is transposed here: only names change. {i} is the block index.
_BERT_BLOCK_MAP = {
    "bert.blocks.{i}.attn.q_proj.{p}": "bert.encoder.layer.{i}.attention.self.query.{p}",
    "bert.blocks.{i}.attn.k_proj.{p}": "bert.encoder.layer.{i}.attention.self.key.{p}",
    "bert.blocks.{i}.attn.v_proj.{p}": "bert.encoder.layer.{i}.attention.self.value.{p}",
    "bert.blocks.{i}.attn.out_proj.{p}": "bert.encoder.layer.{i}.attention.output.dense.{p}",
    "bert.blocks.{i}.norm1.{p}": "bert.encoder.layer.{i}.attention.output.LayerNorm.{p}",
    "bert.blocks.{i}.fc.{p}": "bert.encoder.layer.{i}.intermediate.dense.{p}",
    "bert.blocks.{i}.proj.{p}": "bert.encoder.layer.{i}.output.dense.{p}",
    "bert.blocks.{i}.norm2.{p}": "bert.encoder.layer.{i}.output.LayerNorm.{p}",
}
_BERT_TOP_MAP = {
    "bert.tok_emb.weight": "bert.embeddings.word_embeddings.weight",
    "bert.pos_emb.weight": "bert.embeddings.position_embeddings.weight",
    "bert.type_emb.weight": "bert.embeddings.token_type_embeddings.weight",
    "bert.emb_norm.weight": "bert.embeddings.LayerNorm.weight",
    "bert.emb_norm.bias": "bert.embeddings.LayerNorm.bias",
    "mlm_head.dense.weight": "cls.predictions.transform.dense.weight",
    "mlm_head.dense.bias": "cls.predictions.transform.dense.bias",
    "mlm_head.norm.weight": "cls.predictions.transform.LayerNorm.weight",
    "mlm_head.norm.bias": "cls.predictions.transform.LayerNorm.bias",
    "mlm_head.bias": "cls.predictions.bias",  # the decoder's bias; its matrix is tied to the embedding
}
_BERT_PRETRAINING_MAP = {
    "bert.pooler.weight": "bert.pooler.dense.weight",
    "bert.pooler.bias": "bert.pooler.dense.bias",
    "nsp_head.weight": "cls.seq_relationship.weight",
    "nsp_head.bias": "cls.seq_relationship.bias",
}


def _bert_key_map(n_layer: int, pretraining: bool) -> dict[str, str]:
    out = dict(_BERT_TOP_MAP)
    if pretraining:
        out.update(_BERT_PRETRAINING_MAP)
    for i in range(n_layer):
        for p in ("weight", "bias"):
            out.update(
                {ours.format(i=i, p=p): hf.format(i=i, p=p) for ours, hf in _BERT_BLOCK_MAP.items()}
            )
    return out


def bert_config_from_hf(hc) -> BertConfig:
    """Our `BertConfig` for a `transformers.BertConfig`, refusing variants we do not implement;
    `layer_norm_eps` is carried over."""
    if hc.hidden_act not in ("gelu", "gelu_python"):
        _refuse(hc, "hidden_act", "our activation is exact (erf) GELU: 'gelu' or 'gelu_python'")
    if getattr(hc, "position_embedding_type", "absolute") != "absolute":
        _refuse(hc, "position_embedding_type", "ours are learned absolute positions: 'absolute'")
    if getattr(hc, "add_cross_attention", False):
        _refuse(hc, "add_cross_attention", "our BERT is an encoder alone: False only")
    if getattr(hc, "is_decoder", False):
        _refuse(hc, "is_decoder", "a causal BERT is not our encoder: False only")
    if not getattr(hc, "tie_word_embeddings", True):
        _refuse(hc, "tie_word_embeddings", "our MLM decoder is the token embedding: True only")
    _same_dropout(hc, ("hidden_dropout_prob", "attention_probs_dropout_prob"))
    return BertConfig(
        vocab_size=hc.vocab_size,
        max_position=hc.max_position_embeddings,
        type_vocab_size=hc.type_vocab_size,
        n_layer=hc.num_hidden_layers,
        n_head=hc.num_attention_heads,
        n_embd=hc.hidden_size,
        intermediate=hc.intermediate_size,
        dropout=hc.hidden_dropout_prob,
        layer_norm_eps=hc.layer_norm_eps,
    )


def bert_from_hf(hf_model) -> BertForMaskedLM:
    """Copy a Hugging Face `BertForMaskedLM` into our `BertForMaskedLM`, or a `BertForPreTraining`
    (pooler and NSP head included) into our `BertForPreTraining`. A local directory also works.

    In Colab, the real checkpoint (downloaded from the hub, 440 MB):
        from transformers import BertForPreTraining as HFBert
        model = bert_from_hf(HFBert.from_pretrained("bert-base-uncased"))
    Its tokenizer is `transformers.AutoTokenizer.from_pretrained("bert-base-uncased")` (WordPiece).
    """
    if isinstance(hf_model, (str, Path)):
        from transformers import AutoModelForMaskedLM

        hf_model = AutoModelForMaskedLM.from_pretrained(hf_model)
    kind = type(hf_model).__name__
    if kind not in ("BertForMaskedLM", "BertForPreTraining"):
        raise TypeError(
            f"expected a transformers BertForMaskedLM or BertForPreTraining, got {kind}"
        )
    pretraining = kind == "BertForPreTraining"
    cfg = bert_config_from_hf(hf_model.config)
    model = BertForPreTraining(cfg) if pretraining else BertForMaskedLM(cfg)
    hf_state, expected = hf_model.state_dict(), model.state_dict()
    mapping = _bert_key_map(cfg.n_layer, pretraining)
    ours = {}
    for key, hf_key in mapping.items():
        tensor = hf_state[hf_key].detach().float()
        assert tensor.shape == expected[key].shape, (
            f"{hf_key}: shape {tuple(tensor.shape)} != {tuple(expected[key].shape)}"
        )
        ours[key] = tensor.clone()
    # HF stores the tied decoder matrix and the decoder's bias under two more names: they must be
    # the very values we load under the embedding and `mlm_head.bias`, or the model is not BERT.
    torch.testing.assert_close(
        hf_state["cls.predictions.decoder.weight"].float(), ours["bert.tok_emb.weight"]
    )
    if "cls.predictions.decoder.bias" in hf_state:
        torch.testing.assert_close(
            hf_state["cls.predictions.decoder.bias"].float(), ours["mlm_head.bias"]
        )
    ours["mlm_head.decoder.weight"] = ours["bert.tok_emb.weight"]
    used = set(mapping.values()) | {
        "cls.predictions.decoder.weight",
        "cls.predictions.decoder.bias",
    }
    unused = [k for k in hf_state if k not in used and not k.endswith("position_ids")]
    assert not unused, f"weights the conversion would drop: {unused}"
    model.load_state_dict(ours, strict=True)
    return model.eval()
