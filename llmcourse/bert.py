"""BERT: an encoder-only Transformer pretrained by filling in blanks (masked LM) and by telling
whether two text segments follow each other (next-sentence prediction).

The layout is the original one (Devlin et al. 2019), so `llmcourse.convert.bert_from_hf` can load
Hugging Face `BertForMaskedLM` / `BertForPreTraining` weights and give the same logits:

    embeddings   token + learned position + token type ("segment A or B"), LayerNorm, dropout
    blocks       POST-norm: x = norm1(x + attn(x)); x = norm2(x + ffn(x)), GELU (erf) in the FFN
    pooler       tanh(dense(h[CLS])): one vector for the whole input, read by NSP and classifiers
    MLM head     dense -> GELU -> LayerNorm -> decoder tied to the token embedding + output bias
    NSP head     Linear(n_embd, 2) on the pooled vector (0 = "B follows A", 1 = "B is random")

Unlike `llmcourse.gpt.GPT`, attention is not causal: every position sees every other, left and
right (the "B" in BERT is for Bidirectional). Padding is hidden with `attention_mask` (B, T),
1 = real token, 0 = padding, as in Hugging Face. Post-norm (the 2017 Transformer's placement) is
kept because the checkpoints were trained that way; GPT-2 and later models moved to pre-norm.
`BertSelfAttention` is kept apart from `llmcourse.attention.MultiHeadAttention` on purpose: that
one is notebook 04's readable version, which materialises the attention weights to show them; BERT
pretraining wants the fused `F.scaled_dot_product_attention` kernel and one padding mask built once
for all layers. A test checks that the two agree on shared random weights.

The class ladder, one idea per rung, all with the course's calling convention
`logits, loss = model(input_ids, token_type_ids=None, attention_mask=None, targets=None)`:

    BertModel                        the encoder: -> (hidden states (B, T, C), pooled (B, C))
    BertForMaskedLM                  + MLM head; targets (B, T), -100 = not predicted
    BertForPreTraining               + pooler and NSP head; extra `nsp_targets` (B,); the logits are
                                       a `PreTrainingLogits(mlm, nsp)` pair, the loss their sum
    BertForSequenceClassification    + dropout and Linear(n_embd, n_classes) on the pooled vector

`bert_params(cfg, head)` counts parameters from the configuration alone (BERT-Base: 110M).
`only_targets=True` (a forward argument, or a key of the batch) scores the masked positions only.

References: Devlin, Chang, Lee & Toutanova, "BERT: Pre-training of Deep Bidirectional Transformers
for Language Understanding" (NAACL 2019) and google-research/bert's modeling.py for the layout;
Hendrycks & Gimpel 2016 (GELU). Left out: WordPiece (the course uses its own tokenizers), relative
positions, gradient checkpointing, token-level (NER) and span (SQuAD) heads, the fused attention
and packing tricks of later implementations.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import NamedTuple

import torch
import torch.nn as nn
import torch.nn.functional as F

from llmcourse.config import Sized


@dataclass
class BertConfig(Sized):
    vocab_size: int = 8192  # tokens (BERT-Base: 30522 WordPiece pieces); set it from your tokenizer
    max_position: int = 128  # longest input, [CLS] and [SEP]s included (BERT: 512)
    type_vocab_size: int = 2  # token types: segment A = 0, segment B = 1
    n_layer: int = 4  # encoder blocks (BERT-Base 12, BERT-Large 24)
    n_head: int = 4  # attention heads per block (Base 12, Large 16)
    n_embd: int = 256  # hidden size (Base 768, Large 1024)
    intermediate: int = 1024  # FFN inner width, 4 x n_embd in BERT
    dropout: float = 0.1  # on embeddings, attention weights and residual branches (BERT: 0.1)
    layer_norm_eps: float = 1e-12  # BERT's LayerNorm epsilon (torch's default is 1e-5)
    # Full size: a "BERT-Mini"-like 4 x 256 model (Turc et al. 2019), minutes on a T4.
    smoke_overrides = {
        "vocab_size": 1024,
        "max_position": 64,
        "n_layer": 2,
        "n_head": 2,
        "n_embd": 64,
        "intermediate": 256,
        "dropout": 0.0,
    }

    def __post_init__(self):
        if self.n_embd % self.n_head:
            raise ValueError(f"n_embd={self.n_embd} must be divisible by n_head={self.n_head}")

    @property
    def head_dim(self) -> int:
        return self.n_embd // self.n_head


class PreTrainingLogits(NamedTuple):
    mlm: (
        torch.Tensor
    )  # (B, T, vocab_size): a score for every token at every position (see only_targets)
    nsp: torch.Tensor  # (B, 2): "B follows A" (0) vs "B is a random segment" (1)


def key_padding_mask(attention_mask: torch.Tensor | None) -> torch.Tensor | None:
    """(B, T) with 1 = token, 0 = padding -> boolean (B, 1, 1, T), True = may be attended to.

    Padding is hidden as a *key*; padded queries still compute something, which nobody reads.
    >>> key_padding_mask(torch.tensor([[1, 1, 0]])).tolist()
    [[[[True, True, False]]]]
    """
    if attention_mask is None:
        return None
    return attention_mask.bool()[:, None, None, :]  # broadcast over heads and queries


class BertSelfAttention(nn.Module):
    """Bidirectional multi-head attention: no causal mask, only the padding mask. The same maths and
    parameter names as `llmcourse.attention.MultiHeadAttention` (tested), on the fused kernel."""

    def __init__(self, cfg: BertConfig):
        super().__init__()
        self.n_head, self.head_dim = cfg.n_head, cfg.head_dim
        self.q_proj = nn.Linear(cfg.n_embd, cfg.n_embd)
        self.k_proj = nn.Linear(cfg.n_embd, cfg.n_embd)
        self.v_proj = nn.Linear(cfg.n_embd, cfg.n_embd)
        self.out_proj = nn.Linear(cfg.n_embd, cfg.n_embd)
        self.attn_dropout = cfg.dropout

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        B, T, C = x.shape
        # (B, T, C) -> (B, n_head, T, head_dim) for each of q, k, v
        q, k, v = (
            p(x).view(B, T, self.n_head, self.head_dim).transpose(1, 2)
            for p in (self.q_proj, self.k_proj, self.v_proj)
        )
        y = F.scaled_dot_product_attention(
            q, k, v, attn_mask=mask, dropout_p=self.attn_dropout if self.training else 0.0
        )
        y = y.transpose(1, 2).reshape(B, T, C)  # (B, n_head, T, hd) -> (B, T, C)
        return self.out_proj(y)


class BertBlock(nn.Module):
    """Post-norm encoder block: x = norm1(x + attn(x)), then x = norm2(x + ffn(x))."""

    def __init__(self, cfg: BertConfig):
        super().__init__()
        self.attn = BertSelfAttention(cfg)
        self.norm1 = nn.LayerNorm(cfg.n_embd, eps=cfg.layer_norm_eps)
        self.fc = nn.Linear(cfg.n_embd, cfg.intermediate)
        self.act = nn.GELU()  # the exact erf form, as BERT (GPT-2 uses the tanh approximation)
        self.proj = nn.Linear(cfg.intermediate, cfg.n_embd)
        self.norm2 = nn.LayerNorm(cfg.n_embd, eps=cfg.layer_norm_eps)
        self.drop = nn.Dropout(cfg.dropout)

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        x = self.norm1(x + self.drop(self.attn(x, mask)))  # add & norm (the norm comes *after*)
        return self.norm2(x + self.drop(self.proj(self.act(self.fc(x)))))


class BertModel(nn.Module):
    """The encoder. forward(...) -> (hidden (B, T, C), pooled (B, C) or None without a pooler).

    Hugging Face's `BertForMaskedLM` has no pooler (`pooler=False` here); pretraining with NSP and
    the classifier need one.
    """

    def __init__(self, cfg: BertConfig, pooler: bool = True):
        super().__init__()
        self.cfg = cfg
        self.tok_emb = nn.Embedding(cfg.vocab_size, cfg.n_embd)
        self.pos_emb = nn.Embedding(cfg.max_position, cfg.n_embd)
        self.type_emb = nn.Embedding(cfg.type_vocab_size, cfg.n_embd)
        self.emb_norm = nn.LayerNorm(cfg.n_embd, eps=cfg.layer_norm_eps)
        self.drop = nn.Dropout(cfg.dropout)
        self.blocks = nn.ModuleList(BertBlock(cfg) for _ in range(cfg.n_layer))
        self.pooler = nn.Linear(cfg.n_embd, cfg.n_embd) if pooler else None

    def forward(
        self,
        input_ids: torch.Tensor,
        token_type_ids: torch.Tensor | None = None,
        *,
        attention_mask: torch.Tensor | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        T = input_ids.shape[1]
        if T > self.cfg.max_position:
            raise ValueError(f"input of {T} tokens exceeds max_position={self.cfg.max_position}")
        if token_type_ids is None:
            token_type_ids = torch.zeros_like(input_ids)  # everything is segment A
        pos = torch.arange(T, device=input_ids.device)  # (T,)
        x = self.tok_emb(input_ids) + self.pos_emb(pos) + self.type_emb(token_type_ids)  # (B, T, C)
        x = self.drop(self.emb_norm(x))  # BERT normalises the embeddings (GPT-2 does not)
        mask = key_padding_mask(attention_mask)
        for block in self.blocks:
            x = block(x, mask)
        pooled = (
            torch.tanh(self.pooler(x[:, 0])) if self.pooler is not None else None
        )  # [CLS] is position 0
        return x, pooled


def init_bert_weights(module: nn.Module) -> None:
    """BERT's initialisation: N(0, 0.02) for matrices and embeddings, zero biases, LayerNorm (1, 0)."""
    if isinstance(module, (nn.Linear, nn.Embedding)):
        nn.init.normal_(module.weight, mean=0.0, std=0.02)
        if getattr(module, "bias", None) is not None:
            nn.init.zeros_(module.bias)
    elif isinstance(module, nn.LayerNorm):
        nn.init.ones_(module.weight)
        nn.init.zeros_(module.bias)


