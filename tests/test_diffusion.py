"""llmcourse.diffusion: schedule, add_noise and sampler steps equal diffusers'; the denoiser learns."""

from __future__ import annotations

import pytest
import torch
from diffusers import DDIMScheduler, DDPMScheduler

from llmcourse import diffusion as D
from llmcourse.tasks import digits
from llmcourse.train import TrainConfig, estimate_loss, fit

T = 1000


def _ddpm() -> DDPMScheduler:
    return DDPMScheduler(
        num_train_timesteps=T,
        beta_start=1e-4,
        beta_end=0.02,
        beta_schedule="linear",
        variance_type="fixed_small",
        clip_sample=False,
        prediction_type="epsilon",
    )


def test_schedule_and_add_noise_equal_diffusers():
    ours, ref = D.NoiseSchedule(T), _ddpm()
    torch.testing.assert_close(ours.betas, ref.betas, rtol=0, atol=0)
    torch.testing.assert_close(ours.alphas_cumprod, ref.alphas_cumprod, rtol=0, atol=0)
    g = torch.Generator().manual_seed(0)
    x0, noise = torch.randn(6, 1, 8, 8, generator=g), torch.randn(6, 1, 8, 8, generator=g)
    t = torch.tensor([0, 1, 10, 500, 998, 999])
    torch.testing.assert_close(
        ours.add_noise(x0, noise, t), ref.add_noise(x0, noise, t), rtol=1e-6, atol=1e-6
    )


@pytest.mark.parametrize("t", [999, 500, 1, 0])
def test_one_ddpm_step_equals_diffusers_with_the_same_noise(t):
    ours, ref = D.NoiseSchedule(T), _ddpm()
    ref.set_timesteps(T)  # every timestep: the previous one of t is t - 1
    g = torch.Generator().manual_seed(1)
    x, eps = torch.randn(4, 1, 8, 8, generator=g), torch.randn(4, 1, 8, 8, generator=g)
    # diffusers draws the step's noise from its generator; ours takes the same draw
    expected = ref.step(eps, t, x, generator=torch.Generator().manual_seed(7)).prev_sample
    noise = torch.randn(x.shape, generator=torch.Generator().manual_seed(7))
    torch.testing.assert_close(ours.ddpm_step(eps, t, x, noise=noise), expected)
    # ... and the same from the generator itself
    got = ours.ddpm_step(eps, t, x, generator=torch.Generator().manual_seed(7))
    torch.testing.assert_close(got, expected)
    # the mean alone (no noise) is what diffusers returns at t = 0
    if t == 0:
        torch.testing.assert_close(ours.ddpm_step(eps, 0, x), expected)


@pytest.mark.parametrize("n_steps", [50, 10])
def test_ddim_steps_equal_diffusers_eta_zero(n_steps):
    ours = D.NoiseSchedule(T)
    ref = DDIMScheduler(
        num_train_timesteps=T,
        beta_start=1e-4,
        beta_end=0.02,
        beta_schedule="linear",
        clip_sample=False,
        set_alpha_to_one=True,
        prediction_type="epsilon",
    )
    ref.set_timesteps(n_steps)
    times = D.ddim_timesteps(T, n_steps)
    assert times == ref.timesteps.tolist()
    g = torch.Generator().manual_seed(2)
    x = torch.randn(4, 1, 8, 8, generator=g)
    for t in times[:3] + times[-2:]:  # the first steps and the last two
        j = times.index(t)
        t_prev = times[j + 1] if j + 1 < len(times) else -1
        eps = torch.randn(x.shape, generator=g)
        expected = ref.step(eps, t, x, eta=0.0).prev_sample
        torch.testing.assert_close(ours.ddim_step(eps, t, x, t_prev=t_prev), expected)


