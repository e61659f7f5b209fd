"""Transformer layers vs torch.nn, the model's convention, decoding, and learning a toy task."""

import math

import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

from llmcourse.attention import padding_mask
from llmcourse.transformer import (
    DecoderLayer,
    EncoderLayer,
    Seq2SeqTransformer,
    TransformerConfig,
    beam_search,
)

TOL = dict(atol=1e-5, rtol=1e-5)


def _randomise(module):
    """torch initialises biases and LayerNorm to 0/1; random values make the comparison bite."""
    with torch.no_grad():
        for p in module.parameters():
            p.copy_(torch.randn_like(p) * 0.3)


@pytest.mark.parametrize("norm_first", [False, True])
@pytest.mark.parametrize("activation", ["relu", "gelu"])
def test_encoder_layer_equals_torch(norm_first, activation):
    torch.manual_seed(0)
    ref = nn.TransformerEncoderLayer(
        16,
        4,
        dim_feedforward=32,
        dropout=0.0,
        activation=activation,
        batch_first=True,
        norm_first=norm_first,
    )
    _randomise(ref)
    ours = EncoderLayer(16, 4, 32, dropout=0.0, norm_first=norm_first, activation=activation)
    ours.copy_from_torch(ref)
    x = torch.randn(3, 7, 16)
    km = padding_mask([7, 4, 1], 7)
    torch.testing.assert_close(ours(x), ref(x), **TOL)
    torch.testing.assert_close(ours(x, key_mask=km), ref(x, src_key_padding_mask=~km), **TOL)


@pytest.mark.parametrize("norm_first", [False, True])
def test_decoder_layer_equals_torch(norm_first):
    torch.manual_seed(1)
    ref = nn.TransformerDecoderLayer(
        16, 2, dim_feedforward=24, dropout=0.0, batch_first=True, norm_first=norm_first
    )
    _randomise(ref)
    ours = DecoderLayer(16, 2, 24, dropout=0.0, norm_first=norm_first)
    ours.copy_from_torch(ref)
    x, memory = torch.randn(2, 5, 16), torch.randn(2, 6, 16)
    src_mask, tgt_mask = padding_mask([6, 3], 6), padding_mask([5, 4], 5)
    causal_blocked = torch.ones(5, 5, dtype=torch.bool).triu(1)  # torch: True = blocked
    expected = ref(
        x,
        memory,
        tgt_mask=causal_blocked,
        tgt_key_padding_mask=~tgt_mask,
        memory_key_padding_mask=~src_mask,
    )
    got = ours(x, memory, tgt_key_mask=tgt_mask, memory_key_mask=src_mask)
    torch.testing.assert_close(got, expected, **TOL)


def _tiny(**kw):
    kw = {"src_vocab_size": 9, "tgt_vocab_size": 9, "max_len": 32, **kw}
    cfg = TransformerConfig.for_size("smoke", **kw)
    return Seq2SeqTransformer(cfg)


def test_forward_convention_and_causality():
    torch.manual_seed(2)
    model = _tiny(n_dec_layer=2).eval()
    src, tgt_in = torch.randint(3, 9, (2, 6)), torch.randint(3, 9, (2, 5))
    tgt_in[:, 0] = 1
    logits, loss = model(src, tgt_in)
    assert logits.shape == (2, 5, 9) and loss is None
    targets = torch.randint(3, 9, (2, 5))
    targets[1, 3:] = -100
    _, loss = model(src, tgt_in, targets)
    keep = targets != -100
    manual = nn.functional.cross_entropy(logits[keep], targets[keep])
    torch.testing.assert_close(loss, manual)
    # causal decoder: changing tgt_in at position 3 leaves logits at 0..2 unchanged
    tgt2 = tgt_in.clone()
    tgt2[:, 3] = (tgt2[:, 3] + 1 - 3) % 6 + 3
    torch.testing.assert_close(model(src, tgt2)[0][:, :3], logits[:, :3], **TOL)
    # source padding is invisible: extra pad tokens do not change the output
    src_pad = torch.cat([src, torch.zeros(2, 3, dtype=torch.long)], 1)
    torch.testing.assert_close(model(src_pad, tgt_in)[0], logits, **TOL)


@pytest.mark.parametrize("norm_first,pos", [(False, "sinusoidal"), (True, "learned")])
def test_beam_size_one_equals_greedy(norm_first, pos):
    torch.manual_seed(3)
    model = _tiny(norm_first=norm_first, pos=pos).eval()
    src = torch.randint(3, 9, (4, 6))
    greedy = model.greedy_decode(src, max_new_tokens=8)
    beam = model.beam_search(src, beam_size=1, max_new_tokens=8)
    L = max(greedy.shape[1], beam.shape[1])

    def pad(t):
        return nn.functional.pad(t, (0, L - t.shape[1]), value=0)

    assert torch.equal(pad(greedy), pad(beam))


