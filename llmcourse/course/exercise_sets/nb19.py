"""The exercises of notebook 19 (notebooks/19_multimodal.ipynb).

`exercises.check("19.<name>", fn)` imports this module on first use. Each reference is the package
function that does the job, imported from its topic module; a function defined here exists only for
its exercise.
"""

from __future__ import annotations

import random

import torch
import torch.nn.functional as F

from llmcourse.course.exercises import register, torch_generator
from llmcourse.diffusion import NoiseSchedule


# ---------------------------------------------------------------- llmcourse/vit.py
def unpatchify(patches: torch.Tensor, patch: int, size: int) -> torch.Tensor:
    """unpatchify(patches (B, N, ch*P*P), P, size) -> images (B, ch, size, size): the inverse of
    `vit.patchify`. Patches come in reading order (row by row), each flattened channel-major, so
    `unpatchify(patchify(x, P), P, x.shape[-1])` gives x back. A diffusion transformer (DiT) ends
    with this step: its output tokens become the image."""
    # fold is unfold's inverse when the windows do not overlap (stride = kernel = P)
    return F.fold(
        patches.transpose(1, 2), output_size=(size, size), kernel_size=patch, stride=patch
    )


def _unpatchify_inputs(rng: random.Random) -> tuple[torch.Tensor, int, int]:
    patch = rng.choice([1, 2, 4])
    size = patch * rng.randint(1, 4)
    ch = rng.randint(1, 3)
    n = (size // patch) ** 2
    g = torch_generator(rng)
    return torch.randn(rng.randint(1, 3), n, ch * patch * patch, generator=g), patch, size


register(
    "19.unpatchify",
    unpatchify,
    inputs=_unpatchify_inputs,
    compare="allclose",
    fixed=((torch.arange(16.0).view(1, 4, 4), 2, 4), (torch.arange(12.0).view(1, 1, 12), 2, 2)),
    hint="patch k sits at row k // (size // P), column k % (size // P); inside a patch the values are "
    "(channel, row, column) in that order: view as (B, H/P, W/P, ch, P, P), then permute to "
    "(B, ch, H/P, P, W/P, P) before the final reshape",
)


# ---------------------------------------------------------------- llmcourse/diffusion.py
def guided_noise(eps_cond: torch.Tensor, eps_uncond: torch.Tensor, w: float) -> torch.Tensor:
    """Classifier-free guidance: combine the noise predicted with the prompt (`eps_cond`) and
    without it (`eps_uncond`) into eps_uncond + w (eps_cond - eps_uncond). w = 0 ignores the
    prompt, w = 1 is the conditional model, w > 1 goes further in the prompt's direction."""
    return eps_uncond + w * (eps_cond - eps_uncond)


def _guided_inputs(rng: random.Random) -> tuple[torch.Tensor, torch.Tensor, float]:
    g = torch_generator(rng)
    shape = (rng.randint(1, 4), 1, 8, 8)
    return torch.randn(shape, generator=g), torch.randn(shape, generator=g), rng.uniform(0, 8)


register(
    "19.guided_noise",
    guided_noise,
    inputs=_guided_inputs,
    compare="allclose",
    fixed=((torch.ones(1, 2), torch.zeros(1, 2), 0.0), (torch.ones(1, 2), torch.zeros(1, 2), 3.0)),
    hint="start from the unconditional estimate and move w times the difference towards the "
    "conditional one; at w = 0 you must return eps_uncond exactly",
)


def ddim_step(x: torch.Tensor, eps: torch.Tensor, t: int, t_prev: int) -> torch.Tensor:
    """One deterministic DDIM step (eta = 0) on the linear schedule of 1,000 steps
    (`NoiseSchedule(1000)`, abar_t = its alphas_cumprod[t], and abar = 1 for t_prev = -1): estimate
    x0 from x_t and the predicted noise eps (invert x_t = sqrt(abar_t) x0 + sqrt(1 - abar_t) eps),
    then re-noise it to time t_prev with the same eps."""
    return _SCHEDULE.ddim_step(eps, t, x, t_prev=t_prev)


_SCHEDULE = NoiseSchedule(1000)


def _ddim_inputs(rng: random.Random) -> tuple[torch.Tensor, torch.Tensor, int, int]:
    g = torch_generator(rng)
    t = rng.randint(0, 999)
    t_prev = rng.randint(-1, t - 1)
    shape = (rng.randint(1, 3), 1, 8, 8)
    return torch.randn(shape, generator=g), torch.randn(shape, generator=g), t, t_prev


register(
    "19.ddim_step",
    ddim_step,
    inputs=_ddim_inputs,
    compare="allclose",
    rtol=1e-4,
    atol=1e-4,
    fixed=(
        (torch.ones(1, 4), torch.zeros(1, 4), 500, -1),
        (torch.ones(1, 4), torch.ones(1, 4), 0, -1),
    ),
    hint="x0_hat = (x - sqrt(1 - abar_t) eps) / sqrt(abar_t); return sqrt(abar_prev) x0_hat + "
    "sqrt(1 - abar_prev) eps, with abar_prev = 1 when t_prev = -1 (the last step lands on x0_hat)",
)