def test_guidance_interpolates_and_extrapolates():
    torch.manual_seed(0)
    cfg = D.DiffusionConfig.for_size("smoke", hidden=32, n_layer=1)
    model = D.Denoiser(cfg).eval()
    for p in model.out.parameters():  # the output layer starts at zero: give it weights
        torch.nn.init.normal_(p, std=0.1)
    x, cond = torch.randn(3, 1, 8, 8), D.label_cond(torch.tensor([1, 4, 7]))
    tt = torch.full((3,), 50)
    with torch.no_grad():
        eps_c, eps_u = model(x, tt, cond)[0], model(x, tt)[0]
        torch.testing.assert_close(D.guided_eps(model, x, 50, cond=cond, guidance=0.0), eps_u)
        torch.testing.assert_close(D.guided_eps(model, x, 50, cond=cond, guidance=1.0), eps_c)
        w3 = D.guided_eps(model, x, 50, cond=cond, guidance=3.0)
        torch.testing.assert_close(w3, eps_u + 3.0 * (eps_c - eps_u), rtol=1e-5, atol=1e-5)
    with pytest.raises(ValueError, match="cond must be"):
        model(x, tt, torch.zeros(3, 5))


def test_denoising_batches_drop_the_condition_at_the_stated_rate():
    s = D.NoiseSchedule(T)
    images = torch.rand(50, 1, 8, 8)
    sampler = D.denoising_batches(
        images, D.label_cond(torch.arange(50) % 10), s, batch_size=4000, p_uncond=0.25
    )
    batch = sampler(torch.Generator().manual_seed(0))
    dropped = (batch["cond"].sum(1) == 0).float().mean().item()
    assert dropped == pytest.approx(0.25, abs=0.03)
    assert batch["x"].shape == (4000, 1, 8, 8) and batch["t"].max() < T


def test_denoiser_beats_the_predict_zero_baseline_on_held_out_digits():
    train, test = digits.load_digits_split(seed=0)
    cfg = D.DiffusionConfig.for_size("smoke")
    s = D.NoiseSchedule.from_config(cfg)
    torch.manual_seed(0)
    model = D.Denoiser(cfg)
    val = D.denoising_batches(
        test.images, D.label_cond(test.labels), s, batch_size=256, p_uncond=0.0
    )
    before = estimate_loss(model, val, 4)
    # the output layer starts at zero, so the untrained model IS the predict-zero baseline: E eps^2
    assert before == pytest.approx(1.0, abs=0.05)
    tc = TrainConfig.for_size(
        "smoke", max_steps=150, lr=2e-3, warmup_steps=20, eval_every=0, weight_decay=0.0
    )
    fit(model, D.denoising_batches(train.images, D.label_cond(train.labels), s), tc, progress=False)
    after = estimate_loss(model, val, 4)
    # measured: 0.12 after 150 steps (1500 steps reach 0.086)
    assert after < 0.5, (before, after)


def test_sampling_shapes_ranges_and_determinism():
    torch.manual_seed(0)
    cfg = D.DiffusionConfig.for_size("smoke", hidden=32, n_layer=1, n_timesteps=20)
    model, s = D.Denoiser(cfg), D.NoiseSchedule(20)
    cond = D.label_cond(torch.tensor([3, 7]))
    a = D.sample(
        model, s, 2, cond=cond, guidance=2.0, n_steps=5, generator=torch.Generator().manual_seed(0)
    )
    b = D.sample(
        model, s, 2, cond=cond, guidance=2.0, n_steps=5, generator=torch.Generator().manual_seed(0)
    )
    assert a.shape == (2, 1, 8, 8) and 0.0 <= a.min() and a.max() <= 1.0
    assert torch.equal(a, b)  # DDIM is deterministic given the starting noise
    x, path = D.sample(model, s, 2, method="ddpm", return_path=True)
    assert len(path) == 21 and x.shape == (2, 1, 8, 8)
    with pytest.raises(ValueError, match="ddpm"):
        D.sample(model, s, 2, method="euler")


def test_doctests():
    import doctest

    assert doctest.testmod(D).failed == 0
