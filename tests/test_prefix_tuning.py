"""Prefix tuning / P-Tuning v2: equal to peft's PrefixTuning on the same prefix (GPT-2 and a Llama with
grouped-query attention, with and without the MLP), equal to the model's own keys and values when the
prefix is made of them, and able to steer a frozen model."""

import copy
import math
import warnings

import pytest
import torch

from llmcourse.convert import gpt_from_hf
from llmcourse.generate import generate
from llmcourse.gpt import GPT, GPTConfig
from llmcourse.lora import trainable_report
from llmcourse.prefix_tuning import PrefixCache, PrefixTuned

V, L, C, H = 97, 3, 32, 4


@pytest.fixture(scope="module")
def hf_gpt2():
    """A tiny random GPT2LMHeadModel (dropout off) and the course GPT converted from it."""
    from transformers import GPT2Config, GPT2LMHeadModel

    torch.manual_seed(0)
    hf = GPT2LMHeadModel(
        GPT2Config(
            vocab_size=V,
            n_positions=32,
            n_embd=C,
            n_layer=L,
            n_head=H,
            resid_pdrop=0.0,
            embd_pdrop=0.0,
            attn_pdrop=0.0,
            bos_token_id=0,
            eos_token_id=0,
        )
    ).eval()
    return hf, gpt_from_hf(hf).eval()


def peft_prefix(hf, n_prefix, hidden=None):
    """peft's PrefixTuning around a copy of `hf`: the flat prefix, or P vectors and an MLP."""
    from peft import PrefixTuningConfig, TaskType, get_peft_model

    config = PrefixTuningConfig(
        task_type=TaskType.CAUSAL_LM,
        num_virtual_tokens=n_prefix,
        prefix_projection=hidden is not None,
        encoder_hidden_size=hidden or C,
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)  # peft's own use of deprecated names
        return get_peft_model(copy.deepcopy(hf), config).eval()


def copy_peft_prefix(ours: PrefixTuned, theirs) -> None:
    """The same numbers in both: peft's layout is ours (layer 0 keys, layer 0 values, layer 1 ...)."""
    encoder = theirs.prompt_encoder["default"]
    with torch.no_grad():
        ours.prefix.copy_(encoder.embedding.weight)
        if ours.encoder is not None:
            ours.encoder.load_state_dict(encoder.transform.state_dict())


