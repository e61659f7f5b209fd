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
