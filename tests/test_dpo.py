"""DPO: the loss against a direct evaluation of the formula, sequence log-probs, and learning."""
import math

import torch

from llmcourse.dpo import DPOModel, dpo_loss, sequence_logprobs
from llmcourse.gpt import GPT, GPTConfig


def test_loss_equals_the_formula_on_hand_made_numbers():
    """Two pairs, beta = 0.2.
    pair 1: policy (-4, -9), reference (-5, -7): margin = 0.2*((-4+5) - (-9+7)) = 0.2*3 = 0.6
    pair 2: policy (-6, -5), reference (-6, -6): margin = 0.2*((0) - (1)) = -0.2
    loss = mean(-log sigmoid(0.6), -log sigmoid(-0.2)) = mean(log(1+e^-0.6), log(1+e^0.2))."""
    loss, m = dpo_loss(torch.tensor([-4.0, -6.0]), torch.tensor([-9.0, -5.0]),
                       torch.tensor([-5.0, -6.0]), torch.tensor([-7.0, -6.0]), beta=0.2)
    expected = (math.log(1 + math.exp(-0.6)) + math.log(1 + math.exp(0.2))) / 2
    assert abs(loss.item() - expected) < 1e-6
    assert m["accuracy"].item() == 0.5
    assert abs(m["margin"].item() - 0.2) < 1e-6  # mean(0.6, -0.2)


def test_equal_policy_and_reference_give_log_2():
    x = torch.randn(5)
    loss, m = dpo_loss(x, x - 1, x, x - 1, beta=1.0)
    assert abs(loss.item() - math.log(2)) < 1e-6 and m["margin"].item() == 0


def test_sequence_logprobs_sum_only_masked_positions():
    torch.manual_seed(0)
    model = GPT(GPTConfig(vocab_size=20, block_size=16, n_layer=1, n_head=2, n_embd=16, dropout=0.0)).eval()
    idx = torch.randint(0, 20, (1, 8))
    mask = torch.tensor([[0, 0, 0, 1, 1, 1, 0, 0]])
    logits, _ = model(idx[:, :-1])
    logp = torch.log_softmax(logits, -1)[0]
    manual = sum(logp[t - 1, idx[0, t]] for t in (3, 4, 5))
    torch.testing.assert_close(sequence_logprobs(model, idx, mask)[0], manual)


def test_dpo_training_raises_preference_accuracy_and_margin():
    torch.manual_seed(0)
    policy = GPT(GPTConfig(vocab_size=12, block_size=8, n_layer=1, n_head=2, n_embd=16, dropout=0.0))
    dpo = DPOModel(policy, beta=0.5)
    assert all(not p.requires_grad for p in dpo.reference[0].parameters())
    assert all(n.startswith("policy.") for n, _ in dpo.named_parameters())
    prompt = torch.randint(0, 12, (16, 4))
    batch = {"chosen_idx": torch.cat([prompt, torch.full((16, 2), 3)], 1),
             "rejected_idx": torch.cat([prompt, torch.full((16, 2), 7)], 1),
             "chosen_mask": torch.tensor([[0, 0, 0, 0, 1, 1]]).repeat(16, 1)}
    batch["rejected_mask"] = batch["chosen_mask"]
    opt = torch.optim.Adam(dpo.parameters(), lr=1e-2)
    first, loss0 = dpo(**batch)
    for _ in range(30):
        metrics, loss = dpo(**batch)
        opt.zero_grad()
        loss.backward()
        opt.step()
    assert abs(loss0.item() - math.log(2)) < 1e-5  # policy == reference at the start
    assert loss.item() < 0.3 and metrics["accuracy"].item() == 1.0 and metrics["margin"].item() > 1.0
