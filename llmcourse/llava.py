"""How a multimodal LLM sees: a LLaVA-style bridge from our ViT into our GPT.

LLaVA (Liu et al. 2023, "Visual Instruction Tuning") connects a pretrained vision encoder to a
pretrained language model with one learned map: the encoder's patch features are projected into
the LLM's token-embedding space and placed in front of the text, as if they were words. The LLM
then reads "image tokens" with the same attention it uses for words. Qwen-VL, InternVL and most
open multimodal LLMs follow the same plan with bigger parts (a cross-attention resampler or an
MLP instead of the linear map).

    images -> ViT.features -> patch states (B, 16, C_img) -> projector -> (B, 16, C_gpt)
    caption ids -> GPT token embeddings (B, T, C_gpt)
    [image tokens | text tokens] + positions -> GPT blocks (causal) -> logits at the text positions

* `VisionLanguageModel(vision, gpt)`: `forward(images, idx, targets=None) -> (logits, loss)`,
  the course convention with the image as an extra input; `images=None` runs the GPT alone, the
  text-only baseline. The projector is linear (LLaVA 1) or a 2-layer MLP (`mlp_projector=True`,
  LLaVA 1.5). The vision encoder is frozen by default, as in both of LLaVA's stages; the GPT
  trains with the projector (LLaVA's stage 2; stage 1 trains the projector alone).
* `caption_batches(data, vocab)`: (images, idx, targets) for `train.fit`: idx = <bos> caption,
  targets = caption <eos>, padding ignored (-100); the caption is the deterministic one of
  `tasks.digits` ("a thin seven"), which the image alone decides.
* `greedy_captions` and `exact_match`: decode from <bos> and compare with the true caption. A
  text-only model gives every image the same caption, so its exact match is at most the share of
  the most common caption (`text_only_ceiling`: 7.8% of the held-out digits at seed 0). Greedy
  decoding does not even reach that: word by word, "a" is followed by "thin" (a fifth of all
  captions) rather than by any one digit, and "a thin three" is right for 2% of them.

Like `llmcourse.ptuning.PromptTuned`, this wraps the GPT and runs its forward pass with extra
vectors after the embedding; `GPT.forward` has no image argument.
References: Liu et al. 2023 (LLaVA) and 2024 (LLaVA-1.5, the MLP projector); Bai et al. 2023
(Qwen-VL); Alayrac et al. 2022 (Flamingo, cross-attention instead of prefix tokens);
Dosovitskiy et al. 2021 (ViT); Radford et al. 2021 (CLIP, LLaVA's vision encoder).
Left out: instruction data and visual question answering, image tokens in the middle of a chat,
high-resolution tiling, the penultimate-layer features LLaVA reads, and a KV cache for decoding.
"""

from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

from llmcourse.data.vocab import WordVocab
from llmcourse.gpt import GPT
from llmcourse.tasks import digits
from llmcourse.vit import ViT


