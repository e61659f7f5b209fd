"""Training throughput, side by side in one run: our GPT vs Hugging Face GPT2LMHeadModel.

    python benchmarks/bench_gpt_train.py [--device cuda] [--precision bf16|fp16|fp32] [--compile]
    python benchmarks/bench_gpt_train.py --device cuda --gpt2-small --precision fp16   # the T4 rule

Both models have the same configuration and start from the same weights (ours is exported to HF), see
the same batches, and take AdamW steps with the same settings. We report tokens/s and, on a GPU,
model FLOPs utilisation (MFU): achieved FLOPs / the GPU's peak, with the 6*N + 12*L*T*d FLOPs-per-token
estimate of Kaplan et al. (2020) / PaLM (Chowdhery et al. 2022, appendix B). Target (issue 6): ours >= 1.0x.
fp16 trains as `fit` does on a T4: the loss is scaled by a `torch.amp.GradScaler`, which unscales the
gradients in `step` and skips a step whose gradients overflowed (nanoGPT's rule for GPUs without bf16).
`measure()` is the same benchmark as a function returning a dict (`dev/gpu_check.py` calls it).
"""

from __future__ import annotations

import argparse
import math
import os
import platform
import time

import torch

from llmcourse.convert import gpt_to_hf
from llmcourse.gpt import GPT, GPTConfig

PEAK_TFLOPS = {
    "H100": 989.0,
    "H200": 989.0,
    "A100": 312.0,
    "L4": 121.0,
    "T4": 65.0,
    "V100": 125.0,
}  # dense bf16/fp16
# GPT-2 small (124M): nanoGPT's shape, the vocabulary padded to a multiple of 64 (50257 -> 50304)
GPT2_SMALL = GPTConfig(
    vocab_size=50304, block_size=1024, n_layer=12, n_head=12, n_embd=768, dropout=0.0
)
DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16, "fp32": torch.float32}


def peak_flops(name: str) -> float | None:
    for key, tf in PEAK_TFLOPS.items():
        if key in name:
            return tf * 1e12
    return None


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def run(model, step_fn, batches, *, warmup: int, device: torch.device, fp16: bool) -> dict:
    """Train on `batches`; return the seconds of the steps after the first `warmup`, the last loss,
    and (fp16) the GradScaler's final scale and the number of steps it skipped."""
    opt = torch.optim.AdamW(model.parameters(), lr=3e-4, fused=device.type == "cuda")
    scaler = torch.amp.GradScaler(device.type, enabled=fp16)
    initial_scale = scaler.get_scale() if fp16 else 1.0
    for i, (x, y) in enumerate(batches):
        if i == warmup:
            _sync(device)
            t0 = time.perf_counter()
        loss = step_fn(model, x, y)
        # fp16: backward of the scaled loss, so small gradients do not underflow; `step` unscales
        # them and skips the update if one overflowed; `update` adapts the scale. Disabled: a no-op.
        scaler.scale(loss).backward()
        scaler.step(opt)
        scaler.update()
        opt.zero_grad(set_to_none=True)
    _sync(device)
    seconds = time.perf_counter() - t0
    scale = scaler.get_scale() if fp16 else 1.0
    # the scale halves at each overflow and grows only after 2000 clean steps: count the halvings
    skipped = round(math.log2(initial_scale / scale)) if fp16 else 0
    return {"seconds": seconds, "loss": loss.item(), "scale": scale, "skipped": skipped}


