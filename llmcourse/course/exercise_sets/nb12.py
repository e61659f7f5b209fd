"""The exercises of notebook 12 (notebooks/12_peft.ipynb).

`exercises.check("12.<name>", fn)` imports this module on first use. Each reference is the package
function that does the job, imported from its topic module; a function defined here exists only for
its exercise.
"""

from __future__ import annotations

import random

import torch

from llmcourse.course.exercises import register, torch_generator
from llmcourse.lora import lora_param_count, merged_weight
from llmcourse.prefix_tuning import split_prefix
from llmcourse.ptuning import prepend_virtual_tokens
from llmcourse.recipes.peft_compare import lora_forward


# ---------------------------------------------------------------- llmcourse/lora.py
_GPT_LINEARS = (
    ("attn.qkv", 3, 1),
    ("attn.proj", 1, 1),
    ("mlp.fc", 4, 1),
    ("mlp.proj", 1, 4),
)  # (name, out/C, in/C)


_TARGETS = ("qkv", "proj", "fc", "attn.proj", "mlp.proj", "attn", "lm_head")


def _count_inputs(rng: random.Random) -> tuple[list[tuple[str, int, int]], list[str], int]:
    C = rng.choice([8, 64, 768])
    layers = [
        (f"blocks.{i}.{name}", o * C, n * C)
        for i in range(rng.randint(1, 3))
        for name, o, n in _GPT_LINEARS
    ]
    if rng.random() < 0.5:
        layers.append(("lm_head", rng.choice([65, 50257]), C))
    return layers, rng.sample(_TARGETS, rng.randint(1, 3)), rng.choice([1, 4, 8, 16])


register(
    "12.lora_param_count",
    lora_param_count,
    inputs=_count_inputs,
    compare="exact",
    fixed=(
        ([("blocks.0.attn.qkv", 96, 32), ("blocks.0.attn.proj", 32, 32)], ["qkv"], 4),
        (
            [("h.0.attn.c_attn", 96, 32), ("h.0.attn.c_proj", 32, 32), ("h.0.mlp.c_proj", 32, 128)],
            ["c_proj", "attn"],
            8,
        ),
    ),
    hint="A is (r, in) and B is (out, r): r * (in + out) per adapted layer; a target matches the whole "
    "name or its last components after a '.', so 'proj' matches 'attn.proj' but not 'attn.c_proj'",
)


def _merge_inputs(rng: random.Random) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, float]:
    g = torch_generator(rng)
    d_in, d_out, r = rng.randint(1, 9), rng.randint(1, 9), rng.randint(1, 8)
    return (
        torch.randn(d_out, d_in, generator=g),
        torch.randn(r, d_in, generator=g),
        torch.randn(d_out, r, generator=g),
        rng.choice([1.0, 8.0, 16.0, 32.0]),
    )


register(
    "12.merged_weight",
    merged_weight,
    inputs=_merge_inputs,
    rtol=1e-5,
    atol=1e-5,
    fixed=((torch.eye(2, 3), torch.ones(2, 3), torch.ones(2, 2), 16.0),),
    hint="the update is B @ A, shaped (out, in) like W, times alpha / r, with r = A.shape[0]",
)


# ---------------------------------------------------------------- llmcourse/ptuning.py
def _prepend_inputs(
    rng: random.Random,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    g = torch_generator(rng)
    P, B, T, C = rng.randint(1, 4), rng.randint(1, 3), rng.randint(1, 6), rng.randint(2, 5)
    lengths = [rng.randint(1, T) for _ in range(B)]  # right padding after each row's real tokens
    mask = torch.tensor([[1] * n + [0] * (T - n) for n in lengths])
    labels = torch.randint(0, 50, (B, T), generator=g).masked_fill(mask == 0, -100)
    return torch.randn(P, C, generator=g), torch.randn(B, T, C, generator=g), mask, labels


register(
    "12.prepend_virtual_tokens",
    prepend_virtual_tokens,
    inputs=_prepend_inputs,
    fixed=(
        (
            torch.ones(2, 2),
            torch.zeros(2, 3, 2),
            torch.tensor([[1, 1, 0], [1, 1, 1]]),
            torch.tensor([[5, 6, -100], [7, 8, 9]]),
        ),
    ),
    hint="torch.cat on dim 1, virtual tokens FIRST: prompt.expand(B, P, C) before the embeddings, "
    "ones before the mask (the model must attend to them), -100 before the labels (no loss there)",
)


# ---------------------------------------------------------------- llmcourse/prefix_tuning.py
def _split_inputs(rng: random.Random) -> tuple[torch.Tensor, int, int]:
    g = torch_generator(rng)
    P, L, H, D = rng.randint(1, 4), rng.randint(1, 3), rng.randint(1, 3), rng.randint(1, 4)
    return torch.randn(P, L * 2 * H * D, generator=g), L, H


register(
    "12.split_prefix",
    split_prefix,
    inputs=_split_inputs,
    compare="exact",
    fixed=((torch.arange(24.0).view(2, 12), 3, 1), (torch.arange(16.0).view(1, 16), 2, 2)),
    hint="view as (P, n_layer * 2, n_head, head_dim), move P to the third place with permute(1, 2, 0, 3), "
    "then reshape to (n_layer, 2, n_head, P, head_dim): for each layer, keys then values",
)


# ---------------------------------------------------------------- llmcourse/recipes/peft_compare.py
def _lora_inputs(rng) -> tuple:
    g = torch_generator(rng)
    d_in, d_out, r = rng.randint(2, 9), rng.randint(2, 9), rng.randint(1, 4)
    return (
        torch.randn(rng.randint(1, 4), d_in, generator=g),
        torch.randn(d_out, d_in, generator=g),
        torch.randn(r, d_in, generator=g),
        torch.randn(d_out, r, generator=g),
        rng.choice([0.5, 1.0, 2.0]),
    )


register(
    "12.lora_forward",
    lora_forward,
    inputs=_lora_inputs,
    compare="allclose",
    rtol=1e-5,
    atol=1e-5,
    hint="y = x W^T + scaling * (x A^T) B^T; A is (r, in), B is (out, r)",
)
