"""Training throughput, side by side in one run: our GPT vs Hugging Face GPT2LMHeadModel.

    python benchmarks/bench_gpt_train.py [--device cuda] [--precision bf16|fp16|fp32] [--compile]

Both models have the same configuration and start from the same weights (ours is exported to HF), see
the same batches, and take AdamW steps with the same settings. We report tokens/s and, on a GPU,
model FLOPs utilisation (MFU): achieved FLOPs / the GPU's peak, with the 6*N + 12*L*T*d FLOPs-per-token
estimate of Kaplan et al. (2020) / PaLM (Chowdhery et al. 2022, appendix B). Target (issue 6): ours >= 1.0x.
"""

from __future__ import annotations

import argparse
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


def peak_flops(name: str) -> float | None:
    for key, tf in PEAK_TFLOPS.items():
        if key in name:
            return tf * 1e12
    return None


def run(model, step_fn, batches, warmup, device):
    opt = torch.optim.AdamW(model.parameters(), lr=3e-4, fused=device.type == "cuda")
    for i, (x, y) in enumerate(batches):
        if i == warmup:
            if device.type == "cuda":
                torch.cuda.synchronize()
            t0 = time.perf_counter()
        loss = step_fn(model, x, y)
        loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)
    if device.type == "cuda":
        torch.cuda.synchronize()
    return time.perf_counter() - t0


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument(
        "--precision",
        default=None,
        help="bf16 | fp16 | fp32 (default: fp32 on CPU, bf16/fp16 on GPU)",
    )
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
    device = torch.device(args.device)
    from llmcourse.runtime import pick_dtype

    dtype = {"bf16": torch.bfloat16, "fp16": torch.float16, "fp32": torch.float32}.get(
        args.precision or "", None
    )
    dtype = dtype or pick_dtype(device)
    amp = torch.autocast(device.type, dtype=dtype) if dtype != torch.float32 else None
    cfg = GPTConfig(
        vocab_size=args.vocab,
        block_size=args.block,
        n_layer=args.n_layer,
        n_head=args.n_head,
        n_embd=args.n_embd,
        dropout=0.0,
    )
    torch.manual_seed(0)
    ours = GPT(cfg).to(device).train()
    hf = gpt_to_hf(ours).to(device).train()
    if hasattr(hf.config, "_attn_implementation"):
        print(f"HF attention implementation: {hf.config._attn_implementation}")
    if args.compile:
        ours, hf = torch.compile(ours), torch.compile(hf)
    g = torch.Generator().manual_seed(1)
    n = args.steps + args.warmup
    data = torch.randint(0, cfg.vocab_size, (n, args.batch, args.block + 1), generator=g)
    batches = [(d[:, :-1].to(device), d[:, 1:].to(device)) for d in data]

    def ctx():
        return amp if amp is not None else torch.autocast(device.type, enabled=False)

    def ours_step(m, x, y):
        with ctx():
            return m(x, y)[1]

    def hf_step(m, x, y):
        with ctx():
            return m(
                input_ids=x, labels=x
            ).loss  # HF shifts labels internally: same next-token task

    tokens = args.steps * args.batch * args.block
    t_ours = run(ours, ours_step, batches, args.warmup, device)
    t_hf = run(hf, hf_step, batches, args.warmup, device)
    n_params = sum(p.numel() for p in GPT(cfg).parameters())
    flops_per_token = 6 * n_params + 12 * cfg.n_layer * cfg.block_size * cfg.n_embd
    print(
        f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, torch threads "
        f"{torch.get_num_threads()}, device {device}"
        + (f" ({torch.cuda.get_device_name()})" if device.type == "cuda" else "")
    )
    print(
        f"model: {cfg.n_layer} layers, {cfg.n_embd} wide, vocab {cfg.vocab_size}, {n_params / 1e6:.1f}M params; "
        f"batch {args.batch} x {args.block} tokens, {str(dtype).replace('torch.', '')}, compile={args.compile}"
    )
    peak = peak_flops(torch.cuda.get_device_name()) if device.type == "cuda" else None
    for name, t in (("ours", t_ours), ("HF GPT2LMHeadModel", t_hf)):
        tps = tokens / t
        mfu = f"  MFU {100 * tps * flops_per_token / peak:.1f}%" if peak else ""
        print(f"{name:>20}: {tps:>10.0f} tokens/s{mfu}")
    print(f"{'ours / HF':>20}: {t_hf / t_ours:.2f}x")


if __name__ == "__main__":
    main()
