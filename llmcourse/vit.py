"""Images as tokens: patch embedding and a small Vision Transformer (ViT) classifier.

A Transformer reads a sequence of vectors. An image becomes one by cutting it into P x P patches,
flattening each patch and mapping it linearly to the model width (Dosovitskiy et al. 2021, "An Image
is Worth 16x16 Words", eq. 1). An 8x8 digit with P = 2 is 16 patches of 4 pixels: 16 tokens.

    images (B, 1, 8, 8) -> patches (B, 16, 4) -> linear -> (B, 16, C) -> [CLS] + positions
      -> N x encoder block (bidirectional: every patch sees every patch) -> final norm
      -> logits = head(h[CLS])

* `patchify(images, patch)`: the cut, with `unfold`; "flatten + linear" is then one matmul.
* `PatchEmbedding`: the same map written as a Conv2d whose kernel and stride are the patch size,
  how ViT implementations do it; tests/test_vit.py checks the two agree with copied weights.
* `ViT(cfg)`: a learned [CLS] token in front (BERT's trick: its final state summarises the image),
  learned position embeddings, and the course's own pre-norm encoder block
  (`llmcourse.transformer.EncoderLayer`, with `llmcourse.attention.MultiHeadAttention` inside,
  no mask: attention is bidirectional). `forward(images, targets=None) -> (logits, loss)`, the
  course convention, so it trains with `llmcourse.train.fit` on `tasks.digits.image_batches`.
  `features(images)` returns every token's final state: CLIP (`llmcourse.clip`) reads the [CLS]
  state, the LLaVA bridge (`llmcourse.llava`) the patch states.
* `SmallCNN`: the inductive-bias baseline (convolutions know that neighbouring pixels belong
  together; a ViT must learn it from data, which is why ViTs need large data sets or pretraining).

References: Dosovitskiy et al. 2021 (ViT); Vaswani et al. 2017 (the encoder block); Devlin et al.
2019 ([CLS]); LeCun et al. 1998 (convolutional networks).
Left out: ViT's pretraining on large data sets, patch dropout, 2-D sine positions, register tokens,
hierarchical variants (Swin), and mean pooling instead of [CLS] (a one-line change in `forward`).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn as nn
import torch.nn.functional as F

from llmcourse.config import Sized
from llmcourse.transformer import EncoderLayer


@dataclass
class ViTConfig(Sized):
    image_size: int = 8  # side of the square input image, in pixels (8 = scikit-learn's digits)
    patch_size: int = 2  # side of a patch; (image_size / patch_size)^2 patches = tokens
    in_chans: int = 1  # colour channels (1 = grey)
    n_embd: int = 128  # width of the residual stream
    n_head: int = 4  # attention heads per block
    n_layer: int = 4  # encoder blocks
    dropout: float = 0.1  # on attention weights, residual branches and embeddings
    n_classes: int = 10  # outputs of the classification head
    smoke_overrides = {"n_embd": 32, "n_layer": 2, "dropout": 0.0}

    def __post_init__(self):
        if self.image_size % self.patch_size:
            raise ValueError(
                f"image_size={self.image_size} is not a multiple of patch_size={self.patch_size}: "
                "pick a patch size that tiles the image"
            )
        if self.n_embd % self.n_head:
            raise ValueError(f"n_embd={self.n_embd} must be divisible by n_head={self.n_head}")

    @property
    def n_patches(self) -> int:
        return (self.image_size // self.patch_size) ** 2

    @property
    def patch_dim(self) -> int:
        return self.in_chans * self.patch_size**2


def patchify(images: torch.Tensor, patch: int) -> torch.Tensor:
    """patchify(images (B, ch, H, W), P) -> (B, (H/P)*(W/P), ch*P*P): the patches in reading order
    (row by row), each flattened channel-major, as `Conv2d(kernel=stride=P)` reads them.

    >>> x = torch.arange(16.0).view(1, 1, 4, 4)
    >>> patchify(x, 2)[0].tolist()   # top-left patch first: pixels 0, 1, 4, 5
    [[0.0, 1.0, 4.0, 5.0], [2.0, 3.0, 6.0, 7.0], [8.0, 9.0, 12.0, 13.0], [10.0, 11.0, 14.0, 15.0]]
    """
    if images.dim() != 4:
        raise ValueError(f"images must be (B, channels, H, W), got shape {tuple(images.shape)}")
    if images.shape[-1] % patch or images.shape[-2] % patch:
        raise ValueError(f"image size {tuple(images.shape[-2:])} is not a multiple of {patch}")
    # unfold slides a P x P window with stride P: (B, ch*P*P, n_patches), one column per patch
    cols = F.unfold(images, kernel_size=patch, stride=patch)
    return cols.transpose(1, 2)  # (B, n_patches, ch*P*P)


class PatchEmbedding(nn.Module):
    """images (B, ch, H, W) -> patch tokens (B, n_patches, C): a Conv2d with kernel = stride = P.

    Each output position of the convolution sees exactly one patch and applies the same C filters
    to it: a linear map of the flattened patch, `linear(patchify(x, P))` with
    `linear.weight = conv.weight.view(C, -1)` (see `as_linear`)."""

    def __init__(self, patch_size: int, in_chans: int, n_embd: int):
        super().__init__()
        self.patch_size = patch_size
        self.proj = nn.Conv2d(in_chans, n_embd, kernel_size=patch_size, stride=patch_size)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        y = self.proj(images)  # (B, C, H/P, W/P): one C-vector per patch
        return y.flatten(2).transpose(1, 2)  # (B, n_patches, C), patches in reading order

    def as_linear(self) -> nn.Linear:
        """The same map as an nn.Linear on `patchify`'s flattened patches (weights copied)."""
        C = self.proj.out_channels
        lin = nn.Linear(self.proj.weight[0].numel(), C)
        with torch.no_grad():
            lin.weight.copy_(self.proj.weight.view(C, -1))  # (C, ch, P, P) -> (C, ch*P*P)
            lin.bias.copy_(self.proj.bias)
        return lin


