"""GRPO: advantages and the loss on hand-derived cases, the clip, the KL, TRL's loss, and learning."""

import copy
import math
from collections import defaultdict
from types import SimpleNamespace

import pytest
import torch

from llmcourse import grpo
from llmcourse.gpt import GPT, GPTConfig
from llmcourse.runtime import make_generator
from llmcourse.sft import chat_tokenizer
from llmcourse.tasks.instructions import Example
from llmcourse.train import TrainConfig, fit


def test_advantages_on_hand_made_groups():
    """Group 1: rewards (1, 0, 0, 0): mean 1/4; squared deviations 9/16 + 3 * 1/16 = 12/16, over
    n - 1 = 3 gives variance 1/4, std 1/2: advantages (3/4, -1/4, ...) / (1/2) = (1.5, -0.5, ...).
    Group 2: (1, 1, 0, 0): mean 1/2, variance 4 * 1/4 / 3 = 1/3: advantages +-(1/2) * sqrt(3)."""
    adv = grpo.group_advantages(torch.tensor([1.0, 0, 0, 0, 1, 1, 0, 0]), 4, eps=0.0)
    half_root3 = math.sqrt(3) / 2
    expected = torch.tensor(
        [1.5, -0.5, -0.5, -0.5, half_root3, half_root3, -half_root3, -half_root3]
    )
    torch.testing.assert_close(adv, expected)


def test_a_group_whose_answers_score_the_same_has_zero_advantage():
    """All right or all wrong: (r - mean) = 0 exactly, eps keeps 0 / 0 away."""
    adv = grpo.group_advantages(torch.tensor([1.0, 1, 1, 0, 0, 0, 0.5, 0.5, 0.5]), 3)
    assert torch.equal(adv, torch.zeros(9))


def test_advantages_refuse_groups_that_do_not_split():
    with pytest.raises(ValueError, match="groups of 4"):
        grpo.group_advantages(torch.ones(6), 4)


def _hand_case():
    """Two answers, two token columns, clip_eps = 0.2, beta = 0.1; every logp is log 0.5.

    answer 1, A = +1, both tokens scored:
      token 1: ratio 1.1 (inside the clip), ref = logp, KL 0       -> per-token loss -(1.1)
      token 2: ratio 1.5 -> clipped to 1.2; ref - logp = ln 2, so
               KL = e^(ln 2) - ln 2 - 1 = 1 - ln 2                -> -(1.2 - 0.1 * (1 - ln 2))
    answer 2, A = -0.5, only token 1 scored:
      token 1: ratio 0.5: min(0.5 * -0.5, 0.8 * -0.5) = -0.4, KL 0 -> +0.4
      token 2: masked out (ratio 10, ignored)
    """
    logp = torch.full((2, 2), math.log(0.5), requires_grad=True)
    ratios = torch.tensor([[1.1, 1.5], [0.5, 10.0]])
    old = logp.detach() - ratios.log()
    ref = logp.detach() + torch.tensor([[0.0, math.log(2)], [0.0, 0.0]])
    adv, mask = torch.tensor([1.0, -0.5]), torch.tensor([[1, 1], [1, 0]])
    return logp, old, ref, adv, mask


def test_loss_on_a_hand_derived_case_both_normalisations():
    logp, old, ref, adv, mask = _hand_case()
    t1, t2, t3 = -1.1, -(1.2 - 0.1 * (1 - math.log(2))), 0.4
    # the paper: mean over each answer's tokens, then over answers
    loss, m = grpo.grpo_loss(logp, old, ref, adv, mask, clip_eps=0.2, beta=0.1)
    assert loss.item() == pytest.approx(((t1 + t2) / 2 + t3) / 2, abs=1e-6)
    assert m["clip_fraction"].item() == pytest.approx(2 / 3)  # tokens at 1.5 and 0.5 of 3 scored
    assert m["kl"].item() == pytest.approx((1 - math.log(2)) / 3, abs=1e-6)
    # DAPO: one mean over the 3 scored tokens
    loss, _ = grpo.grpo_loss(logp, old, ref, adv, mask, clip_eps=0.2, beta=0.1, normalise="token")
    assert loss.item() == pytest.approx((t1 + t2 + t3) / 3, abs=1e-6)
    with pytest.raises(ValueError, match="normalise"):
        grpo.grpo_loss(logp, old, ref, adv, mask, normalise="sum")


