"""Code that must work across the dependency ranges pyproject.toml declares (issue 18): each test pins a
behaviour that differed between the lowest and the newest releases we allow."""

import warnings

import pytest
import torch


def _tiny_tokenizer():
    from tiny import tiny_hf_chat_tokenizer

    return tiny_hf_chat_tokenizer(extra_special=("<start>",))


def _tiny_llama(tokenizer, **config):
    from tiny import tiny_hf_llama

    return tiny_hf_llama(tokenizer, **config)


def test_hf_answers_passes_only_ids_and_mask_to_generate():
    """A tokenizer may also return token_type_ids; Llama's generate (transformers 4.x) rejects them."""
    from llmcourse import sft
    from llmcourse.tasks.instructions import Example

    tok = _tiny_tokenizer()
    model = _tiny_llama(tok, eos_token_id=tok.eos_token_id)
    plain = tok.apply_chat_template

    def with_token_types(*args, **kwargs):
        out = plain(*args, **kwargs)
        out["token_type_ids"] = torch.zeros_like(out["input_ids"])
        return out

    tok.apply_chat_template = with_token_types
    seen = []
    generate = model.generate

    def recording_generate(**kwargs):
        seen.append(set(kwargs) & {"input_ids", "attention_mask", "token_type_ids"})
        return generate(**kwargs)

    model.generate = recording_generate
    answers = sft.hf_answers(model, tok, [Example("echo", "say hi", "hi")], max_new_tokens=3)
    assert len(answers) == 1 and isinstance(answers[0], str)
    assert seen == [{"input_ids", "attention_mask"}]


def test_cjk_glyph_warning_filter_matches_old_and_new_matplotlib_wording(monkeypatch):
    """matplotlib 3.8 says "missing from current font", 3.9 and later "missing from font(s) ..."."""
    from matplotlib import font_manager

    from llmcourse import config

    monkeypatch.setattr(font_manager.fontManager, "ttflist", [])
    monkeypatch.setattr(font_manager, "findSystemFonts", lambda *a, **k: [])
    monkeypatch.setattr(config, "_cjk_warned", True)  # the one-time notice is not what is tested
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        assert config.use_cjk_font() is None
        for wording in (
            "Glyph 20013 (\\N{CJK UNIFIED IDEOGRAPH-4E2D}) missing from current font.",
            "Glyph 20013 (\\N{CJK UNIFIED IDEOGRAPH-4E2D}) missing from font(s) DejaVu Sans.",
        ):
            warnings.warn(wording, UserWarning)
        warnings.warn("an unrelated warning", UserWarning)
    assert [str(w.message) for w in caught] == ["an unrelated warning"]


class _OldStyleLM(torch.nn.Module):
    """A transformers 4.x-style causal LM: knows only `past_key_values` (argument and output)."""

    def __init__(self, hf):
        super().__init__()
        self.hf = hf

    def forward(self, input_ids=None, past_key_values=None, use_cache=None):
        import inspect

        name = "cache" if "cache" in inspect.signature(self.hf.forward).parameters else None
        kwargs = {name: past_key_values} if name else {"past_key_values": past_key_values}
        out = self.hf(input_ids=input_ids, use_cache=use_cache, **kwargs)
        cache = getattr(out, name) if name else out.past_key_values
        return type("Out", (), {"logits": out.logits, "past_key_values": cache})()


def test_hf_backend_stream_uses_the_cache_name_the_model_knows():
    """transformers 5 warns that `past_key_values` leaves LlamaForCausalLM.forward in 5.40; 4.x knows
    only that name. Both styles give the same greedy tokens, and the current one warns nothing."""
    from llmcourse.serve.backends import HFBackend

    tok = _tiny_tokenizer()
    model = _tiny_llama(tok, eos_token_id=tok.eos_token_id)
    with torch.no_grad():
        for p in model.parameters():
            p.normal_(0.0, 0.3)  # varied greedy tokens
    ids = tok.encode("hello", add_special_tokens=False)
    args = dict(temperature=0.0, top_p=1.0, top_k=None, seed=0)
    with warnings.catch_warnings():
        warnings.filterwarnings("error", message=".*past_key_values.*")
        new = list(HFBackend(model, tok, "tiny", 128).stream(ids, 8, **args))
    old = list(HFBackend(_OldStyleLM(model), tok, "tiny", 128).stream(ids, 8, **args))
    theirs = model.generate(
        torch.tensor([ids]), max_new_tokens=8, min_new_tokens=8, do_sample=False
    )[0, len(ids) :]
    assert new == old == theirs.tolist()


def test_documents_end_with_the_models_end_id_not_the_tokenizers():
    """Before transformers 5.25 a GGUF SmolLM2 tokenizer reports <|im_start|> as eos; the capstone's
    continued pretraining must end each document with the id the model generates up to."""
    from llmcourse.icl import HFCausalLM
    from llmcourse.recipes import adapt

    tok = _tiny_tokenizer()
    wrong = tok.convert_tokens_to_ids("<start>")
    tok.eos_token = "<start>"  # what an older GGUF conversion reports
    hf = _tiny_llama(tok, eos_token_id=[tok.convert_tokens_to_ids("<eos>"), wrong])
    end = adapt.generation_end_id(hf)
    assert end == tok.convert_tokens_to_ids("<eos>") != tok.eos_token_id == wrong
    lm = adapt.HFChat(tok, 32, end_id=end)
    stream = adapt.encode_docs(lm, ["ab", "c"]).tolist()
    assert stream == lm.encode("ab") + [end] + lm.encode("c") + [end]
    assert adapt.HFChat(tok, 32).end_id == wrong  # the default stays the tokenizer's
    hf.generation_config.eos_token_id = None
    hf.config.eos_token_id = None
    with pytest.raises(ValueError, match="eos_token_id"):
        adapt.generation_end_id(HFCausalLM(hf).hf)


class _TemplateTokenizer:
    """A chat tokenizer whose eos is wrong (as transformers < 5.25 reports a GGUF SmolLM2's)."""

    vocab = {"<|im_start|>": 1, "<|im_end|>": 2, "\n": 3}
    eos_token_id = 1  # <|im_start|>
    all_special_ids = [1, 2]

    def apply_chat_template(self, messages, *, tokenize=False):
        return "".join(f"<|im_start|>{m['role']}\n{m['content']}<|im_end|>\n" for m in messages)

    def encode(self, text, *, add_special_tokens=False):
        ids, rest = [], text
        while rest:
            piece = next((t for t in self.vocab if rest.startswith(t)), rest[0])
            ids.append(self.vocab.get(piece, 99))
            rest = rest[len(piece) :]
        return ids


def test_answers_end_at_the_templates_end_of_turn_not_the_reported_eos():
    from llmcourse import sft

    tok = _TemplateTokenizer()
    assert sft._end_id(tok) == 2  # <|im_end|>, not the eos of 1
    tok.apply_chat_template = lambda messages, tokenize=False: "answer: " + messages[-1]["content"]
    assert sft._end_id(tok) == 1  # nothing follows the text: the eos is all there is
