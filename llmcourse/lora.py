"""LoRA from scratch (Hu et al. 2021), with the same contract as Hugging Face peft's LoRA layer.

A frozen weight W (out x in) is adapted by a low-rank update: W' = W + (alpha / r) * B @ A, with
A (r x in) and B (out x r). Only A and B train: r * (in + out) numbers instead of in * out.
The contract we share with peft (checked against it in tests/test_lora.py):
  * A is initialised Kaiming-uniform (a = sqrt(5), nn.Linear's default) and B with zeros, so the
    adapted model starts out *exactly* equal to the base model;
  * the update is scaled by alpha / r, so changing r does not change the effective learning rate much;
  * dropout is applied to the input of the LoRA path only;
  * on a float16 or bfloat16 base, A and B are float32 (peft's default, `autocast_adapter_dtype`):
    the input is cast up for the LoRA path and the sum cast back to the base output's dtype, so
    small updates to A and B are not rounded away; any other base dtype is the adapter's dtype;
  * the base layer is frozen; `merge()` folds B @ A into W for free inference, `unmerge()` undoes it.

At the end, `lora_param_count` and `merged_weight`: the references of notebook 12's exercises.

Left out: several adapters per layer, rank-stabilised scaling, DoRA and other variants, Conv layers.
"""

from __future__ import annotations

import math

import torch
import torch.nn as nn
import torch.nn.functional as F


def adapter_dtype(base_dtype: torch.dtype) -> torch.dtype:
    """The dtype of A and B for a base weight of `base_dtype`, peft's rule: float16 and bfloat16 go
    up to float32; other floats stay; a non-float (quantized) base gets torch's default float.

    >>> adapter_dtype(torch.bfloat16), adapter_dtype(torch.float64)
    (torch.float32, torch.float64)
    """
    if base_dtype in (torch.float16, torch.bfloat16):
        return torch.float32
    return base_dtype if base_dtype.is_floating_point else torch.get_default_dtype()


class LoRALinear(nn.Module):
    """Wrap an nn.Linear: y = base(x) + scaling * B(A(dropout(x)))."""

    def __init__(self, base: nn.Linear, r: int = 8, alpha: float = 16.0, dropout: float = 0.0):
        super().__init__()
        if r <= 0:
            raise ValueError(f"LoRA rank r must be positive, got {r}")
        self.base = base
        for p in self.base.parameters():
            p.requires_grad_(False)
        self.r, self.alpha, self.scaling = r, alpha, alpha / r
        kw = dict(device=base.weight.device, dtype=adapter_dtype(base.weight.dtype))
        self.lora_A = nn.Parameter(torch.empty(r, base.in_features, **kw))
        self.lora_B = nn.Parameter(torch.zeros(base.out_features, r, **kw))
        nn.init.kaiming_uniform_(self.lora_A, a=math.sqrt(5))  # as peft (and nn.Linear) do
        self.dropout = nn.Dropout(dropout) if dropout > 0 else nn.Identity()
        self.merged = False

    def delta_weight(self) -> torch.Tensor:
        """The update B @ A * scaling, shaped like the base weight (out, in)."""
        return (self.lora_B @ self.lora_A) * self.scaling

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # 1. the frozen layer, exactly as before fine-tuning
        y = self.base(x)
        # 2. once merged, W already holds W + (alpha / r) B A: nothing more to add
        if self.merged:
            return y
        # 3. the low-rank path: dropout on its input (peft's choice), down to r numbers with A,
        #    back up with B. (..., in) -> (..., r) -> (..., out): the (out, in) update B A is never
        #    materialised in training. B starts at zero, so at step 0 the output equals the base's.
        #    The input goes to the adapter's dtype (float32 on a half-precision base).
        low = F.linear(self.dropout(x.to(self.lora_A.dtype)), self.lora_A)
        # 4. scale by alpha / r, so that changing r does not change the update's size; the sum
        #    comes back in the base output's dtype (bf16 in, bf16 out), as peft does
        return (y + F.linear(low, self.lora_B) * self.scaling).to(y.dtype)

    @torch.no_grad()
    def merge(self) -> None:
        if not self.merged:
            self.base.weight += self.delta_weight()  # added in float32, rounded once (as peft)
            self.merged = True

    @torch.no_grad()
    def unmerge(self) -> None:
        if self.merged:
            self.base.weight -= self.delta_weight()
            self.merged = False


