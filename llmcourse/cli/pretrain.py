"""Pretrain the course GPT from the command line, on one process or many.

    python -m llmcourse.cli.pretrain --size=smoke
    python -m llmcourse.cli.pretrain --corpus=shakespeare --model.n_layer=6 --train.max_steps=5000
    torchrun --nproc_per_node=8 -m llmcourse.cli.pretrain --batch_size=512     # 1 node x 8 GPUs

Options: `--field=value` for PretrainConfig below, `--model.field=value` for GPTConfig and
`--train.field=value` for TrainConfig (each type-checked). `--size=smoke|full` picks the presets.
Under torchrun the same code runs DistributedDataParallel: `batch_size` is the *global* batch,
split evenly over the processes. Writes `out_dir/model.safetensors`, `out_dir/vocab.json`, the
configs as JSON, and resumable checkpoints in `out_dir/ckpt/`.
"""

from __future__ import annotations

import dataclasses
import json
import sys
from dataclasses import dataclass
from pathlib import Path

from llmcourse.config import Sized, current_size, from_cli, to_dict


@dataclass
class PretrainConfig(Sized):
    corpus: str = "shakespeare"  # a name from llmcourse.data.list_corpora()
    max_chars: int | None = None  # use only the first N characters (None = all)
    val_fraction: float = 0.1  # the last 10% of the text is held out
    batch_size: int = 64  # global batch, split over processes
    out_dir: Path = Path("out/pretrain")  # weights, vocabulary, configs, checkpoints
    resume: bool = True  # continue from out_dir/ckpt if a checkpoint is there
    smoke_overrides = {"corpus": "tiny-en", "batch_size": 8, "max_chars": 20_000}


def parse(argv: list[str]):
    from llmcourse.gpt import GPTConfig
    from llmcourse.train import TrainConfig

    size = current_size()
    groups: dict[str, list[str]] = {"": [], "model.": [], "train.": []}
    for arg in argv:
        if arg.startswith("--size="):
            size = arg.split("=", 1)[1]
            continue
        prefix = next((p for p in ("model.", "train.") if arg.startswith("--" + p)), "")
        groups[prefix].append("--" + arg[2 + len(prefix) :] if arg.startswith("--") else arg)
    run = from_cli(PretrainConfig.for_size(size), groups[""])
    model = from_cli(GPTConfig.for_size(size), groups["model."])
    train = from_cli(TrainConfig.for_size(size), groups["train."])
    return run, model, train


def main(argv: list[str] | None = None) -> int:
    import torch

    from llmcourse import checkpoint, data, distributed, runtime
    from llmcourse.gpt import GPT
    from llmcourse.train import fit

    run, model_cfg, train_cfg = parse(sys.argv[1:] if argv is None else argv)
    env = distributed.setup()
    rt = runtime.detect(f"cuda:{env.local_rank}" if torch.cuda.is_available() else "cpu")
    text = data.load_text(run.corpus, max_chars=run.max_chars)
    vocab = data.CharVocab.from_text(text, specials=())
    ids = torch.tensor(vocab.encode(text), dtype=torch.long)
    train_ids, val_ids = data.train_val_split(ids, run.val_fraction)
    model_cfg = dataclasses.replace(model_cfg, vocab_size=len(vocab))
    runtime.seed_all(train_cfg.seed)  # identical initial weights in every process
    model = GPT(model_cfg)
    train = data.next_token_batches(train_ids, model_cfg.block_size, run.batch_size)
    val = data.next_token_batches(val_ids, model_cfg.block_size, run.batch_size)
    if env.is_main:
        print(
            f"{run.corpus}: {len(ids):,} characters, vocab {len(vocab)}, {model.num_params() / 1e6:.2f}M params, "
            f"{env.world_size} process(es), {rt}"
        )
    history = fit(
        model,
        train,
        train_cfg,
        val_data=val,
        runtime=rt,
        ckpt_dir=run.out_dir / "ckpt",
        resume=run.resume,
        progress=env.is_main,
        dist_env=env,
    )
    if env.is_main:
        out = Path(run.out_dir)
        checkpoint.save_model(model, out / "model.safetensors")
        vocab.save(out / "vocab.json")
        for name, cfg in (("run", run), ("model", model_cfg), ("train", train_cfg)):
            (out / f"{name}_config.json").write_text(
                json.dumps(to_dict(cfg), indent=2, default=str)
            )
        print(
            f"final train loss {history.train_loss[-1]:.4f}, best val loss {history.best_val}, saved to {out}"
        )
    distributed.cleanup()
    return 0


if __name__ == "__main__":
    sys.exit(main())
