"""How much GPU memory does a model need to run, or to train? Estimates with every assumption shown.

An estimate is a sum of rows, each with its reason (`MemoryEstimate.table()`):

* **weights**      n_params x bytes per parameter (fp32 4, fp16/bf16 2, int8 1, int4 0.5 + constants).
* **gradients**    one per *trainable* parameter.
* **optimizer**    AdamW keeps two moments (m, v) per trainable parameter; mixed precision also keeps
                   an fp32 master copy of the weights. We follow the ZeRO paper's accounting
                   (Rajbhandari et al. 2020, "ZeRO: Memory Optimizations Toward Training Trillion
                   Parameter Models", Sec. 3.1): 16-bit weights 2 + 16-bit gradients 2 + fp32 master
                   weights 4 + Adam m 4 + Adam v 4 = **16 bytes per parameter**. (PyTorch's own AMP keeps
                   fp32 weights 4 + fp32 grads 4 + m, v 8 = the same 16.)
* **activations**  what the backward pass needs, per layer 34 * seq * batch * n_embd bytes for a
                   Transformer block with 16-bit activations and a fused attention kernel (Korthikanti
                   et al. 2022, "Reducing Activation Recomputation in Large Transformer Models", Sec. 4;
                   their extra 5*heads*seq^2 term disappears with FlashAttention). With gradient
                   checkpointing only each block's 2-byte input is kept, plus one block recomputed.
* **kv_cache**     inference only: keys and values of every layer, 2 * n_layer * seq * n_embd * bytes
                   * batch (times n_kv_heads / n_head for grouped-query attention).
* **overhead**     the CUDA context and library workspaces (~0.5 GB) plus allocator fragmentation (5%).

Units: GB means 10^9 bytes everywhere (so "a 6B model in fp16 is 12 GB", as the course notes say).
`GPUS` lists the memory you can plan on per card in the same unit.

Left out: tensor/pipeline parallel sharding (see notebook 17 for ZeRO stages), CPU offload, the
memory of the data loader, and peaks from temporary copies inside individual kernels. These are
estimates to within ~20%; measure with `torch.cuda.max_memory_allocated()` when it matters.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field


GB = 1e9  # decimal gigabytes, the unit of every figure in this module

BYTES = {"fp32": 4.0, "fp16": 2.0, "bf16": 2.0, "int8": 1.0, "int4": 0.5}
# Bytes of optimizer state per trainable parameter, not counting the mixed-precision master copy.
OPTIMIZER_STATE = {"adamw": 8.0, "adamw_8bit": 2.0, "sgd_momentum": 4.0, "sgd": 0.0}
# QLoRA NF4 with double quantization: 0.5 byte per weight + 8-bit block constants (1 byte / 64 weights)
# + fp32 second-level constants (4 bytes / (64 * 256) weights)  (Dettmers et al. 2023, Sec. 3).
NF4_BYTES = 0.5 + 1 / 64 + 4 / (64 * 256)
CUDA_CONTEXT_GB = 0.5  # CUDA context + cuBLAS/cuDNN workspaces, typically 0.3-1 GB
FRAGMENTATION = 0.05  # PyTorch's caching allocator wastes a few percent
# Default share of parameters that are trained, when neither trainable_params nor a fraction is given.
DEFAULT_TRAINABLE_FRACTION = {"full": 1.0, "freeze": 0.1, "lora": 0.01, "qlora": 0.01}

# Memory you can plan on, in GB. A "16 GB" T4 shows ~15 GB to PyTorch (ECC and the driver take the rest).
GPUS: dict[str, float] = {
    "T4": 15.0,  # Colab / Kaggle free tier
    "P100": 16.0,  # Kaggle
    "L4": 24.0,
    "A10G": 24.0,
    "RTX-4090": 24.0,
    "A100-40GB": 40.0,
    "A100-80GB": 80.0,
    "H100": 80.0,
    "H200": 141.0,
}

# (n_params, n_layer, n_embd) of published decoder shapes: GPT-2 124M/355M/774M/1.5B (Radford et al.
# 2019), GPT-Neo 2.7B, GPT-J 6B / ChatGLM-6B (28 x 4096), Llama 7B/13B/33B/65B (Touvron et al. 2023),
# GPT-3 175B (Brown et al. 2020).
KNOWN_SHAPES = [
    (124e6, 12, 768),
    (355e6, 24, 1024),
    (774e6, 36, 1280),
    (1.56e9, 48, 1600),
    (2.7e9, 32, 2560),
    (6.05e9, 28, 4096),
    (6.7e9, 32, 4096),
    (13e9, 40, 5120),
    (32.5e9, 60, 6656),
    (65.2e9, 80, 8192),
    (175e9, 96, 12288),
]

ROWS = ("weights", "gradients", "optimizer", "activations", "kv_cache", "overhead")


@dataclass(kw_only=True)
class MemoryEstimate:
    """An estimate in bytes, row by row, with each row's reason in `reasons` (keywords only)."""

    weights: float = 0.0
    gradients: float = 0.0
    optimizer: float = 0.0
    activations: float = 0.0
    kv_cache: float = 0.0
    overhead: float = 0.0
    reasons: dict[str, str] = field(default_factory=dict)
    label: str = ""
    total: float = field(init=False)

    def __post_init__(self) -> None:
        self.total = sum(getattr(self, r) for r in ROWS)

    def gb(self) -> dict[str, float]:
        """Every row and the total in GB."""
        return {r: getattr(self, r) / GB for r in (*ROWS, "total")}

    def table(self) -> str:
        lines = [self.label] if self.label else []
        for r in ROWS:
            lines.append(f"{r:<12}{getattr(self, r) / GB:8.2f} GB  {self.reasons.get(r, '')}")
        lines.append(f"{'total':<12}{self.total / GB:8.2f} GB")
        return "\n".join(lines)

    def __str__(self) -> str:
        return self.table()


