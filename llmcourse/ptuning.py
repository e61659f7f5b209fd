"""Two cheaper alternatives to LoRA, for the comparison in notebook 11: Freeze and prompt tuning.

* **Freeze** (the oldest trick): keep the lower layers fixed and train only the top `n` blocks and,
  optionally, the final norm and output head. Cheap in optimizer memory, but gradients still flow
  through the trained part and the model can only re-use features the frozen layers already compute.
* **Prompt tuning** (Lester et al. 2021): the whole model is frozen; we learn `n_virtual` embedding
  vectors that are placed before every input, as if they were the embeddings of a perfect prompt.
  **P-Tuning** (Liu et al. 2021) produces those vectors from a small MLP (a "prompt encoder"), which
  makes optimisation more stable; `reparam_hidden` switches that on.
Both train through the course loop, with the usual `(logits, loss)` convention.
For Hugging Face models, peft offers the same ideas (`PromptTuningConfig`, `PromptEncoderConfig`).
Left out: prefix tuning (virtual keys/values in every layer) and P-Tuning v2.
"""
from __future__ import annotations

import torch
import torch.nn as nn


def freeze(model: nn.Module, train_top_blocks: int = 1, train_head: bool = True) -> list[str]:
    """Freeze everything but the last `train_top_blocks` blocks (and the final norm/head if asked).

    Works for models with `.blocks` (the course GPT). With a tied head (GPT), training the head
    also trains the token embedding, since they are one matrix. Returns trainable parameter names.
    """
    if not hasattr(model, "blocks"):
        raise ValueError("freeze() expects a model with a .blocks list (e.g. llmcourse.gpt.GPT)")
    n = len(model.blocks)
    if not 0 <= train_top_blocks <= n:
        raise ValueError(f"train_top_blocks must be in [0, {n}], got {train_top_blocks}")
    for p in model.parameters():
        p.requires_grad_(False)
    for block in list(model.blocks)[n - train_top_blocks:]:
        for p in block.parameters():
            p.requires_grad_(True)
    if train_head:
        for module in (model.final_norm, model.lm_head):
            for p in module.parameters():
                p.requires_grad_(True)
    return [name for name, p in model.named_parameters() if p.requires_grad]


class PromptTuned(nn.Module):
    """A frozen GPT plus `n_virtual` trainable prompt vectors (optionally from an MLP: P-Tuning)."""

    def __init__(self, model: nn.Module, n_virtual: int = 8, reparam_hidden: int | None = None,
                 init_from_ids: list[int] | None = None):
        super().__init__()
        self.model = model
        for p in model.parameters():
            p.requires_grad_(False)
        C = model.cfg.n_embd
        init = torch.randn(n_virtual, C) * 0.02
        if init_from_ids is not None:  # start from the embeddings of real words, as Lester et al. suggest
            ids = torch.tensor(init_from_ids[:n_virtual]).repeat(n_virtual)[:n_virtual]
            init = model.tok_emb.weight[ids].detach().clone()
        self.prompt = nn.Parameter(init.to(model.tok_emb.weight.device))
        self.encoder = None
        if reparam_hidden:
            self.encoder = nn.Sequential(nn.Linear(C, reparam_hidden), nn.Tanh(), nn.Linear(reparam_hidden, C))

    def virtual_tokens(self) -> torch.Tensor:
        p = self.prompt
        return p + self.encoder(p) if self.encoder is not None else p  # (P, C)

    def forward(self, idx: torch.Tensor, targets: torch.Tensor | None = None):
        prefix = self.virtual_tokens().unsqueeze(0).expand(idx.size(0), -1, -1)  # (B, P, C)
        return self.model(idx, targets, prefix_emb=prefix)
