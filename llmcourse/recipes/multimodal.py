"""The multimodal lesson's experiments in one place: ViT, CLIP, prompted diffusion and a captioner.

One configuration decides the data split, every model's size and every stage's steps, so a notebook
narrates and this module computes:

    cfg = MultimodalConfig.for_size()
    train, test = load_images(cfg)     # smoke: the 8x8 digits; full: MNIST (28x28, downloaded once)
    classifier, _ = train_classifier(cfg, train, kind="vit")     # also "cnn"
    clip_model, _ = train_clip(cfg, train)
    denoiser, schedule, _ = train_denoiser(cfg, train, cond=diffusion.label_cond(train.labels))
    rate, images = prompted_accuracy(denoiser, schedule, judge, labels=labels, guidance=3.0)
    captioner, _ = train_captioner(cfg, train, vision=classifier)

Every stage trains with `llmcourse.train.fit` from its own seed. `prompted_accuracy` asks an
independently trained classifier (the "judge", e.g. the SmallCNN) whether samples prompted with
digit k look like a k: the share it labels k, 10% being chance.

The data set is part of the configuration: the smoke size trains on scikit-learn's 8x8 digits
(offline, `llmcourse.tasks.digits`), the full size on MNIST's 28x28 digits (`llmcourse.tasks.mnist`,
downloaded once), with ViT patches of 4 pixels (49 tokens); every model takes its image size from
`image_size` (ViT positions, the SmallCNN's head, the denoiser's input of image_size**2 pixels).
`stable_diffusion` runs a real text-to-image pipeline through `diffusers` where it can (a CUDA GPU,
the network), and otherwise says in one line why not.
Left out: FID and other sample-quality metrics, and a U-Net denoiser for the larger images.
"""

from __future__ import annotations

from dataclasses import dataclass
from importlib.util import find_spec

import torch
import torch.nn as nn

from llmcourse import clip, diffusion, llava, vit
from llmcourse.config import Sized
from llmcourse.gpt import GPT, GPTConfig
from llmcourse.tasks import digits, mnist
from llmcourse.train import History, TrainConfig, fit


@dataclass
class MultimodalConfig(Sized):
    dataset: str = (
        "mnist"  # "mnist" (28x28, 60,000 / 10,000, downloaded) or "digits" (8x8, offline)
    )
    image_size: int = 28  # pixels per side of the data set's images
    patch_size: int = 4  # the ViT's patch side: (28 / 4)^2 = 49 tokens
    test_fraction: float = 0.2  # held-out share of the 1,797 8x8 digits (MNIST has its own split)
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
        "dataset": "digits",
        "image_size": 8,
        "patch_size": 2,
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


def load_images(cfg: MultimodalConfig) -> tuple[digits.Digits, digits.Digits]:
    """(train, test) of the configured data set: the 8x8 digits split by `test_fraction` and `seed`,
    or MNIST's own split (`mnist.load_mnist_split`: offline without a cached copy, one warning line
    and the 8x8 digits scaled up to 28x28)."""
    if cfg.dataset == "digits":
        data = digits.load_digits_split(test_fraction=cfg.test_fraction, seed=cfg.seed)
    elif cfg.dataset == "mnist":
        data = mnist.load_mnist_split()
    else:
        raise ValueError(f"dataset={cfg.dataset!r}: use 'digits' (8x8, offline) or 'mnist'")
    size = data[0].images.shape[-1]
    if size != cfg.image_size:
        raise ValueError(f"{cfg.dataset} images are {size}x{size}: set image_size={size}")
    return data


def _vit_config(cfg: MultimodalConfig) -> vit.ViTConfig:
    return vit.ViTConfig.for_size(image_size=cfg.image_size, patch_size=cfg.patch_size)


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
    """A ViT (`kind="vit"`, `vit.ViTConfig.for_size()` at the configured image and patch size) or
    the SmallCNN ("cnn") on the labels."""
    if kind not in ("vit", "cnn"):
        raise ValueError(f"kind={kind!r}: use 'vit' or 'cnn'")
    torch.manual_seed(cfg.seed)
    model = vit.ViT(_vit_config(cfg)) if kind == "vit" else vit.SmallCNN(size=cfg.image_size)
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
    model = clip.CLIP(clip.CLIPConfig.for_size(), vit.ViT(_vit_config(cfg)))
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
    dcfg = diffusion.DiffusionConfig.for_size(cond_dim=cond.shape[1], image_size=cfg.image_size)
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


SD_MODEL = (
    "stabilityai/sd-turbo"  # about 2.5 GB in fp16; distilled to one denoising step, no guidance
)


def stable_diffusion(
    prompt: str, runtime, *, model: str = SD_MODEL, steps: int = 1
) -> tuple[object, dict[str, int]] | None:
    """A real text-to-image model, for comparison with our miniature: (PIL image, parameter counts of
    its text encoder, U-Net and VAE), or None after one printed line saying why it cannot run here
    (no CUDA GPU, an offline switch on, or diffusers missing). HF_ENDPOINT (a mirror) is honoured."""
    from llmcourse.data.fetch import is_offline

    switch = is_offline()
    if runtime.device.type != "cuda":
        why = "no CUDA GPU"
    elif switch:
        why = f"offline: {switch} is set"
    elif find_spec("diffusers") is None:
        why = "diffusers is not installed: pip install diffusers"
    else:
        why = None
    if why:
        print(f"skipped: a real Stable Diffusion run needs a CUDA GPU and the network ({why}).")
        return None
    from diffusers import AutoPipelineForText2Image

    pipe = AutoPipelineForText2Image.from_pretrained(
        model, torch_dtype=torch.float16, variant="fp16"
    ).to("cuda")
    sizes = {
        part: sum(p.numel() for p in getattr(pipe, part).parameters())
        for part in ("text_encoder", "unet", "vae")  # the text encoder, the denoiser, the VAE
    }
    image = pipe(prompt=prompt, num_inference_steps=steps, guidance_scale=0.0).images[0]
    return image, sizes