@pytest.mark.parametrize(
    "ratio, advantage, moves",
    [
        (1.5, 1.0, False),  # already 50 % more likely, beyond 1.2: no push further up
        (1.5, -1.0, True),  # ... but a bad answer made more likely is still pushed down
        (0.5, -1.0, False),  # already halved, beyond 0.8: no push further down
        (0.5, 1.0, True),  # ... but a good answer made less likely is still pushed up
        (1.1, 1.0, True),  # inside the trust region: the plain policy gradient
    ],
)
def test_the_clip_removes_the_gradient_only_in_the_clipped_direction(ratio, advantage, moves):
    logp = torch.full((1, 1), -1.0, requires_grad=True)
    old = logp.detach() - math.log(ratio)
    loss, _ = grpo.grpo_loss(
        logp, old, logp.detach(), torch.tensor([advantage]), torch.ones(1, 1), beta=0.0
    )
    loss.backward()
    if moves:  # d loss / d logp = -A * ratio: descent raises logp for A > 0, lowers it for A < 0
        assert logp.grad.item() == pytest.approx(-advantage * ratio)
    else:
        assert logp.grad.item() == 0.0


def test_kl_is_zero_with_zero_gradient_when_policy_equals_reference(tiny_gpt_model):
    model = GPT(tiny_gpt_model.cfg)
    model.load_state_dict(tiny_gpt_model.state_dict())
    wrapped = grpo.GRPOModel(model, reference=copy.deepcopy(model), beta=1.0)
    idx = torch.randint(0, model.cfg.vocab_size, (4, 7))
    mask = torch.tensor([[0, 0, 0, 1, 1, 1, 1]]).repeat(4, 1)
    with torch.no_grad():
        old = grpo.token_logprobs(model, idx)
    metrics, loss = wrapped(idx, mask, old, torch.zeros(4), torch.zeros(4))
    loss.backward()
    assert metrics["kl"].item() == 0.0 and loss.item() == 0.0
    # with every advantage 0 only the KL term is left, and its gradient at pi = ref is 0
    assert all(p.grad is None or p.grad.abs().max() < 1e-7 for p in model.parameters())
    assert all(n.startswith("policy.") for n, _ in wrapped.named_parameters())


def test_token_logprobs_score_the_next_token_at_the_temperature(tiny_gpt_model):
    idx = torch.randint(0, tiny_gpt_model.cfg.vocab_size, (2, 6))
    with torch.no_grad():
        logits, _ = tiny_gpt_model(idx)
        expected = torch.log_softmax(logits[:, :-1] / 2.0, -1).gather(-1, idx[:, 1:, None])[..., 0]
        torch.testing.assert_close(
            grpo.token_logprobs(tiny_gpt_model, idx, temperature=2.0), expected
        )


