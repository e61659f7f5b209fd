"""RNN encoder-decoder: additive attention, padding invariance, step-by-step == teacher-forced, learning."""

import math

import pytest
import torch

from llmcourse.seq2seq import AdditiveAttention, Seq2SeqRNN, Seq2SeqRNNConfig


def _model(**kw):
    kw = {"src_vocab_size": 9, "tgt_vocab_size": 9, **kw}
    return Seq2SeqRNN(Seq2SeqRNNConfig.for_size("smoke", **kw))


def test_additive_attention_golden_uniform():
    """With v = 0 every score is 0, so the weights are uniform over the real keys and the context
    is their plain mean: keys 1, 3, (pad) -> weights 1/2, 1/2, 0 and context 2."""
    att = AdditiveAttention(2, 1, 4)
    torch.nn.init.zeros_(att.v.weight)
    keys = torch.tensor([[[1.0], [3.0], [100.0]]])  # (1, 3, 1)
    ctx, w = att(torch.randn(1, 2, 2), keys, torch.tensor([[True, True, False]]))
    torch.testing.assert_close(w, torch.tensor([[[0.5, 0.5, 0.0]] * 2]))
    torch.testing.assert_close(ctx, torch.full((1, 2, 1), 2.0))


@pytest.mark.parametrize("attention,kind", [(True, "gru"), (False, "lstm"), (True, "rnn")])
def test_source_padding_is_invisible(attention, kind):
    torch.manual_seed(0)
    m = _model(attention=attention, kind=kind, n_layer=2).eval()
    src, tgt_in = torch.randint(3, 9, (2, 5)), torch.randint(3, 9, (2, 4))
    src[1, 3:] = 0  # the second source is 3 tokens long
    logits, _ = m(src, tgt_in)
    padded = torch.cat([src, torch.zeros(2, 4, dtype=torch.long)], 1)
    torch.testing.assert_close(m(padded, tgt_in)[0], logits, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("attention", [True, False])
def test_greedy_steps_agree_with_teacher_forcing(attention):
    """Decoding one step at a time (state carried) and the parallel teacher-forced pass compute
    the same thing: feeding greedy's output back in, forward's argmax reproduces it."""
    torch.manual_seed(1)
    m = _model(attention=attention).eval()
    src = torch.randint(3, 9, (4, 6))
    m.keep_weights = True
    out = m.greedy_decode(src, max_new_tokens=7)
    if attention:
        assert m.attn_weights.shape == (4, out.shape[1], 6)
    tgt_in = torch.cat([torch.ones(4, 1, dtype=torch.long), out[:, :-1]], 1)
    logits, _ = m(src, tgt_in)
    logits[..., :2] = float("-inf")  # greedy never emits pad or bos
    pred = logits.argmax(-1)
    emitted = out != 0
    assert torch.equal(pred[emitted], out[emitted])


def test_loss_convention():
    torch.manual_seed(2)
    m = _model().eval()
    src, tgt_in = torch.randint(3, 9, (2, 5)), torch.randint(3, 9, (2, 4))
    targets = torch.randint(3, 9, (2, 4))
    targets[0, 2:] = -100
    logits, loss = m(src, tgt_in, targets)
    keep = targets != -100
    torch.testing.assert_close(loss, torch.nn.functional.cross_entropy(logits[keep], targets[keep]))


def test_attention_model_learns_to_copy():
    """Copy 3..5 symbols (ids 3..8). Chance is log(7) = 1.95 nats per output token (6 symbols +
    EOS); 120 steps of a small GRU with attention must get below a quarter of that."""
    torch.manual_seed(3)
    g = torch.Generator().manual_seed(3)
    m = _model(hidden_size=48)
    opt = torch.optim.Adam(m.parameters(), lr=1e-2)
    for _ in range(120):
        n, L = 32, 5
        lengths = torch.randint(3, L + 1, (n,), generator=g)
        real = torch.arange(L)[None] < lengths[:, None]
        src = torch.where(real, torch.randint(3, 9, (n, L), generator=g), 0)
        tgt = torch.cat([src, torch.zeros(n, 1, dtype=torch.long)], 1)
        tgt[torch.arange(n), lengths] = 2
        tgt_in = torch.cat([torch.ones(n, 1, dtype=torch.long), tgt[:, :-1]], 1)
        _, loss = m(src, tgt_in, tgt.masked_fill(tgt == 0, -100))
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
    assert loss.item() < 0.25 * math.log(7)