class ViT(nn.Module):
    """A Vision Transformer classifier: forward(images, targets=None) -> (logits (B, n_classes), loss)."""

    def __init__(self, cfg: ViTConfig):
        super().__init__()
        self.cfg = cfg
        C = cfg.n_embd
        self.patch_emb = PatchEmbedding(cfg.patch_size, cfg.in_chans, C)
        self.cls_token = nn.Parameter(torch.zeros(1, 1, C))  # learned; its final state classifies
        self.pos_emb = nn.Parameter(torch.randn(1, cfg.n_patches + 1, C) * 0.02)  # [CLS] + patches
        self.drop = nn.Dropout(cfg.dropout)
        self.blocks = nn.ModuleList(
            EncoderLayer(C, cfg.n_head, 4 * C, cfg.dropout, norm_first=True, activation="gelu")
            for _ in range(cfg.n_layer)
        )
        self.final_norm = nn.LayerNorm(C)
        self.head = nn.Linear(C, cfg.n_classes)

    def features(self, images: torch.Tensor) -> torch.Tensor:
        """images (B, ch, H, W) -> (B, 1 + n_patches, C): the final state of [CLS] (position 0)
        and of every patch, after the final LayerNorm."""
        if tuple(images.shape[1:]) != (self.cfg.in_chans, self.cfg.image_size, self.cfg.image_size):
            raise ValueError(
                f"images of shape {tuple(images.shape)}; this ViT expects (B, {self.cfg.in_chans}, "
                f"{self.cfg.image_size}, {self.cfg.image_size})"
            )
        # 1. the image as a sequence: one token per patch
        x = self.patch_emb(images)  # (B, N, C)
        # 2. the [CLS] token in front, then a learned position for each of the 1 + N slots
        cls = self.cls_token.expand(x.size(0), -1, -1)  # (B, 1, C)
        x = self.drop(torch.cat([cls, x], dim=1) + self.pos_emb)  # (B, 1 + N, C)
        # 3. the encoder: no mask, every token attends to every token (unlike GPT's causal mask)
        for block in self.blocks:
            x = block(x)
        return self.final_norm(x)

    def forward(
        self, images: torch.Tensor, targets: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        logits = self.head(self.features(images)[:, 0])  # (B, n_classes), from [CLS]'s state
        loss = F.cross_entropy(logits, targets) if targets is not None else None
        return logits, loss


class SmallCNN(nn.Module):
    """The convolutional baseline: two 3x3 conv layers (padding 1), a 2x2 max-pool, a linear head.
    forward(images, targets=None) -> (logits, loss), like `ViT`."""

    def __init__(self, n_classes: int = 10, *, in_chans: int = 1, width: int = 32, size: int = 8):
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(in_chans, width, 3, padding=1),  # (B, width, H, W)
            nn.ReLU(),
            nn.Conv2d(width, width, 3, padding=1),
            nn.ReLU(),
            nn.MaxPool2d(2),  # (B, width, H/2, W/2)
        )
        self.head = nn.Linear(width * (size // 2) ** 2, n_classes)

    def forward(
        self, images: torch.Tensor, targets: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        logits = self.head(self.features(images).flatten(1))
        loss = F.cross_entropy(logits, targets) if targets is not None else None
        return logits, loss


@torch.no_grad()
def accuracy(
    model: nn.Module, images: torch.Tensor, labels: torch.Tensor, *, batch_size: int = 512
) -> float:
    """Share of `images` whose argmax logit is the label (eval mode, restored afterwards)."""
    was_training = model.training
    model.eval()
    device = next(model.parameters()).device
    try:
        hits = 0
        for i in range(0, len(labels), batch_size):
            logits, _ = model(images[i : i + batch_size].to(device))
            hits += int((logits.argmax(-1).cpu() == labels[i : i + batch_size]).sum())
    finally:
        model.train(was_training)
    return hits / len(labels)