def test_exhaustive_beam_finds_the_most_likely_sequence():
    """With a beam as wide as the whole search space nothing is pruned, so beam search must return
    the argmax over all outputs. Allowed tokens: EOS, 3, 4 (pad and bos are never emitted); with
    max_new_tokens=3 there are 1 + 2 + 4 outputs ending in EOS after 1, 2 or 3 tokens and 8 cut
    at 3 tokens without EOS: 15, enumerated below and scored by teacher forcing. The score beam search reports is that log-probability,
    and no greedy output beats it."""
    import itertools

    torch.manual_seed(4)
    model = _tiny(tgt_vocab_size=5, tie_embeddings=False).eval()
    src = torch.randint(3, 9, (3, 5))
    outs = (
        [[2]]
        + [[a, 2] for a in (3, 4)]
        + [list(p) + [2] for p in itertools.product((3, 4), repeat=2)]
    )
    outs += [list(p) for p in itertools.product((3, 4, 2), repeat=3) if 2 not in p[:2]]
    outs = [o for i, o in enumerate(outs) if o not in outs[:i]]
    assert len(outs) == 15
    for b in range(3):
        s = src[b : b + 1]
        cand = torch.tensor([o + [0] * (3 - len(o)) for o in outs])  # (N, 3), pad after the end
        lp = model.sequence_logprob(s.expand(len(outs), -1), cand)
        step = model.next_token_logprobs(*model.encode(s))
        tokens, score = beam_search(step, bos_id=1, eos_id=2, beam_size=30, max_new_tokens=3)
        assert tokens == outs[lp.argmax()] and abs(score - lp.max().item()) < 1e-4
        greedy = model.greedy_decode(s, max_new_tokens=3)
        assert model.sequence_logprob(s, greedy).item() <= score + 1e-5
        wide = model.beam_search(s, beam_size=30, max_new_tokens=3)
        assert wide[0, : len(tokens)].tolist() == tokens


def test_beam_golden_beats_greedy():
    """Hand-built chain (0=BOS, 1=EOS, 2=A, 3=B). From BOS: A 0.6, B 0.4. After A: EOS 0.4,
    A 0.3, B 0.3. After B: EOS 0.9, A 0.05, B 0.05. Greedy takes A then EOS: p = 0.6*0.4 = 0.24.
    A beam of 2 keeps B alive and finds B EOS: p = 0.4*0.9 = 0.36 > 0.24."""
    table = {0: [0.0, 0.0, 0.6, 0.4], 2: [0.0, 0.4, 0.3, 0.3], 3: [0.0, 0.9, 0.05, 0.05]}

    def step(prefixes):
        return torch.tensor([table[p[-1]] for p in prefixes.tolist()]).log()

    toks1, s1 = beam_search(step, bos_id=0, eos_id=1, beam_size=1, max_new_tokens=5)
    toks2, s2 = beam_search(step, bos_id=0, eos_id=1, beam_size=2, max_new_tokens=5)
    assert toks1 == [2, 1] and abs(s1 - math.log(0.24)) < 1e-6
    assert toks2 == [3, 1] and abs(s2 - math.log(0.36)) < 1e-6


def test_length_penalty_prefers_longer():
    """From BOS: EOS 0.5, A 0.5; after A: EOS 1.0. Both outputs have p = 0.5, lengths 1 and 2.
    With alpha = 1 scores are log 0.5 / 1 and log 0.5 / (7/6): the longer one wins."""
    table = {0: [0.0, 0.5, 0.5], 2: [0.0, 1.0, 1e-9]}

    def step(prefixes):
        return torch.tensor([table[p[-1]] for p in prefixes.tolist()]).clamp_min(1e-30).log()

    assert beam_search(step, bos_id=0, eos_id=1, beam_size=2, max_new_tokens=5, length_penalty=1.0)[
        0
    ] == [2, 1]


