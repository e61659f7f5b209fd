"""Notebook 12's SFT + LoRA run written out as a LLaMA-Factory configuration: YAML files and data.

LLaMA-Factory (hiyouga/LLaMA-Factory, Zheng et al. 2024, "LlamaFactory: Unified Efficient
Fine-Tuning of 100+ Language Models") wraps transformers' `Trainer`, peft and its own chat templates
behind one command: `llamafactory-cli train run.yaml` (or the same form in `llamafactory-cli
webui`). `export_run(cfg, examples, out_dir)` writes everything that command needs, with the
hyperparameters of notebook 12's LoRA row, into one folder:

    run.yaml            the training run: model, LoRA, data, schedule (`llamafactory-cli train`)
    merge.yaml          folds the trained adapter into the weights (`llamafactory-cli export`)
    dataset_info.json   registers the data set: file, format ("alpaca" or "sharegpt"), columns
    llmcourse_sft.json  the instruction examples as LLaMA-Factory records

How the course's settings map (each function below says more):

* LoRA: rank r, alpha = 2r (`peft_compare.make_variant`), dropout 0 (`lora.apply_lora`'s default),
  and the adapted layers by role: our GPT's `attn.qkv`, `attn.proj`, `mlp.fc`, `mlp.proj` become
  Llama's `q_proj,k_proj,v_proj`, `o_proj`, `gate_proj,up_proj` and `down_proj` (`llama_targets`);
* the loop (`train.TrainConfig`): steps, peak learning rate, warmup, AdamW's betas and weight
  decay, gradient clipping, accumulation and seed become transformers' `TrainingArguments`, and our
  warmup + cosine to 10 % of the peak becomes the scheduler "cosine_with_min_lr"; gradient
  checkpointing, which LLaMA-Factory turns on by default and `fit` never uses, is turned off;
* the data: our chat template and loss mask are replaced by LLaMA-Factory's template for the model
  ("smollm2": SmolLM2's ChatML turns, though in 0.9.5 its default system prompt ends with a full
  stop that SmolLM2's own template lacks: pass `system=` to control it) and its
  `train_on_prompt: false`, which, like `chat.encode_chat`, trains only the assistant's turn: the
  answer and the tokens that end it.

Run the folder's files (GPU, network) with `cd folder && llamafactory-cli train run.yaml`: the paths
in them are relative to the folder. Checked against LLaMA-Factory 0.9.5 (its own argument parser
and data loading, in a separate environment: it pins transformers <= 5.6, the course uses a later
one); tests/test_llamafactory_export.py holds the field names it was checked against.
Left out: notebook 12's extras for its tiny base (trainable chat-token rows and final norm: a chat
model such as SmolLM2-Instruct already knows its template's tokens), evaluation during training,
and the course GPT itself (LLaMA-Factory trains Hugging Face models only).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

import yaml

from llmcourse.recipes.chat_pipeline import ChatPipelineConfig
from llmcourse.recipes.peft_compare import LORA_TARGETS
from llmcourse.tasks.instructions import Example
from llmcourse.train import TrainConfig

MODEL = "HuggingFaceTB/SmolLM2-135M-Instruct"  # a Llama-architecture chat model on the Hub
TEMPLATE = "smollm2"  # LLaMA-Factory's name for SmolLM2's chat template (ChatML turns)
LORA_LR_MULT = 2.5  # notebook 12's LoRA rows train at cfg.sft_lr * 2.5 (its `variants` table)
ALPHA_PER_RANK = 2  # peft_compare.make_variant sets alpha = 2 r
FORMATTINGS = ("alpaca", "sharegpt")
PRECISIONS = ("fp32", "fp16", "bf16")

# Every Linear of one block of the course GPT (by its module path) -> the Linear(s) of a
# Hugging Face Llama decoder layer (SmolLM2 is one) that play the same part.
GPT_TO_LLAMA = {
    "attn.qkv": ("q_proj", "k_proj", "v_proj"),  # attention input: one fused matrix here, 3 there
    "attn.proj": ("o_proj",),  # attention output
    "mlp.fc": ("gate_proj", "up_proj"),  # MLP input: SwiGLU has a gate beside the up projection
    "mlp.proj": ("down_proj",),  # MLP output
}


def llama_targets(targets: Sequence[str] = LORA_TARGETS) -> list[str]:
    """The Llama module names LoRA should adapt for the course GPT's `targets` (peft's matching
    rule: a target names a path or its last components, so "proj" means attn.proj *and* mlp.proj).

    >>> llama_targets(["qkv"])
    ['q_proj', 'k_proj', 'v_proj']
    >>> llama_targets(["qkv", "proj", "fc"])  # notebook 12's LoRA: every Linear of a block
    ['q_proj', 'k_proj', 'v_proj', 'o_proj', 'gate_proj', 'up_proj', 'down_proj']
    """
    out: list[str] = []
    for path, names in GPT_TO_LLAMA.items():
        if any(path == t or path.endswith("." + t) for t in targets):
            out += [n for n in names if n not in out]
    unknown = [t for t in targets if not any(p == t or p.endswith("." + t) for p in GPT_TO_LLAMA)]
    if unknown or not out:
        raise ValueError(
            f"no course GPT Linear matches {unknown or list(targets)}; "
            f"use names from {sorted(GPT_TO_LLAMA)}"
        )
    return out


def lora_train_config(cfg: ChatPipelineConfig) -> TrainConfig:
    """The `TrainConfig` of notebook 12's LoRA rows: the "peft" phase at `LORA_LR_MULT` x sft_lr."""
    return cfg.train_config("peft", lr=cfg.sft_lr * LORA_LR_MULT)


