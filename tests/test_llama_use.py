"""The course Llama in the course's later code: LoRA (against peft), SFT, greedy answers with and without
the KV cache, DPO, and serving (`load_backend` -> our own `Llama`, over loopback HTTP).

Tiny random models throughout (2 layers, width 32, 4 query heads sharing 2 key/value heads); reference
numbers (peft on Hugging Face's `LlamaForCausalLM`, transformers' `generate`) run on the same weights.
"""

from __future__ import annotations

import math

import pytest
import torch
from peft import LoraConfig, get_peft_model
from torch import nn

from llmcourse import sft
from llmcourse.chat import END, encode_chat
from llmcourse.dpo import DPOModel
from llmcourse.generate import generate
from llmcourse.gpt import GPT, GPTConfig
from llmcourse.tasks.instructions import make_instructions, make_preferences, to_conversation
from llmcourse.llama import Llama, LlamaConfig
from llmcourse.llama_weights import llama_to_hf
from llmcourse.lora import apply_lora, lora_layers, merge_lora, trainable_report
from llmcourse.runtime import detect
from llmcourse.serve.backends import CourseBackend, load_backend, tiny_random_model
from llmcourse.train import TrainConfig, fit


def tiny_llama(vocab_size: int, seed: int = 0, **kw) -> Llama:
    torch.manual_seed(seed)
    cfg = dict(vocab_size=vocab_size, block_size=64, n_layer=2, n_head=4, n_kv_head=2, n_embd=32)
    return Llama(LlamaConfig(**{**cfg, **kw}))


def _hf_name(ours: str) -> str:
    """Our module name -> Hugging Face's: blocks.0.attn.q_proj -> model.layers.0.self_attn.q_proj."""
    return ours.replace("blocks.", "model.layers.").replace(".attn.", ".self_attn.")


# ----------------------------------------------------------------------------------------- LoRA
def test_lora_on_our_llama_equals_peft_on_the_same_hf_llama():
    """Same base weights, same non-zero A and B in q_proj and v_proj (v_proj is narrower: 2 kv heads):
    our LoRA'd Llama and peft's LoRA'd LlamaForCausalLM give the same logits (measured: max |diff| 0.0,
    the adapters themselves move the logits by about 0.8)."""
    ours = tiny_llama(97, tie_embeddings=False).eval()
    with torch.no_grad():  # random norm weights, so a norm in the wrong place cannot hide
        for name, p in ours.named_parameters():
            if "norm" in name:
                p.copy_(1 + 0.3 * torch.randn_like(p))
    hf = llama_to_hf(ours)
    targets = ["q_proj", "v_proj"]
    wrapped = apply_lora(ours, targets, r=4, alpha=12)
    assert wrapped == [
        "blocks.0.attn.q_proj",
        "blocks.0.attn.v_proj",
        "blocks.1.attn.q_proj",
        "blocks.1.attn.v_proj",
    ]
    peft_model = get_peft_model(
        hf, LoraConfig(r=4, lora_alpha=12, lora_dropout=0.0, target_modules=targets)
    ).eval()
    peft_layers = {
        n: m
        for n, m in peft_model.named_modules()
        if hasattr(m, "lora_A") and hasattr(m, "base_layer")
    }
    assert len(peft_layers) == len(wrapped)
    g = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for name in wrapped:
            layer = ours.get_submodule(name)
            A, B = (
                torch.randn(layer.lora_A.shape, generator=g),
                torch.randn(layer.lora_B.shape, generator=g),
            )
            layer.lora_A.copy_(A)
            layer.lora_B.copy_(B)
            theirs = next(m for n, m in peft_layers.items() if n.endswith(_hf_name(name)))
            theirs.lora_A["default"].weight.copy_(A)
            theirs.lora_B["default"].weight.copy_(B)
            assert theirs.scaling["default"] == layer.scaling == 3.0
    idx = torch.randint(0, 97, (3, 29), generator=g)
    with torch.no_grad():
        got, want = ours(idx)[0], peft_model(input_ids=idx).logits
        with peft_model.disable_adapter():
            base = peft_model(input_ids=idx).logits
    assert (got - want).abs().max().item() <= 1e-4
    assert (got - base).abs().max().item() > 0.1  # the adapters matter
    # A (r x in) and B (out x r): q_proj 32 -> 32, v_proj 32 -> 2 kv heads * 8 = 16, in 2 layers
    n_trained = sum(p.numel() for p in peft_model.parameters() if p.requires_grad)
    assert trainable_report(ours)["trainable"] == n_trained == 2 * 4 * ((32 + 32) + (32 + 16))


