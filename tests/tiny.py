"""The tiny models the unit tests share: a few thousand parameters, milliseconds on a CPU.

Import them by name (tests/ is on sys.path: tests/conftest.py lives there), e.g.

    from tiny import TINY_GPT, tiny_gpt

or take the `tiny_gpt_model` fixture from tests/conftest.py. Use them where a test needs "some
small model" and its assertions do not depend on the exact sizes. A test whose numbers do (a golden parameter
count, a measured threshold, a vocabulary fixed by its tokenizer) keeps its own config, next to the
assertion that depends on it.
"""

from __future__ import annotations

import torch

from llmcourse.bert import BertConfig, BertForPreTraining
from llmcourse.gpt import GPT, GPTConfig
from llmcourse.llama import Llama, LlamaConfig

# Sizes differ on purpose between the families: vocabularies 97 and 101 (primes, so no shape is
# accidentally square), and the Llama's 6 query heads share 2 key/value heads (grouped-query attention).
TINY_GPT = GPTConfig(vocab_size=97, block_size=32, n_layer=2, n_head=4, n_embd=32, dropout=0.0)
TINY_LLAMA = LlamaConfig(vocab_size=101, block_size=48, n_layer=2, n_head=6, n_kv_head=2, n_embd=48)
TINY_BERT = BertConfig(
    vocab_size=101, max_position=24, n_layer=2, n_head=4, n_embd=32, intermediate=48, dropout=0.0
)


def tiny_gpt(seed: int = 0, **changes) -> GPT:
    """A GPT of TINY_GPT's sizes (with `changes`), seeded and in eval mode."""
    torch.manual_seed(seed)
    return GPT(GPTConfig(**{**TINY_GPT.__dict__, **changes})).eval()


def tiny_llama(seed: int = 0, **changes) -> Llama:
    """A Llama of TINY_LLAMA's sizes (with `changes`), seeded and in eval mode."""
    torch.manual_seed(seed)
    return Llama(LlamaConfig(**{**TINY_LLAMA.__dict__, **changes})).eval()


def tiny_bert(cls=BertForPreTraining, seed: int = 0, **changes):
    """A BERT model of class `cls` with TINY_BERT's sizes (with `changes`), seeded and in eval mode."""
    torch.manual_seed(seed)
    return cls(BertConfig(**{**TINY_BERT.__dict__, **changes})).eval()


def tiny_hf_chat_tokenizer(*, extra_special: tuple[str, ...] = ()):
    """A Hugging Face fast tokenizer over the 256 byte-level characters (no merges), "<eos>" as its
    eos and pad, and a one-line chat template: "<role>content<eos>" per message."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    alphabet = sorted(pre_tokenizers.ByteLevel.alphabet())
    tok = Tokenizer(models.BPE(vocab={c: i for i, c in enumerate(alphabet)}, merges=[]))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    hf_tok = PreTrainedTokenizerFast(tokenizer_object=tok, eos_token="<eos>", pad_token="<eos>")
    if extra_special:
        hf_tok.add_special_tokens({"additional_special_tokens": list(extra_special)})
    hf_tok.chat_template = (
        "{% for m in messages %}<{{ m.role }}>{{ m.content }}<eos>{% endfor %}"
        "{% if add_generation_prompt %}<assistant>{% endif %}"
    )
    return hf_tok


def tiny_hf_llama(tokenizer, **config):
    """A one-layer Hugging Face `LlamaForCausalLM` (hidden 32, GQA 2:1) for `tokenizer`, seed 0."""
    from transformers import LlamaConfig as HFLlamaConfig
    from transformers import LlamaForCausalLM

    torch.manual_seed(0)
    cfg = HFLlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=1,
        num_attention_heads=2,
        num_key_value_heads=1,
        max_position_embeddings=128,
        pad_token_id=tokenizer.pad_token_id,
        **config,
    )
    return LlamaForCausalLM(cfg).eval()