def _targeted(name: str, targets: list[str] | tuple[str, ...]) -> bool:
    """peft's rule for `target_modules`: the whole name, or its last dot-separated component(s)."""
    return any(name == t or name.endswith("." + t) for t in targets)


def apply_lora(
    model: nn.Module,
    target_names: list[str] | tuple[str, ...],
    *,
    r: int = 8,
    alpha: float = 16.0,
    dropout: float = 0.0,
    freeze_rest: bool = True,
) -> list[str]:
    """Wrap every nn.Linear whose name ends with one of `target_names`; freeze everything else.

    Matching is on the last name component(s), like peft's `target_modules`: "qkv" matches
    "blocks.0.attn.qkv". Returns the wrapped module names; raises if nothing matched (a typo
    would otherwise train nothing).
    """
    if freeze_rest:
        for p in model.parameters():
            p.requires_grad_(False)
    wrapped = []
    for name, module in list(model.named_modules()):
        for child_name, child in list(module.named_children()):
            full = f"{name}.{child_name}" if name else child_name
            if isinstance(child, nn.Linear) and _targeted(full, target_names):
                setattr(module, child_name, LoRALinear(child, r=r, alpha=alpha, dropout=dropout))
                wrapped.append(full)
    if not wrapped:
        linears = sorted(
            {n.rsplit(".", 1)[-1] for n, m in model.named_modules() if isinstance(m, nn.Linear)}
        )
        raise ValueError(
            f"no nn.Linear matched {list(target_names)}; Linear layer names here: {linears}"
        )
    return wrapped


def lora_layers(model: nn.Module) -> list[LoRALinear]:
    return [m for m in model.modules() if isinstance(m, LoRALinear)]


def merge_lora(model: nn.Module, unwrap: bool = False) -> nn.Module:
    """Fold every LoRA update into its base weight; with `unwrap`, put the plain nn.Linear back."""
    for name, module in list(model.named_modules()):
        for child_name, child in list(module.named_children()):
            if isinstance(child, LoRALinear):
                child.merge()
                if unwrap:
                    for p in child.base.parameters():
                        p.requires_grad_(True)
                    setattr(module, child_name, child.base)
    return model


def trainable_report(model: nn.Module) -> dict[str, float]:
    """Trainable vs total parameters (tied tensors counted once)."""
    seen, total, trainable = set(), 0, 0
    for p in model.parameters():
        if p.data_ptr() in seen:
            continue
        seen.add(p.data_ptr())
        total += p.numel()
        trainable += p.numel() if p.requires_grad else 0
    return {"trainable": trainable, "total": total, "percent": 100.0 * trainable / max(total, 1)}


# ------------------------------------------------------------------------- checked by notebook 12's exercises
def lora_param_count(layers: list[tuple[str, int, int]], targets: list[str], r: int) -> int:
    """lora_param_count(layers [(name, out, in), ...], targets, r) -> the numbers LoRA of rank r trains:
    A and B for every layer whose name is a target or ends with "." + a target (as peft matches)."""
    return sum(r * (d_in + d_out) for name, d_out, d_in in layers if _targeted(name, targets))


def merged_weight(
    W: torch.Tensor, A: torch.Tensor, B: torch.Tensor, *, alpha: float
) -> torch.Tensor:
    """merged_weight(W (out, in), A (r, in), B (out, r), alpha) -> (out, in): W plus the low-rank update
    scaled by alpha / r, one weight giving the LoRA layer's output by itself (as LoRALinear.merge does)."""
    return W + (alpha / A.size(0)) * (B @ A)