def gpt_params(
    n_layer: int, n_embd: int, vocab_size: int, *, block_size: int, tied: bool = True
) -> int:
    """Parameters of a GPT-2-style decoder (biases everywhere, learned positions, LayerNorm, 4x MLP).

    token embedding V*d + position embedding T*d, then per block:
      LayerNorm 2d + attention q,k,v (d*3d + 3d) + output projection (d*d + d)
      + LayerNorm 2d + MLP up (d*4d + 4d) + MLP down (4d*d + d)  =  12 d^2 + 13 d,
    then a final LayerNorm 2d, and an output head V*d unless it is tied to the token embedding.
    GPT-2 small (V=50257, T=1024, L=12, d=768): 38,597,376 + 786,432 + 12 * 7,087,872 + 1,536
    = 124,439,808.
    """
    d = n_embd
    per_block = 12 * d * d + 13 * d
    total = vocab_size * d + block_size * d + n_layer * per_block + 2 * d
    return total if tied else total + vocab_size * d


def model_shape_guess(n_params: float) -> tuple[int, int]:
    """(n_layer, n_embd) for a decoder of about n_params parameters.

    Takes the published shape nearest in log-size (`KNOWN_SHAPES`), keeps its depth and scales the
    width by sqrt(n_params / reference) (parameters grow as n_layer * 12 * n_embd^2), rounded to 64.
    >>> model_shape_guess(6e9)
    (28, 4096)
    """
    ref_n, n_layer, ref_d = min(KNOWN_SHAPES, key=lambda s: abs(math.log(n_params / s[0])))
    n_embd = max(64, int(round(ref_d * math.sqrt(n_params / ref_n) / 64)) * 64)
    return n_layer, n_embd


def activation_bytes_per_layer(
    batch: int, seq_len: int, n_embd: int, *, bytes_per_value: float = 2.0
) -> float:
    """Bytes a Transformer block saves for its backward pass: 34 * seq * batch * n_embd at 16 bit.

    Korthikanti et al. 2022 (Sec. 4.1) count, per token, in bytes / d with 16-bit values:
    attention = q,k,v-projection input 2 + q and k 4 + v 2 + output-projection input 2 + dropout
    mask 1 = 11; MLP = input 2 + GELU input 8 + GELU output 8 + dropout mask 1 = 19; the two
    LayerNorm inputs 4. Total 34, plus 5 * heads * seq / d for the seq x seq scores, which a fused
    (Flash) attention kernel never stores.
    Without dropout it is 32 (tests/test_memory.py measures 32 with autograd's saved tensors).
    """
    return 17 * bytes_per_value * batch * seq_len * n_embd