@pytest.mark.slow
def test_learns_to_reverse():
    """Reverse strings of 3..6 symbols over an alphabet of 6 (ids 3..8). Chance level is
    log(7) = 1.95 nats per output token (6 symbols + EOS); after 150 steps (a few seconds) the
    loss must be below 0.6 and at least a quarter of fresh sequences reversed exactly (chance:
    about 7^-5, i.e. none). With longer training both go to ~0 loss / 100 %."""
    torch.manual_seed(5)
    g = torch.Generator().manual_seed(5)
    model = _tiny(n_embd=32, n_head=4, d_ff=64)
    opt = torch.optim.Adam(model.parameters(), lr=3e-3)

    def batch(n):
        L = 6
        lengths = torch.randint(3, L + 1, (n,), generator=g)
        sym = torch.randint(3, 9, (n, L), generator=g)
        src = torch.where(torch.arange(L)[None] < lengths[:, None], sym, 0)
        rev = torch.stack(
            [
                torch.cat([s[:k].flip(0), torch.zeros(L - k, dtype=torch.long)])
                for s, k in zip(sym, lengths)
            ]
        )
        tgt = torch.cat([rev, torch.zeros(n, 1, dtype=torch.long)], 1)  # room for EOS
        tgt[torch.arange(n), lengths] = 2
        tgt_in = torch.cat([torch.ones(n, 1, dtype=torch.long), tgt[:, :-1]], 1)
        targets = tgt.masked_fill(tgt == 0, -100)
        return src, tgt_in, targets

    for _ in range(150):
        _, loss = model(*batch(32))
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
    model.eval()
    src, _, targets = batch(100)
    _, loss = model(*batch(200))
    out = model.greedy_decode(src, max_new_tokens=7)
    exact = [(o[: len(t[t != -100])] == t[t != -100]).all().item() for o, t in zip(out, targets)]
    assert loss.item() < 0.6 and sum(exact) >= 25


def test_exercise_decoder_mask_and_its_classic_slips():
    """Golden: tgt_in [[1, 5, 0, 0]] with pad 0. Query 2 (a pad) still sees keys 0 and 1 (causal AND
    key-not-pad); masking the query axis instead would leave its row empty."""
    from llmcourse.course import exercises
    from llmcourse.transformer import decoder_mask

    assert decoder_mask(torch.tensor([[1, 5, 0, 0]]), 0)[0].int().tolist() == [
        [1, 0, 0, 0],
        [1, 1, 0, 0],
        [1, 1, 0, 0],
        [1, 1, 0, 0],
    ]
    causal = lambda T: torch.ones(T, T, dtype=torch.bool).tril()  # noqa: E731
    exercises.check(
        "05.decoder_mask", lambda t, p: causal(t.shape[1]) & (t != p)[:, None, :], trials=10
    )
    for wrong in (
        lambda t, p: causal(t.shape[1]) & (t != p)[:, :, None],  # padding on the query axis
        lambda t, p: causal(t.shape[1]) | (t != p)[:, None, :],
    ):  # OR instead of AND
        with pytest.raises(exercises.ExerciseError, match="case 1 of .*wrong values"):
            exercises.check("05.decoder_mask", wrong)


def test_exercise_label_smoothing_catches_unstable_log_and_v_minus_1_split():
    """With eps = 0.1 and V = 3 the target distribution is [0.0333, 0.9333, 0.0333] for target 1,
    and the smoothed loss equals F.cross_entropy(label_smoothing=0.1). The fixed case's first row,
    log p = [0, -1000, -2000] with target 0, gives 0.1/3 * 3000 = 100; the eps/(V-1) split gives
    0.05 * 3000 = 150, and log(softmax) gives inf (exp(-2000) underflows to 0)."""
    from llmcourse.course import exercises

    def mine(logits, targets, eps):
        logp = logits - torch.logsumexp(logits, dim=-1, keepdim=True)
        nll = -logp.gather(1, targets[:, None]).squeeze(1)
        return ((1 - eps) * nll - eps * logp.mean(-1)).mean()

    def naive_log(logits, targets, eps):  # log(softmax): log(0) = -inf for a very unlikely class
        logp = torch.softmax(logits, -1).log()
        return (
            (1 - eps) * -logp.gather(1, targets[:, None]).squeeze(1) - eps * logp.mean(-1)
        ).mean()

    def split_v_minus_1(logits, targets, eps):  # 1 - eps on the target, eps / (V - 1) on the others
        logp, V = F.log_softmax(logits, -1), logits.shape[-1]
        q = torch.full_like(logp, eps / (V - 1)).scatter(1, targets[:, None], 1 - eps)
        return -(q * logp).sum(-1).mean()

    x, y = torch.tensor([[0.5, 2.0, -1.0]]), torch.tensor([1])
    q = torch.tensor([[0.1 / 3, 0.9 + 0.1 / 3, 0.1 / 3]])
    torch.testing.assert_close(
        -(q * F.log_softmax(x, -1)).sum(), F.cross_entropy(x, y, label_smoothing=0.1)
    )
    exercises.check("05.label_smoothing", mine, trials=10)
    with pytest.raises(exercises.ExerciseError, match="case 1 of .*NaN/inf"):
        exercises.check("05.label_smoothing", naive_log)
    with pytest.raises(exercises.ExerciseError, match="case 1 of .*wrong values"):
        exercises.check("05.label_smoothing", split_v_minus_1)
