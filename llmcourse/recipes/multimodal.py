"""The multimodal lesson's experiments in one place: ViT, CLIP, prompted diffusion and a captioner.

One configuration decides the data split, every model's size and every stage's steps, so a notebook
narrates and this module computes:

    cfg = MultimodalConfig.for_size()
    train, test = digits.load_digits_split(test_fraction=cfg.test_fraction, seed=cfg.seed)
    classifier, _ = train_classifier(cfg, train, kind="vit")     # also "cnn"
    clip_model, _ = train_clip(cfg, train)
    denoiser, schedule, _ = train_denoiser(cfg, train, cond=diffusion.label_cond(train.labels))
    rate, images = prompted_accuracy(denoiser, schedule, judge, labels=labels, guidance=3.0)
    captioner, _ = train_captioner(cfg, train, vision=classifier)

Every stage trains with `llmcourse.train.fit` from its own seed. `prompted_accuracy` asks an
independently trained classifier (the "judge", e.g. the SmallCNN) whether samples prompted with
digit k look like a k: the share it labels k, 10% being chance.
Left out: MNIST at full size (the full size here is the same digits with bigger models and more
steps), FID and other sample-quality metrics, and a real Stable Diffusion run (the notebook's
optional GPU cell uses `diffusers` for that).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn as nn

from llmcourse import clip, diffusion, llava, vit
from llmcourse.config import Sized
from llmcourse.gpt import GPT, GPTConfig
from llmcourse.tasks import digits
from llmcourse.train import History, TrainConfig, fit


@dataclass
class MultimodalConfig(Sized):
    test_fraction: float = 0.2  # held-out share of the 1,797 digits
    seed: int = 0  # the split and every stage's initialisation
    batch_size: int = 64  # images per batch (classifier, CLIP, captioner)
    vit_steps: int = 1500  # ViT / CNN classifier training
    vit_lr: float = 2e-3
    clip_steps: int = 3000  # contrastive pretraining
    clip_lr: float = 2e-3
    diffusion_steps: int = 8000  # denoiser training
    diffusion_lr: float = 1e-3
    diffusion_batch: int = 128
    captioner_steps: int = 2000  # projector + GPT on the captions
    captioner_lr: float = 2e-3
    gpt_n_embd: int = 64  # the captioning GPT's width (its layers: gpt_n_layer)
    gpt_n_layer: int = 2
    smoke_overrides = {
        "vit_steps": 300,
        "vit_lr": 5e-3,
        "clip_steps": 400,
        "clip_lr": 5e-3,
        "diffusion_steps": 1200,
        "diffusion_lr": 2e-3,
        "captioner_steps": 300,
        "captioner_lr": 3e-3,
        "gpt_n_embd": 32,
    }


def _train_config(cfg: MultimodalConfig, steps: int, lr: float, weight_decay: float = 0.1):
    return TrainConfig.for_size(
        max_steps=steps,
        lr=lr,
        warmup_steps=max(1, steps // 15),
        eval_every=0,
        weight_decay=weight_decay,
        seed=cfg.seed,
    )


def train_classifier(
    cfg: MultimodalConfig, train: digits.Digits, *, kind: str = "vit", progress: bool = True
) -> tuple[nn.Module, History]:
    """A ViT (`kind="vit"`, `vit.ViTConfig.for_size()`) or the SmallCNN ("cnn") on the labels."""
    if kind not in ("vit", "cnn"):
        raise ValueError(f"kind={kind!r}: use 'vit' or 'cnn'")
    torch.manual_seed(cfg.seed)
    model = vit.ViT(vit.ViTConfig.for_size()) if kind == "vit" else vit.SmallCNN()
    tc = _train_config(cfg, cfg.vit_steps, cfg.vit_lr)
    history = fit(
        model, digits.image_batches(train, batch_size=cfg.batch_size), tc, progress=progress
    )
    return model, history


def train_clip(
    cfg: MultimodalConfig, train: digits.Digits, *, progress: bool = True
) -> tuple[clip.CLIP, History]:
    """A CLIP (a fresh ViT + the text encoder) on random phrasings of the training captions."""
    torch.manual_seed(cfg.seed)
    model = clip.CLIP(clip.CLIPConfig.for_size(), vit.ViT(vit.ViTConfig.for_size()))
    sampler = clip.caption_batches(train, digits.caption_vocab(), batch_size=cfg.batch_size)
    tc = _train_config(cfg, cfg.clip_steps, cfg.clip_lr)
    return model, fit(model, sampler, tc, progress=progress)


def train_denoiser(
    cfg: MultimodalConfig,
    train: digits.Digits,
    *,
    cond: torch.Tensor,
    progress: bool = True,
) -> tuple[diffusion.Denoiser, diffusion.NoiseSchedule, History]:
    """A noise-prediction MLP conditioned on `cond` (N, cond_dim), one row per training image:
    one-hot labels (`diffusion.label_cond`) or caption embeddings (`clip.embed_captions`)."""
    if cond.shape[0] != len(train):
        raise ValueError(f"cond has {cond.shape[0]} rows for {len(train)} training images")
    dcfg = diffusion.DiffusionConfig.for_size(cond_dim=cond.shape[1])
    schedule = diffusion.NoiseSchedule.from_config(dcfg)
    torch.manual_seed(cfg.seed)
    model = diffusion.Denoiser(dcfg)
    sampler = diffusion.denoising_batches(
        train.images, cond, schedule, batch_size=cfg.diffusion_batch, p_uncond=dcfg.p_uncond
    )
    tc = _train_config(cfg, cfg.diffusion_steps, cfg.diffusion_lr, weight_decay=0.0)
    return model, schedule, fit(model, sampler, tc, progress=progress)


def train_captioner(
    cfg: MultimodalConfig, train: digits.Digits, *, vision: vit.ViT, progress: bool = True
) -> tuple[llava.VisionLanguageModel, History]:
    """The LLaVA-style bridge: `vision` frozen, a projector and a fresh GPT trained to caption."""
    vocab = digits.caption_vocab()
    torch.manual_seed(cfg.seed)
    gpt = GPT(
        GPTConfig(
            vocab_size=len(vocab.itos),
            block_size=vision.cfg.n_patches + 8,  # the image tokens + <bos> + a caption
            n_layer=cfg.gpt_n_layer,
            n_head=2,
            n_embd=cfg.gpt_n_embd,
            dropout=0.0,
        )
    )
    model = llava.VisionLanguageModel(vision, gpt)
    sampler = llava.caption_batches(train, vocab, batch_size=cfg.batch_size)
    tc = _train_config(cfg, cfg.captioner_steps, cfg.captioner_lr)
    return model, fit(model, sampler, tc, progress=progress)


@torch.no_grad()
def prompted_accuracy(
    denoiser: diffusion.Denoiser,
    schedule: diffusion.NoiseSchedule,
    judge: nn.Module,
    *,
    labels: torch.Tensor,
    cond: torch.Tensor | None = None,
    guidance: float = 1.0,
    method: str = "ddim",
    n_steps: int = 50,
    seed: int = 0,
) -> tuple[float, torch.Tensor]:
    """Generate one image per prompt and return (share the judge labels as prompted, images).

    `labels` (n,) are the prompted digits; `cond` (n, cond_dim) the condition vectors (default
    their one-hot vectors); guidance 0 samples unconditionally (the judge then agrees by chance)."""
    cond = diffusion.label_cond(labels) if cond is None else cond
    images = diffusion.sample(
        denoiser,
        schedule,
        len(labels),
        cond=cond,
        guidance=guidance,
        method=method,
        n_steps=n_steps,
        generator=torch.Generator().manual_seed(seed),
    )
    was_training = judge.training
    judge.eval()
    try:
        pred = judge(images.to(next(judge.parameters()).device))[0].argmax(-1).cpu()
    finally:
        judge.train(was_training)
    return float((pred == labels).float().mean()), images
