"""SmolLM2-135M-Instruct's real weights, from the offline GGUF file, in our own Llama: the same logits
and the same greedy text as Hugging Face's LlamaForCausalLM loading the same file."""

import numpy as np
import pytest
import torch

from llmcourse.data import data_path
from llmcourse.llama_weights import llama_from_gguf, llama_from_hf, unpermute

pytest.importorskip("gguf", reason="the gguf package is a test dependency (pyproject [test])")


@pytest.fixture(scope="module")
def smollm2():
    from transformers import AutoModelForCausalLM, AutoTokenizer

    path = data_path("smollm2-135m-instruct")
    tok = AutoTokenizer.from_pretrained(str(path.parent), gguf_file=path.name)
    hf = AutoModelForCausalLM.from_pretrained(str(path.parent), gguf_file=path.name).eval()
    return llama_from_gguf(path, block_size=512), hf, tok


def test_unpermute_inverts_llama_cpp_q_k_permutation():
    """llama.cpp's converter writes q/k rows as w.reshape(h, 2, d/2, C).swapaxes(1, 2); we undo it."""
    w = np.arange(4 * 6 * 3, dtype=np.float32).reshape(24, 3)  # 4 heads of 6 rows
    permuted = w.reshape(4, 2, 3, 3).swapaxes(1, 2).reshape(24, 3)
    np.testing.assert_array_equal(unpermute(permuted, 4), w)


def test_gguf_loader_reads_the_weights_transformers_reads(smollm2):
    ours, hf, _ = smollm2
    from_hf = llama_from_hf(hf, block_size=512)
    assert ours.cfg == from_hf.cfg
    for (name, a), (_, b) in zip(ours.state_dict().items(), from_hf.state_dict().items()):
        torch.testing.assert_close(a, b, rtol=0, atol=0, msg=name)


def test_real_weights_logits_and_greedy_text_equal_hf(smollm2):
    ours, hf, tok = smollm2
    chat = [{"role": "user", "content": "Write a short story about a robot who learns to paint."}]
    ids = tok.apply_chat_template(
        chat, add_generation_prompt=True, return_tensors="pt", return_dict=True
    )["input_ids"]
    with torch.no_grad():
        diff = (ours(ids)[0] - hf(input_ids=ids).logits).abs().max().item()
    assert diff <= 1e-3
    from llmcourse.generate import generate

    want = hf.generate(
        ids,
        attention_mask=torch.ones_like(ids),
        max_new_tokens=64,
        do_sample=False,
        pad_token_id=tok.eos_token_id,
    )
    got = generate(ours, ids, 64, temperature=0.0, stop_token=tok.eos_token_id)
    assert want.size(1) == ids.size(1) + 64, "the reply should be long enough to compare 64 tokens"
    assert torch.equal(got, want)
    assert "robot" in tok.decode(got[0, ids.size(1) :]).lower()
