"""DeepSpeed ZeRO from the course's TrainConfig: the JSON that `deepspeed.initialize` reads.

DeepSpeed (Rasley et al. 2020) implements the ZeRO stages of `llmcourse.cost.zero` behind one
config file. `ds_config` writes that file from the course's training settings, so a DeepSpeed run
trains with the same batch, learning rate, AdamW and clipping as `llmcourse.train.fit`:

    TrainConfig                     DeepSpeed config
    batch_size / world_size         train_micro_batch_size_per_gpu (the global batch split over GPUs)
    grad_accum_steps                gradient_accumulation_steps
    lr, betas, weight_decay         optimizer {"type": "AdamW", "params": ...}
    warmup_steps, max_steps,        scheduler {"type": "WarmupCosineLR", ...}: linear warmup, cosine
      min_lr_ratio                    down to lr * min_lr_ratio, as `train.lr_at`
    grad_clip                       gradient_clipping
    precision                       bf16 / fp16 (dynamic loss scale) / neither = fp32

`train_batch_size` is left out on purpose: DeepSpeed derives it as micro-batch x accumulation x
number of GPUs, so the same file works for any launch size it divides. Differences from `fit`:
DeepSpeed's optimizer decays every parameter (fit leaves 1-D tensors undecayed: pass
`train.make_optimizer(model, ...)` as `optimizer=` to `deepspeed.initialize` to keep that), and its
warmup starts at `lr * warmup_min_ratio` (here 1 / warmup_steps, as fit's first step) and heads
for lr at step `warmup_steps` (fit reaches it one step earlier), but its cosine already starts
there: from then on it uses the rate fit uses one step later, and it ends on the same floor
(tests/test_deepspeed_config.py checks this step by step).

DeepSpeed validates each section with pydantic (a misspelt `zero_optimization` field is an error)
but **ignores unknown top-level keys** silently; `check_keys` catches those with the field names
of DeepSpeed 0.19.8, and tests/test_deepspeed_config.py checks this file with DeepSpeed's own
parser (`deepspeed.runtime.config.DeepSpeedConfig`) when DeepSpeed is installed. Launch:

    deepspeed --num_gpus=8 train.py --deepspeed_config ds_config.json      # DeepSpeed's launcher
    torchrun --nproc_per_node=8 train.py ...                               # also works

Reference: Rajbhandari et al., "ZeRO" (2020); the DeepSpeed config documentation. Left out: CPU
and NVMe offload (ZeRO-Offload / ZeRO-Infinity), ZeRO++, activation checkpointing and pipeline
sections, and a DeepSpeed training loop (the engine's `backward`/`step` replace fit's).
"""

from __future__ import annotations

from llmcourse.train import TrainConfig

# Field names DeepSpeed 0.19.8 reads (deepspeed/runtime/constants.py and the pydantic models);
# the test compares them with the installed DeepSpeed, so a rename upstream makes it fail.
TOP_LEVEL_KEYS = frozenset(
    {
        "train_batch_size",
        "train_micro_batch_size_per_gpu",
        "gradient_accumulation_steps",
        "gradient_clipping",
        "steps_per_print",
        "optimizer",
        "scheduler",
        "bf16",
        "fp16",
        "zero_optimization",
        "wall_clock_breakdown",
    }
)
ZERO_KEYS = frozenset(
    {
        "stage",
        "overlap_comm",
        "contiguous_gradients",
        "reduce_bucket_size",
        "allgather_bucket_size",
        "reduce_scatter",
        "offload_optimizer",
        "offload_param",
        "stage3_gather_16bit_weights_on_model_save",
    }
)
STAGES = (0, 1, 2, 3)  # 0 = plain data parallelism (DDP), 1-3 as in llmcourse.cost.zero


def ds_config(
    cfg: TrainConfig,
    batch_size: int,
    world_size: int,
    *,
    stage: int = 3,
    precision: str = "bf16",
) -> dict:
    """The DeepSpeed config (a JSON-able dict) for training with `cfg` on `world_size` GPUs.

    `batch_size` is the global batch per forward/backward, as in `llmcourse.cli.pretrain`; one
    optimizer step sees batch_size x grad_accum_steps sequences.

    >>> c = ds_config(TrainConfig(grad_accum_steps=2), 64, 8, stage=2)
    >>> c["train_micro_batch_size_per_gpu"], c["gradient_accumulation_steps"], c["zero_optimization"]
    (8, 2, {'stage': 2, 'overlap_comm': True, 'contiguous_gradients': True})
    """
    if stage not in STAGES:
        raise ValueError(f"stage={stage}: use one of {STAGES} (0 = no sharding, 3 = ZeRO-3)")
    if precision not in ("bf16", "fp16", "fp32"):
        raise ValueError(f"precision={precision!r}: use 'bf16', 'fp16' or 'fp32'")
    if world_size < 1 or batch_size % world_size:
        raise ValueError(
            f"batch_size={batch_size} does not split over world_size={world_size}: "
            "make the global batch a multiple of the number of GPUs"
        )
    warmup = max(1, cfg.warmup_steps)
    return {
        "train_micro_batch_size_per_gpu": batch_size // world_size,
        "gradient_accumulation_steps": cfg.grad_accum_steps,
        "gradient_clipping": cfg.grad_clip,
        "steps_per_print": cfg.log_every,
        "optimizer": {
            "type": "AdamW",
            "params": {
                "lr": cfg.lr,
                "betas": list(cfg.betas),
                "eps": 1e-8,  # torch.optim.AdamW's default, which fit uses
                "weight_decay": cfg.weight_decay,
            },
        },
        "scheduler": {
            "type": "WarmupCosineLR",
            "params": {
                "total_num_steps": cfg.max_steps,
                "warmup_num_steps": warmup,
                "warmup_min_ratio": 1.0 / warmup,  # fit's first step uses lr / warmup_steps
                "cos_min_ratio": cfg.min_lr_ratio,
                "warmup_type": "linear",
            },
        },
        "bf16": {"enabled": precision == "bf16"},
        "fp16": {"enabled": precision == "fp16", "loss_scale": 0},  # 0 = dynamic loss scaling
        "zero_optimization": {"stage": stage, "overlap_comm": True, "contiguous_gradients": True},
    }


def check_keys(config: dict) -> None:
    """Raise ValueError naming any key DeepSpeed 0.19.8 does not know (it would ignore it)."""
    unknown = sorted(set(config) - TOP_LEVEL_KEYS)
    unknown += [
        f"zero_optimization.{k}"
        for k in sorted(set(config.get("zero_optimization", {})) - ZERO_KEYS)
    ]
    if unknown:
        raise ValueError(
            f"unknown DeepSpeed config keys {unknown}: DeepSpeed skips unknown top-level keys "
            f"silently; check the spelling against {sorted(TOP_LEVEL_KEYS)}"
        )


def launch_command(script: str, n_gpus: int, config_path: str = "ds_config.json") -> str:
    """The one-node launch line for DeepSpeed's own launcher.

    >>> launch_command("train.py", 8)
    'deepspeed --num_gpus=8 train.py --deepspeed_config ds_config.json'
    """
    return f"deepspeed --num_gpus={n_gpus} {script} --deepspeed_config {config_path}"
