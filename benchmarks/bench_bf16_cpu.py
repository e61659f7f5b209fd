"""Is bf16 faster or slower than fp32 on this CPU? Matrix products and notebook 09's forward pass.

    OMP_NUM_THREADS=1 python benchmarks/bench_bf16_cpu.py [--rounds 9] [--sizes smoke,full]
        [--matmul 256,1024]

A bf16 matrix product is fast only where the CPU has bf16 instructions (AVX512-BF16 dot products,
or AMX tiles on Intel Xeon since Sapphire Rapids) and PyTorch's oneDNN kernels use them; without
them each bf16 number is widened to fp32 and back, and bf16 is usually *slower* than fp32. This
script prints which instructions the CPU reports (/proc/cpuinfo), what PyTorch says of its bf16
support, and then times, interleaved (fp32 then bf16, every round) and summarised by medians:

- an n x n matrix product for each `--matmul` size;
- one no-grad forward pass of notebook 09's GPT (`GPTConfig.for_size`, a 65-character vocabulary,
  random weights) on a batch of 8 full-length sequences, as the notebook's table times it.

To see what a CPU without the bf16 instructions does, on one that has them, cap the instruction
sets oneDNN may use: `ONEDNN_MAX_CPU_ISA=AVX512_CORE` (AVX-512 without BF16 or AMX) or
`ONEDNN_MAX_CPU_ISA=AVX2`; the header prints the cap in force.
"""

from __future__ import annotations

import argparse
import datetime
import os
import platform
import statistics
import time

import torch

from llmcourse.gpt import GPT, GPTConfig

FLAGS = ("avx512_bf16", "amx_bf16", "amx_tile", "avx512f", "avx2")


def cpu_flags() -> list[str]:
    """The bf16-relevant instruction-set flags of /proc/cpuinfo (empty where there is none)."""
    try:
        with open("/proc/cpuinfo") as f:
            flags = next((line.split(":")[1].split() for line in f if line.startswith("flags")), [])
    except OSError:
        return []
    return [flag for flag in FLAGS if flag in flags]


def ms_per_call(fn, inner: int) -> float:
    """Milliseconds per call of `fn`, averaged over `inner` calls in a row."""
    t0 = time.perf_counter()
    for _ in range(inner):
        fn()
    return 1000 * (time.perf_counter() - t0) / inner


def compare(label: str, fns: dict[str, object], *, rounds: int, inner: int) -> None:
    """Time every fn of `fns` once per round, in turn, after one untimed call each; print
    medians."""
    for fn in fns.values():
        fn()  # warm-up: allocation, oneDNN kernel selection
    times: dict[str, list[float]] = {name: [] for name in fns}
    for _ in range(rounds):
        for name, fn in fns.items():
            times[name].append(ms_per_call(fn, inner))
    fp32 = times["fp32"]
    for name, ms in times.items():
        ratio = statistics.median(t / f for t, f in zip(ms, fp32))
        print(
            f"{label:34} {name:5} {statistics.median(ms):9.3f} ms  "
            f"(min {min(ms):.3f}, max {max(ms):.3f})  {ratio:5.2f}x fp32's time"
        )


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rounds", type=int, default=9)
    ap.add_argument("--sizes", default="smoke,full")
    ap.add_argument("--matmul", default="256,1024")
    args = ap.parse_args()
    print(
        f"{datetime.date.today()}, {platform.processor() or platform.machine()}, "
        f"torch {torch.__version__}, threads {torch.get_num_threads()} "
        f"(OMP_NUM_THREADS={os.environ.get('OMP_NUM_THREADS')}), load average "
        f"{os.getloadavg()[0]:.2f}, "
        f"ONEDNN_MAX_CPU_ISA={os.environ.get('ONEDNN_MAX_CPU_ISA', 'unset')}"
    )
    print(f"CPU flags: {', '.join(cpu_flags()) or 'none of ' + ', '.join(FLAGS)}")
    try:  # a private PyTorch call: absent from some builds
        onednn_bf16 = torch.ops.mkldnn._is_mkldnn_bf16_supported()
    except (AttributeError, RuntimeError):
        onednn_bf16 = "unknown"
    print(
        f"torch CPU capability: {torch.backends.cpu.get_cpu_capability()}; "
        f"oneDNN bf16 supported: {onednn_bf16}"
    )
    print(f"medians of {args.rounds} interleaved rounds")
    torch.manual_seed(0)
    for n in [int(s) for s in args.matmul.split(",") if s]:
        a, b = torch.randn(n, n), torch.randn(n, n)
        a16, b16 = a.bfloat16(), b.bfloat16()
        inner = max(1, int(2e9 / (2 * n**3)))  # about 2 GFLOP a round
        compare(
            f"matmul {n} x {n}",
            {"fp32": lambda: a @ b, "bf16": lambda: a16 @ b16},
            rounds=args.rounds,
            inner=inner,
        )
    for size in [s for s in args.sizes.split(",") if s]:
        cfg = GPTConfig.for_size(size, vocab_size=65, dropout=0.0)
        model = GPT(cfg).eval()
        half = GPT(cfg).eval()
        half.load_state_dict(model.state_dict())
        half = half.to(torch.bfloat16)
        batch = torch.randint(0, cfg.vocab_size, (8, cfg.block_size))
        label = f"GPT {size} ({cfg.n_layer}x{cfg.n_embd}, 8x{cfg.block_size})"
        with torch.no_grad():
            compare(
                label,
                {"fp32": lambda: model(batch), "bf16": lambda: half(batch)},
                rounds=args.rounds,
                inner=1 if size == "full" else 5,
            )


if __name__ == "__main__":
    main()
