"""The exercises of notebook 05 (notebooks/05_transformer.ipynb).

`exercises.check("05.<name>", fn)` imports this module on first use. Each reference is the package
function that does the job, imported from its topic module; a function defined here exists only for
its exercise.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from llmcourse.course.exercises import register, torch_generator
from llmcourse.layers import layer_norm, sinusoidal_positions
from llmcourse.transformer import decoder_mask


# ---------------------------------------------------------------- llmcourse/layers.py
register(
    "05.sinusoidal_positions",
    sinusoidal_positions,
    compare="allclose",
    atol=1e-5,
    inputs=lambda rng: (rng.randint(1, 20), 2 * rng.randint(1, 16)),
    fixed=((3, 4),),
    hint="even columns 2i hold sin(pos / 10000^(2i/C)), odd columns 2i+1 the cos of the same angle",
)


def _ln_inputs(rng):
    g = torch_generator(rng)
    C = rng.randint(2, 16)
    shape = [rng.randint(1, 4), C]
    return (
        torch.randn(shape, generator=g) * 5 + 3,
        torch.randn(C, generator=g),
        torch.randn(C, generator=g),
    )


register(
    "05.layer_norm",
    layer_norm,
    inputs=_ln_inputs,
    atol=1e-5,
    hint="normalise over the last dim with the biased variance (mean of squared deviations), eps=1e-5",
)


# ---------------------------------------------------------------- llmcourse/transformer.py
def _tgt_inputs(rng) -> tuple[torch.Tensor, int]:
    B, T, pad_id = rng.randint(1, 4), rng.randint(1, 8), rng.choice([0, 3])
    real = [v for v in range(10) if v != pad_id]
    rows = []
    for _ in range(B):
        n = rng.randint(1, T)  # real tokens first, then padding
        rows.append([rng.choice(real) for _ in range(n)] + [pad_id] * (T - n))
    return torch.tensor(rows), pad_id


register(
    "05.decoder_mask",
    decoder_mask,
    inputs=_tgt_inputs,
    compare="exact",
    fixed=((torch.tensor([[1, 5, 0, 0], [1, 5, 6, 7]]), 0),),
    hint="AND two masks: causal (key j <= query i) and padding on the *key* axis, "
    "(tgt_in != pad_id)[:, None, :]; a padded query row still sees its real past",
)


def _smoothing_inputs(rng) -> tuple[torch.Tensor, torch.Tensor, float]:
    g = torch_generator(rng)
    N, V = rng.randint(1, 6), rng.randint(2, 12)
    logits = torch.randn(N, V, generator=g) * rng.choice([1.0, 10.0, 100.0])
    return logits, torch.randint(0, V, (N,), generator=g), rng.choice([0.0, 0.1, 0.2, 0.3])


def label_smoothed_cross_entropy(
    logits: torch.Tensor, targets: torch.Tensor, eps: float
) -> torch.Tensor:
    """label_smoothed_cross_entropy(logits (N, V), targets (N,) int64, eps) -> scalar tensor: the
    mean over rows of (1 - eps) * -log p[target] + eps * mean over all V classes of -log p, as
    torch.nn.functional.cross_entropy(logits, targets, label_smoothing=eps)."""
    return F.cross_entropy(logits, targets, label_smoothing=eps)


register(
    "05.label_smoothing",
    label_smoothed_cross_entropy,
    inputs=_smoothing_inputs,
    rtol=1e-5,
    atol=1e-5,
    fixed=((torch.tensor([[1000.0, 0.0, -1000.0], [0.0, 0.0, 0.0]]), torch.tensor([0, 2]), 0.1),),
    hint="the target distribution is (1 - eps) on the target plus eps / V on *every* class (the target "
    "too); take log-probabilities with log_softmax (logsumexp), since log(softmax) of a very "
    "unlikely class is log(0) = -inf",
)
