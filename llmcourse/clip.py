"""Contrastive image-text pretraining (CLIP) in miniature: two encoders, one shared space.

CLIP (Radford et al. 2021) trains an image encoder and a text encoder together so that an image and
its caption land close to each other in one embedding space and far from the other captions of
the batch. For a batch of B (image, caption) pairs:

    u_i = normalise(W_img image_encoder(image_i))       (B, D), unit vectors
    v_j = normalise(W_txt text_encoder(caption_j))      (B, D)
    logits[i, j] = exp(s) * u_i . v_j                   s = log(1 / temperature), learned
    loss = ( CE(logits, diag) + CE(logits^T, diag) ) / 2     the symmetric InfoNCE loss

Row i is a B-way classification "which caption is mine?", column j the same question for caption
j; the right answer is always the diagonal (van den Oord et al. 2018 named this loss InfoNCE).
Nothing tells the model what a class is. Yet afterwards it classifies **zero-shot**: embed one
caption per class ("the digit 0" ... "the digit 9"), and predict the class whose caption is
nearest to the image (`zero_shot_predict`).

* `info_nce(logits)`: the loss from a (B, B) logit matrix; tests/test_clip.py derives a 2x2 case.
* `TextEncoder`: word embeddings + learned positions + the course's pre-norm encoder blocks
  (`llmcourse.transformer.EncoderLayer`, padding masked out), mean-pooled over the real words.
* `CLIP(cfg, image_encoder)`: the image encoder is a `llmcourse.vit.ViT` (its [CLS] state; its
  classification head is not used). `forward(images, tokens) -> (logits, loss)`: the batch's own
  pairing is the target, so no `targets` argument; it trains with `llmcourse.train.fit` on
  `caption_batches`, which draws one phrasing per image at random (`tasks.digits`).
* `embed_captions`: captions -> unit vectors of the shared space, the text prompts that condition
  `llmcourse.diffusion` ("a 7" then means "somewhere near the images of sevens").

References: Radford et al. 2021 (CLIP; the loss's pseudo-code is their Figure 3); van den Oord et
al. 2018 (InfoNCE); Dosovitskiy et al. 2021 (the ViT image encoder).
Deliberate simplifications: CLIP's text encoder is a causal GPT-style Transformer read at the
[EOS] token; ours is bidirectional and mean-pooled (captions are 2-5 words). Left out: prompt
ensembling (averaging several templates per class), large batches (CLIP: 32,768), data at scale
(400M pairs), and SigLIP's sigmoid loss (Zhai et al. 2023).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn as nn
import torch.nn.functional as F

from llmcourse.config import Sized
from llmcourse.data.vocab import WordVocab
from llmcourse.tasks import digits
from llmcourse.transformer import EncoderLayer
from llmcourse.vit import ViT


@dataclass
class CLIPConfig(Sized):
    vocab_size: int = 32  # caption words (tasks.digits.caption_vocab has 30 with the specials)
    max_len: int = 8  # longest caption in tokens (position embeddings)
    n_embd: int = 128  # text encoder width
    n_head: int = 4  # text encoder heads
    n_layer: int = 2  # text encoder blocks
    proj_dim: int = 64  # the shared embedding space
    temperature: float = 0.07  # initial temperature (CLIP's); learned as log(1/temperature)
    max_logit_scale: float = 100.0  # CLIP clips exp(s) at 100 to keep training stable
    pad_id: int = 0  # padding token id, masked out of attention and pooling
    smoke_overrides = {"n_embd": 32, "n_layer": 1, "proj_dim": 32}


def info_nce(logits: torch.Tensor) -> torch.Tensor:
    """The symmetric InfoNCE loss of a (B, B) logit matrix whose diagonal holds the true pairs:
    the mean of cross-entropy over rows (image -> text) and over columns (text -> image)."""
    if logits.dim() != 2 or logits.size(0) != logits.size(1):
        raise ValueError(f"logits must be a square (B, B) matrix, got shape {tuple(logits.shape)}")
    target = torch.arange(logits.size(0), device=logits.device)  # pair i is (image i, caption i)
    return (F.cross_entropy(logits, target) + F.cross_entropy(logits.t(), target)) / 2


class TextEncoder(nn.Module):
    """tokens (B, T) -> (B, C): word + position embeddings, encoder blocks, mean over real words."""

    def __init__(self, cfg: CLIPConfig):
        super().__init__()
        self.cfg = cfg
        self.tok_emb = nn.Embedding(cfg.vocab_size, cfg.n_embd)
        self.pos_emb = nn.Embedding(cfg.max_len, cfg.n_embd)
        self.blocks = nn.ModuleList(
            EncoderLayer(cfg.n_embd, cfg.n_head, 4 * cfg.n_embd, norm_first=True, activation="gelu")
            for _ in range(cfg.n_layer)
        )
        self.final_norm = nn.LayerNorm(cfg.n_embd)

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        B, T = tokens.shape
        if T > self.cfg.max_len:
            raise ValueError(f"captions of {T} tokens exceed max_len={self.cfg.max_len}")
        real = tokens != self.cfg.pad_id  # (B, T) True at words, False at padding
        x = self.tok_emb(tokens) + self.pos_emb(torch.arange(T, device=tokens.device))  # (B, T, C)
        for block in self.blocks:
            x = block(x, key_mask=real)  # no word attends to padding
        x = self.final_norm(x)
        # mean over the real words only: padding must not dilute the summary
        w = real.unsqueeze(-1).to(x.dtype)  # (B, T, 1)
        return (x * w).sum(1) / w.sum(1).clamp(min=1.0)  # (B, C)


class CLIP(nn.Module):
    """An image encoder (a ViT) and a text encoder, projected into one space of `proj_dim`."""

    def __init__(self, cfg: CLIPConfig, image_encoder: ViT):
        super().__init__()
        self.cfg = cfg
        self.image_encoder = image_encoder
        self.text_encoder = TextEncoder(cfg)
        self.image_proj = nn.Linear(image_encoder.cfg.n_embd, cfg.proj_dim, bias=False)
        self.text_proj = nn.Linear(cfg.n_embd, cfg.proj_dim, bias=False)
        # s = log(1 / temperature): learning the log keeps the scale positive
        self.logit_scale = nn.Parameter(torch.tensor(math.log(1.0 / cfg.temperature)))

    def encode_image(self, images: torch.Tensor) -> torch.Tensor:
        """images (B, ch, H, W) -> (B, proj_dim) unit vectors, from the ViT's [CLS] state."""
        h = self.image_encoder.features(images)[:, 0]  # (B, C_img)
        return F.normalize(self.image_proj(h), dim=-1)

    def encode_text(self, tokens: torch.Tensor) -> torch.Tensor:
        """tokens (B, T) -> (B, proj_dim) unit vectors."""
        return F.normalize(self.text_proj(self.text_encoder(tokens)), dim=-1)

    def scale(self) -> torch.Tensor:
        """exp(s), the inverse temperature, clipped at max_logit_scale as CLIP does."""
        return self.logit_scale.exp().clamp(max=self.cfg.max_logit_scale)

    def forward(
        self, images: torch.Tensor, tokens: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """images (B, ...) and their captions (B, T) -> (logits (B, B), symmetric InfoNCE loss).
        logits[i, j] = exp(s) * cos(image i, caption j); row i's right answer is column i."""
        # 1. both modalities into the shared space, as unit vectors
        u, v = self.encode_image(images), self.encode_text(tokens)  # (B, D) each
        # 2. every image against every caption: cosine similarity times the inverse temperature
        logits = self.scale() * u @ v.t()  # (B, D) @ (D, B) -> (B, B)
        # 3. classify rows (which caption?) and columns (which image?), the diagonal being right
        return logits, info_nce(logits)


@torch.no_grad()
def zero_shot_predict(
    model: CLIP, images: torch.Tensor, prompt_tokens: torch.Tensor, *, batch_size: int = 512
) -> torch.Tensor:
    """The index of the nearest prompt for each image: (N,) int64. `prompt_tokens` (K, T) holds one
    caption per class, e.g. `digits.encode_captions(digits.class_prompts(), vocab)`."""
    was_training = model.training
    model.eval()
    device = model.logit_scale.device
    try:
        v = model.encode_text(prompt_tokens.to(device))  # (K, D)
        preds = [
            (model.encode_image(images[i : i + batch_size].to(device)) @ v.t()).argmax(-1).cpu()
            for i in range(0, len(images), batch_size)
        ]
    finally:
        model.train(was_training)
    return torch.cat(preds)


def zero_shot_accuracy(
    model: CLIP, data: digits.Digits, vocab: WordVocab, *, template: str = "the digit {n}"
) -> float:
    """Share of `data`'s images whose nearest class prompt (`template`) is their own class."""
    prompts = digits.encode_captions(digits.class_prompts(template), vocab)
    return float((zero_shot_predict(model, data.images, prompts) == data.labels).float().mean())


@torch.no_grad()
def embed_captions(model: CLIP, texts: list[str], vocab: WordVocab) -> torch.Tensor:
    """(len(texts), proj_dim) unit vectors of the captions: a text prompt as a condition vector for
    `llmcourse.diffusion` ("a 7" -> the point of the shared space where images of sevens lie)."""
    was_training = model.training
    model.eval()
    try:
        tokens = digits.encode_captions(texts, vocab).to(model.logit_scale.device)
        return model.encode_text(tokens).cpu()
    finally:
        model.train(was_training)


def caption_batches(data: digits.Digits, vocab: WordVocab, *, batch_size: int = 64):
    """A sampler for `train.fit`: sample(generator) -> (images (B, 1, 8, 8), tokens (B, T)), each
    image with one of its phrasings (`digits.caption_variants`) drawn at random."""

    def sample(generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
        idx = torch.randint(len(data), (batch_size,), generator=generator)
        texts = digits.sample_captions(data, idx, generator)
        return data.images[idx], digits.encode_captions(texts, vocab)

    return sample