def training_config(
    cfg: ChatPipelineConfig,
    *,
    model_name: str = MODEL,
    template: str = TEMPLATE,
    rank: int = 8,
    train: TrainConfig | None = None,
    cutoff_len: int | None = None,
    precision: str = "fp16",
    dataset: str = "llmcourse_sft",
    output_dir: str = "saves/llmcourse-lora",
) -> dict[str, dict]:
    """The keys of LLaMA-Factory's training YAML, in sections (model, method, dataset, train).

    `train` defaults to `lora_train_config(cfg)`, `cutoff_len` (tokens per conversation, prompt and
    answer together) to the course GPT's context `cfg.block_size`. `precision` "fp16" runs on every
    GPU (Colab's T4 included); use "bf16" on an Ampere or newer one, "fp32" for no autocast.
    """
    train = train or lora_train_config(cfg)
    if precision not in PRECISIONS:
        raise ValueError(f"precision must be one of {PRECISIONS}, got {precision!r}")
    if rank <= 0:
        raise ValueError(f"LoRA rank must be positive, got {rank}")
    mixed = {"fp16": {"fp16": True}, "bf16": {"bf16": True}, "fp32": {}}[precision]
    return {
        "model": {
            "model_name_or_path": model_name,
            # LLaMA-Factory recomputes activations in the backward pass unless told not to; `fit`
            # never does (a 135M model fits without it, and each step is faster)
            "disable_gradient_checkpointing": True,
        },
        "method": {
            "stage": "sft",  # supervised fine-tuning (pt, rm, ppo, dpo and kto are the others)
            "do_train": True,
            "finetuning_type": "lora",
            "lora_rank": rank,
            "lora_alpha": ALPHA_PER_RANK * rank,  # an int field in LLaMA-Factory
            "lora_dropout": 0.0,
            "lora_target": ",".join(llama_targets(LORA_TARGETS)),
        },
        "dataset": {
            "dataset": dataset,
            "dataset_dir": ".",  # dataset_info.json sits beside this file: run from the folder
            "template": template,
            "cutoff_len": cutoff_len or cfg.block_size,
            "train_on_prompt": False,  # the loss mask: only the assistant's tokens are targets
        },
        "train": {
            "output_dir": output_dir,
            "per_device_train_batch_size": cfg.batch_size,
            "gradient_accumulation_steps": train.grad_accum_steps,
            "max_steps": train.max_steps,  # steps, as `fit` counts them (overrides epochs)
            "learning_rate": float(f"{train.lr:.10g}"),  # 2.5 * 3e-4 = 0.0007499999999999999
            "lr_scheduler_type": "cosine_with_min_lr",  # our warmup + cosine to a floor
            "lr_scheduler_kwargs": {"min_lr_rate": train.min_lr_ratio},
            "warmup_steps": train.warmup_steps,
            "optim": "adamw_torch",
            "adam_beta1": train.betas[0],
            "adam_beta2": train.betas[1],
            "weight_decay": train.weight_decay,
            "max_grad_norm": train.grad_clip,
            "seed": train.seed,
            "logging_steps": train.log_every,
            "save_steps": train.ckpt_every or train.max_steps,  # 0 in the course: at the end only
            "plot_loss": True,  # LLaMA-Factory draws training_loss.png into output_dir
            "report_to": "none",
            **mixed,
        },
    }


def merge_config(
    *,
    model_name: str = MODEL,
    template: str = TEMPLATE,
    adapter_dir: str = "saves/llmcourse-lora",
    export_dir: str = "saves/llmcourse-merged",
) -> dict[str, str]:
    """The keys of `llamafactory-cli export`: load the base, fold the LoRA adapter in, save."""
    return {
        "model_name_or_path": model_name,
        "adapter_name_or_path": adapter_dir,
        "template": template,
        "finetuning_type": "lora",
        "export_dir": export_dir,
    }