class VisionLanguageModel(nn.Module):
    """A ViT's patch states, projected, as a prefix of a GPT's input."""

    def __init__(
        self, vision: ViT, gpt: GPT, *, mlp_projector: bool = False, freeze_vision: bool = True
    ):
        super().__init__()
        self.vision, self.gpt = vision, gpt
        self.cfg = gpt.cfg  # checkpoints and fit's resume check read the GPT's config
        c_img, c_txt = vision.cfg.n_embd, gpt.cfg.n_embd
        self.projector = (
            nn.Sequential(nn.Linear(c_img, c_txt), nn.GELU(), nn.Linear(c_txt, c_txt))
            if mlp_projector
            else nn.Linear(c_img, c_txt)
        )
        if freeze_vision:
            for p in vision.parameters():
                p.requires_grad_(False)

    @property
    def n_image_tokens(self) -> int:
        return self.vision.cfg.n_patches

    def image_tokens(self, images: torch.Tensor) -> torch.Tensor:
        """images (B, ch, H, W) -> (B, n_patches, C_gpt): the patch states in the GPT's space."""
        frozen = not any(p.requires_grad for p in self.vision.parameters())
        with torch.set_grad_enabled(torch.is_grad_enabled() and not frozen):
            h = self.vision.features(images)[:, 1:]  # (B, N, C_img): the patches, not [CLS]
        return self.projector(h)

    def forward(
        self,
        images: torch.Tensor | None,
        idx: torch.Tensor,
        targets: torch.Tensor | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """images (B, ch, H, W) or None, idx (B, T) -> logits (B, T, vocab) at the text positions,
        and the mean cross-entropy if targets (B, T) are given (-100 ignored)."""
        gpt = self.gpt
        B, T = idx.shape
        # 1. the text as the GPT embeds it
        x = gpt.tok_emb(idx)  # (B, T, C)
        P = 0
        if images is not None:
            # 2. the image as P "words": projected patch states in front of the text
            prefix = self.image_tokens(images).to(x.dtype)  # (B, P, C)
            P = prefix.size(1)
            x = torch.cat([prefix, x], dim=1)  # (B, P + T, C)
        if P + T > gpt.cfg.block_size:
            raise ValueError(
                f"{P} image + {T} text tokens exceed the GPT's block_size={gpt.cfg.block_size}; "
                "use a GPT with a longer context"
            )
        # 3. positions 0..P+T-1 (the image first), then the GPT's causal blocks: each word sees
        #    the whole image and the words before it
        x = gpt.drop(x + gpt.pos_emb(torch.arange(P + T, device=idx.device)))
        for block in gpt.blocks:
            x = block(x)
        # 4. predictions at the text positions only: nothing is predicted for an image token
        logits = gpt.lm_head(gpt.final_norm(x[:, P:]))  # (B, T, vocab)
        loss = None
        if targets is not None:
            loss = F.cross_entropy(
                logits.reshape(-1, logits.size(-1)).float(), targets.reshape(-1), ignore_index=-100
            )
        return logits, loss


def caption_batches(
    data: digits.Digits, vocab: WordVocab, *, batch_size: int = 64, with_images: bool = True
):
    """A sampler for `train.fit`: sample(generator) -> (images or None, idx (B, T), targets (B, T)).
    idx = <bos> caption, targets = caption <eos>, padding -> -100. with_images=False gives the
    text-only baseline's batches (images None)."""
    captions = data.captions
    pad = vocab.stoi[digits.PAD]

    def sample(generator: torch.Generator):
        idx = torch.randint(len(data), (batch_size,), generator=generator)
        ids = digits.encode_captions([captions[i] for i in idx.tolist()], vocab, bos=True, eos=True)
        inp, tgt = ids[:, :-1], ids[:, 1:].clone()  # next-token pairs
        tgt[tgt == pad] = -100  # padding is never predicted
        return (data.images[idx] if with_images else None), inp, tgt

    return sample


@torch.no_grad()
def greedy_captions(
    model: VisionLanguageModel,
    images: torch.Tensor | None,
    vocab: WordVocab,
    *,
    n: int | None = None,
    max_new_tokens: int = 6,
) -> list[str]:
    """Greedy captions, decoded from <bos> until <eos> (recomputes the whole prefix each step).
    With images None, `n` captions of the text-only model (all the same: greedy, no input)."""
    was_training = model.training
    model.eval()
    device = next(model.gpt.parameters()).device
    B = len(images) if images is not None else n
    if B is None:
        raise ValueError("give images, or n (how many captions) for the text-only model")
    images = images.to(device) if images is not None else None
    idx = torch.full((B, 1), vocab.stoi[digits.BOS], dtype=torch.long, device=device)
    try:
        for _ in range(max_new_tokens):
            logits, _ = model(images, idx)
            idx = torch.cat([idx, logits[:, -1].argmax(-1, keepdim=True)], dim=1)
    finally:
        model.train(was_training)
    eos, out = vocab.stoi[digits.EOS], []
    for row in idx[:, 1:].tolist():
        row = row[: row.index(eos)] if eos in row else row
        out.append(vocab.decode(row))
    return out


def exact_match(
    model: VisionLanguageModel, data: digits.Digits, vocab: WordVocab, *, with_images: bool = True
) -> float:
    """Share of `data` whose greedy caption is exactly the true one ("a thin seven")."""
    images = data.images if with_images else None
    preds = greedy_captions(model, images, vocab, n=len(data))
    return sum(p == c for p, c in zip(preds, data.captions)) / len(data)


def text_only_ceiling(data: digits.Digits) -> float:
    """The best exact match any model without the image can reach: it must give all images the
    same caption, at best the most common one, which is right for this share of `data`."""
    counts: dict[str, int] = {}
    for c in data.captions:
        counts[c] = counts.get(c, 0) + 1
    return max(counts.values()) / len(data)
