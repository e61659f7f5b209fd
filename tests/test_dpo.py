"""DPO: the loss against a direct evaluation of the formula, sequence log-probs, and learning."""

import math

import pytest
import torch

from llmcourse.dpo import DPOModel, answer_logprobs, dpo_loss, sequence_logprobs
from llmcourse.gpt import GPT, GPTConfig


def test_loss_equals_the_formula_on_hand_made_numbers():
    """Two pairs, beta = 0.2.
    pair 1: policy (-4, -9), reference (-5, -7): margin = 0.2*((-4+5) - (-9+7)) = 0.2*3 = 0.6
    pair 2: policy (-6, -5), reference (-6, -6): margin = 0.2*((0) - (1)) = -0.2
    loss = mean(-log sigmoid(0.6), -log sigmoid(-0.2)) = mean(log(1+e^-0.6), log(1+e^0.2))."""
    loss, m = dpo_loss(
        torch.tensor([-4.0, -6.0]),
        torch.tensor([-9.0, -5.0]),
        torch.tensor([-5.0, -6.0]),
        torch.tensor([-7.0, -6.0]),
        beta=0.2,
    )
    expected = (math.log(1 + math.exp(-0.6)) + math.log(1 + math.exp(0.2))) / 2
    assert abs(loss.item() - expected) < 1e-6
    assert m["accuracy"].item() == 0.5
    assert abs(m["margin"].item() - 0.2) < 1e-6  # mean(0.6, -0.2)


def test_equal_policy_and_reference_give_log_2():
    x = torch.randn(5)
    loss, m = dpo_loss(x, x - 1, x, x - 1, beta=1.0)
    assert abs(loss.item() - math.log(2)) < 1e-6 and m["margin"].item() == 0


def test_sequence_logprobs_sum_only_masked_positions(tiny_gpt_model):
    model = tiny_gpt_model
    idx = torch.randint(0, model.cfg.vocab_size, (1, 8))
    mask = torch.tensor([[0, 0, 0, 1, 1, 1, 0, 0]])
    logits, _ = model(idx[:, :-1])
    logp = torch.log_softmax(logits, -1)[0]
    manual = sum(logp[t - 1, idx[0, t]] for t in (3, 4, 5))
    torch.testing.assert_close(sequence_logprobs(model, idx, mask)[0], manual)


def test_dpo_training_raises_preference_accuracy_and_margin():
    torch.manual_seed(0)
    policy = GPT(
        GPTConfig(vocab_size=12, block_size=8, n_layer=1, n_head=2, n_embd=16, dropout=0.0)
    )
    dpo = DPOModel(policy, beta=0.5)
    assert all(not p.requires_grad for p in dpo.reference[0].parameters())
    assert all(n.startswith("policy.") for n, _ in dpo.named_parameters())
    prompt = torch.randint(0, 12, (16, 4))
    batch = {
        "chosen_idx": torch.cat([prompt, torch.full((16, 2), 3)], 1),
        "rejected_idx": torch.cat([prompt, torch.full((16, 2), 7)], 1),
        "chosen_mask": torch.tensor([[0, 0, 0, 0, 1, 1]]).repeat(16, 1),
    }
    batch["rejected_mask"] = batch["chosen_mask"]
    opt = torch.optim.Adam(dpo.parameters(), lr=1e-2)
    first, loss0 = dpo(**batch)
    for _ in range(30):
        metrics, loss = dpo(**batch)
        opt.zero_grad()
        loss.backward()
        opt.step()
    assert abs(loss0.item() - math.log(2)) < 1e-5  # policy == reference at the start
    assert (
        loss.item() < 0.3 and metrics["accuracy"].item() == 1.0 and metrics["margin"].item() > 1.0
    )


def test_answer_logprobs_from_full_logits_equal_sequence_logprobs(tiny_gpt_model):
    """Logits for all T positions (the last one unused) give what the model-based function gives."""
    model = tiny_gpt_model
    idx, mask = torch.randint(0, model.cfg.vocab_size, (3, 7)), torch.randint(0, 2, (3, 7))
    with torch.no_grad():
        full, _ = model(idx)
        assert torch.allclose(
            answer_logprobs(full, idx, mask), sequence_logprobs(model, idx, mask), atol=1e-5
        )


def test_dpo_exercises_accept_solutions_and_reject_classic_bugs():
    from llmcourse.course import exercises

    def metrics(pc, pr, rc, rr, beta, policy_only=False):
        margin = beta * (pc - pr) if policy_only else beta * ((pc - rc) - (pr - rr))
        return (margin > 0).float().mean().item(), margin.mean().item()

    exercises.check("13.reward_metrics", metrics, trials=20)
    with pytest.raises(
        exercises.ExerciseError, match="case 1 of"
    ):  # the policy's preference is not the reward's
        exercises.check("13.reward_metrics", lambda *a: metrics(*a, policy_only=True))

    def logprob(logits, idx, mask, shift=True):
        logp = torch.log_softmax(logits, dim=-1)
        if not shift:  # the classic off-by-one: position t's logits scored against token t itself
            return (logp.gather(-1, idx[..., None])[..., 0] * mask).sum(-1)
        return (logp[:, :-1].gather(-1, idx[:, 1:, None])[..., 0] * mask[:, 1:]).sum(-1)

    exercises.check("13.sequence_logprob", logprob, trials=20)
    with pytest.raises(exercises.ExerciseError, match="wrong values"):
        exercises.check("13.sequence_logprob", lambda *a: logprob(*a, shift=False))
    with pytest.raises(
        exercises.ExerciseError, match="case 1 of"
    ):  # softmax then log underflows to -inf
        exercises.check(
            "13.sequence_logprob", lambda lg, idx, m: logprob(lg.softmax(-1).log(), idx, m)
        )
