"""Freeze and prompt tuning: what trains, what stays fixed, and that the cheap methods still learn."""

import copy
import math

import pytest
import torch

from llmcourse.course import exercises
from llmcourse.gpt import GPT, GPTConfig
from llmcourse.ptuning import PromptTuned, freeze, prepend_virtual_tokens


def tiny(seed=0):
    torch.manual_seed(seed)
    return GPT(GPTConfig(vocab_size=30, block_size=24, n_layer=3, n_head=2, n_embd=32, dropout=0.0))


def test_freeze_trains_only_the_top_blocks_and_head():
    model = tiny()
    names = freeze(model, train_top_blocks=1)
    assert names and all(
        n.startswith(("blocks.2.", "final_norm", "tok_emb", "lm_head")) for n in names
    )
    assert not any(n.startswith(("blocks.0.", "blocks.1.")) for n in names)
    with pytest.raises(ValueError):
        freeze(model, train_top_blocks=4)


def test_prefix_embeddings_change_outputs_but_not_shapes():
    model = tiny().eval()
    idx = torch.randint(0, 30, (2, 10))
    plain, _ = model(idx)
    tuned = PromptTuned(model, n_virtual=4)
    with torch.no_grad():
        tuned.prompt.normal_()
    with_prefix, _ = tuned(idx)
    assert with_prefix.shape == plain.shape
    assert not torch.allclose(with_prefix, plain)
    with pytest.raises(ValueError, match="block_size"):
        tuned(torch.zeros(1, 21, dtype=torch.long))  # 4 virtual + 21 real > 24
    assert (
        "prefix_emb" not in GPT.forward.__code__.co_varnames
    )  # the wrapper, not the model, knows about it


def test_virtual_tokens_equal_to_real_embeddings_give_the_models_own_logits():
    """Virtual vectors copied from the token embeddings of ids v: the wrapper's logits (and loss) are the
    plain GPT's on v followed by idx, at idx's positions. So the wrapper runs exactly the GPT's forward."""
    model = tiny().eval()
    v, idx = (
        torch.tensor([3, 7, 7, 1]),
        torch.randint(0, 30, (2, 10), generator=torch.Generator().manual_seed(1)),
    )
    tuned = PromptTuned(model, n_virtual=4, init_from_ids=v.tolist())
    full, _ = model(torch.cat([v.expand(2, -1), idx], dim=1))
    ours, loss = tuned(idx, idx)
    torch.testing.assert_close(ours, full[:, 4:])
    want = torch.nn.functional.cross_entropy(full[:, 4:].reshape(-1, 30), idx.reshape(-1))
    torch.testing.assert_close(loss, want)


@pytest.fixture(scope="module")
def copy_first_model():
    """A tiny GPT trained to repeat the *first* token of its input at every position.

    Prompt tuning cannot do much with a random frozen model (its attention carries no useful
    function), so we give it a model with a skill to steer, as a pretrained LM has."""
    torch.manual_seed(0)
    model = GPT(
        GPTConfig(vocab_size=30, block_size=24, n_layer=2, n_head=2, n_embd=32, dropout=0.0)
    )
    opt = torch.optim.Adam(model.parameters(), lr=3e-3)
    g = torch.Generator().manual_seed(0)
    for _ in range(150):
        idx = torch.randint(0, 30, (32, 8), generator=g)
        _, loss = model(idx, idx[:, :1].expand(-1, 8))
        opt.zero_grad()
        loss.backward()
        opt.step()
    assert loss.item() < 0.3
    return model


