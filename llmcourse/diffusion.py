"""Denoising diffusion in miniature: DDPM training, ancestral and DDIM sampling, guidance.

A diffusion model learns to undo noise (Ho et al. 2020, "Denoising Diffusion Probabilistic
Models"). The **forward process** mixes an image x0 with Gaussian noise in T small steps of
variance beta_t (linear from 1e-4 to 0.02, the paper's choice); in closed form

    x_t = sqrt(abar_t) x0 + sqrt(1 - abar_t) eps,   eps ~ N(0, I),   abar_t = prod_{s<=t} (1 - beta_s)

so at t = T-1 almost nothing of x0 is left. A network eps_theta(x_t, t, c) is trained to predict
the noise: loss = mean (eps_theta(x_t, t, c) - eps)^2 (the paper's "simple" loss, eq. 14). Always
predicting 0 scores E eps^2 = 1: the baseline a model must beat.

**Sampling** runs the process backwards from pure noise:
* `NoiseSchedule.ddpm_step` (ancestral, Ho et al. eq. 7 and Algorithm 2): estimate x0 from the predicted noise,
  take the mean of q(x_{t-1} | x_t, x0), add fresh noise of variance
  beta~_t = (1 - abar_{t-1}) / (1 - abar_t) * beta_t ("fixed_small"). T network calls.
* `NoiseSchedule.ddim_step` (Song et al. 2021, "Denoising Diffusion Implicit Models", eq. 12 with eta = 0): the
  same x0 estimate, moved deterministically to an earlier time that may be many steps back:
  x_prev = sqrt(abar_prev) x0_hat + sqrt(1 - abar_prev) eps_hat. 50 calls instead of 1000.
* **Conditioning**: the network also reads a condition vector c, here a one-hot label
  (`label_cond`) or a caption's embedding from the contrastive text encoder
  (`llmcourse.clip.CLIP.encode_text`). The all-zero vector means "no condition".
* **Classifier-free guidance** (Ho & Salimans 2022): train with the condition dropped (zeroed)
  for a fraction `p_uncond` of the examples, so one network learns eps(x, t, c) and eps(x, t).
  Sampling then extrapolates, eps_u + w (eps_c - eps_u): w = 0 ignores the prompt, w = 1 is the
  plain conditional model, w > 1 follows the prompt more closely at some cost in variety.

`NoiseSchedule` (its betas, `add_noise`, `ddpm_step` and `ddim_step`, named as diffusers' methods
`add_noise` and `step`) equals diffusers' `DDPMScheduler` and
`DDIMScheduler` (linear betas, epsilon prediction, clip_sample=False, variance "fixed_small", eta 0)
given the same betas, timesteps and noise: tests/test_diffusion.py checks it.
`Denoiser.forward(x, t, cond=None, targets=None) -> (eps_hat, loss)` trains with
`llmcourse.train.fit` on `denoising_batches`, which draws t, eps and the condition dropout.

References: Sohl-Dickstein et al. 2015 (diffusion); Ho et al. 2020 (DDPM); Song et al. 2021
(DDIM); Ho & Salimans 2022 (classifier-free guidance); Rombach et al. 2022 (latent diffusion,
Stable Diffusion: the same loop in a VAE's latent space with a U-Net and a CLIP text encoder).
Left out: the U-Net (convolutions at several resolutions with attention, Ronneberger et al. 2015;
8x8 digits need only the MLP below), learned variances, cosine schedules, v-prediction, latent
spaces, and cross-attention to every caption token (Stable Diffusion's way to condition).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn as nn
import torch.nn.functional as F

from llmcourse.config import Sized


@dataclass
class DiffusionConfig(Sized):
    n_timesteps: int = 1000  # T, steps of the forward process (Ho et al.: 1000)
    beta_start: float = 1e-4  # beta_1 of the linear schedule (Ho et al.)
    beta_end: float = 0.02  # beta_T
    image_size: int = 8  # side of the (square, one-channel) images
    cond_dim: int = 10  # length of the condition vector (10 = one-hot digit labels)
    hidden: int = 512  # width of the denoising MLP
    n_layer: int = 4  # residual blocks of the MLP
    p_uncond: float = 0.1  # share of training examples whose condition is dropped (for guidance)
    smoke_overrides = {"hidden": 256, "n_layer": 3}


class NoiseSchedule:
    """The linear beta schedule and its products: betas, alphas = 1 - betas, alphas_cumprod (abar).
    Float32, as diffusers computes them, so the two agree exactly.

    >>> s = NoiseSchedule(1000)
    >>> round(float(s.alphas_cumprod[0]), 4), round(float(s.alphas_cumprod[-1]), 5)
    (0.9999, 4e-05)
    """

    def __init__(
        self, n_timesteps: int = 1000, *, beta_start: float = 1e-4, beta_end: float = 0.02
    ):
        if n_timesteps < 2 or not 0 < beta_start < beta_end < 1:
            raise ValueError("use n_timesteps >= 2 and 0 < beta_start < beta_end < 1")
        self.n_timesteps = n_timesteps
        self.betas = torch.linspace(beta_start, beta_end, n_timesteps, dtype=torch.float32)
        self.alphas = 1.0 - self.betas
        self.alphas_cumprod = torch.cumprod(self.alphas, dim=0)  # abar_t: how much x0 survives

    @classmethod
    def from_config(cls, cfg: DiffusionConfig) -> "NoiseSchedule":
        return cls(cfg.n_timesteps, beta_start=cfg.beta_start, beta_end=cfg.beta_end)

    def abar(self, t: int) -> torch.Tensor:
        """abar_t, with abar_{-1} = 1 (before the first step nothing is noised)."""
        return self.alphas_cumprod[t] if t >= 0 else torch.tensor(1.0)

    def add_noise(self, x0: torch.Tensor, noise: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        """x_t = sqrt(abar_t) x0 + sqrt(1 - abar_t) noise, one t per row of x0 (B, ...)."""
        abar = self.alphas_cumprod.to(x0.device)[t]  # (B,)
        abar = abar.view(-1, *([1] * (x0.dim() - 1)))  # (B, 1, 1, 1): broadcast over the pixels
        return abar.sqrt() * x0 + (1.0 - abar).sqrt() * noise

    def ddpm_step(
        self,
        eps: torch.Tensor,
        t: int,
        x: torch.Tensor,
        *,
        noise: torch.Tensor | None = None,
        generator: torch.Generator | None = None,
    ) -> torch.Tensor:
        """One ancestral step x_t -> x_{t-1}, given the predicted noise `eps` (same shape as x).
        The added noise is `noise` if given, else drawn from `generator`; none is added at t = 0."""
        # 1. the abar's and betas of this step (abar_{-1} = 1)
        abar_t, abar_prev = self.abar(t), self.abar(t - 1)
        alpha_t = abar_t / abar_prev  # 1 - beta_t
        beta_t = 1.0 - alpha_t
        # 2. the x0 the network's noise estimate implies (invert the closed form of add_noise)
        x0_hat = (x - (1.0 - abar_t).sqrt() * eps) / abar_t.sqrt()
        # 3. the mean of q(x_{t-1} | x_t, x0): a weighted average of x0_hat and x_t (Ho et al. eq. 7)
        mean = (abar_prev.sqrt() * beta_t / (1.0 - abar_t)) * x0_hat + (
            alpha_t.sqrt() * (1.0 - abar_prev) / (1.0 - abar_t)
        ) * x
        if t == 0:
            return mean  # the last step adds no noise
        # 4. plus fresh noise of the posterior's variance beta~_t ("fixed_small")
        var = ((1.0 - abar_prev) / (1.0 - abar_t) * beta_t).clamp(min=1e-20)
        if noise is None:
            noise = torch.randn(x.shape, generator=generator, dtype=x.dtype).to(x.device)
        return mean + var.sqrt() * noise

    def ddim_step(self, eps: torch.Tensor, t: int, x: torch.Tensor, *, t_prev: int) -> torch.Tensor:
        """One deterministic DDIM step (eta = 0) from time t to the earlier time t_prev (-1 = the end)."""
        abar_t, abar_prev = self.abar(t), self.abar(t_prev)
        # 1. the x0 the predicted noise implies, as in ddpm_step
        x0_hat = (x - (1.0 - abar_t).sqrt() * eps) / abar_t.sqrt()
        # 2. re-noise it to the level of t_prev with the *same* noise direction: no fresh randomness
        return abar_prev.sqrt() * x0_hat + (1.0 - abar_prev).sqrt() * eps


def ddim_timesteps(n_timesteps: int, n_steps: int) -> list[int]:
    """The n_steps times a DDIM sampler visits, evenly spaced and descending, as diffusers'
    "leading" spacing: 0, k, 2k, ... reversed, k = n_timesteps // n_steps.

    >>> ddim_timesteps(1000, 4)
    [750, 500, 250, 0]
    """
    if not 1 <= n_steps <= n_timesteps:
        raise ValueError(f"n_steps={n_steps}: use 1 to {n_timesteps} sampling steps")
    k = n_timesteps // n_steps
    return [i * k for i in range(n_steps)][::-1]


def timestep_embedding(t: torch.Tensor, dim: int) -> torch.Tensor:
    """(B,) times -> (B, dim) sines and cosines at geometrically spaced frequencies (the
    Transformer's positional encoding, applied to the diffusion time; Ho et al. use the same)."""
    half = dim // 2
    freq = torch.exp(-math.log(10000.0) * torch.arange(half, device=t.device) / half)  # (half,)
    angles = t.float()[:, None] * freq[None, :]  # (B, half)
    return torch.cat([angles.sin(), angles.cos()], dim=-1)  # (B, dim)


class ResidualBlock(nn.Module):
    """h + W2 SiLU(W1 LN(h) + emb): the time-and-condition embedding enters every block."""

    def __init__(self, hidden: int):
        super().__init__()
        self.norm = nn.LayerNorm(hidden)
        self.fc1, self.fc2 = nn.Linear(hidden, hidden), nn.Linear(hidden, hidden)

    def forward(self, h: torch.Tensor, emb: torch.Tensor) -> torch.Tensor:
        return h + self.fc2(F.silu(self.fc1(self.norm(h)) + emb))


class Denoiser(nn.Module):
    """eps_theta(x_t, t, c): an MLP over the flattened image, told t and the condition c.

    forward(x (B, 1, S, S), t (B,), cond (B, cond_dim) or None, targets=None) -> (eps_hat, loss),
    loss = mean squared error against the true noise `targets`. cond None (or a zero row) means
    unconditional."""

    def __init__(self, cfg: DiffusionConfig):
        super().__init__()
        self.cfg = cfg
        D, H = cfg.image_size**2, cfg.hidden
        self.inp = nn.Linear(D, H)
        self.time_mlp = nn.Sequential(nn.Linear(H, H), nn.SiLU(), nn.Linear(H, H))
        self.cond_proj = nn.Linear(cfg.cond_dim, H)  # its bias alone = the "no condition" vector
        self.blocks = nn.ModuleList(ResidualBlock(H) for _ in range(cfg.n_layer))
        self.final_norm = nn.LayerNorm(H)
        self.out = nn.Linear(H, D)
        nn.init.zeros_(self.out.weight), nn.init.zeros_(self.out.bias)  # starts at the baseline 0

    def forward(
        self,
        x: torch.Tensor,
        t: torch.Tensor,
        cond: torch.Tensor | None = None,
        targets: torch.Tensor | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        B = x.size(0)
        if cond is None:
            cond = x.new_zeros(B, self.cfg.cond_dim)
        if cond.shape != (B, self.cfg.cond_dim):
            raise ValueError(f"cond must be (B, {self.cfg.cond_dim}), got {tuple(cond.shape)}")
        # 1. one embedding for "when" (t) and "what" (the condition), added together
        emb = self.time_mlp(timestep_embedding(t, self.cfg.hidden)) + self.cond_proj(cond)  # (B, H)
        # 2. the flattened noisy image through the residual MLP, reading emb in every block
        h = self.inp(x.flatten(1))  # (B, S*S) -> (B, H)
        for block in self.blocks:
            h = block(h, emb)
        eps = self.out(self.final_norm(h)).view_as(x)  # (B, 1, S, S): the predicted noise
        loss = F.mse_loss(eps, targets) if targets is not None else None
        return eps, loss


def label_cond(labels: torch.Tensor, n_classes: int = 10) -> torch.Tensor:
    """(B,) int labels -> (B, n_classes) one-hot float condition vectors."""
    return F.one_hot(labels.long(), n_classes).float()


def to_model_space(images: torch.Tensor) -> torch.Tensor:
    """Pixels in [0, 1] -> [-1, 1], the range the noise schedule assumes (unit-scale data)."""
    return images * 2.0 - 1.0


def to_pixels(x: torch.Tensor) -> torch.Tensor:
    """[-1, 1] -> pixels in [0, 1], clamped."""
    return ((x + 1.0) / 2.0).clamp(0.0, 1.0)


def denoising_batches(
    images: torch.Tensor,
    cond: torch.Tensor,
    schedule: NoiseSchedule,
    *,
    batch_size: int = 128,
    p_uncond: float = 0.1,
):
    """A sampler for `train.fit`: sample(generator) -> dict(x=x_t, t, cond, targets=eps).

    images (N, 1, S, S) in [0, 1], cond (N, cond_dim). Each draw: random images, random times t,
    fresh noise eps, x_t = add_noise(x0, eps, t); the condition of each row is zeroed with
    probability p_uncond (classifier-free guidance's condition dropout)."""
    if not 0.0 <= p_uncond < 1.0:
        raise ValueError(f"p_uncond={p_uncond}: use a probability in [0, 1)")
    x0_all = to_model_space(images)

    def sample(generator: torch.Generator) -> dict[str, torch.Tensor]:
        idx = torch.randint(len(x0_all), (batch_size,), generator=generator)
        t = torch.randint(schedule.n_timesteps, (batch_size,), generator=generator)
        eps = torch.randn(x0_all[idx].shape, generator=generator)
        keep = (torch.rand(batch_size, generator=generator) >= p_uncond).float()[:, None]
        x_t = schedule.add_noise(x0_all[idx], eps, t)
        return {"x": x_t, "t": t, "cond": cond[idx] * keep, "targets": eps}

    return sample


def guided_eps(
    model: Denoiser, x: torch.Tensor, t: int, *, cond: torch.Tensor | None, guidance: float
) -> torch.Tensor:
    """eps_u + w (eps_c - eps_u), the classifier-free guided noise estimate (one batched call).
    cond None, or w = 1, needs a single call; w = 0 is the unconditional model."""
    tt = torch.full((x.size(0),), t, dtype=torch.long, device=x.device)
    if cond is None or guidance == 1.0:
        return model(x, tt, cond)[0]
    both = model(torch.cat([x, x]), torch.cat([tt, tt]), torch.cat([cond, torch.zeros_like(cond)]))[
        0
    ]
    eps_c, eps_u = both.chunk(2)
    return eps_u + guidance * (eps_c - eps_u)


@torch.no_grad()
def sample(
    model: Denoiser,
    schedule: NoiseSchedule,
    n: int,
    *,
    cond: torch.Tensor | None = None,
    guidance: float = 1.0,
    method: str = "ddim",
    n_steps: int = 50,
    generator: torch.Generator | None = None,
    return_path: bool = False,
) -> torch.Tensor | tuple[torch.Tensor, list[torch.Tensor]]:
    """n images (n, 1, S, S) in [0, 1], generated from pure noise.

    method "ddpm" walks all T steps with fresh noise at each (`ddpm_step`); "ddim" visits n_steps
    times deterministically (`ddim_step`). `cond` (n, cond_dim) or None; `guidance` w as in
    `guided_eps`. With return_path, also the list of intermediate x's (in [-1, 1])."""
    if method not in ("ddpm", "ddim"):
        raise ValueError(f"method={method!r}: use 'ddpm' or 'ddim'")
    was_training = model.training
    model.eval()
    device = next(model.parameters()).device
    S = model.cfg.image_size
    cond = cond.to(device) if cond is not None else None
    x = torch.randn((n, 1, S, S), generator=generator).to(device)  # x_T: pure noise
    path = [x]
    times = (
        list(range(schedule.n_timesteps))[::-1]
        if method == "ddpm"
        else ddim_timesteps(schedule.n_timesteps, n_steps)
    )
    try:
        for i, t in enumerate(times):
            eps = guided_eps(model, x, t, cond=cond, guidance=guidance)
            if method == "ddpm":
                x = schedule.ddpm_step(eps, t, x, generator=generator)
            else:
                t_prev = times[i + 1] if i + 1 < len(times) else -1
                x = schedule.ddim_step(eps, t, x, t_prev=t_prev)
            if return_path:
                path.append(x)
    finally:
        model.train(was_training)
    return (to_pixels(x), path) if return_path else to_pixels(x)
