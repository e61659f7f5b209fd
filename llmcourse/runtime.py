"""Where the code runs: device, precision, autocast, seeds, and which platform we are on.

Every notebook starts with `rt = runtime.detect()` and prints it. The decisions are made by this
function call, never at import time, so a learner who switches a Colab runtime from CPU to GPU only
re-runs the cell — no kernel restart, no stale global.

Precision rule (the one nanoGPT uses, made explicit):
  * CUDA with compute capability >= 8.0 (A100, H100, RTX 30xx+): bfloat16 autocast, no loss scaling.
  * other CUDA GPUs (the Colab/Kaggle T4 is 7.5): float16 autocast **with** a GradScaler, because
    fp16 gradients underflow without it. We do not trust `torch.cuda.is_bf16_supported()`, which
    answers True on a T4 (bf16 is emulated there and slow).
  * MPS and CPU: float32, autocast off.

Left out on purpose: multi-GPU placement (see `llmcourse.distributed`) and TPUs.
"""

from __future__ import annotations

import contextlib
import os
import random
import sys
from dataclasses import dataclass

import numpy as np
import torch


@dataclass(frozen=True)
class Runtime:
    device: torch.device  # where tensors and models live
    dtype: torch.dtype  # the autocast compute dtype (float32 means autocast is off)
    platform: str  # "colab" | "kaggle" | "local"
    device_name: str  # human-readable, e.g. "Tesla T4" or "CPU (2 threads)"

    @property
    def use_grad_scaler(self) -> bool:
        """fp16 training needs loss scaling; bf16 and fp32 do not."""
        return self.dtype == torch.float16

    @property
    def amp(self) -> bool:
        return self.dtype != torch.float32

    def autocast(self):
        """A context manager for the forward pass: mixed precision on GPUs, a no-op elsewhere."""
        if not self.amp:
            return contextlib.nullcontext()
        return torch.autocast(device_type=self.device.type, dtype=self.dtype)

    def __str__(self) -> str:
        dt = str(self.dtype).replace("torch.", "")
        return (
            f"{self.device_name} | device={self.device} | precision={dt} | platform={self.platform}"
        )


def platform() -> str:
    """Tell Colab, Kaggle and a local machine apart (they differ in paths, GPUs and persistence)."""
    if "google.colab" in sys.modules or os.environ.get("COLAB_RELEASE_TAG"):
        return "colab"
    if os.environ.get("KAGGLE_KERNEL_RUN_TYPE") or os.path.isdir("/kaggle/working"):
        return "kaggle"
    return "local"


def pick_device(prefer: str | None = None) -> torch.device:
    """CUDA, then Apple's MPS, then CPU. `prefer="cpu"` forces the CPU (useful for exact tests)."""
    if prefer is not None:
        return torch.device(prefer)
    if torch.cuda.is_available():
        return torch.device("cuda")
    if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
        return torch.device("mps")
    return torch.device("cpu")


def pick_dtype(device: torch.device, capability: tuple[int, int] | None = None) -> torch.dtype:
    """bf16 on Ampere or newer, fp16 (with loss scaling) on older CUDA GPUs, fp32 elsewhere.

    `capability` can be given to reason about a GPU we are not on:
    >>> pick_dtype(torch.device("cuda"), capability=(7, 5))   # Colab's T4
    torch.float16
    >>> pick_dtype(torch.device("cuda"), capability=(8, 0))   # A100
    torch.bfloat16
    >>> pick_dtype(torch.device("cpu"))
    torch.float32
    """
    if device.type != "cuda":
        return torch.float32
    if capability is None:
        capability = torch.cuda.get_device_capability(device)
    return torch.bfloat16 if capability >= (8, 0) else torch.float16


def detect(prefer: str | None = None, precision: str | None = None) -> Runtime:
    """Decide device and precision now. `precision` ("fp32", "fp16", "bf16") overrides the rule."""
    device = pick_device(prefer)
    dtype = pick_dtype(device)
    if precision is not None:
        table = {"fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}
        if precision not in table:
            raise ValueError(f"precision={precision!r}: use one of {sorted(table)}")
        dtype = table[precision]
        if device.type != "cuda" and dtype != torch.float32:
            raise ValueError(
                f"{precision} autocast is only supported here on CUDA; use fp32 on {device}"
            )
    if device.type == "cuda":
        name = torch.cuda.get_device_name(device)
    elif device.type == "mps":
        name = "Apple GPU (MPS)"
    else:
        name = f"CPU ({torch.get_num_threads()} threads)"
    return Runtime(device=device, dtype=dtype, platform=platform(), device_name=name)


def seed_all(seed: int) -> None:
    """Seed Python, NumPy and torch (all devices). Sampling code should still take a Generator."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def make_generator(seed: int, device: str | torch.device = "cpu") -> torch.Generator:
    """An explicit random generator, so sampling is reproducible and independent of global state."""
    g = torch.Generator(device=device)
    g.manual_seed(seed)
    return g


def set_threads(n: int | None = None) -> int:
    """Limit torch's CPU threads (from `LLMCOURSE_THREADS`, else leave torch's default)."""
    if n is None:
        env = os.environ.get("LLMCOURSE_THREADS")
        if not env:
            return torch.get_num_threads()
        n = int(env)
    torch.set_num_threads(max(1, n))
    return torch.get_num_threads()
