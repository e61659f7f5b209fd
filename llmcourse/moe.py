"""A mixture-of-experts feed-forward: a router sends each token to its top-k of n experts.

A dense model runs every parameter for every token. A mixture of experts (Shazeer et al. 2017;
Switch Transformer, Fedus et al. 2021; Mixtral, Jiang et al. 2024) keeps n feed-forward "experts"
per block and a small linear *router* that scores them per token. Each token goes through its k
best experts only, and their outputs are mixed with the router's (renormalised) probabilities. The
model holds n times the feed-forward parameters but spends only k experts' compute per token.

Left alone, a router collapses onto a few experts (they train faster, so they win more tokens). The
load-balancing loss of the Switch Transformer pushes back:

    aux = n · Σ_e f_e · P_e

f_e is the fraction of top-k assignments that went to expert e and P_e its mean router probability.
It is k when routing is uniform, larger when it is skewed. This is Hugging Face's Mixtral definition
(`load_balancing_loss_func`, tested equal for one layer); the model adds it, weighted by
`LlamaConfig.moe_aux_weight`, to its training loss.

Left out: expert capacity limits and token dropping, router z-loss, jitter noise, shared experts
(DeepSeek-MoE), and batched expert kernels (we loop over experts, which is clear and slow).
"""

from __future__ import annotations

from typing import Callable

import torch
import torch.nn as nn
import torch.nn.functional as F


def load_balancing_loss(router_probs: torch.Tensor, chosen: torch.Tensor) -> torch.Tensor:
    """n · Σ_e f_e · P_e for router_probs (N, n) and the chosen experts (N, k) of N tokens.

    Uniform routing gives k, whatever n is:
    >>> probs = torch.full((4, 2), 0.5)
    >>> float(load_balancing_loss(probs, torch.tensor([[0], [1], [0], [1]])))
    1.0
    """
    n = router_probs.size(-1)
    counts = F.one_hot(chosen, n).float().sum(dim=(0, 1))  # (n,): assignments per expert
    f = counts / chosen.size(0)  # per token: sums to k over the experts
    P = router_probs.float().mean(dim=0)  # (n,): mean router probability per expert
    return n * (f * P).sum()


class MoE(nn.Module):
    """Top-k routing over `n_expert` experts built by `make_expert()` (each maps (N, C) -> (N, C))."""

    def __init__(
        self, n_embd: int, n_expert: int, *, top_k: int, make_expert: Callable[[], nn.Module]
    ):
        super().__init__()
        self.top_k = top_k
        self.router = nn.Linear(n_embd, n_expert, bias=False)
        self.experts = nn.ModuleList(make_expert() for _ in range(n_expert))
        self.aux_loss: torch.Tensor | None = None  # set by every forward pass
        self.last_counts: torch.Tensor | None = None  # (n_expert,) tokens per expert, for plots

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        B, T, C = x.shape
        flat = x.reshape(B * T, C)  # (N, C): routing is per token; batch and time do not matter
        # 1. score every expert for every token, in float32 (softmax in half precision is coarse)
        probs = F.softmax(self.router(flat).float(), dim=-1)  # (N, n_expert)
        # 2. keep each token's k best, and renormalise their probabilities to sum to 1 (Mixtral)
        weights, chosen = probs.topk(self.top_k, dim=-1)  # (N, k) each
        weights = weights / weights.sum(dim=-1, keepdim=True)
        # 3. run each expert on the tokens that chose it, and add its weighted output back in place
        out = torch.zeros_like(flat)
        for e, expert in enumerate(self.experts):
            token, slot = torch.where(chosen == e)  # which tokens, and in which of their k slots
            if token.numel() == 0:
                continue
            y = expert(flat[token]) * weights[token, slot, None].to(flat.dtype)  # (n_e, C)
            out.index_add_(0, token, y)
        # 4. the balancing loss, kept for the model's training loss
        self.aux_loss = load_balancing_loss(probs, chosen)
        self.last_counts = torch.bincount(chosen.reshape(-1), minlength=len(self.experts)).detach()
        return out.reshape(B, T, C)