# slow: importing trl takes seconds; and trl comes with the pinned run only (pyproject's [references]
# extra), not with the lowest/newest profiles, which run the tests not marked slow
@pytest.mark.slow
def test_our_loss_equals_trls_grpo_loss_on_the_same_tensors():
    """TRL's `GRPOTrainer._compute_loss`, called with a stand-in trainer whose model "returns" our
    per-token log-probabilities: loss_type "grpo" is our normalise="sequence", "bnpo" is "token".
    Advantages against TRL's own group statistics (its `nanstd` and eps 1e-4)."""
    pytest.importorskip("trl")
    from trl.trainer.grpo_trainer import GRPOTrainer
    from trl.trainer.utils import nanstd

    g = torch.Generator().manual_seed(0)
    B, T, G = 6, 5, 3
    rewards = torch.tensor([1.0, 0, 0, 1, 1, 0])
    grouped = rewards.view(-1, G)
    trl_adv = (grouped - grouped.mean(1, keepdim=True)) / (nanstd(grouped, dim=1)[:, None] + 1e-4)
    torch.testing.assert_close(grpo.group_advantages(rewards, G), trl_adv.view(-1))
    old = -torch.rand(B, T, generator=g) * 3
    ref = old + torch.randn(B, T, generator=g) * 0.3
    mask = (torch.rand(B, T, generator=g) > 0.3).long()
    mask[:, 0] = 1
    for loss_type, normalise in (("grpo", "sequence"), ("bnpo", "token")):
        ours_logp = (old + torch.randn(B, T, generator=g) * 0.3).requires_grad_()
        theirs_logp = ours_logp.detach().clone().requires_grad_()
        fake = SimpleNamespace(
            _get_per_token_logps_and_entropies=lambda *a, **k: (
                theirs_logp,
                torch.ones(B, T),
                None,
            ),
            top_entropy_quantile=1.0,
            off_policy_mask_threshold=None,
            importance_sampling_level="token",
            beta=0.04,
            args=SimpleNamespace(use_bias_correction_kl=False, delta=None),
            loss_type=loss_type,
            epsilon_low=0.2,
            epsilon_high=0.2,
            use_vllm=False,
            vllm_importance_sampling_correction=False,
            model=SimpleNamespace(training=True),
            current_gradient_accumulation_steps=1,
            _entropy_bonus_enabled=False,
            aux_loss_enabled=False,
            _metrics={"train": defaultdict(list)},
            accelerator=SimpleNamespace(
                reduce=lambda x, reduction: x, gather=lambda x: x, gather_for_metrics=lambda x: x
            ),
        )
        inputs = {
            "prompt_ids": torch.zeros(B, 1, dtype=torch.long),
            "prompt_mask": torch.ones(B, 1, dtype=torch.long),
            "completion_ids": torch.zeros(B, T, dtype=torch.long),
            "completion_mask": mask,
            "advantages": trl_adv.view(-1),
            "old_per_token_logps": old,
            "ref_per_token_logps": ref,
        }
        theirs = GRPOTrainer._compute_loss(fake, None, inputs)
        ours, _ = grpo.grpo_loss(
            ours_logp, old, ref, trl_adv.view(-1), mask, beta=0.04, normalise=normalise
        )
        torch.testing.assert_close(ours, theirs)
        ours.backward()
        theirs.backward()
        torch.testing.assert_close(ours_logp.grad, theirs_logp.grad)


def _digit_reward(ex: Example, answer: str) -> float:
    return float(answer[:1].isdigit())


def test_grpo_through_fit_raises_the_held_out_reward():
    """A random byte-level GPT answers with 2 sampled tokens; the checker rewards an answer that
    starts with a digit (10 of 261 tokens: a few per step at first). Through `fit` with the
    sampler, the held-out reward (fresh prompts, other random draws) must at least double."""
    torch.manual_seed(0)
    tok = chat_tokenizer("", 256 + 5)
    policy = GPT(
        GPTConfig(vocab_size=261, block_size=64, n_layer=1, n_head=2, n_embd=32, dropout=0.0)
    )
    start = copy.deepcopy(policy)
    train = [Example("count", f"How many words are in: {w}?", "1") for w in "abcdefghij"]
    test = [Example("count", f"How many words are in: {w}?", "1") for w in "klmnop"]

    def held_out(model):
        return grpo.sampled_reward(
            model,
            tok,
            test,
            samples=32,
            generator=make_generator(1),
            max_new_tokens=2,
            reward=_digit_reward,
        )

    sampler = grpo.grpo_sampler(
        policy, tok, train, prompts_per_step=4, group_size=8, max_new_tokens=2, reward=_digit_reward
    )
    batch = sampler(make_generator(0))
    assert batch["idx"].shape[0] == 32 and batch["old_logp"].shape == (32, batch["idx"].size(1) - 1)
    cfg = TrainConfig(max_steps=30, lr=1e-2, warmup_steps=1, eval_every=0, ckpt_every=0, seed=0)
    fit(grpo.GRPOModel(policy, beta=0.0), sampler, cfg, progress=False)
    before, after = held_out(start), held_out(policy)
    assert after >= before + 0.25, (before, after)  # measured: 0.04 -> 0.52


def test_the_sampler_reuses_a_batch_for_updates_per_batch_steps():
    """mu = 2: two updates on the same samples (old_logp fixed at sampling time), then fresh ones."""
    torch.manual_seed(0)
    tok = chat_tokenizer("", 256 + 5)
    policy = GPT(GPTConfig(vocab_size=261, block_size=48, n_layer=1, n_head=2, n_embd=16))
    exs = [Example("count", f"How many words are in: {w}?", "1") for w in "ab"]
    sampler = grpo.grpo_sampler(
        policy, tok, exs, prompts_per_step=2, group_size=3, max_new_tokens=3, updates_per_batch=2
    )
    g = make_generator(0)
    first, second, third = sampler(g), sampler(g), sampler(g)
    assert first is second and third is not first
    assert first["advantages"].shape == (6,) and first["mask"].sum(1).min() >= 1
