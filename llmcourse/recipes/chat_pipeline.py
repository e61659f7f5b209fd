"""The small base -> SFT -> DPO pipeline that notebooks 11, 12 and 13 share.

One configuration decides the pretraining corpus, the tokenizer, the course GPT's shape and the
instruction tasks, so the three notebooks talk about the *same* models:

    cfg = ChatPipelineConfig.for_size()
    prep = prepare(cfg)                             # tokenizer, pretraining ids, train/test examples
    base, history = pretrain(cfg, prep)             # a brief next-token pretraining through fit()
    sft_model, _ = supervised_finetune(cfg, prep, base)
    save_pair(directory, base, sft_model, tokenizer=prep.tokenizer, cfg=cfg)  # notebook 11 saves
    base, sft_model, prep = load_or_train(cfg, directory)  # ... 12 and 13 reuse (or retrain)

The tokenizer is a byte-level BPE trained on the pretraining text *plus* the instruction texts of the
training split, so the task words ("cloud", "capital", "<|assistant|>") are single tokens. Smoke size
keeps two tasks: "count" (the answer is a function of the prompt's length), which a 2-layer model picks
up in a few hundred steps, so accuracy visibly moves on a CPU, and "upper" (copy and map each word),
whose format it learns but whose content needs more (an induction-style copying circuit).
Full size (a T4 in minutes) uses all five tasks and a 6-layer GPT.
In Chinese (`LLMCOURSE_LANG=zh`, `language_overrides`) the text is Chinese and so are the tasks
(`instructions_zh`): smoke size keeps 计数 (count) and 繁体 (traditional characters, the
counterpart of "upper").
Left out: anything specific to one notebook (PEFT variants, DPO): those notebooks call `fit` directly.
"""

from __future__ import annotations

import copy
import json
from dataclasses import dataclass
from pathlib import Path

import torch

from llmcourse import data
from llmcourse.tasks import instructions, instructions_zh
from llmcourse.checkpoint import load_model_weights, save_model
from llmcourse.config import Sized, to_dict
from llmcourse.gpt import GPT, GPTConfig
from llmcourse.runtime import Runtime, make_generator
from llmcourse.sft import chat_tokenizer, encode_example, sft_sampler
from llmcourse.train import History, TrainConfig, estimate_loss, fit