def measure(
    cfg: GPTConfig,
    *,
    device: str | torch.device = "cpu",
    precision: str | None = None,
    batch: int = 8,
    steps: int = 10,
    warmup: int = 3,
    compile: bool = False,
) -> dict:
    """Train ours and HF's GPT-2 on the same random batches; return tokens/s, MFU and memory.

    `precision` is "bf16", "fp16" (with a GradScaler) or "fp32"; None = the runtime's rule (bf16 on
    Ampere or newer, fp16 on older GPUs, fp32 on a CPU). MFU is None where the peak is unknown (CPU).
    """
    device = torch.device(device)
    from llmcourse.runtime import pick_dtype

    dtype = DTYPES[precision] if precision else pick_dtype(device)
    if device.type == "cuda":
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats(device)
    torch.manual_seed(0)
    ours = GPT(cfg).to(device).train()
    n_params = sum(p.numel() for p in ours.parameters())  # tied matrices once
    hf = gpt_to_hf(ours).to(device).train()
    attention = getattr(hf.config, "_attn_implementation", "")
    if compile:
        ours, hf = torch.compile(ours), torch.compile(hf)
    g = torch.Generator().manual_seed(1)
    data = torch.randint(
        0, cfg.vocab_size, (steps + warmup, batch, cfg.block_size + 1), generator=g
    )
    batches = [(d[:, :-1].to(device), d[:, 1:].to(device)) for d in data]

    def ctx():
        return torch.autocast(device.type, dtype=dtype, enabled=dtype != torch.float32)

    def ours_step(m, x, y):
        with ctx():
            return m(x, y)[1]

    def hf_step(m, x, y):
        with ctx():  # HF shifts labels internally: the same next-token task
            return m(input_ids=x, labels=x).loss

    fp16 = dtype == torch.float16
    a = run(ours, ours_step, batches, warmup=warmup, device=device, fp16=fp16)
    b = run(hf, hf_step, batches, warmup=warmup, device=device, fp16=fp16)
    t_ours, t_hf = a["seconds"], b["seconds"]
    tokens = steps * batch * cfg.block_size
    flops_per_token = 6 * n_params + 12 * cfg.n_layer * cfg.block_size * cfg.n_embd
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else "CPU"
    peak = peak_flops(name) if device.type == "cuda" else None

    def mfu(seconds: float) -> float | None:
        return tokens / seconds * flops_per_token / peak if peak else None

    return {
        "precision": str(dtype).replace("torch.", ""),
        "device": name,
        "shape": {k: getattr(cfg, k) for k in ("n_layer", "n_head", "n_embd", "block_size")}
        | {"vocab_size": cfg.vocab_size, "batch": batch, "steps": steps, "compile": compile},
        "n_params": n_params,
        "flops_per_token": flops_per_token,
        "tokens_per_s": tokens / t_ours,
        "mfu": mfu(t_ours),
        "hf_tokens_per_s": tokens / t_hf,
        "hf_mfu": mfu(t_hf),
        "ours_over_hf": t_hf / t_ours,
        "hf_attention": attention,
        "final_loss": a["loss"],
        "hf_final_loss": b["loss"],
        "grad_scaler": fp16,
        "skipped_steps": a["skipped"],  # ours; HF's run has its own scaler
        "hf_skipped_steps": b["skipped"],
        "loss_scale": a["scale"],
        "peak_gpu_gb": torch.cuda.max_memory_allocated(device) / 1e9
        if device.type == "cuda"
        else None,
    }


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument(
        "--precision",
        default=None,
        choices=sorted(DTYPES),
        help="default: fp32 on CPU, bf16 (Ampere+) or fp16 with a GradScaler on GPU",
    )
    ap.add_argument("--gpt2-small", action="store_true", help="12 x 768, block 1024, vocab 50304")
    ap.add_argument("--n-layer", type=int, default=6)
    ap.add_argument("--n-head", type=int, default=6)
    ap.add_argument("--n-embd", type=int, default=384)
    ap.add_argument("--block", type=int, default=256)
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--vocab", type=int, default=50304)
    ap.add_argument("--steps", type=int, default=10)
    ap.add_argument("--warmup", type=int, default=3)
    ap.add_argument("--compile", action="store_true")
    args = ap.parse_args()
    cfg = GPT2_SMALL
    if not args.gpt2_small:
        cfg = GPTConfig(
            vocab_size=args.vocab,
            block_size=args.block,
            n_layer=args.n_layer,
            n_head=args.n_head,
            n_embd=args.n_embd,
            dropout=0.0,
        )
    r = measure(
        cfg,
        device=args.device,
        precision=args.precision,
        batch=args.batch,
        steps=args.steps,
        warmup=args.warmup,
        compile=args.compile,
    )
    print(f"HF attention implementation: {r['hf_attention']}")
    print(
        f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, torch threads "
        f"{torch.get_num_threads()}, device {args.device} ({r['device']})"
    )
    print(
        f"model: {cfg.n_layer} layers, {cfg.n_embd} wide, vocab {cfg.vocab_size}, "
        f"{r['n_params'] / 1e6:.1f}M params; batch {args.batch} x {cfg.block_size} tokens, "
        f"{r['precision']}{' + GradScaler' if r['grad_scaler'] else ''}, compile={args.compile}"
    )
    for name, tps, mfu in (
        ("ours", r["tokens_per_s"], r["mfu"]),
        ("HF GPT2LMHeadModel", r["hf_tokens_per_s"], r["hf_mfu"]),
    ):
        shown = f"  MFU {100 * mfu:.1f}%" if mfu is not None else ""
        print(f"{name:>20}: {tps:>10.0f} tokens/s{shown}")
    print(f"{'ours / HF':>20}: {r['ours_over_hf']:.2f}x")
    if r["grad_scaler"]:
        print(
            f"{'GradScaler':>20}: scale {r['loss_scale']:g}, {r['skipped_steps']} step(s) skipped"
        )


if __name__ == "__main__":
    main()
