"""Mixture of experts: equal to Hugging Face's Mixtral block with copied weights, the Switch
Transformer load-balancing loss equal to Mixtral's, and the balancing loss doing its job."""

import math
from dataclasses import replace

import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

from llmcourse.llama import MLP, Llama, LlamaConfig
from llmcourse.moe import MoE, load_balancing_loss

CFG = LlamaConfig(
    vocab_size=50, block_size=16, n_layer=1, n_head=2, n_kv_head=1, n_embd=24, ffn_hidden=20
)


def test_moe_equals_mixtral_sparse_block():
    from transformers import MixtralConfig
    from transformers.models.mixtral.modeling_mixtral import MixtralSparseMoeBlock

    torch.manual_seed(0)
    hc = MixtralConfig(
        hidden_size=24, intermediate_size=20, num_local_experts=5, num_experts_per_tok=2
    )
    theirs = MixtralSparseMoeBlock(hc).eval()
    for p in theirs.parameters():
        nn.init.normal_(p, std=0.3)
    ours = MoE(24, 5, top_k=2, make_expert=lambda: MLP(CFG))
    with torch.no_grad():
        ours.router.weight.copy_(theirs.gate.weight)
        for e, expert in enumerate(ours.experts):
            if hasattr(theirs.experts, "gate_up_proj"):  # transformers 5: experts fused in tensors
                gate, up = theirs.experts.gate_up_proj[e].chunk(
                    2, dim=0
                )  # (2·hidden, C) -> (hidden, C) each
                down = theirs.experts.down_proj[e]
            else:  # transformers 4.x: a module per expert, w1 = gate, w3 = up, w2 = down
                one = theirs.experts[e]
                gate, up, down = one.w1.weight, one.w3.weight, one.w2.weight
            expert.gate_proj.weight.copy_(gate)
            expert.up_proj.weight.copy_(up)
            expert.down_proj.weight.copy_(down)
    x = torch.randn(3, 7, 24)
    out = theirs(x)
    out = out[0] if isinstance(out, tuple) else out
    torch.testing.assert_close(ours(x), out, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("top_k", [1, 2, 3])
def test_balancing_loss_equals_mixtral(top_k):
    from transformers.models.mixtral.modeling_mixtral import load_balancing_loss_func

    logits = torch.randn(40, 6) * 2
    probs = F.softmax(logits, dim=-1)
    chosen = probs.topk(top_k, dim=-1).indices
    want = load_balancing_loss_func((logits,), num_experts=6, top_k=top_k)
    torch.testing.assert_close(load_balancing_loss(probs, chosen), want)


def test_balancing_loss_is_k_when_uniform_and_larger_when_collapsed():
    n, k = 4, 2
    uniform = torch.full((8, n), 1 / n)
    spread = torch.tensor([[0, 1], [2, 3]] * 4)
    assert math.isclose(load_balancing_loss(uniform, spread).item(), k)
    collapsed = F.one_hot(torch.zeros(8, dtype=torch.long), n).float() * 0.9 + 0.025
    assert load_balancing_loss(collapsed, torch.tensor([[0, 1]] * 8)).item() > 1.5 * k


def test_one_expert_top_one_is_the_dense_mlp():
    torch.manual_seed(0)
    moe = MoE(24, 1, top_k=1, make_expert=lambda: MLP(CFG))
    x = torch.randn(2, 5, 24)
    torch.testing.assert_close(moe(x), moe.experts[0](x))


def test_model_adds_weighted_aux_loss_and_trains_the_router():
    torch.manual_seed(0)
    model = Llama(replace(CFG, n_expert=4, n_expert_active=2, moe_aux_weight=0.5))
    idx = torch.randint(0, 50, (2, 16))
    logits, loss = model(idx, idx)
    ce = F.cross_entropy(logits.reshape(-1, 50), idx.reshape(-1))
    torch.testing.assert_close(loss, ce + 0.5 * model.aux_loss())
    loss.backward()
    assert model.blocks[0].mlp.router.weight.grad.abs().sum() > 0
    assert int(model.blocks[0].mlp.last_counts.sum()) == 2 * 32  # every token went to 2 experts


def test_balancing_loss_keeps_experts_in_use():
    """A router that starts collapsed (expert 0 wins almost every token) stays collapsed without the
    balancing loss, and spreads the tokens over all experts with it."""
    x = torch.randn(1, 64, 8, generator=torch.Generator().manual_seed(0)) + 1.0

    def train(aux_weight):
        torch.manual_seed(0)
        moe = MoE(8, 4, top_k=1, make_expert=lambda: nn.Linear(8, 8))
        with torch.no_grad():
            moe.router.weight[0] += 3.0 * x.mean(dim=(0, 1)).sign()
        opt = torch.optim.Adam(moe.parameters(), lr=0.05)
        for _ in range(100):
            out = moe(x)
            loss = (out - x.flip(-1)).pow(2).mean() + aux_weight * moe.aux_loss
            opt.zero_grad()
            loss.backward()
            opt.step()
        moe(x)
        return moe.last_counts

    plain, balanced = train(0.0), train(1.0)
    assert plain.max().item() >= 0.9 * 64
    assert balanced.max().item() <= 0.5 * 64 and int((balanced > 0).sum()) == 4
