"""Where a training step's time goes, full fine-tuning against the PEFT methods of notebook 12.

    OMP_NUM_THREADS=1 python benchmarks/bench_peft_step.py [--size smoke|full] [--rounds 7]
        [--repeats 10] [--warmup 5] [--device cpu|cuda]

One random-weight GPT of notebook 12's shape (`ChatPipelineConfig`, smoke or full) is copied into
each variant (`peft_compare.make_variant`, the notebook's extras included). Every round times each
variant in turn (interleaved, so a noisy neighbour on a shared machine hits all of them alike) with
`peft_compare.step_parts`: forward, backward and AdamW update, the median of `--repeats` steps after
`--warmup` untimed ones, in CPU time of this process on a CPU (waiting for a core on a shared
machine is not counted) and wall time on a GPU. The table gives, per variant, the median over rounds
of each part and of the whole step, and the whole step relative to full fine-tuning.

What to expect: PEFT skips the weight gradients of the frozen matrices and their AdamW update, but
still runs the full forward and the backward through every activation (the gradient has to reach
the adapters, or the prompt at the input). How much that saves depends on what dominates a step:
on a model this small, per-operation overhead (Python, kernel launches), which LoRA adds to.
"""

from __future__ import annotations

import argparse
import datetime
import os
import platform
import statistics
import time

import torch

from llmcourse.config import current_size
from llmcourse.gpt import GPT
from llmcourse.recipes import peft_compare
from llmcourse.recipes.chat_pipeline import ChatPipelineConfig
from llmcourse.runtime import detect

VARIANTS = (("full", "full", 0), ("freeze", "freeze", 0), ("prompt", "prompt", 0))
VARIANTS += (("LoRA r=8", "lora", 8), ("control", "tokens", 0))
PARTS = ("forward ms", "backward ms", "optimizer ms")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--size", choices=("smoke", "full"), default=current_size())
    ap.add_argument("--rounds", type=int, default=7)
    ap.add_argument("--repeats", type=int, default=10)
    ap.add_argument("--warmup", type=int, default=5)
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    args = ap.parse_args()
    cfg = ChatPipelineConfig.for_size(args.size)
    rt = detect(args.device)
    # CPU time of this process on a CPU (the machine may be shared: waiting for a core is not
    # counted), wall time on a GPU (CPU time would miss the kernels)
    clock = time.process_time if rt.device.type == "cpu" else time.perf_counter
    torch.manual_seed(0)
    base = GPT(cfg.gpt_config(cfg.vocab_size))
    models = {
        name: peft_compare.make_variant(
            base, method, r=r or 8, new_token_ids=range(5), train_norm=True
        )
        for name, method, r in VARIANTS
    }
    T = cfg.block_size - 9  # room for the 8 virtual tokens, as in the notebook
    idx = torch.randint(0, cfg.vocab_size, (cfg.batch_size, T))
    batch = (idx, torch.roll(idx, -1, dims=1))
    tcfg = cfg.train_config("peft")
    runs: dict[str, list[dict[str, float]]] = {name: [] for name in models}
    for _ in range(args.rounds):  # interleaved: every round times every variant once
        for name, model in models.items():
            runs[name].append(
                peft_compare.step_parts(
                    model,
                    batch,
                    tcfg,
                    repeats=args.repeats,
                    warmup=args.warmup,
                    runtime=rt,
                    clock=clock,
                )
            )
    print(
        f"{datetime.date.today()}, {platform.processor() or platform.machine()}, "
        f"torch {torch.__version__}, device {rt.device}, threads {torch.get_num_threads()} "
        f"(OMP_NUM_THREADS={os.environ.get('OMP_NUM_THREADS')}), size {args.size}: "
        f"n_layer {cfg.n_layer}, n_embd {cfg.n_embd}, vocab {cfg.vocab_size}, batch "
        f"{cfg.batch_size} x {T}; medians of {args.rounds} rounds x {args.repeats} steps; "
        f"clock: {clock.__name__}"
    )
    print(f"{'variant':10} {'forward':>9} {'backward':>9} {'AdamW':>9} {'step':>9} {'vs full':>8}")
    full_step = None
    for name, parts in runs.items():
        med = {key: statistics.median(p[key] for p in parts) for key in PARTS}
        step = statistics.median(sum(p[key] for key in PARTS) for p in parts)
        full_step = full_step or step
        print(
            f"{name:10} {med['forward ms']:>7.2f}ms {med['backward ms']:>7.2f}ms "
            f"{med['optimizer ms']:>7.2f}ms {step:>7.2f}ms {step / full_step:>7.2f}x"
        )


if __name__ == "__main__":
    main()