def dataset_records(
    examples: Sequence[Example], *, formatting: str = "alpaca", system: str | None = None
) -> list[dict]:
    """Instruction examples as LLaMA-Factory records.

    alpaca: {"instruction", "input", "output"} (+ "system"): one turn; "input" is appended to the
    instruction after a blank line, so it stays empty here. sharegpt: {"conversations": [{"from":
    "human", "value"}, {"from": "gpt", "value"}]} (+ "system"): any number of turns.

    >>> dataset_records([Example("add", "What is 2 plus 3?", "5")])
    [{'instruction': 'What is 2 plus 3?', 'input': '', 'output': '5'}]
    """
    if formatting not in FORMATTINGS:
        raise ValueError(f"formatting must be one of {FORMATTINGS}, got {formatting!r}")
    if not examples:
        raise ValueError(
            "no examples to export: pass the training split (e.g. prep.train_examples)"
        )
    records = []
    for ex in examples:
        if formatting == "alpaca":
            rec = {"instruction": ex.prompt, "input": "", "output": ex.answer}
        else:
            rec = {
                "conversations": [
                    {"from": "human", "value": ex.prompt},
                    {"from": "gpt", "value": ex.answer},
                ]
            }
        if system is not None:
            rec["system"] = system
        records.append(rec)
    return records


def dataset_info(
    name: str, file_name: str, *, formatting: str = "alpaca", system: bool = False
) -> dict[str, dict]:
    """The `dataset_info.json` entry that registers `file_name` under `name`."""
    if formatting not in FORMATTINGS:
        raise ValueError(f"formatting must be one of {FORMATTINGS}, got {formatting!r}")
    if formatting == "alpaca":
        columns = {"prompt": "instruction", "query": "input", "response": "output"}
    else:
        columns = {"messages": "conversations"}
    if system:
        columns["system"] = "system"
    entry = {"file_name": file_name, "formatting": formatting, "columns": columns}
    if formatting == "sharegpt":  # the default tags, written out so the file says what it expects
        entry["tags"] = {
            "role_tag": "from",
            "content_tag": "value",
            "user_tag": "human",
            "assistant_tag": "gpt",
        }
    return {name: entry}


def to_yaml(sections: dict[str, dict]) -> str:
    """Sections of keys -> YAML text, a "### section" comment above each (as LLaMA-Factory's
    examples/ are laid out). Floats always carry a dot or exponent ("1.0e-05"), so the YAML 1.1
    loaders read them as numbers, not strings."""
    parts = []
    for title, keys in sections.items():
        body = yaml.safe_dump(keys, sort_keys=False, default_flow_style=False, allow_unicode=True)
        parts.append(f"### {title}\n{body}")
    return "\n".join(parts)


def export_run(
    cfg: ChatPipelineConfig,
    examples: Sequence[Example],
    out_dir: str | Path,
    *,
    model_name: str = MODEL,
    template: str = TEMPLATE,
    rank: int = 8,
    train: TrainConfig | None = None,
    cutoff_len: int | None = None,
    precision: str = "fp16",
    formatting: str = "alpaca",
    system: str | None = None,
    dataset: str = "llmcourse_sft",
) -> Path:
    """Write run.yaml, merge.yaml, dataset_info.json and `<dataset>.json` into `out_dir`.

    `examples`: the training conversations (notebook 12 trains on its `train_ex`). The other
    keywords as in `training_config` and `dataset_records`. Returns the folder.

    Example: `export_run(cfg, train_ex, "lf-run")`, then `cd lf-run && llamafactory-cli train
    run.yaml` where LLaMA-Factory is installed.
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    records = dataset_records(examples, formatting=formatting, system=system)
    sections = training_config(
        cfg,
        model_name=model_name,
        template=template,
        rank=rank,
        train=train,
        cutoff_len=cutoff_len,
        precision=precision,
        dataset=dataset,
    )
    adapter_dir = sections["train"]["output_dir"]
    merge = {
        "merge": merge_config(model_name=model_name, template=template, adapter_dir=adapter_dir)
    }
    info = dataset_info(
        dataset, f"{dataset}.json", formatting=formatting, system=system is not None
    )
    files = {
        # a JSON list, one record a line: readable, and a diff shows which examples changed
        f"{dataset}.json": "[\n"
        + ",\n".join(json.dumps(r, ensure_ascii=False) for r in records)
        + "\n]\n",
        "dataset_info.json": json.dumps(info, indent=1, ensure_ascii=False) + "\n",
        "run.yaml": to_yaml(sections),
        "merge.yaml": to_yaml(merge),
    }
    for name, text in files.items():
        (out / name).write_text(text, encoding="utf-8")
    return out