def _bytes(precision: str) -> float:
    if precision not in BYTES:
        raise ValueError(f"precision={precision!r}: use one of {sorted(BYTES)}")
    return BYTES[precision]


def _overhead(subtotal: float) -> tuple[float, str]:
    return (
        CUDA_CONTEXT_GB * GB + FRAGMENTATION * subtotal,
        f"CUDA context ~{CUDA_CONTEXT_GB} GB + {FRAGMENTATION:.0%} allocator fragmentation",
    )


def inference_memory(
    n_params: float,
    precision: str = "fp16",
    *,
    batch: int = 1,
    seq_len: int = 2048,
    n_layer: int | None = None,
    n_embd: int | None = None,
    kv_ratio: float = 1.0,
    vocab_size: int = 32000,
    kv_precision: str | None = None,
) -> MemoryEstimate:
    """Memory to generate with a decoder: weights + KV cache + the prefill's working set + overhead.

    kv_ratio = n_kv_heads / n_head (1 for standard attention, e.g. 8/64 for Llama-2-70B's GQA).
    The KV cache is kept in `kv_precision` (default: `precision`, or fp16 for int8/int4 weights).
    """
    if n_layer is None or n_embd is None:
        g_layer, g_embd = model_shape_guess(n_params)
        n_layer, n_embd = n_layer or g_layer, n_embd or g_embd
    wb = NF4_BYTES if precision == "int4" else _bytes(precision)
    kv_precision = kv_precision or (precision if precision in ("fp32", "fp16", "bf16") else "fp16")
    kvb = _bytes(kv_precision)
    tokens = batch * seq_len
    e = MemoryEstimate(
        weights=n_params * wb,
        kv_cache=2 * n_layer * tokens * n_embd * kv_ratio * kvb,
        # one block's live tensors during prefill (x, norm, q, k, v, attention out, 4d MLP hidden,
        # its activation: ~14 d per token) + the last logits in fp32 for every prompt position.
        activations=tokens * 14 * n_embd * kvb + tokens * vocab_size * 4,
        label=f"inference: {n_params / 1e9:.3g}B params, {precision}, batch {batch}, seq {seq_len}",
    )
    e.overhead, why_over = _overhead(e.total)
    e.reasons = {
        "weights": f"{n_params / 1e9:.3g}B params x {wb:.3g} bytes ({precision})",
        "gradients": "none: no backward pass",
        "optimizer": "none",
        "activations": (
            f"prefill working set ~14*d per token in {kv_precision} + fp32 logits (V={vocab_size})"
        ),
        "kv_cache": (
            f"2 (K,V) x {n_layer} layers x {tokens} tokens x {n_embd} x {kv_ratio:g} x "
            f"{kvb:g} bytes"
        ),
        "overhead": why_over,
    }
    e.__post_init__()
    return e