class MLMHead(nn.Module):
    """h (B, T, C) -> logits (B, T, V): dense + GELU + LayerNorm, then the token embedding
    transposed (weight tying: the matrix that reads tokens also writes them) plus a bias per token."""

    def __init__(self, cfg: BertConfig, tok_emb: nn.Embedding):
        super().__init__()
        self.dense = nn.Linear(cfg.n_embd, cfg.n_embd)
        self.act = nn.GELU()
        self.norm = nn.LayerNorm(cfg.n_embd, eps=cfg.layer_norm_eps)
        self.decoder = nn.Linear(cfg.n_embd, cfg.vocab_size, bias=False)
        self.decoder.weight = tok_emb.weight  # tied
        self.bias = nn.Parameter(torch.zeros(cfg.vocab_size))

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        return self.decoder(self.norm(self.act(self.dense(h)))) + self.bias


def _token_loss(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Mean cross-entropy over the positions whose target is not -100."""
    return F.cross_entropy(
        logits.reshape(-1, logits.size(-1)).float(), targets.reshape(-1), ignore_index=-100
    )


class BertForMaskedLM(nn.Module):
    """Encoder (no pooler) + MLM head. targets (B, T): the original token at masked positions,
    -100 elsewhere (see `llmcourse.mlm.mask_tokens`); logits cover every position unless
    `only_targets=True` is asked for."""

    def __init__(self, cfg: BertConfig, pooler: bool = False):
        super().__init__()
        self.cfg = cfg
        self.bert = BertModel(cfg, pooler=pooler)
        self.mlm_head = MLMHead(cfg, self.bert.tok_emb)
        self.apply(init_bert_weights)

    def num_params(self) -> int:
        return sum(p.numel() for p in self.parameters())  # the tied matrix is counted once

    def _mlm(
        self, h: torch.Tensor, targets: torch.Tensor | None, only_targets: bool
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        if only_targets:
            if targets is None:
                raise ValueError(
                    "only_targets=True needs targets: they say which positions to score"
                )
            picked = targets != -100  # (B, T)
            logits = self.mlm_head(h[picked])  # (N, V): N = number of targets in the batch
            return logits, _token_loss(logits, targets[picked])
        logits = self.mlm_head(h)  # (B, T, V)
        return logits, (_token_loss(logits, targets) if targets is not None else None)

    def forward(
        self,
        input_ids: torch.Tensor,
        token_type_ids: torch.Tensor | None = None,
        *,
        attention_mask: torch.Tensor | None = None,
        targets: torch.Tensor | None = None,
        only_targets: bool = False,
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """-> (logits (B, T, V), loss). `only_targets=True` is the training shortcut of the original
        code (it gathers `masked_lm_positions`): logits (N, V) only for the N positions whose target
        is not -100, in row-major order. The vocabulary projection, the costliest layer of a small
        BERT, then runs on 15% of the positions; the loss is the same."""
        h, _ = self.bert(input_ids, token_type_ids, attention_mask=attention_mask)
        return self._mlm(h, targets, only_targets)


class BertForPreTraining(BertForMaskedLM):
    """Unlike BertForMaskedLM: a pooler and the NSP head, and the loss is MLM + NSP (as in BERT).

    forward(..., targets=None, nsp_targets=None, only_targets=False) -> (PreTrainingLogits(mlm, nsp),
    loss); the loss adds whichever of the two objectives has targets (None if neither).
    """

    def __init__(self, cfg: BertConfig):
        super().__init__(cfg, pooler=True)
        self.nsp_head = nn.Linear(cfg.n_embd, 2)
        init_bert_weights(self.nsp_head)

    def forward(
        self,
        input_ids: torch.Tensor,
        token_type_ids: torch.Tensor | None = None,
        *,
        attention_mask: torch.Tensor | None = None,
        targets: torch.Tensor | None = None,
        nsp_targets: torch.Tensor | None = None,
        only_targets: bool = False,
    ) -> tuple[PreTrainingLogits, torch.Tensor | None]:
        h, pooled = self.bert(input_ids, token_type_ids, attention_mask=attention_mask)
        mlm_logits, mlm_loss = self._mlm(h, targets, only_targets)
        logits = PreTrainingLogits(mlm_logits, self.nsp_head(pooled))
        losses = [] if mlm_loss is None else [mlm_loss]
        if nsp_targets is not None:
            losses.append(F.cross_entropy(logits.nsp.float(), nsp_targets))
        return logits, (sum(losses) if losses else None)


class BertForSequenceClassification(nn.Module):
    """Encoder + dropout + Linear(n_embd, n_classes) on the pooled [CLS] vector.

    forward(..., targets=None) -> (logits (B, n_classes), loss); targets (B,) class ids.
    Fine-tuning starts from pretrained weights: `clf.bert.load_state_dict(pretrained.bert.state_dict())`.
    """

    def __init__(self, cfg: BertConfig, n_classes: int = 2):
        super().__init__()
        self.cfg = cfg
        self.bert = BertModel(cfg, pooler=True)
        self.drop = nn.Dropout(cfg.dropout)
        self.classifier = nn.Linear(cfg.n_embd, n_classes)
        self.apply(init_bert_weights)

    def forward(
        self,
        input_ids: torch.Tensor,
        token_type_ids: torch.Tensor | None = None,
        *,
        attention_mask: torch.Tensor | None = None,
        targets: torch.Tensor | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        _, pooled = self.bert(input_ids, token_type_ids, attention_mask=attention_mask)
        logits = self.classifier(self.drop(pooled))  # (B, n_classes)
        loss = F.cross_entropy(logits.float(), targets) if targets is not None else None
        return logits, loss


HEADS = ("encoder", "mlm", "pretraining", "classifier")


def bert_param_breakdown(
    cfg: BertConfig, head: str = "pretraining", n_classes: int = 2
) -> dict[str, int]:
    """Parameters per part, from the configuration alone (V vocab, P positions, C width, H FFN width):

        embeddings   (V + P + types) * C + 2C          (three tables and a LayerNorm)
        per block    4 (C^2 + C) + 2 (C H) + H + C + 4C (q, k, v, out; FFN in and out; 2 LayerNorms)
        pooler       C^2 + C                           ("encoder", "pretraining", "classifier")
        MLM head     C^2 + C + 2C + V                  (the decoder matrix is the tied embedding)
        NSP head     2C + 2;  classifier  n_classes (C + 1)

    `head`: "encoder" (HF BertModel), "mlm" (BertForMaskedLM, no pooler), "pretraining", "classifier".
    >>> bert_param_breakdown(BertConfig(vocab_size=10, max_position=4, n_layer=1, n_head=1,
    ...                                 n_embd=2, intermediate=8), head="encoder")
    {'embeddings': 36, 'blocks': 74, 'pooler': 6}
    """
    if head not in HEADS:
        raise ValueError(f"head={head!r}: use one of {HEADS}")
    V, P, C, H = (
        cfg.vocab_size,
        cfg.max_position,
        cfg.n_embd,
        cfg.intermediate,
    )  # H: the MLP's width
    parts = {
        "embeddings": (V + P + cfg.type_vocab_size) * C + 2 * C,
        "blocks": cfg.n_layer * (4 * (C * C + C) + 2 * C * H + H + C + 4 * C),
    }
    if head != "mlm":
        parts["pooler"] = C * C + C
    if head in ("mlm", "pretraining"):
        parts["mlm_head"] = C * C + C + 2 * C + V
    if head == "pretraining":
        parts["nsp_head"] = 2 * C + 2
    if head == "classifier":
        parts["classifier"] = n_classes * (C + 1)
    return parts


def bert_params(cfg: BertConfig, head: str = "encoder", n_classes: int = 2) -> int:
    """Total parameters of the model with that head (see `bert_param_breakdown`).

    BERT-Base, `BertConfig(vocab_size=30522, max_position=512, n_layer=12, n_head=12, n_embd=768,
    intermediate=3072)`: 109,482,240 for the encoder, the paper's "110M".
    """
    return sum(bert_param_breakdown(cfg, head, n_classes).values())


# ------------------------------------------------------------------------- checked by notebook 07's exercises
def bert_encoder_params(
    vocab_size: int, *, max_position: int, n_layer: int, n_embd: int, intermediate: int
) -> int:
    """bert_encoder_params(vocab_size, max_position, n_layer, n_embd, intermediate) -> int: parameters
    of a BERT encoder with 2 token types, embedding LayerNorm and pooler (HF's BertModel), no heads."""
    return bert_params(
        BertConfig(
            vocab_size=vocab_size,
            max_position=max_position,
            n_layer=n_layer,
            n_head=1,
            n_embd=n_embd,
            intermediate=intermediate,
        ),
        head="encoder",
    )
