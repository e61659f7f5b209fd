"""Prefix tuning and P-Tuning v2: trainable keys and values in every attention layer.

Prompt tuning and P-Tuning (v1, `llmcourse.ptuning`) add trainable vectors at the *input* only: every
later layer sees them only through what the frozen layers below made of them. **Prefix tuning**
(Li & Liang 2021, "Prefix-Tuning: Optimizing Continuous Prompts for Generation") gives *every*
attention layer P extra key/value pairs of its own: each query attends to P learned positions before
the real tokens, in every layer. **P-Tuning v2** (Liu et al. 2022, "P-Tuning v2: Prompt Tuning Can Be
Comparable to Fine-tuning Universally Across Scales and Tasks") is the same deep prompt, shown to
match full fine-tuning on models from 300M to 10B parameters, where prompt tuning and P-Tuning v1
fall behind below about 10B. It is the "P-Tuning" of the ChatGLM repositories (`pre_seq_len`).

Trainable numbers: P * n_layer * 2 * n_embd (keys and values, every layer), against P * n_embd for
prompt tuning. Li & Liang found that training these directly is unstable and produced them from a
smaller matrix through an MLP during training (the reparameterisation); P-Tuning v2 reports that
it helps on some tasks and not on others. `reparam_hidden` switches it on: P vectors of n_embd
numbers -> Linear(n_embd, hidden) -> tanh -> Linear(hidden, n_layer * 2 * n_embd), exactly peft's
`PrefixTuningConfig(prefix_projection=True, encoder_hidden_size=hidden)`. After training the MLP can
be thrown away: `freeze_prefix()` keeps only its output.

How it runs: the prefix *is* a KV cache that was never computed from tokens. `GPT.forward` (and
`Llama.forward`) already take a `kv_cache` whose `update(layer, k, v)` returns the past keys and
values followed by the new ones (`llmcourse.generate.KVCache`); `PrefixCache` is such an object that
returns the learned prefix in front. So the model needs no new argument, and the queries attend to
the prefix through the same mask arithmetic as during cached generation. As with a real cache, the
real tokens take positions P..P+T-1 (Hugging Face and peft do the same), so `block_size` shrinks by P.

Equal to peft's `PrefixTuning` (tests/test_prefix_tuning.py): `prefix` holds the numbers in peft's
layout, (P, n_layer * 2 * n_embd) with each layer's keys then values, so the weights copy across.
Padding: the course pads on the right, where the causal mask already keeps padding out of every
real position's view; there is no key mask for left padding.
Left out: a KV cache for generation after the prefix (`generate` re-runs the window for a wrapped
model), prefixes on the encoder side of encoder-decoder models, and several prefixes at once.
"""

from __future__ import annotations

import torch
import torch.nn as nn


