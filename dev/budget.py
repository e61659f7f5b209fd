"""What the notebooks' full-size training runs cost on a GPU: ESTIMATES, not measurements.

    python dev/budget.py [--markdown] [--mfu 0.2]

Runs come from the package's configs at size "full" (no notebook is read). Models are built on the
meta device; N = sum(p.numel()) (tied matrices once), D = steps x sequences x context (padding in).

* Compute C = 6·N·D (Kaplan et al. 2020, Table 1): 2·N per token forward, 4·N backward. A frozen
  base (LoRA) has no weight gradients: 4·N·D + 2·N_trainable·D. DPO's frozen reference adds 2·N·D.
  Not counted: attention's 12·n_layer·T·n_embd per token, evaluation, generation.
* Time = C / (peak x MFU), peaks from `pretraining.PEAK_TFLOPS`: T4 65 TFLOP/s (fp16, no bf16),
  H100 989 TFLOP/s (bf16, dense). The MFU (0.2 unless --mfu) is an ASSUMPTION. Models this small
  are often bound by kernel launches instead: read the H100 column as a floor.
* Memory = `cost.memory.training_memory` (16-bit mixed precision, AdamW; both cards alike), + 2
  bytes per frozen parameter (`fit` keeps it in fp32, the formula in 16 bits), + 4 per parameter
  of DPO's fp32 reference. 03's vocabulary depends on its text: 256 characters are assumed.

Left out: 00, 01, 02, 06, 17 (no GPU at full size); 09, 14, 15, 16 (no training unless an earlier
notebook's checkpoint is missing); 04, 05, 07, 10, the BPE and scaling runs of 08 and the SmolLM2
LoRA of 11: their batch sizes or steps are set in the notebook, not in a package config. 19 trains
image models (patches and pixels, not tokens of text): minutes on a GPU, not estimated here. Row 08
takes `cli.pretrain`'s presets: the baby GPT, batch and steps of notebook 08's character run.
"""

import argparse
from dataclasses import dataclass

import torch
from torch import nn

from llmcourse import char_rnn, gpt, llama, lora, train
from llmcourse.cli.pretrain import PretrainConfig
from llmcourse.cost import memory
from llmcourse.pretraining import PEAK_TFLOPS, train_seconds
from llmcourse.recipes import adapt
from llmcourse.recipes.chat_pipeline import ChatPipelineConfig

GPUS, MFU = ("T4", "H100"), 0.2
CHAR_VOCAB = 256  # assumed: 03's vocabulary is the distinct characters of its text
# SmolLM2-135M-Instruct's published shape (HF config.json; 134,515,008 weights in its GGUF file).
SMOLLM2_135M = llama.LlamaConfig(
    vocab_size=49152, n_layer=30, n_head=9, n_kv_head=3, n_embd=576, ffn_hidden=1536
)


@dataclass
class Run:
    """One training run: a model (on the meta device) and the token positions it trains on."""

    notebook: str
    label: str
    source: str  # the package config the numbers come from
    model: nn.Module
    steps: int
    rows: int  # sequences per optimizer step
    seq_len: int  # positions per sequence
    shape: tuple[int, int, int]  # (n_layer, width, vocab): activations and logits
    reference: bool = False  # DPO: a frozen copy runs forward on the same tokens

    def __post_init__(self):
        self.n_params = n = sum(p.numel() for p in self.model.parameters())
        self.trainable = t = sum(p.numel() for p in self.model.parameters() if p.requires_grad)
        self.tokens = self.steps * self.rows * self.seq_len
        self.flops = (4 * n + 2 * t + (2 * n if self.reference else 0)) * self.tokens

    def memory_gb(self) -> float:
        n, t = self.n_params, self.trainable
        est = memory.training_memory(
            n if t == n else n - t,
            precision="fp16",
            method="full" if t == n else "lora",
            trainable_params=t,
            batch=self.rows,
            seq_len=self.seq_len,
            n_layer=self.shape[0],
            n_embd=self.shape[1],
            vocab_size=self.shape[2],
        )
        return (est.total + 2.0 * (n - t) + (4.0 * n if self.reference else 0.0)) / memory.GB