@dataclass
class ChatPipelineConfig(Sized):
    corpus: str = "wikitext-2"  # pretraining text (offline it falls back to "lee", with a warning)
    max_chars: int = 3_000_000  # characters of the corpus used
    tokenizer_chars: int = (
        300_000  # of which the tokenizer is trained on this many (+ the instructions)
    )
    vocab_size: int = 2048  # BPE ids, the 5 chat special tokens included
    tasks: tuple[str, ...] = instructions.TASKS  # instruction tasks trained and evaluated
    peft_tasks: tuple[str, ...] = instructions.TASKS  # the tasks of notebook 12's method comparison
    n_train: int = 20_000  # training-split instruction examples
    n_test: int = 200  # held-out examples (operands never seen in training)
    block_size: int = 128  # the GPT's context
    n_layer: int = 6
    n_head: int = 6
    n_embd: int = 384
    dropout: float = 0.1
    batch_size: int = 32  # rows per batch, pretraining and SFT
    pretrain_steps: int = 3000
    pretrain_lr: float = 1e-3
    sft_steps: int = 1500
    sft_lr: float = 3e-4
    peft_steps: int = 1500  # steps of each method in notebook 12's comparison
    dpo_steps: int = 600  # DPO (notebook 13) on preference pairs of the same tasks
    dpo_lr: float = 5e-5
    dpo_beta: float = 0.1  # how far the policy may move from the SFT reference
    n_pref_train: int = 5000  # preference pairs, training split
    n_pref_test: int = 200  # preference pairs, held-out split
    grpo_steps: int = 300  # GRPO (notebook 13): one group sampling + one update per step
    grpo_lr: float = 5e-5
    grpo_prompts: int = 16  # prompts per step ...
    grpo_group_size: int = 8  # ... each answered G times by the current policy
    grpo_temperature: float = 1.0  # sampling temperature of the answers (and of their log-probs)
    grpo_beta: float = 0.04  # weight of the KL penalty to the SFT reference (the paper's 0.04)
    seed: int = 0
    smoke_overrides = {
        "corpus": "lee",
        "max_chars": 100_000,
        "tokenizer_chars": 20_000,
        "vocab_size": 600,
        "tasks": ("count", "upper"),
        "peft_tasks": ("count",),
        "n_train": 2000,
        "n_test": 120,
        "block_size": 64,
        "n_layer": 2,
        "n_head": 4,
        "n_embd": 64,
        "dropout": 0.0,
        "batch_size": 16,
        "pretrain_steps": 200,
        "pretrain_lr": 3e-3,
        "sft_steps": 450,
        "sft_lr": 4e-3,
        "peft_steps": 300,
        "dpo_steps": 100,
        "dpo_lr": 1e-4,
        "n_pref_train": 1000,
        "n_pref_test": 64,
        "grpo_steps": 60,
        "grpo_lr": 1e-3,
        "grpo_prompts": 12,
        # the smoke SFT model counts right when greedy: sampled hot it still errs, so the checker
        # has mistakes to punish
        "grpo_temperature": 1.5,
    }
    # LLMCOURSE_LANG=zh: Chinese pretraining text and the Chinese tasks (instructions_zh)
    language_overrides = {
        "zh": {
            "corpus": "wiki-zh",
            "tasks": instructions_zh.TASKS,
            "peft_tasks": instructions_zh.TASKS,
        },
        "zh/smoke": {"corpus": "fortunes-zh", "tasks": ("计数", "繁体"), "peft_tasks": ("计数",)},
    }

    def train_config(
        self, phase: str, max_steps: int | None = None, lr: float | None = None
    ) -> TrainConfig:
        """The `TrainConfig` of "pretrain", "sft", "peft", "dpo" or "grpo": the same loop, other steps and learning rate."""
        phases = {
            "pretrain": (self.pretrain_steps, self.pretrain_lr),
            "sft": (self.sft_steps, self.sft_lr),
            "peft": (self.peft_steps, self.sft_lr),
            "dpo": (self.dpo_steps, self.dpo_lr),
            "grpo": (self.grpo_steps, self.grpo_lr),
        }
        if phase not in phases:
            raise ValueError(f"phase must be one of {sorted(phases)}, got {phase!r}")
        steps, peak = phases[phase]
        steps, peak = max_steps or steps, lr or peak
        return TrainConfig(
            max_steps=steps,
            lr=peak,
            warmup_steps=max(1, steps // 20),
            eval_every=max(1, steps // 5),
            eval_batches=8,
            ckpt_every=0,
            log_every=max(1, steps // 50),
            seed=self.seed,
        )

    def gpt_config(self, vocab_size: int) -> GPTConfig:
        return GPTConfig(
            vocab_size=vocab_size,
            block_size=self.block_size,
            n_layer=self.n_layer,
            n_head=self.n_head,
            n_embd=self.n_embd,
            dropout=self.dropout,
        )


@dataclass
class Prepared:
    tokenizer: object  # a RegexBPE with the chat special tokens
    train_ids: torch.Tensor  # (N,) pretraining token ids
    val_ids: torch.Tensor  # (M,) held-out pretraining ids: what "forgetting" is measured on
    train_examples: list  # instructions.Example, training split
    test_examples: list  # held-out split

    @property
    def pad_id(self) -> int:
        return self.tokenizer.special_tokens["<|end|>"]

    def sft_rows(self) -> list[tuple[list[int], list[int]]]:
        return [encode_example(ex, self.tokenizer) for ex in self.train_examples]


def prepare(cfg: ChatPipelineConfig, tokenizer=None) -> Prepared:
    """Load the corpus, train (or reuse) the tokenizer, encode, and draw the instruction splits."""
    text = data.load_text(cfg.corpus)[: cfg.max_chars]
    train_ex = instructions.make_instructions(cfg.n_train, "train", tuple(cfg.tasks), seed=cfg.seed)
    test_ex = instructions.make_instructions(cfg.n_test, "test", tuple(cfg.tasks), seed=cfg.seed)
    if tokenizer is None:
        # the instruction texts of *all* tasks of the language (training split only), so every task
        # word is a token
        family = instructions.task_family(tuple(cfg.tasks))
        instr = instructions.make_instructions(1000, "train", family, seed=cfg.seed + 7)
        tokenizer = chat_tokenizer(
            text[: cfg.tokenizer_chars]
            + "\n"
            + "\n".join(f"{ex.prompt} {ex.answer}" for ex in instr),
            cfg.vocab_size,
        )
    # documents (lines) end with <|end|>, as GPT-2 separates them with <|endoftext|>: so the model has
    # learned to predict the end token before SFT asks it to end every answer with it
    end = [tokenizer.special_tokens["<|end|>"]]
    ids = torch.tensor(
        [
            i
            for line in text.splitlines()
            if line.strip()
            for i in tokenizer.encode_ordinary(line) + end
        ],
        dtype=torch.long,
    )
    train_ids, val_ids = data.train_val_split(ids, 0.1)
    return Prepared(tokenizer, train_ids, val_ids, train_ex, test_ex)


def preference_pairs(cfg: ChatPipelineConfig, split: str) -> list[tuple]:
    """(example, chosen, rejected) triples of `split` for the configured tasks only."""
    n = cfg.n_pref_train if split == "train" else cfg.n_pref_test
    family = instructions.task_family(tuple(cfg.tasks))
    pool = instructions.make_preferences(n * len(family) + 20, split, cfg.seed, tasks=family)
    triples = [t for t in pool if t[0].task in cfg.tasks][:n]
    if len(triples) < n:
        raise RuntimeError(
            f"only {len(triples)} {split} preference pairs for tasks {cfg.tasks}, wanted {n}"
        )
    return triples


def pretrain_batches(cfg: ChatPipelineConfig, ids: torch.Tensor):
    return data.next_token_batches(ids, cfg.block_size, cfg.batch_size)


def pretrain_val_loss(
    cfg: ChatPipelineConfig,
    model: torch.nn.Module,
    prep: Prepared,
    *,
    runtime: Runtime | None = None,
    n_batches: int = 8,
) -> float:
    """Mean next-token loss on held-out pretraining text: the same batches every call, and the same
    ones `fit` uses for its validation estimates (8 batches, seed cfg.seed + 1), so the numbers agree."""
    return estimate_loss(
        model,
        pretrain_batches(cfg, prep.val_ids),
        n_batches,
        runtime=runtime,
        generator=make_generator(cfg.seed + 1),
    )


def pretrain(
    cfg: ChatPipelineConfig,
    prep: Prepared,
    *,
    runtime: Runtime | None = None,
    progress: bool = False,
) -> tuple[GPT, History]:
    """A fresh GPT trained on next-token prediction (the 'base model')."""
    torch.manual_seed(cfg.seed)
    model = GPT(cfg.gpt_config(prep.tokenizer.vocab_size))
    hist = fit(
        model,
        pretrain_batches(cfg, prep.train_ids),
        cfg.train_config("pretrain"),
        val_data=pretrain_batches(cfg, prep.val_ids),
        runtime=runtime,
        progress=progress,
    )
    return model, hist


def supervised_finetune(
    cfg: ChatPipelineConfig,
    prep: Prepared,
    base: GPT,
    *,
    mix: float = 0.0,
    runtime: Runtime | None = None,
    progress: bool = False,
    steps: int | None = None,
) -> tuple[GPT, History]:
    """A copy of `base` fine-tuned on the training split (only assistant tokens trained).

    `mix` is the share of each batch replaced by pretraining windows (see `sft.sft_sampler`).
    The History's val_loss is the pretraining validation loss, so forgetting shows while it trains.
    """
    model = copy.deepcopy(base)
    sampler = sft_sampler(
        prep.sft_rows(),
        prep.pad_id,
        cfg.block_size - 1,
        batch_size=cfg.batch_size,
        pretrain_ids=prep.train_ids,
        mix=mix,
    )
    hist = fit(
        model,
        sampler,
        cfg.train_config("sft", max_steps=steps),
        val_data=pretrain_batches(cfg, prep.val_ids),
        runtime=runtime,
        progress=progress,
    )
    return model, hist


def save_pair(
    directory: str | Path, base: GPT, sft_model: GPT, *, tokenizer, cfg: ChatPipelineConfig
) -> Path:
    """Write base.safetensors, sft.safetensors, tokenizer.json and pipeline.json into `directory`."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    save_model(base, directory / "base.safetensors")
    save_model(sft_model, directory / "sft.safetensors")
    tokenizer.save(directory / "tokenizer.json")
    (directory / "pipeline.json").write_text(json.dumps(to_dict(cfg), indent=1), encoding="utf-8")
    return directory


def _model_fields(d: dict) -> dict:
    """The config fields that decide the base and SFT models (not notebook 12's or 13's settings)."""
    return {k: v for k, v in d.items() if not k.startswith(("dpo_", "n_pref_", "peft_", "grpo_"))}


def load_pair(directory: str | Path, cfg: ChatPipelineConfig):
    """(base, sft_model, tokenizer) saved by `save_pair` with this very config, else None."""
    from llmcourse.bpe import Tokenizer

    directory = Path(directory)
    meta = directory / "pipeline.json"
    if not meta.exists() or _model_fields(
        json.loads(meta.read_text(encoding="utf-8"))
    ) != _model_fields(json.loads(json.dumps(to_dict(cfg)))):
        return None  # nothing saved, or saved by another size/config: do not mix them
    tokenizer = Tokenizer.load(directory / "tokenizer.json")
    models = []
    for name in ("base", "sft"):
        model = GPT(cfg.gpt_config(tokenizer.vocab_size))
        load_model_weights(model, directory / f"{name}.safetensors")
        models.append(model)
    return models[0], models[1], tokenizer


def load_or_train(
    cfg: ChatPipelineConfig,
    directory: str | Path,
    *,
    runtime: Runtime | None = None,
    with_sft: bool = True,
    verbose: bool = True,
) -> tuple[GPT, GPT | None, Prepared]:
    """Notebook 11's base and SFT models from `directory`, or train them now.

    With `with_sft=False` only the base model is needed: a missing checkpoint costs just the pretraining
    (and nothing is saved); the SFT slot is then None. Otherwise both are trained and saved there.
    """
    saved = load_pair(directory, cfg)
    if saved is not None:
        base, sft_model, tokenizer = saved
        if verbose:
            print(f"loaded the base and SFT models of notebook 11 from {directory}")
        return base, sft_model, prepare(cfg, tokenizer)
    if verbose:
        print(
            "no matching checkpoint from notebook 11: pretraining"
            + (" and fine-tuning" if with_sft else "")
            + f" now ({cfg.pretrain_steps}"
            + (f" + {cfg.sft_steps}" if with_sft else "")
            + " steps)"
        )
    prep = prepare(cfg)
    base, _ = pretrain(cfg, prep, runtime=runtime)
    if not with_sft:
        return base, None, prep
    sft_model, _ = supervised_finetune(cfg, prep, base, runtime=runtime)
    save_pair(directory, base, sft_model, tokenizer=prep.tokenizer, cfg=cfg)
    return base, sft_model, prep
