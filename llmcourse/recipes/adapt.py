"""Adapting a base model to a domain, stage by stage, with the same measurements after every stage.

The capstone's recipe (notebook 18), each stage a copy of the previous model trained by the one loop
(`llmcourse.train.fit`):

    base --continued pretraining (domain text + general replay)--> CPT --SFT (full or LoRA)--> assistant

* **Continued pretraining** (CPT; Gururangan et al. 2020, "Don't Stop Pretraining") is next-token
  training on the domain's documents. A share of every batch (`cpt_replay`) is general text, so the
  model keeps its general skill (replay, as notebook 11 did for SFT).
* **SFT** trains only the assistant's tokens of domain questions (`llmcourse.chat` loss mask); a share
  of every batch (`sft_replay`) replays the CPT text, so fine-tuning does not wash out what CPT taught.
  Full fine-tuning changes every weight; LoRA (`llmcourse.lora`) trains small adapters instead.
* **Evaluation** after each stage: perplexity on held-out domain text and on general text (forgetting
  shows as the general perplexity rising), and held-out exact match on questions whose facts the model
  could only have read during CPT (`llmcourse.tasks.domain`).

Two model families, one interface (`CourseChat`, `HFChat`): the course GPT with its BPE tokenizer,
pretrained here in seconds (smoke size), or SmolLM2-135M-Instruct (full size, offline GGUF via the data
layer), wrapped by `icl.HFCausalLM` so both follow `logits, loss = model(idx, targets)`.
Left out: DPO after SFT (notebook 13), retrieval instead of CPT (notebook 15), tokenizer extension.
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from llmcourse import chat, data, evaluate, lora, sft
from llmcourse.config import Sized
from llmcourse.tasks.instructions import Example, is_correct, normalise
from llmcourse.runtime import Runtime
from llmcourse.train import History, TrainConfig, fit


@dataclass
class CapstoneConfig(Sized):
    domain: str = (
        "pubmedqa"  # "pubmedqa" (Hugging Face; offline: falls back) or "apothecary" (built in)
    )
    base: str = "smollm2-135m-instruct"  # or "course-gpt": a small course GPT pretrained here first
    general_corpus: str = (
        "wikitext-2"  # general text: replay, forgetting (and pretraining a course GPT)
    )
    general_chars: int = (
        2_000_000  # characters of it for training (replay; pretraining a course GPT)
    )
    eval_chars: int = 200_000  # the next characters: held-out general text (forgetting)
    vocab_size: int = 2048  # course-gpt only: BPE ids, chat tokens included
    block_size: int = 512  # tokens per training window (course-gpt: also its context)
    n_layer: int = 6  # course-gpt only
    n_head: int = 6
    n_embd: int = 384
    batch_size: int = 8  # rows per step in pretraining and CPT
    sft_batch_size: int = 16  # rows per step in SFT
    pretrain_steps: int = 3000  # course-gpt only
    pretrain_lr: float = 1e-3
    cpt_steps: int = 1000
    cpt_lr: float = 5e-5
    cpt_replay: float = 0.25  # share of each CPT batch that is general text
    sft_steps: int = 300
    sft_lr: float = 2e-5
    sft_replay: float = 0.25  # share of each SFT batch that replays the CPT text
    lora_r: int = 16
    lora_lr: float = 2e-4
    max_answer_tokens: int = 24
    seed: int = 0
    # a CPU rehearsal (LLMCOURSE_REHEARSAL_ROWS) may train on fewer rows per step: in fp32 the
    # full batches take 22.6 GB of host memory
    rehearsal_row_caps = ("batch_size", "sft_batch_size")
    smoke_overrides = {
        "domain": "apothecary",
        "base": "course-gpt",
        "general_corpus": "lee",
        "general_chars": 16_000,
        "eval_chars": 8_000,
        "vocab_size": 768,
        "block_size": 48,
        "n_layer": 2,
        "n_head": 4,
        "n_embd": 96,
        "pretrain_steps": 200,
        "pretrain_lr": 3e-3,
        "cpt_steps": 500,
        "cpt_lr": 1e-2,
        "sft_steps": 150,
        "sft_lr": 3e-3,
        "lora_r": 8,
        "lora_lr": 1e-2,
    }

    def train_config(self, phase: str) -> TrainConfig:
        """The `TrainConfig` of "pretrain", "cpt", "sft" or "lora": one loop, different steps and rates."""
        phases = {
            "pretrain": (self.pretrain_steps, self.pretrain_lr),
            "cpt": (self.cpt_steps, self.cpt_lr),
            "sft": (self.sft_steps, self.sft_lr),
            "lora": (self.sft_steps, self.lora_lr),
        }
        if phase not in phases:
            raise ValueError(f"phase must be one of {sorted(phases)}, got {phase!r}")
        steps, lr = phases[phase]
        return TrainConfig(
            max_steps=steps,
            lr=lr,
            warmup_steps=max(1, steps // 20),
            eval_every=0,
            ckpt_every=0,
            log_every=max(1, steps // 50),
            seed=self.seed,
        )


class CourseChat:
    """The course GPT and its chat tokenizer (`sft.chat_tokenizer`): what the stages need to know."""

    lora_targets = ("qkv", "proj", "fc")  # every Linear of every block

    def __init__(self, tokenizer, block_size: int):
        self.tokenizer, self.block_size = tokenizer, block_size
        self.end_id = self.pad_id = tokenizer.special_tokens[chat.END]

    def encode(self, text: str) -> list[int]:
        return self.tokenizer.encode_ordinary(text)

    def chat_rows(self, examples: Sequence[Example]) -> list[tuple[list[int], list[int]]]:
        return [sft.encode_example(ex, self.tokenizer) for ex in examples]

    def answers(
        self, model: nn.Module, examples: Sequence[Example], max_new_tokens: int
    ) -> list[str]:
        return sft.generate_answers(model, self.tokenizer, examples, max_new_tokens=max_new_tokens)

    @torch.no_grad()
    def complete(self, model: nn.Module, text: str, max_new_tokens: int) -> str:
        """Greedy plain-text continuation (no chat template)."""
        model.eval()
        ids = torch.tensor([self.encode(text)], device=next(model.parameters()).device)
        return self.tokenizer.decode(
            model.generate(ids, max_new_tokens, temperature=0)[0, ids.size(1) :].tolist()
        )

    def with_lora(self, model: nn.Module, r: int) -> nn.Module:
        """A copy with rank-r adapters (alpha = 2r); the chat tokens' embedding rows train too (notebook 12)."""
        from llmcourse.recipes.peft_compare import make_variant

        return make_variant(
            model, "lora", r=r, new_token_ids=list(self.tokenizer.special_tokens.values())
        )

    def export(self, model: nn.Module, directory: str | Path) -> Path:
        """A plain GPT (LoRA and chat-token corrections merged) as a Hugging Face directory for
        `llmcourse.serve`. `model` itself is left as it is."""
        from llmcourse.gpt import GPT
        from llmcourse.serve.serving import export_chat_model

        merged = lora.merge_lora(copy.deepcopy(model).cpu(), unwrap=True)
        # read the (possibly parametrized) embedding's value instead of removing the parametrization:
        # removing it on a copy would also strip it from `model`, which shares the parametrized class
        state = {k: v for k, v in merged.state_dict().items() if ".parametrizations." not in k}
        state["tok_emb.weight"] = state["lm_head.weight"] = merged.tok_emb.weight.detach().clone()
        plain = GPT(merged.cfg)
        plain.load_state_dict(state)
        return export_chat_model(plain.eval(), self.tokenizer, directory)


