"""Generation speed, side by side in one run: uncached vs KV-cached, and ours vs Hugging Face generate.

    python benchmarks/bench_generate.py [--device cpu|cuda] [--n-layer 6 --n-embd 384 ...]

The same weights serve every row (our GPT is exported to a GPT2LMHeadModel), decoding is greedy with
batch size 1, and the prompt is 16 tokens. Targets (issue 6): cached >= 5x uncached at 512 new
tokens; ours >= 1.0x Hugging Face `generate` with its own KV cache.
"""

from __future__ import annotations

import argparse
import os
import platform
import time

import torch

from llmcourse.convert import gpt_to_hf
from llmcourse.generate import generate
from llmcourse.gpt import GPT, GPTConfig


def timed(fn, device, repeats):
    best = float("inf")
    for _ in range(repeats):
        if device.type == "cuda":
            torch.cuda.synchronize()
        t0 = time.perf_counter()
        out = fn()
        if device.type == "cuda":
            torch.cuda.synchronize()
        best = min(best, time.perf_counter() - t0)
    return best, out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--n-layer", type=int, default=6)
    ap.add_argument("--n-head", type=int, default=6)
    ap.add_argument("--n-embd", type=int, default=384)
    ap.add_argument("--vocab", type=int, default=4096)
    ap.add_argument("--lengths", default="128,512")
    ap.add_argument("--repeats", type=int, default=2)
    args = ap.parse_args()
    device = torch.device(args.device)
    lengths = [int(x) for x in args.lengths.split(",")]
    cfg = GPTConfig(
        vocab_size=args.vocab,
        block_size=16 + max(lengths),
        n_layer=args.n_layer,
        n_head=args.n_head,
        n_embd=args.n_embd,
        dropout=0.0,
    )
    torch.manual_seed(0)
    ours = GPT(cfg).to(device).eval()
    hf = gpt_to_hf(ours).to(device).eval()
    prompt = torch.randint(0, cfg.vocab_size, (1, 16), device=device)
    print(
        f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, torch threads "
        f"{torch.get_num_threads()}, device {device}"
        + (f" ({torch.cuda.get_device_name()})" if device.type == "cuda" else "")
    )
    print(
        f"model: {cfg.n_layer} layers, {cfg.n_embd} wide, {ours.num_params() / 1e6:.1f}M params; greedy, batch 1, prompt 16"
    )
    print(
        f"{'new tokens':>10} {'uncached tok/s':>15} {'cached tok/s':>13} {'HF generate tok/s':>18} "
        f"{'cache speed-up':>15} {'ours/HF':>8}"
    )
    for n in lengths:
        t_nc, a = timed(
            lambda: generate(ours, prompt, n, temperature=0.0, use_cache=False),
            device,
            args.repeats,
        )
        t_c, b = timed(
            lambda: generate(ours, prompt, n, temperature=0.0, use_cache=True), device, args.repeats
        )
        with torch.no_grad():
            t_hf, c = timed(
                lambda: hf.generate(
                    prompt,
                    max_new_tokens=n,
                    min_new_tokens=n,
                    do_sample=False,
                    use_cache=True,
                    pad_token_id=0,
                ),
                device,
                args.repeats,
            )
        same = torch.equal(a, b) and torch.equal(b, c)
        print(
            f"{n:>10} {n / t_nc:>15.1f} {n / t_c:>13.1f} {n / t_hf:>18.1f} {t_nc / t_c:>14.1f}x "
            f"{t_hf / t_c:>7.2f}x" + ("" if same else "  (WARNING: outputs differ)")
        )


if __name__ == "__main__":
    main()
