"""Around a pretraining run: what it costs, how to watch it, and how loss scales with size.

Three small tools that notebook 08 (and the later fine-tuning notebooks) use next to `train.fit`:

* **Compute.** Training a dense Transformer with N parameters on D tokens costs about 6·N·D
  floating-point operations: 2·N per token for the forward pass (one multiply and one add per
  weight) and twice that for the backward pass (gradients with respect to activations and to
  weights). Attention over a context of T tokens adds 12·n_layer·T·n_embd per token (Kaplan et
  al. 2020, "Scaling Laws for Neural Language Models", Table 1; Chowdhery et al. 2022, PaLM,
  appendix B). Dividing by what a GPU really sustains, its peak times the *model FLOPs
  utilisation* (MFU, typically 30-50% for well-tuned large models, less for small ones), gives a
  time estimate — an estimate, never a promise.
* **Callbacks** for `fit`: `SamplePrinter` prints a sample every few evaluations, so you watch the
  model go from noise to words; `StopAt` stops a run at a given step, or kills it there
  (`crash=True`), which is how the notebook simulates a Colab disconnect before resuming.
* **Baseline.** `unigram_loss` is the loss of a model that knows only how often each token
  occurs: the line a trained model's validation loss must fall well below.
* **Scaling.** Validation loss against parameters is close to a straight line on log-log axes
  over a range of sizes (Kaplan et al. 2020): `fit_power_law` fits L = a·N^b by least squares on
  the logarithms. Left out: the irreducible-loss term of Hoffmann et al. (2022, "Chinchilla"),
  which needs many more sizes to pin down, and data-size scaling.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import torch

from llmcourse.generate import generate
from llmcourse.train import TrainConfig, lr_at

# Dense fp16/bf16 tensor-core peaks in TFLOP/s from the vendors' data sheets (no sparsity).
PEAK_TFLOPS = {"T4": 65.0, "V100": 125.0, "L4": 121.0, "A10G": 125.0, "A100": 312.0, "H100": 989.0}


def flops_per_token(n_params: int, *, n_layer: int, block_size: int, n_embd: int) -> float:
    """Training FLOPs per token: 6·N for the weights plus 12·n_layer·T·n_embd for attention.

    N should exclude the position embeddings (a lookup, no multiply): `model.num_params(True)`.
    >>> flops_per_token(1_000, n_layer=1, block_size=10, n_embd=4)   # 6000 + 12*1*10*4
    6480.0
    """
    return 6.0 * n_params + 12.0 * n_layer * block_size * n_embd


def train_seconds(total_flops: float, peak_tflops: float, mfu: float = 0.3) -> float:
    """Wall-clock seconds for `total_flops` on a device sustaining `mfu` of its peak.

    >>> train_seconds(6e15, peak_tflops=100.0, mfu=0.5)   # 6e15 / (0.5 * 1e14)
    120.0
    """
    if not 0.0 < mfu <= 1.0:
        raise ValueError(f"mfu={mfu} must be in (0, 1]")
    return total_flops / (peak_tflops * 1e12 * mfu)


def fit_power_law(x: Sequence[float], y: Sequence[float]) -> tuple[float, float]:
    """Least-squares fit of y = a·x^b on log-log axes; returns (a, b).

    >>> a, b = fit_power_law([1, 10, 100], [2.0, 1.0, 0.5])   # halves per decade
    >>> round(a, 6), round(b, 6)
    (2.0, -0.30103)
    """
    if len(x) != len(y) or len(x) < 2:
        raise ValueError("need at least two (x, y) points of equal count")
    lx = [math.log(v) for v in x]
    ly = [math.log(v) for v in y]
    mx, my = sum(lx) / len(lx), sum(ly) / len(ly)
    sxx = sum((v - mx) ** 2 for v in lx)
    if sxx == 0:
        raise ValueError("all x are equal: no slope to fit")
    b = sum((u - mx) * (v - my) for u, v in zip(lx, ly)) / sxx
    return math.exp(my - b * mx), b


def unigram_loss(
    train_ids: Sequence[int] | torch.Tensor, val_ids: Sequence[int] | torch.Tensor, vocab_size: int
) -> float:
    """Mean cross-entropy (nats per token) of `val_ids` under token frequencies counted on `train_ids`.

    The baseline a language model must beat: it knows how often each token occurs, nothing about
    context. Counts are add-one smoothed, so a token unseen in training costs a finite amount.
    >>> round(unigram_loss([0, 0, 0, 1], [0, 1], vocab_size=2), 4)   # p = (4/6, 2/6): -(ln 4/6 + ln 2/6) / 2
    0.752
    """
    counts = (
        torch.bincount(torch.as_tensor(train_ids).long().flatten(), minlength=vocab_size).double()
        + 1
    )
    log_p = (counts / counts.sum()).log()
    return float(-log_p[torch.as_tensor(val_ids).long().flatten()].mean())


class SamplePrinter:
    """A `fit` callback: at the first evaluation and every `every`-th, print the step, the loss and a sample.

    `decode` turns token ids into text (a vocabulary's or tokenizer's `decode`). Sampling uses its
    own seeded generator, so it never disturbs the training run's random state.
    """

    def __init__(
        self,
        model: torch.nn.Module,
        decode: Callable[[list[int]], str],
        prompt_ids: list[int],
        max_new_tokens: int = 120,
        every: int = 1,
        temperature: float = 0.8,
        seed: int = 0,
        printer: Callable[[str], None] = print,
    ):
        self.model, self.decode, self.prompt = model, decode, prompt_ids
        self.max_new_tokens, self.every, self.temperature, self.seed = (
            max_new_tokens,
            every,
            temperature,
            seed,
        )
        self.printer = printer
        self.evals = 0

    def on_eval(self, step: int, history) -> None:
        self.evals += 1
        if (
            self.evals != 1 and self.evals % self.every
        ):  # the first evaluation, then every `every`-th
            return
        device = next(self.model.parameters()).device
        idx = torch.tensor([self.prompt], device=device)
        gen = torch.Generator(device=device).manual_seed(self.seed)
        out = generate(
            self.model, idx, self.max_new_tokens, generator=gen, temperature=self.temperature
        )
        text = self.decode(out[0, len(self.prompt) :].tolist())
        self.printer(f"--- step {step}, val loss {history.val_loss[-1]:.3f} ---\n{text}")


class SimulatedDisconnect(RuntimeError):
    """Raised by `StopAt(..., crash=True)`: the run dies the way a lost Colab runtime kills it."""


class StopAt:
    """A `fit` callback that ends training after step `step`.

    By default it asks `fit` to stop (fit then saves a checkpoint at that step). With `crash=True`
    it raises `SimulatedDisconnect` instead, so nothing more is saved: like a real disconnect, the
    work since the last periodic checkpoint is lost and a resumed run redoes it.
    """

    def __init__(self, step: int, crash: bool = False):
        self.step, self.crash = step, crash

    def on_step(self, step: int, history) -> bool:
        if step >= self.step and self.crash:
            raise SimulatedDisconnect(f"simulated disconnect after step {step}")
        return step >= self.step


# ------------------------------------------------------------------------- checked by notebook 08's exercises
def bits_per_char(loss: float, n_tokens: int, n_chars: int) -> float:
    """bits_per_char(loss, n_tokens, n_chars) -> float: a mean loss in nats per token as bits per character.

    Losses of models with different tokenizers are only comparable per character (or byte) of the
    same text: a token of 3 characters is harder to predict than one character.
    >>> bits_per_char(math.log(2), n_tokens=10, n_chars=20)   # 1 bit per token, 2 characters per token
    0.5
    """
    return loss * n_tokens / n_chars / math.log(2)


def lr_schedule(
    step: int, max_steps: int, *, warmup_steps: int, lr: float, min_lr_ratio: float
) -> float:
    """lr_schedule(step, max_steps, warmup_steps, lr, min_lr_ratio) -> the learning rate of step `step`
    (from 0): a linear warmup lr·(step + 1)/warmup_steps, then a cosine from lr down to
    lr·min_lr_ratio at max_steps, flat after it; the schedule `llmcourse.train.fit` uses."""
    return lr_at(
        step,
        TrainConfig(
            lr=lr, min_lr_ratio=min_lr_ratio, warmup_steps=warmup_steps, max_steps=max_steps
        ),
    )