@pytest.mark.parametrize("hidden", [None, 24])
def test_logits_equal_peft_prefix_tuning_with_right_padding(hf_gpt2, hidden):
    """Same prefix (hidden=None) or same P vectors and MLP (peft's prefix_projection=True): the same
    logits, with peft given an attention mask whose second row is right-padded from position 7."""
    hf, gpt = hf_gpt2
    theirs = peft_prefix(hf, 5, hidden)
    ours = PrefixTuned(gpt, 5, reparam_hidden=hidden).eval()
    copy_peft_prefix(ours, theirs)
    assert trainable_report(ours)["trainable"] == sum(
        p.numel() for p in theirs.parameters() if p.requires_grad
    )
    idx = torch.randint(0, V, (2, 10), generator=torch.Generator().manual_seed(1))
    mask = torch.ones(2, 10, dtype=torch.long)
    mask[1, 7:] = 0
    with torch.no_grad():
        want_plain = theirs(input_ids=idx).logits
        want_padded = theirs(input_ids=idx, attention_mask=mask).logits
        got = ours(idx)[0]
    torch.testing.assert_close(got, want_plain, atol=1e-5, rtol=1e-5)
    # right padding: the real positions see nothing after them, so they match the unpadded run
    torch.testing.assert_close(got[0], want_padded[0], atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(got[1, :7], want_padded[1, :7], atol=1e-5, rtol=1e-5)
    assert not torch.allclose(got, gpt(idx)[0], atol=1e-3)  # the prefix does change the output


def test_loss_and_gradients_equal_peft(hf_gpt2):
    """peft shifts the labels inside the HF model; the course shifts them in the batch (targets are
    the next tokens, -100 at the end). Same loss, same gradient on every prefix number."""
    hf, gpt = hf_gpt2
    theirs = peft_prefix(hf, 4).train()
    ours = PrefixTuned(gpt, 4).train()
    copy_peft_prefix(ours, theirs)
    idx = torch.randint(0, V, (3, 9), generator=torch.Generator().manual_seed(2))
    want = theirs(input_ids=idx, labels=idx).loss
    want.backward()
    targets = torch.cat([idx[:, 1:], torch.full((3, 1), -100)], dim=1)
    _, loss = ours(idx, targets)
    loss.backward()
    torch.testing.assert_close(loss, want)
    grad = theirs.prompt_encoder["default"].embedding.weight.grad
    torch.testing.assert_close(ours.prefix.grad, grad, atol=1e-6, rtol=1e-5)


def test_greedy_generation_equals_greedy_decoding_of_peft(hf_gpt2):
    """`generate` on the wrapper (no KV cache: it re-runs the window) gives peft's greedy tokens,
    decoded with peft's forward pass one token at a time. (Not `PeftModel.generate`: with peft 0.21.2
    and transformers 5.25 it drops the prefix, since transformers' new `cache` argument wins over
    the `past_key_values` peft injects, and only shifts the positions by P.)"""
    hf, gpt = hf_gpt2
    theirs = peft_prefix(hf, 6)
    ours = PrefixTuned(gpt, 6).eval()
    copy_peft_prefix(ours, theirs)
    want = torch.randint(0, V, (2, 5), generator=torch.Generator().manual_seed(3))
    with torch.no_grad():
        for _ in range(8):
            nxt = theirs(input_ids=want).logits[:, -1].argmax(dim=-1, keepdim=True)  # (B, 1)
            want = torch.cat([want, nxt], dim=1)
    assert torch.equal(generate(ours, want[:, :5], 8, temperature=0.0), want)


def test_llama_with_grouped_query_attention_equals_peft():
    """A Llama whose 6 query heads share 2 key/value heads: the prefix holds keys and values for the 2
    key/value heads only (peft sizes it the same way), and the RoPE model agrees with peft's."""
    from transformers import LlamaConfig, LlamaForCausalLM

    from llmcourse.llama_weights import llama_from_hf

    torch.manual_seed(0)
    hf = LlamaForCausalLM(
        LlamaConfig(
            vocab_size=101,
            hidden_size=48,
            intermediate_size=64,
            num_hidden_layers=2,
            num_attention_heads=6,
            num_key_value_heads=2,
            max_position_embeddings=48,
        )
    ).eval()
    theirs = peft_prefix(hf, 4)
    ours = PrefixTuned(llama_from_hf(hf), 4).eval()
    assert ours.prefix.shape == (4, 2 * 2 * 2 * 8)  # P x (layers * (k, v) * kv heads * head_dim)
    copy_peft_prefix(ours, theirs)
    idx = torch.randint(0, 101, (2, 9), generator=torch.Generator().manual_seed(4))
    with torch.no_grad():
        torch.testing.assert_close(ours(idx)[0], theirs(input_ids=idx).logits, atol=1e-5, rtol=1e-5)


def test_a_prefix_of_the_models_own_keys_and_values_is_that_text():
    """Hand-derivable: start the prefix from the model's keys and values on tokens v. Attention in
    every layer then sees exactly what it sees when v is really there, so the logits at idx equal the
    plain model's on v followed by idx."""
    torch.manual_seed(0)
    gpt = GPT(GPTConfig(vocab_size=V, block_size=24, n_layer=L, n_head=H, n_embd=C, dropout=0.0))
    v = [3, 14, 15, 9]
    ours = PrefixTuned(gpt.eval(), 4, init_from_ids=v)
    idx = torch.randint(0, V, (2, 7), generator=torch.Generator().manual_seed(5))
    with torch.no_grad():
        full, _ = gpt(torch.cat([torch.tensor(v).expand(2, -1), idx], dim=1))
        torch.testing.assert_close(ours(idx)[0], full[:, 4:], atol=1e-5, rtol=1e-5)


def test_freeze_prefix_keeps_the_outputs_and_drops_the_mlp(hf_gpt2):
    _, gpt = hf_gpt2
    torch.manual_seed(1)
    ours = PrefixTuned(gpt, 3, reparam_hidden=16).eval()
    idx = torch.randint(0, V, (2, 6))
    with torch.no_grad():
        before = ours(idx)[0]
        ours.freeze_prefix()
        torch.testing.assert_close(ours(idx)[0], before)
    assert ours.encoder is None and trainable_report(ours)["trainable"] == 3 * L * 2 * C


def test_trainable_counts_by_hand_and_bad_input(hf_gpt2):
    """P * L * 2 * C numbers (keys and values, every layer); with the MLP P*C + (C+1)*h + (h+1)*L*2*C."""
    _, gpt = hf_gpt2
    assert trainable_report(PrefixTuned(gpt, 5))["trainable"] == 5 * L * 2 * C
    with_mlp = PrefixTuned(gpt, 5, reparam_hidden=7)
    assert trainable_report(with_mlp)["trainable"] == 5 * C + (C + 1) * 7 + (7 + 1) * L * 2 * C
    assert all(not p.requires_grad for p in gpt.parameters())  # the wrapped model is frozen
    ours = PrefixTuned(gpt, 5)
    assert ours.block_size == 32 - 5
    with pytest.raises(ValueError, match="block_size"):
        ours(torch.zeros(1, 28, dtype=torch.long))  # 5 prefix + 28 real > 32
    with pytest.raises(ValueError, match="n_prefix"):
        PrefixTuned(gpt, 0)
    with pytest.raises(ValueError, match="one or the other"):
        PrefixTuned(gpt, 2, reparam_hidden=8, init_from_ids=[1, 2])
    with pytest.raises(ValueError, match="n_layer"):
        PrefixCache(torch.zeros(2, 1, 4, 3, 8), torch.zeros(2, 1, 4, 3))


@pytest.fixture(scope="module")
def copy_first_model():
    """A tiny GPT trained to repeat the *first* token of its input at every position: a frozen model
    with a skill to steer (a random one has none)."""
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


@pytest.mark.parametrize("hidden", [None, 16])
def test_prefix_steers_a_frozen_model(copy_first_model, hidden):
    """New task: always answer token 7. Only the prefix (and its MLP) may change; the loss falls from
    above log(30) (uniform guessing) to below 0.5, and the model's weights stay as they were."""
    model = copy.deepcopy(copy_first_model)
    frozen = {k: v.clone() for k, v in model.state_dict().items()}
    tuned = PrefixTuned(model, 2, reparam_hidden=hidden)
    trainable = [n for n, p in tuned.named_parameters() if p.requires_grad]
    assert trainable and all(n.startswith(("prefix", "encoder")) for n in trainable)
    idx = torch.randint(0, 30, (16, 7), generator=torch.Generator().manual_seed(1))
    targets = torch.full((16, 7), 7)
    opt = torch.optim.Adam([p for p in tuned.parameters() if p.requires_grad], lr=0.05)
    _, first = tuned(idx, targets)
    for _ in range(60):
        _, loss = tuned(idx, targets)
        opt.zero_grad()
        loss.backward()
        opt.step()
    assert first.item() > math.log(30) and loss.item() < 0.5
    for k, v in model.state_dict().items():
        assert torch.equal(v, frozen[k]), f"{k} changed although the model is frozen"


def test_split_prefix_exercise():
    from llmcourse.course import exercises

    def correct(flat, n_layer, n_head):
        P = flat.shape[0]
        kv = flat.view(P, n_layer, 2, n_head, -1)
        return kv.permute(1, 2, 3, 0, 4)

    def values_first(flat, n_layer, n_head):  # keys and values swapped
        return correct(flat, n_layer, n_head).flip(1)

    def heads_outermost(flat, n_layer, n_head):  # reads the heads as the slowest axis
        P = flat.shape[0]
        kv = flat.view(P, n_head, n_layer, 2, -1)
        return kv.permute(2, 3, 1, 0, 4)

    exercises.check("12.split_prefix", correct, trials=20)
    for wrong in (values_first, heads_outermost):
        with pytest.raises(exercises.ExerciseError):
            exercises.check("12.split_prefix", wrong, seed=0)