class HFChat:
    """A Hugging Face chat model (wrapped in `icl.HFCausalLM`) with its tokenizer and chat template."""

    lora_targets = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")

    def __init__(self, tokenizer, block_size: int, *, end_id: int | None = None):
        """`end_id`: the token that ends a turn and a document; default the tokenizer's eos. Pass the
        model's (its generation config's): before transformers 5.25 a GGUF tokenizer reports
        SmolLM2's <|im_start|> as its eos."""
        self.tokenizer, self.block_size = tokenizer, block_size
        self.end_id = end_id if end_id is not None else tokenizer.eos_token_id
        self.pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else self.end_id

    def encode(self, text: str) -> list[int]:
        return list(self.tokenizer.encode(text, add_special_tokens=False))

    def chat_rows(self, examples: Sequence[Example]) -> list[tuple[list[int], list[int]]]:
        from llmcourse.tasks.instructions import to_conversation

        return [chat.encode_chat_hf(to_conversation(ex), self.tokenizer) for ex in examples]

    def answers(
        self, model: nn.Module, examples: Sequence[Example], max_new_tokens: int
    ) -> list[str]:
        return sft.hf_answers(model.hf, self.tokenizer, examples, max_new_tokens=max_new_tokens)

    @torch.no_grad()
    def complete(self, model: nn.Module, text: str, max_new_tokens: int) -> str:
        model.eval()
        ids = torch.tensor([self.encode(text)], device=next(model.parameters()).device)
        out = model.hf.generate(
            ids,
            attention_mask=torch.ones_like(ids),
            max_new_tokens=max_new_tokens,
            do_sample=False,
            pad_token_id=self.pad_id,
        )
        return self.tokenizer.decode(out[0, ids.size(1) :], skip_special_tokens=True)

    def with_lora(self, model: nn.Module, r: int) -> nn.Module:
        out = copy.deepcopy(model)
        lora.apply_lora(out, self.lora_targets, r=r, alpha=2.0 * r)
        return out

    def export(self, model: nn.Module, directory: str | Path) -> Path:
        """LoRA merged, saved with `save_pretrained` (weights and tokenizer with its chat template)."""
        hf = lora.merge_lora(copy.deepcopy(model).cpu(), unwrap=True).hf
        if (
            getattr(hf, "hf_quantizer", None) is not None
        ):  # loaded from GGUF, but dequantized to float on load
            if not all(p.is_floating_point() for p in hf.parameters()):
                raise ValueError(
                    "the model still holds quantized weights; dequantize it before exporting"
                )
            hf.hf_quantizer = None  # the weights are plain floats now: save them as such
            if hasattr(hf.config, "quantization_config"):
                del hf.config.quantization_config
        directory = Path(directory)
        hf.save_pretrained(directory)
        self.tokenizer.save_pretrained(directory)
        return directory