def runs() -> list[Run]:
    """Every estimated run, from the full-size presets."""
    ch, g = char_rnn.CharRNNConfig.for_size("full"), gpt.GPTConfig.for_size("full")
    pipe, cap = ChatPipelineConfig.for_size("full"), adapt.CapstoneConfig.for_size("full")
    assert cap.base == "smollm2-135m-instruct", cap.base  # the only full-size base counted here
    c, s = pipe.gpt_config(pipe.vocab_size), SMOLLM2_135M
    with torch.device("meta"):  # shapes without weights: no memory, no time
        lstm = char_rnn.CharRNNLM.from_config(ch, vocab_size=CHAR_VOCAB)
        baby, chat = gpt.GPT(g), gpt.GPT(c)
        smol, smol_lora = llama.Llama(s), llama.Llama(s)
        lora.apply_lora(smol_lora, adapt.HFChat.lora_targets, r=cap.lora_r, alpha=2 * cap.lora_r)

    def chat_run(nb: str, label: str, steps: int, rows: int = pipe.batch_size, **kw) -> Run:
        shape = (c.n_layer, c.n_embd, c.vocab_size)
        return Run(nb, label, "ChatPipelineConfig", chat, steps, rows, c.block_size, shape, **kw)

    def smol_run(label: str, model: nn.Module, steps: int, rows: int) -> Run:
        shape = (s.n_layer, s.n_embd, s.vocab_size)
        return Run("18", label, "CapstoneConfig", model, steps, rows, cap.block_size, shape)

    steps08 = train.TrainConfig.for_size("full").max_steps  # cli.pretrain: GPT + Train + Pretrain
    batch08 = PretrainConfig.for_size("full").batch_size
    return [
        Run("03", f"char {ch.kind.upper()} {ch.n_layer}x{ch.hidden_size}", "CharRNNConfig", lstm,
            ch.max_steps, ch.batch_size, ch.block_size, (ch.n_layer, ch.hidden_size, CHAR_VOCAB)),
        Run("08", f"baby GPT {g.n_layer}x{g.n_embd}, characters", "GPTConfig, cli.pretrain", baby,
            steps08, batch08, g.block_size, (g.n_layer, g.n_embd, g.vocab_size)),
        chat_run("11", "chat GPT pretraining", pipe.pretrain_steps),
        chat_run("11", "chat GPT SFT (each run)", pipe.sft_steps),
        chat_run("12", "PEFT, one variant (full fine-tuning, the costliest)", pipe.peft_steps),
        # DPO: a chosen and a rejected sequence per pair, and the frozen reference's forward
        chat_run("13", "DPO: policy + frozen reference", pipe.dpo_steps, 2 * pipe.batch_size,
                 reference=True),
        smol_run("SmolLM2-135M continued pretraining", smol, cap.cpt_steps, cap.batch_size),
        smol_run("SmolLM2-135M SFT, full (each run)", smol, cap.sft_steps, cap.sft_batch_size),
        smol_run(f"SmolLM2-135M SFT, LoRA r={cap.lora_r}", smol_lora, cap.sft_steps,
                 cap.sft_batch_size),
    ]  # fmt: skip


def fmt_s(s: float) -> str:
    return f"{s:.1f} s" if s < 90 else f"{s / 60:.1f} min" if s < 5400 else f"{s / 3600:.1f} h"


def table(rs: list[Run], mfu: float = MFU) -> list[list[str]]:
    """A header and one row of strings per run."""
    head = ["#", "run (ESTIMATE)", "config", "params N", "tokens D", "FLOPs ≈ 6·N·D"]
    rows = [head + [f"{gpu} at MFU {mfu:g}" for gpu in GPUS] + ["memory", "fits a T4"]]
    for r in rs:
        sizes = [f"{r.n_params / 1e6:.3g}M", f"{r.tokens / 1e6:.3g}M", f"{r.flops:.2g}"]
        times = [fmt_s(train_seconds(r.flops, PEAK_TFLOPS[gpu], mfu=mfu)) for gpu in GPUS]
        gb = r.memory_gb()
        fits = "yes" if gb <= memory.GPUS["T4"] else "NO"
        rows.append([r.notebook, r.label, r.source, *sizes, *times, f"{gb:.1f} GB", fits])
    return rows


def render(rows: list[list[str]], markdown: bool = False) -> str:
    """The table as Markdown (for the README) or as aligned columns (for a terminal)."""
    if markdown:
        rows = [rows[0], ["---"] * len(rows[0]), *rows[1:]]
        return "\n".join("| " + " | ".join(row) + " |" for row in rows)
    widths = [max(map(len, column)) for column in zip(*rows)]
    lines = ("  ".join(cell.ljust(w) for cell, w in zip(row, widths)) for row in rows)
    return "\n".join(line.rstrip() for line in lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--markdown", action="store_true", help="a Markdown table for the README")
    ap.add_argument("--mfu", type=float, default=MFU, help="assumed model FLOPs utilisation")
    args = ap.parse_args()
    print(render(table(runs(), args.mfu), markdown=args.markdown))


if __name__ == "__main__":
    main()