@pytest.mark.parametrize("reparam", [None, 16])
def test_prompt_tuning_steers_a_frozen_model(copy_first_model, reparam):
    """New task: always answer token 7. One virtual token placed first can make the frozen
    copy-the-first-token model do it; only the prompt (and P-Tuning's MLP) may change."""
    model = copy.deepcopy(copy_first_model)
    frozen = {k: v.clone() for k, v in model.state_dict().items()}
    tuned = PromptTuned(model, n_virtual=1, reparam_hidden=reparam)
    trainable = [n for n, p in tuned.named_parameters() if p.requires_grad]
    assert trainable and all(n.startswith(("prompt", "encoder")) for n in trainable)
    idx = torch.randint(0, 30, (16, 7), generator=torch.Generator().manual_seed(1))
    targets = torch.full((16, 7), 7)
    opt = torch.optim.Adam([p for p in tuned.parameters() if p.requires_grad], lr=0.1)
    _, first = tuned(idx, targets)
    for _ in range(60):
        _, loss = tuned(idx, targets)
        opt.zero_grad()
        loss.backward()
        opt.step()
    assert first.item() > math.log(30) and loss.item() < 0.5
    for k, v in model.state_dict().items():
        assert torch.equal(v, frozen[k]), f"{k} changed although the model is frozen"


def test_prepend_virtual_tokens_is_what_peft_feeds_the_model():
    """peft's prompt tuning on a tiny random Llama: the inputs_embeds, attention_mask and labels it
    passes to the base model equal ours, built from its own prompt vectors."""
    from peft import PromptTuningConfig, TaskType, get_peft_model
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(0)
    base = LlamaForCausalLM(
        LlamaConfig(
            vocab_size=64,
            hidden_size=32,
            intermediate_size=64,
            num_hidden_layers=1,
            num_attention_heads=4,
            num_key_value_heads=4,
            max_position_embeddings=32,
        )
    ).eval()
    model = get_peft_model(
        base, PromptTuningConfig(task_type=TaskType.CAUSAL_LM, num_virtual_tokens=3)
    )
    seen, forward = {}, base.forward

    def spy(*args, **kwargs):
        seen.update(kwargs)
        return forward(*args, **kwargs)

    base.forward = spy
    ids = torch.tensor([[5, 6, 7, 0], [8, 9, 10, 11]])
    mask = torch.tensor([[1, 1, 1, 0], [1, 1, 1, 1]])
    labels = ids.masked_fill(mask == 0, -100)
    with torch.no_grad():
        model(input_ids=ids, attention_mask=mask, labels=labels)
        mine = prepend_virtual_tokens(
            model.get_prompt(batch_size=1)[0], base.get_input_embeddings()(ids), mask, labels
        )
    for name, ours in zip(("inputs_embeds", "attention_mask", "labels"), mine):
        assert torch.equal(ours, seen[name].to(ours.dtype)), name


def test_prepend_virtual_tokens_exercise():
    def correct(prompt, embeds, mask, labels):
        B, P = embeds.shape[0], prompt.shape[0]
        return (
            torch.cat([prompt.repeat(B, 1, 1), embeds], 1),
            torch.cat([torch.ones(B, P, dtype=mask.dtype), mask], 1),
            torch.cat([torch.full((B, P), -100), labels], 1),
        )

    def labels_zero(
        prompt, embeds, mask, labels
    ):  # label 0 is a real token: the loss would train on it
        B, P = embeds.shape[0], prompt.shape[0]
        return (
            torch.cat([prompt.repeat(B, 1, 1), embeds], 1),
            torch.cat([torch.ones(B, P, dtype=mask.dtype), mask], 1),
            torch.cat([torch.zeros(B, P, dtype=labels.dtype), labels], 1),
        )

    def appended(prompt, embeds, mask, labels):  # after the text instead of before it
        B, P = embeds.shape[0], prompt.shape[0]
        return (
            torch.cat([embeds, prompt.repeat(B, 1, 1)], 1),
            torch.cat([mask, torch.ones(B, P, dtype=mask.dtype)], 1),
            torch.cat([labels, torch.full((B, P), -100)], 1),
        )

    exercises.check("12.prepend_virtual_tokens", correct, trials=20)
    for wrong in (labels_zero, appended):
        with pytest.raises(exercises.ExerciseError):
            exercises.check("12.prepend_virtual_tokens", wrong, seed=0)