def general_text(cfg: CapstoneConfig) -> tuple[str, str]:
    """(training text, held-out text) of the general corpus: its first `general_chars`, then `eval_chars`.

    A corpus shorter than both together (the offline fallback at full size, for one) is split in the
    same proportion instead, with one line saying so: the held-out part must never be empty."""
    wanted = cfg.general_chars + cfg.eval_chars
    text = data.load_text(cfg.general_corpus, max_chars=wanted)
    cut = cfg.general_chars
    if len(text) < wanted:
        cut = len(text) * cfg.general_chars // wanted
        print(
            f"general text: {cfg.general_corpus!r} has {len(text):,} characters, fewer than the "
            f"{wanted:,} asked for; training on the first {cut:,}, holding out the other "
            f"{len(text) - cut:,}"
        )
    return text[:cut], text[cut:]


def encode_docs(lm: CourseChat | HFChat, docs: Sequence[str]) -> torch.Tensor:
    """Documents as one 1-D id stream, each ended by the end-of-text id (as pretraining data is)."""
    return torch.tensor([i for d in docs for i in lm.encode(d) + [lm.end_id]], dtype=torch.long)


def sampler(
    lm: CourseChat | HFChat,
    batch_size: int,
    *,
    rows: Sequence[tuple[list[int], list[int]]] = (),
    text_ids: torch.Tensor | None = None,
    replay_ids: torch.Tensor | None = None,
    mix: float = 0.0,
) -> Callable[[torch.Generator], tuple[torch.Tensor, torch.Tensor]]:
    """A `fit` sampler: each batch has round(mix * batch_size) random windows of `replay_ids` and, for
    the rest, random chat `rows` (SFT; only assistant tokens trained) or windows of `text_ids` (CPT).
    A window is a row whose every token is trained, so one padding/shift rule (`sft.sft_batch`) serves all."""
    if (len(rows) > 0) == (text_ids is not None):
        raise ValueError("give either chat rows (SFT) or text_ids (continued pretraining)")
    n_replay = round(mix * batch_size) if replay_ids is not None else 0
    T = lm.block_size

    def windows(ids: torch.Tensor, n: int, g: torch.Generator) -> list[tuple[list[int], list[int]]]:
        starts = torch.randint(0, len(ids) - T - 1, (n,), generator=g).tolist()
        return [(ids[s : s + T + 1].tolist(), [1] * (T + 1)) for s in starts]

    def sample(g: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
        n_main = batch_size - n_replay
        if text_ids is not None:
            main = windows(text_ids, n_main, g)
        else:
            main = [rows[i] for i in torch.randint(0, len(rows), (n_main,), generator=g).tolist()]
        batch = main + (windows(replay_ids, n_replay, g) if n_replay else [])
        return sft.sft_batch(
            batch, lm.pad_id, T
        )  # (B, <= T) inputs and targets, -100 = not trained

    return sample


def continued_pretraining(
    cfg: CapstoneConfig,
    lm,
    model: nn.Module,
    *,
    domain_ids: torch.Tensor,
    general_ids: torch.Tensor,
    runtime: Runtime | None = None,
) -> tuple[nn.Module, History]:
    """A copy of `model` trained on the domain text, `cfg.cpt_replay` of each batch general text."""
    out = copy.deepcopy(model)
    hist = fit(
        out,
        sampler(
            lm, cfg.batch_size, text_ids=domain_ids, replay_ids=general_ids, mix=cfg.cpt_replay
        ),
        cfg.train_config("cpt"),
        runtime=runtime,
        progress=False,
    )
    return out, hist


def finetune(
    cfg: CapstoneConfig,
    lm,
    model: nn.Module,
    *,
    examples: Sequence[Example],
    replay_ids: torch.Tensor,
    method: str = "full",
    runtime: Runtime | None = None,
) -> tuple[nn.Module, History]:
    """A copy of `model` fine-tuned on `examples` (full, or LoRA of rank cfg.lora_r), replaying `replay_ids`."""
    if method not in ("full", "lora"):
        raise ValueError(f"method must be 'full' or 'lora', got {method!r}")
    out = copy.deepcopy(model) if method == "full" else lm.with_lora(model, cfg.lora_r)
    batches = sampler(
        lm,
        cfg.sft_batch_size,
        rows=lm.chat_rows(examples),
        replay_ids=replay_ids,
        mix=cfg.sft_replay,
    )
    hist = fit(
        out,
        batches,
        cfg.train_config("sft" if method == "full" else "lora"),
        runtime=runtime,
        progress=False,
    )
    return out, hist


def evaluate_stage(
    lm,
    model: nn.Module,
    *,
    domain_ids: torch.Tensor,
    general_ids: torch.Tensor,
    test: Sequence[Example],
    max_new_tokens: int = 24,
) -> dict[str, float]:
    """Domain and general perplexity (windows of lm.block_size) and held-out exact match."""
    preds = lm.answers(model, test, max_new_tokens)
    return {
        "domain ppl": evaluate.perplexity(model, domain_ids, lm.block_size),
        "general ppl": evaluate.perplexity(model, general_ids, lm.block_size),
        "held-out EM": sum(is_correct(ex, p) for ex, p in zip(test, preds)) / len(preds),
    }


def course_base(
    cfg: CapstoneConfig,
    general_text: str,
    background: Sequence[str],
    *,
    runtime: Runtime | None = None,
) -> tuple[nn.Module, CourseChat, History]:
    """A course GPT pretrained on general text plus `background` documents (e.g. leaflets of another domain),
    with a chat tokenizer trained on the same text: the base model that has never seen the domain."""
    from llmcourse.gpt import GPT, GPTConfig

    # the tokenizer reads at most 300,000 characters of general text (BPE training is slow in Python)
    tok = sft.chat_tokenizer(general_text[:300_000] + "\n" + "\n".join(background), cfg.vocab_size)
    lm = CourseChat(tok, cfg.block_size)
    ids = torch.cat(
        [
            encode_docs(lm, [ln for ln in general_text.splitlines() if ln.strip()]),
            encode_docs(lm, background),
        ]
    )
    torch.manual_seed(cfg.seed)
    model = GPT(
        GPTConfig(
            vocab_size=tok.vocab_size,
            block_size=cfg.block_size,
            n_layer=cfg.n_layer,
            n_head=cfg.n_head,
            n_embd=cfg.n_embd,
            dropout=0.0,
        )
    )
    hist = fit(
        model,
        sampler(lm, cfg.batch_size, text_ids=ids),
        cfg.train_config("pretrain"),
        runtime=runtime,
        progress=False,
    )
    return model, lm, hist


def smollm2_base(cfg: CapstoneConfig, runtime: Runtime | None = None) -> tuple[nn.Module, HFChat]:
    """SmolLM2-135M-Instruct from the offline GGUF file, in the course calling convention."""
    from llmcourse.icl import load_smollm2

    model, tok = load_smollm2(runtime.device if runtime is not None else None)
    return model, HFChat(tok, cfg.block_size, end_id=generation_end_id(model.hf))


def generation_end_id(hf_model: nn.Module) -> int:
    """The end-of-turn id a Hugging Face model generates up to: its generation config's eos (the first,
    when it lists several). Read from the model, not the tokenizer: transformers before 5.25 reports
    <|im_start|> as a GGUF SmolLM2 tokenizer's eos, which would end every document with a turn opener."""
    end = hf_model.generation_config.eos_token_id
    if end is None:
        end = hf_model.config.eos_token_id
    if isinstance(end, (list, tuple)):
        end = end[0] if end else None
    if end is None:
        raise ValueError(
            "the model names no end-of-sequence id (generation_config.eos_token_id and "
            "config.eos_token_id are both unset); set one before fine-tuning"
        )
    return int(end)


# ------------------------------------------------------------------------- checked by notebook 18's exercises
def exact_match(predictions: list[str], answers: list[str]) -> float:
    """exact_match(predictions, answers) -> float: the share of predictions equal to their answer after
    normalising (strip, drop a final '.' or '!', collapse spaces, lower-case)."""
    return sum(normalise(p) == normalise(a) for p, a in zip(predictions, answers)) / len(answers)


def pooled_perplexity(nll_sums: list[float], token_counts: list[int]) -> float:
    """pooled_perplexity(nll_sums, token_counts) -> float: the perplexity of a text scored in windows,
    given each window's summed negative log-likelihood (nats) and its number of scored tokens."""
    import math

    return math.exp(sum(nll_sums) / sum(token_counts))