class PrefixCache:
    """A fixed "past" for every layer, in the shape of a KV cache: `pos`, `update`, `advance`, the
    three things `GPT.forward` asks of `generate.KVCache`.

    keys, values: (n_layer, B or 1, n_kv_head, P, head_dim). `update(layer, k, v)` returns that
    layer's prefix followed by the real keys/values (B, n_kv_head, P + T, head_dim)."""

    def __init__(self, keys: torch.Tensor, values: torch.Tensor):
        if keys.shape != values.shape or keys.dim() != 5:
            raise ValueError("keys and values must both be (n_layer, B, n_kv_head, P, head_dim)")
        self.keys, self.values = keys, values
        self.pos = keys.size(3)  # the real tokens come after the P prefix positions

    def update(
        self, layer: int, k: torch.Tensor, v: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        B = k.size(0)
        # the same P learned positions in front of every row: (1, H, P, D) -> (B, H, P, D)
        pk = self.keys[layer].expand(B, -1, -1, -1).to(k.dtype)
        pv = self.values[layer].expand(B, -1, -1, -1).to(v.dtype)
        return torch.cat([pk, k], dim=2), torch.cat([pv, v], dim=2)  # (B, H, P + T, D)

    def advance(self, T: int) -> None:
        """Nothing to do: this cache stores nothing of the tokens, each forward pass starts afresh."""


class _Recorder:
    """A KV cache that keeps each layer's keys/values of one forward pass (for `init_from_ids`)."""

    pos = 0

    def __init__(self):
        self.kv: dict[int, tuple[torch.Tensor, torch.Tensor]] = {}

    def update(self, layer, k, v):
        self.kv[layer] = (k, v)
        return k, v

    def advance(self, T: int) -> None:
        pass


class PrefixTuned(nn.Module):
    """A frozen GPT (or Llama) plus `n_prefix` trainable key/value positions in every layer.

    `reparam_hidden` (None = off) produces them from P vectors through an MLP (peft's
    `prefix_projection`); `init_from_ids` starts the direct prefix from the model's own keys and
    values on those tokens, Li & Liang's "initialise with real words" (otherwise N(0, init_std)).
    Trainable numbers: P * n_layer * 2 * n_kv_head * head_dim, or with the MLP
    P * C + (C + 1) * hidden + (hidden + 1) * n_layer * 2 * n_kv_head * head_dim.
    """

    def __init__(
        self,
        model: nn.Module,
        n_prefix: int = 8,
        *,
        reparam_hidden: int | None = None,
        init_from_ids: list[int] | None = None,
        init_std: float = 0.02,
    ):
        super().__init__()
        if n_prefix < 1:
            raise ValueError(f"n_prefix must be at least 1, got {n_prefix}")
        if reparam_hidden and init_from_ids is not None:
            raise ValueError(
                "init_from_ids sets the prefix directly; with reparam_hidden the MLP produces it: "
                "use one or the other"
            )
        self.model = model
        for p in model.parameters():
            p.requires_grad_(False)
        cfg = model.cfg
        # GPT has one key/value head per query head; a Llama with grouped-query attention fewer
        self.n_layer, self.n_kv_head = cfg.n_layer, getattr(cfg, "n_kv_head", cfg.n_head)
        self.head_dim = cfg.head_dim
        width = self.n_layer * 2 * self.n_kv_head * self.head_dim  # numbers per prefix position
        device = next(model.parameters()).device
        self.encoder = None
        if reparam_hidden:
            # P vectors of n_embd numbers (N(0, 1), as peft's nn.Embedding) -> MLP -> every layer's
            # keys and values, in peft's layout
            self.prefix = nn.Parameter(torch.randn(n_prefix, cfg.n_embd, device=device))
            self.encoder = nn.Sequential(
                nn.Linear(cfg.n_embd, reparam_hidden), nn.Tanh(), nn.Linear(reparam_hidden, width)
            ).to(device)
        elif init_from_ids is not None:
            ids = torch.tensor(init_from_ids, device=device).repeat(n_prefix)[:n_prefix]
            self.prefix = nn.Parameter(self._model_key_values(ids))
        else:
            self.prefix = nn.Parameter(torch.randn(n_prefix, width, device=device) * init_std)

    @property
    def n_prefix(self) -> int:
        return self.prefix.size(0)

    @property
    def block_size(self) -> int:
        """Real tokens that fit in one forward pass: the prefix takes the first P positions.
        `llmcourse.generate` reads it to crop the context (`generate.context_size`)."""
        return self.model.cfg.block_size - self.n_prefix

    @torch.no_grad()
    def _model_key_values(self, ids: torch.Tensor) -> torch.Tensor:
        """The frozen model's own keys and values on `ids` (P,), flattened to peft's (P, width)."""
        recorder, was_training = _Recorder(), self.model.training
        self.model.eval()  # no dropout in the recorded keys and values
        self.model(ids[None], kv_cache=recorder)
        self.model.train(was_training)
        # per layer (1, H, P, D) keys and values -> (L, 2, H, P, D) -> (P, L * 2 * H * D)
        kv = torch.stack([torch.stack(recorder.kv[i])[:, 0] for i in range(self.n_layer)])
        return kv.permute(3, 0, 1, 2, 4).reshape(ids.numel(), -1).clone()

    def key_values(self) -> torch.Tensor:
        """Every layer's prefix keys and values: (n_layer, 2, n_kv_head, P, head_dim), [:, 0] the
        keys and [:, 1] the values, read from `prefix` (or its MLP output) as peft reads its own."""
        flat = self.encoder(self.prefix) if self.encoder is not None else self.prefix  # (P, width)
        return split_prefix(flat, self.n_layer, self.n_kv_head)

    @torch.no_grad()
    def freeze_prefix(self) -> PrefixTuned:
        """Replace the MLP by its output (training done): the same model, P * width numbers, and
        no MLP to run. A prefix without MLP is returned unchanged. In place; returns self."""
        if self.encoder is not None:
            self.prefix = nn.Parameter(self.encoder(self.prefix).detach().clone())
            self.encoder = None
        return self

    def forward(
        self, idx: torch.Tensor, targets: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """idx (B, T) -> logits (B, T, vocab), and the mean cross-entropy if targets (B, T) are given
        (-100 ignored): the course calling convention. The model's own forward pass, with the
        prefix handed to every layer as its past keys and values."""
        T = idx.size(1)
        if self.n_prefix + T > self.model.cfg.block_size:
            raise ValueError(
                f"{self.n_prefix} prefix + {T} real tokens exceed "
                f"block_size={self.model.cfg.block_size}; crop the input or use a shorter prefix"
            )
        kv = self.key_values()  # (L, 2, H, P, D)
        # one row of prefix for the whole batch: PrefixCache expands it to B rows
        cache = PrefixCache(kv[:, 0].unsqueeze(1), kv[:, 1].unsqueeze(1))  # (L, 1, H, P, D) each
        return self.model(idx, targets, kv_cache=cache)


# ------------------------------------------------------------------------- checked by notebook 12's exercises
def split_prefix(flat: torch.Tensor, n_layer: int, n_head: int) -> torch.Tensor:
    """split_prefix(flat (P, n_layer * 2 * n_head * head_dim), n_layer, n_head) ->
    (n_layer, 2, n_head, P, head_dim): peft's flat prefix as every layer's keys ([:, 0]) and values
    ([:, 1]). Row p of `flat` holds layer 0's keys (head 0, head 1, ...), layer 0's values, layer 1's
    keys, and so on.

    >>> split_prefix(torch.arange(8.0).view(1, 8), 2, 1)[:, :, 0, 0].tolist()  # head_dim 2
    [[[0.0, 1.0], [2.0, 3.0]], [[4.0, 5.0], [6.0, 7.0]]]
    """
    P, width = flat.shape
    if width % (n_layer * 2 * n_head):
        raise ValueError(f"width {width} is not a multiple of n_layer * 2 * n_head")
    head_dim = width // (n_layer * 2 * n_head)
    kv = flat.view(P, n_layer * 2, n_head, head_dim)  # (P, L*2, H, D)
    kv = kv.permute(
        1, 2, 0, 3
    )  # (L*2, H, P, D): keys of layer 0, values of layer 0, keys of 1, ...
    return kv.reshape(n_layer, 2, n_head, P, head_dim)