def training_memory(
    n_params: float,
    precision: str = "bf16",
    *,
    optimizer: str = "adamw",
    method: str = "full",
    trainable_params: float | None = None,
    trainable_fraction: float | None = None,
    batch: int = 1,
    seq_len: int = 2048,
    n_layer: int | None = None,
    n_embd: int | None = None,
    vocab_size: int = 32000,
    gradient_checkpointing: bool = False,
) -> MemoryEstimate:
    """Memory for one training step.

    precision: "bf16" or "fp16" mean mixed precision (16-bit weights and gradients, fp32 master copy
    kept in the optimizer row); "fp32" means everything in fp32 (4 + 4 + 8 = also 16 bytes/param).
    method: "full" trains everything; "freeze" trains a share of the base (default 10%, e.g. the last
    layers); "lora" freezes a 16-bit base and adds small trainable adapters (default 1% of the base);
    "qlora" is LoRA over a 4-bit NF4 base. Each trainable parameter costs 2 + 2 + 4 + 8 = 16 bytes
    (mixed precision AdamW); a frozen one costs only its stored weight.
    """
    if method not in DEFAULT_TRAINABLE_FRACTION:
        raise ValueError(f"method={method!r}: use one of {sorted(DEFAULT_TRAINABLE_FRACTION)}")
    if optimizer not in OPTIMIZER_STATE:
        raise ValueError(f"optimizer={optimizer!r}: use one of {sorted(OPTIMIZER_STATE)}")
    if precision not in ("fp32", "fp16", "bf16"):
        raise ValueError(
            f"precision={precision!r}: training uses fp32, or bf16/fp16 mixed precision"
        )
    if n_layer is None or n_embd is None:
        g_layer, g_embd = model_shape_guess(n_params)
        n_layer, n_embd = n_layer or g_layer, n_embd or g_embd
    if trainable_params is None:
        frac = (
            DEFAULT_TRAINABLE_FRACTION[method] if trainable_fraction is None else trainable_fraction
        )
        trainable_params = n_params * frac
    if method == "full":
        trainable_params = n_params
    wb = _bytes(precision)  # 4 in fp32, 2 in mixed precision
    master = 4.0 if precision != "fp32" else 0.0
    opt = OPTIMIZER_STATE[optimizer] + master
    base = NF4_BYTES if method == "qlora" else wb
    adapters = trainable_params if method in ("lora", "qlora") else 0.0
    tokens = batch * seq_len
    act_b = 2.0 if precision != "fp32" else 4.0
    block = activation_bytes_per_layer(batch, seq_len, n_embd, bytes_per_value=act_b)
    if gradient_checkpointing:
        acts = n_layer * act_b * tokens * n_embd + block
        why_act = f"checkpointing: {n_layer} block inputs + 1 block recomputed (34*s*b*d at 16 bit)"
    else:
        acts = n_layer * block
        why_act = f"{n_layer} layers x 34*seq*batch*d bytes at 16 bit (Korthikanti et al. 2022)"
    acts += tokens * vocab_size * 4 * 2  # fp32 logits and their gradient
    e = MemoryEstimate(
        weights=n_params * base + adapters * wb,
        gradients=trainable_params * wb,
        optimizer=trainable_params * opt,
        activations=acts,
        label=(
            f"training ({method}): {n_params / 1e9:.3g}B params, {precision}, {optimizer}, "
            f"batch {batch}, seq {seq_len}" + (", checkpointing" if gradient_checkpointing else "")
        ),
    )
    e.overhead, why_over = _overhead(e.total)
    base_name = "NF4 4-bit + constants" if method == "qlora" else precision
    e.reasons = {
        "weights": f"{n_params / 1e9:.3g}B x {base:.3g} bytes ({base_name})"
        + (f" + {adapters / 1e6:.3g}M adapter params x {wb:g}" if adapters else ""),
        "gradients": f"{trainable_params / 1e6:.4g}M trainable x {wb:g} bytes",
        "optimizer": (
            f"{trainable_params / 1e6:.4g}M x ({OPTIMIZER_STATE[optimizer]:g} {optimizer} state"
            + (" + 4 fp32 master" if master else "")
            + ") bytes"
        ),
        "activations": why_act + " + fp32 logits and grad",
        "kv_cache": "none: training sees whole sequences, no cache",
        "overhead": why_over,
    }
    e.__post_init__()
    return e


def fits(estimate: MemoryEstimate, gpu: str | float) -> bool:
    """Does the estimate fit one GPU? `gpu` is a name in `GPUS` or a capacity in GB."""
    if isinstance(gpu, str):
        if gpu not in GPUS:
            raise ValueError(f"unknown GPU {gpu!r}; known: {sorted(GPUS)} (or pass GB as a number)")
        gpu = GPUS[gpu]
    return estimate.total <= gpu * GB


def curves(
    sizes: list[float], *, seq_len: int = 2048, batch: int = 1, gradient_checkpointing: bool = True
) -> dict[str, list[float]]:
    """Total GB against model size for inference (fp16) and full / LoRA / QLoRA training (bf16)."""
    out: dict[str, list[float]] = {
        "inference fp16": [],
        "full fine-tuning": [],
        "LoRA": [],
        "QLoRA": [],
    }
    for n in sizes:
        out["inference fp16"].append(
            inference_memory(n, "fp16", batch=batch, seq_len=seq_len).total / GB
        )
        for label, method in (("full fine-tuning", "full"), ("LoRA", "lora"), ("QLoRA", "qlora")):
            est = training_memory(
                n,
                method=method,
                batch=batch,
                seq_len=seq_len,
                gradient_checkpointing=gradient_checkpointing,
            )
            out[label].append(est.total / GB)
    return out
