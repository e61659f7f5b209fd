"""Two cheaper alternatives to LoRA, for the comparison in notebook 12: Freeze and prompt tuning.

* **Freeze** (the oldest trick): keep the lower layers fixed and train only the top `n` blocks and,
  optionally, the final norm and output head. Cheap in optimizer memory, but gradients still flow
  through the trained part and the model can only re-use features the frozen layers already compute.
* **Prompt tuning** (Lester et al. 2021): the whole model is frozen; we learn `n_virtual` embedding
  vectors that are placed before every input, as if they were the embeddings of a perfect prompt.
  **P-Tuning** (v1; Liu et al. 2021) produces those vectors from a small "prompt encoder" (the
  paper: an LSTM, then an MLP; here the MLP alone, peft's default), which makes optimisation more
  stable; `reparam_hidden` switches that on.
Both train through the course loop, with the usual `(logits, loss)` convention.
For Hugging Face models, peft offers the same ideas (`PromptTuningConfig`, `PromptEncoderConfig`); with
a model that takes `inputs_embeds`, `attention_mask` and `labels`, the virtual tokens must extend all
three (`prepend_virtual_tokens`, notebook 12's exercise). For the course GPT, `PromptTuned` wraps the
model and runs its forward pass with the virtual tokens after the embedding; `GPT.forward` has no
prompt-tuning argument.
Left out here: prefix tuning and P-Tuning v2 (Li & Liang 2021; Liu et al. 2022: trainable keys and
values in every layer, the "P-Tuning" of the ChatGLM repositories) live in `llmcourse.prefix_tuning`.
"""

from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F


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
    for block in list(model.blocks)[n - train_top_blocks :]:
        for p in block.parameters():
            p.requires_grad_(True)
    if train_head:
        for module in (model.final_norm, model.lm_head):
            for p in module.parameters():
                p.requires_grad_(True)
    return [name for name, p in model.named_parameters() if p.requires_grad]


class PromptTuned(nn.Module):
    """A frozen GPT plus `n_virtual` trainable prompt vectors (optionally from an MLP: P-Tuning)."""

    def __init__(
        self,
        model: nn.Module,
        n_virtual: int = 8,
        *,
        reparam_hidden: int | None = None,
        init_from_ids: list[int] | None = None,
    ):
        super().__init__()
        self.model = model
        for p in model.parameters():
            p.requires_grad_(False)
        C = model.cfg.n_embd
        init = torch.randn(n_virtual, C) * 0.02
        # start from the embeddings of real words, as Lester et al. suggest
        if init_from_ids is not None:
            ids = torch.tensor(init_from_ids[:n_virtual]).repeat(n_virtual)[:n_virtual]
            init = model.tok_emb.weight[ids].detach().clone()
        self.prompt = nn.Parameter(init.to(model.tok_emb.weight.device))
        self.encoder = None
        if reparam_hidden:
            self.encoder = nn.Sequential(
                nn.Linear(C, reparam_hidden), nn.Tanh(), nn.Linear(reparam_hidden, C)
            )

    @property
    def block_size(self) -> int:
        """Real tokens that fit in one forward pass: the virtual tokens take the first positions.
        `llmcourse.generate` reads it to crop the context (`generate.context_size`)."""
        return self.model.cfg.block_size - self.prompt.size(0)

    def virtual_tokens(self) -> torch.Tensor:
        p = self.prompt
        return p + self.encoder(p) if self.encoder is not None else p  # (P, C)

    def forward(
        self, idx: torch.Tensor, targets: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """idx (B, T) -> logits (B, T, vocab) for the real tokens, and the mean cross-entropy if
        targets (B, T) are given (-100 ignored): the course calling convention.

        The GPT's own forward pass, run here with the virtual tokens spliced in (the model itself
        takes no prompt-tuning argument): token embeddings, the P virtual vectors in front, learned
        positions 0..P+T-1 for the whole row, the frozen blocks, then the final norm and head on the
        T real positions only (nothing is predicted at a virtual token)."""
        gpt = self.model
        B, T = idx.shape
        prefix = self.virtual_tokens()  # (P, C)
        P = prefix.size(0)
        if P + T > gpt.cfg.block_size:
            raise ValueError(
                f"{P} virtual + {T} real tokens exceed block_size={gpt.cfg.block_size}; "
                "crop the input or use fewer virtual tokens"
            )
        x = gpt.tok_emb(idx)  # (B, T, C)
        # the same P vectors in front of every row
        x = torch.cat([prefix.to(x.dtype).unsqueeze(0).expand(B, -1, -1), x], dim=1)  # (B, P+T, C)
        # (P + T,) positions: the virtual tokens take the first ones
        pos = torch.arange(P + T, device=idx.device)
        x = gpt.drop(x + gpt.pos_emb(pos))
        # no KV cache: `generate` re-runs the whole window for every new token of a wrapped model
        for block in gpt.blocks:
            x = block(x)
        logits = gpt.lm_head(gpt.final_norm(x[:, P:]))  # (B, T, vocab): real positions only
        loss = None
        if targets is not None:
            loss = F.cross_entropy(
                logits.reshape(-1, logits.size(-1)).float(), targets.reshape(-1), ignore_index=-100
            )
        return logits, loss


# ------------------------------------------------------------------------- checked by notebook 12's exercises
def prepend_virtual_tokens(
    prompt: torch.Tensor, embeds: torch.Tensor, attention_mask: torch.Tensor, labels: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """prepend_virtual_tokens(prompt (P, C), embeds (B, T, C), attention_mask (B, T), labels (B, T)) ->
    (embeds (B, P+T, C), attention_mask (B, P+T), labels (B, P+T)): the P vectors placed before every row,
    attended to (mask 1) and never predicted (label -100), as peft's prompt tuning does."""
    B, P = embeds.size(0), prompt.size(0)
    virtual = prompt.unsqueeze(0).expand(B, -1, -1).to(embeds.dtype)  # (P, C) -> (B, P, C)
    return (
        torch.cat([virtual, embeds], dim=1),
        torch.cat([attention_mask.new_ones(B, P), attention_mask], dim=1),
        torch.cat([labels.new_full((B, P), -100), labels], dim=1),
    )