def test_lora_merged_equals_unmerged_on_our_llama_and_exports_to_hf():
    """Every projection adapted: merging gives the same logits, and the unwrapped merged model is a
    plain Llama again, which `llama_to_hf` converts to the same logits."""
    model = tiny_llama(61).eval()
    apply_lora(
        model,
        ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"],
        r=2,
        alpha=4,
    )
    assert len(lora_layers(model)) == 2 * 7
    with torch.no_grad():
        for layer in lora_layers(model):
            layer.lora_B.normal_(0.0, 0.2)
    idx = torch.randint(0, 61, (2, 20))
    with torch.no_grad():
        unmerged = model(idx)[0]
        plain = merge_lora(model, unwrap=True)
        merged = plain(idx)[0]
        exported = llama_to_hf(plain)(input_ids=idx).logits
    assert not lora_layers(plain)
    torch.testing.assert_close(merged, unmerged, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(exported, unmerged, atol=1e-4, rtol=0)


# ----------------------------------------------------------------------------------------- SFT
@pytest.fixture(scope="module")
def tok():
    text = "\n".join(f"{e.prompt} {e.answer}" for e in make_instructions(200, "train"))
    return sft.chat_tokenizer(text, 256 + 5 + 60)


@pytest.fixture(scope="module")
def sft_run(tok):
    """A tiny Llama fine-tuned by `fit` on 32 'count' conversations: (model, rows, loss before)."""
    model = tiny_llama(tok.vocab_size)
    rows = [sft.encode_example(e, tok) for e in make_instructions(32, "train", ("count",))]
    idx, targets = sft.sft_batch(rows, tok.special_tokens[END], 63)
    with torch.no_grad():
        before = model(idx, targets)[1].item()
    sample = sft.sft_sampler(rows, tok.special_tokens[END], 63, batch_size=16)
    cfg = TrainConfig(
        max_steps=60, lr=3e-3, warmup_steps=5, eval_every=0, ckpt_every=0, log_every=1
    )
    history = fit(model, sample, cfg, runtime=detect("cpu"), progress=False)
    return model.eval(), rows, before, history


def test_sft_on_our_llama_lowers_the_masked_loss(tok, sft_run):
    """Measured on the 32 training conversations: 5.83 at the start (about log 321 = 5.77: uniform),
    1.40 after 60 steps. The test asks for at least 2 nats less, and for the loss to be the masked one."""
    model, rows, before, history = sft_run
    idx, targets = sft.sft_batch(rows, tok.special_tokens[END], 63)
    with torch.no_grad():
        logits, after = model(idx, targets)
    assert (
        targets == -100
    ).float().mean() > 0.5  # most positions (prompt, padding) are not trained
    assert after.item() == pytest.approx(sft.masked_loss(logits, targets).item(), rel=1e-6)
    assert abs(before - math.log(tok.vocab_size)) < 0.5
    assert after.item() < before - 2.0
    assert history.train_loss[-1] < history.train_loss[0] - 2.0


class NoCache(nn.Module):
    """The same model with a forward that takes no `kv_cache`: `generate_answers` re-runs it per token."""

    def __init__(self, inner: nn.Module):
        super().__init__()
        self.inner, self.cfg = inner, inner.cfg

    def forward(self, idx, targets=None):
        return self.inner(idx, targets)


def _lengths_seen(model: nn.Module, fn) -> list[int]:
    """Run fn() and return the sequence lengths the model's forward was called with."""
    seen = []
    handle = model.register_forward_pre_hook(
        lambda mod, args, kwargs: seen.append(args[0].size(1)), with_kwargs=True
    )
    try:
        fn()
    finally:
        handle.remove()
    return seen


def _wide(model: nn.Module) -> nn.Module:
    """Weights far wider than the 0.02 init: long, varied greedy answers that any position slip changes."""
    with torch.no_grad():
        for p in model.parameters():
            if p.dim() == 2:
                p.normal_(0.0, 0.3)
    return model.eval()


@pytest.mark.parametrize("kind", ["llama-sft", "llama-random", "llama-random+lora", "gpt-random"])
def test_generate_answers_with_the_kv_cache_equals_without(tok, sft_run, kind):
    """Greedy answers through the KV cache (models whose forward takes `kv_cache`) are the answers the
    uncached loop gives, for prompts of several lengths, some batched together: for the fine-tuned
    Llama (which ends some answers itself) and for random ones whose answers run to the token limit."""
    if kind == "gpt-random":
        torch.manual_seed(0)
        model = _wide(
            GPT(
                GPTConfig(
                    vocab_size=tok.vocab_size,
                    block_size=64,
                    n_layer=2,
                    n_head=2,
                    n_embd=32,
                    dropout=0.0,
                )
            )
        )
    elif kind == "llama-sft":
        model = sft_run[0]
    else:
        model = _wide(tiny_llama(tok.vocab_size, seed=1))
        if kind.endswith("+lora"):
            apply_lora(model, ["q_proj", "v_proj"], r=2, alpha=4)
            with torch.no_grad():
                for layer in lora_layers(model):
                    layer.lora_B.normal_(0.0, 0.3)
    examples = make_instructions(10, "test", ("count", "reverse"))
    prompts = [
        encode_chat(to_conversation(e, None, with_answer=False), tok, add_generation_prompt=True)[0]
        for e in examples
    ]
    assert len({len(p) for p in prompts}) < len(examples)  # some share a batch
    cached = []
    lengths = _lengths_seen(
        model, lambda: cached.extend(sft.generate_answers(model, tok, examples, max_new_tokens=8))
    )
    assert 1 in lengths  # the cached path ran: one new token per step
    plain, no_cache = [], NoCache(model)
    lengths = _lengths_seen(
        no_cache,
        lambda: plain.extend(sft.generate_answers(no_cache, tok, examples, max_new_tokens=8)),
    )
    assert 1 not in lengths  # the uncached path ran: the whole sequence each step
    assert cached == plain
    if kind == "llama-sft":  # it ends some answers itself (else they would run to 8 tokens)
        assert any(len(tok.encode(a)) < 8 for a in cached)
    else:  # long, varied answers: a slip in positions or in the cache would show
        assert len(set(cached)) > 5 and min(len(a) for a in cached) >= 6


# ----------------------------------------------------------------------------------------- DPO
def test_dpo_on_our_llama_raises_preference_accuracy_and_margin(tok):
    """DPO through `fit` with a Llama policy and its frozen copy as the reference, on 24 preference pairs.
    Measured: DPO loss 0.693 (log 2) -> 0.16; the policy prefers the chosen answer on 62.5 % of the pairs
    before and 91.7 % after; its mean log-prob margin goes from -2.1 to +5.1 nats."""
    policy = tiny_llama(tok.vocab_size)
    triples = make_preferences(24, "train")
    batch = sft.dpo_batch(triples, tok)
    dpo = DPOModel(policy, beta=0.5)
    reference = dpo.reference[0]
    assert all(n.startswith("policy.") for n, _ in dpo.named_parameters())
    with torch.no_grad():
        start, loss0 = dpo(**batch)
    acc0, margin0 = (
        sft.preference_accuracy(policy, batch),
        sft.logprob_margins(policy, batch).mean().item(),
    )
    ref_before = sft.logprob_margins(reference, batch)
    cfg = TrainConfig(
        max_steps=30, lr=3e-3, warmup_steps=3, eval_every=0, ckpt_every=0, log_every=1
    )
    fit(
        dpo, sft.dpo_sampler(triples, tok, batch_size=8), cfg, runtime=detect("cpu"), progress=False
    )
    dpo.eval()
    with torch.no_grad():
        end, loss1 = dpo(**batch)
    acc1, margin1 = (
        sft.preference_accuracy(policy, batch),
        sft.logprob_margins(policy, batch).mean().item(),
    )
    assert (
        abs(loss0.item() - math.log(2)) < 1e-5 and start["margin"].item() == 0.0
    )  # policy == reference
    assert loss1.item() < 0.4 and end["accuracy"].item() >= 0.9 and end["margin"].item() > 1.0
    assert acc1 >= acc0 + 0.2 and margin1 > margin0 + 3.0
    torch.testing.assert_close(
        sft.logprob_margins(reference, batch), ref_before
    )  # the reference stayed put


# ----------------------------------------------------------------------------------------- serving
NAME, BLOCK = "tiny-llama", 96


@pytest.fixture(scope="module")
def llama_dir(tmp_path_factory):
    return tiny_random_model(
        tmp_path_factory.mktemp("serve") / NAME, block_size=BLOCK, kind="llama"
    )


@pytest.fixture(scope="module")
def backend(llama_dir):
    return load_backend(llama_dir, device="cpu")


def test_load_backend_puts_a_llama_directory_into_our_llama(llama_dir, backend):
    """The directory `llama_to_hf(...).save_pretrained` wrote runs in our Llama; our decoding gives
    transformers' greedy tokens, and engine="transformers" still serves it with transformers."""
    from transformers import AutoModelForCausalLM

    assert isinstance(backend, CourseBackend) and isinstance(backend.model, Llama)
    assert (
        backend.name == NAME
        and backend.context_length == BLOCK
        and backend.model.cfg.n_kv_head == 2
    )
    hf = AutoModelForCausalLM.from_pretrained(llama_dir).eval()
    ids = backend.encode("hello llama")
    with torch.no_grad():
        torch.testing.assert_close(
            backend.model(torch.tensor([ids]))[0], hf(torch.tensor([ids])).logits, atol=1e-4, rtol=0
        )
    ours = list(backend.stream(ids, 16, temperature=0.0, top_p=1.0, top_k=None, seed=0))
    theirs = hf.generate(
        torch.tensor([ids]), max_new_tokens=16, min_new_tokens=16, do_sample=False
    )[0, len(ids) :]
    assert ours == theirs.tolist() and len(set(ours)) > 3  # varied tokens, not one repeated
    via_hf = load_backend(llama_dir, device="cpu", engine="transformers")
    assert type(via_hf).__name__ == "HFBackend"
    assert list(via_hf.stream(ids, 16, temperature=0.0, top_p=1.0, top_k=None, seed=0)) == ours
    sampled = [
        list(b.stream(ids, 16, temperature=1.0, top_p=0.9, top_k=None, seed=5))
        for b in (backend, backend)
    ]
    assert sampled[0] == sampled[1] != ours  # a seed makes sampling reproducible


def test_server_answers_with_our_llama(backend):
    """Completion and chat over loopback HTTP equal `llmcourse.generate` on the same Llama."""
    openai = pytest.importorskip("openai")
    pytest.importorskip("uvicorn")
    from llmcourse.serve import BackgroundServer

    with BackgroundServer(backend) as srv:
        client = openai.OpenAI(
            base_url=srv.url + "/v1", api_key="unused", max_retries=0, timeout=30
        )
        assert [m.id for m in client.models.list().data] == [NAME]
        prompt = "To be, or not"
        ids = backend.encode(prompt)
        r = client.completions.create(model=NAME, prompt=prompt, max_tokens=12, temperature=0)
        want = generate(backend.model, torch.tensor([ids]), 12, temperature=0.0)[
            0, len(ids) :
        ].tolist()
        assert r.choices[0].text == backend.decode(want) and r.usage.completion_tokens == 12
        messages = [{"role": "user", "content": "Hello!"}]
        prompt_ids, _ = backend.chat_ids(messages)
        r = client.chat.completions.create(
            model=NAME, messages=messages, max_tokens=20, temperature=0
        )
        out = generate(backend.model, torch.tensor([prompt_ids]), 20, temperature=0.0)[
            0, len(prompt_ids) :
        ].tolist()
        stop = next((n for n, t in enumerate(out) if t in backend.chat_stop_ids), len(out))
        assert r.choices[0].message.content == backend.decode(out[:stop])
        assert r.choices[0].finish_reason == ("stop" if stop < len(out) else "length")
        chunks = client.chat.completions.create(
            model=NAME, messages=messages, max_tokens=20, temperature=0, stream=True
        )
        assert (
            "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
            == r.choices[0].message.content
        )


def test_cli_main_serves_the_llama_directory(llama_dir, monkeypatch):
    """`python -m llmcourse.serve --model DIR` builds the app around our Llama (uvicorn.run stubbed)."""
    uvicorn = pytest.importorskip("uvicorn")
    from starlette.testclient import TestClient

    from llmcourse import serve

    apps = []
    monkeypatch.setattr(uvicorn, "run", lambda app, **kw: apps.append(app))
    serve.main(["--model", str(llama_dir), "--device", "cpu", "--name", "cli-llama"])
    r = TestClient(apps[0], base_url="http://localhost").post(  # a loopback Host name
        "/v1/completions",
        json={"model": "cli-llama", "prompt": "hi", "max_tokens": 4, "temperature": 0},
    )
    assert r.status_code == 200 and r.json()["usage"]["completion_tokens"] == 4


def test_unknown_model_types_and_unsupported_configs_are_refused(tmp_path, backend):
    from transformers import LlamaConfig as HFLlamaConfig
    from transformers import LlamaForCausalLM, MistralConfig

    MistralConfig(
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=1,
        num_attention_heads=4,
        num_key_value_heads=2,
    ).save_pretrained(tmp_path / "mistral")
    with pytest.raises(ValueError, match=r"'mistral'.*'gpt2'.*'llama'.*engine='transformers'"):
        load_backend(tmp_path / "mistral", device="cpu")
    with pytest.raises(ValueError, match="engine"):
        load_backend(tmp_path / "mistral", device="cpu", engine="vllm")
    gelu = LlamaForCausalLM(
        HFLlamaConfig(
            vocab_size=len(backend.tokenizer),
            hidden_size=32,
            intermediate_size=64,
            num_hidden_layers=1,
            num_attention_heads=4,
            hidden_act="gelu",
        )
    )
    gelu.save_pretrained(tmp_path / "gelu")
    backend.tokenizer.save_pretrained(tmp_path / "gelu")
    with pytest.raises(ValueError, match=r"hidden_act='gelu'.*engine='transformers'"):
        load_backend(tmp_path / "gelu", device="cpu")
    assert (
        type(load_backend(tmp_path / "gelu", device="cpu", engine="transformers")).__name__
        == "HFBackend"
    )
