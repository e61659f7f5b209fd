"""RNN/LSTM/GRU written out vs torch.nn, the char LM's convention and learning, the gradient probe."""

import math
import warnings

import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

from llmcourse import char_rnn, rnn
from llmcourse.tasks import swap_text

TORCH_LAYERS = {"rnn": nn.RNN, "lstm": nn.LSTM, "gru": nn.GRU}


def _random_state(kind, L, B, H):
    h = torch.randn(L, B, H)
    return (h, torch.randn(L, B, H)) if kind == "lstm" else h


@pytest.mark.parametrize("kind", ["rnn", "lstm", "gru"])
@pytest.mark.parametrize("num_layers,B,T,C,H", [(1, 3, 5, 4, 6), (2, 2, 7, 5, 3), (3, 1, 4, 8, 8)])
@pytest.mark.parametrize("with_state", [False, True])
def test_layer_equals_torch(kind, num_layers, B, T, C, H, with_state):
    """Same weights, same inputs -> same outputs and final states as torch.nn.RNN/LSTM/GRU (1e-5)."""
    torch.manual_seed(0)
    ref = TORCH_LAYERS[kind](C, H, num_layers=num_layers, batch_first=True)
    ours = rnn.LAYERS[kind](C, H, num_layers=num_layers)
    ours.copy_from_torch(ref)
    x = torch.randn(B, T, C)
    state = _random_state(kind, num_layers, B, H) if with_state else None
    out_ref, st_ref = ref(x, state)
    out, st = ours(x, state)
    torch.testing.assert_close(out, out_ref, atol=1e-5, rtol=1e-5)
    if kind == "lstm":
        torch.testing.assert_close(st[0], st_ref[0], atol=1e-5, rtol=1e-5)
        torch.testing.assert_close(st[1], st_ref[1], atol=1e-5, rtol=1e-5)
    else:
        torch.testing.assert_close(st, st_ref, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("kind", ["rnn", "lstm", "gru"])
def test_cell_equals_torch_cell(kind):
    """One step of our cell vs torch.nn.RNNCell/LSTMCell/GRUCell, including gradients."""
    torch.manual_seed(1)
    ref = {"rnn": nn.RNNCell, "lstm": nn.LSTMCell, "gru": nn.GRUCell}[kind](4, 5)
    ours = {"rnn": rnn.RNNCell, "lstm": rnn.LSTMCell, "gru": rnn.GRUCell}[kind](4, 5)
    ours.load_state_dict(ref.state_dict())  # the cell's names are torch's cell names
    x = torch.randn(3, 4)
    s = (torch.randn(3, 5), torch.randn(3, 5)) if kind == "lstm" else torch.randn(3, 5)
    a, b = ours(x, s), ref(x, s)
    if kind == "lstm":
        torch.testing.assert_close(a[0], b[0]), torch.testing.assert_close(a[1], b[1])
        a, b = a[0], b[0]
    torch.testing.assert_close(a, b)
    a.sum().backward(), b.sum().backward()
    torch.testing.assert_close(ours.weight_hh.grad, ref.weight_hh.grad, atol=1e-5, rtol=1e-5)


def test_gradients_equal_torch():
    """Backprop through time gives torch's gradients (2-layer LSTM)."""
    torch.manual_seed(2)
    ref, ours = nn.LSTM(3, 4, num_layers=2, batch_first=True), rnn.LSTM(3, 4, num_layers=2)
    ours.copy_from_torch(ref)
    x = torch.randn(2, 6, 3)
    ref(x)[0].pow(2).sum().backward()
    ours(x)[0].pow(2).sum().backward()
    torch.testing.assert_close(
        ours.cells[0].weight_ih.grad, ref.weight_ih_l0.grad, atol=1e-5, rtol=1e-5
    )
    torch.testing.assert_close(
        ours.cells[1].bias_hh.grad, ref.bias_hh_l1.grad, atol=1e-5, rtol=1e-5
    )


def test_rnn_cell_golden():
    """Hand-derivable: H=1, W_ih=1, W_hh=0.5, biases 0, h0=0, inputs 1, 0:
    h1 = tanh(1) = 0.761594; h2 = tanh(0.5 * 0.761594) = tanh(0.380797) = 0.363400."""
    cell = rnn.RNNCell(1, 1)
    with torch.no_grad():
        (
            cell.weight_ih.fill_(1.0),
            cell.weight_hh.fill_(0.5),
            cell.bias_ih.zero_(),
            cell.bias_hh.zero_(),
        )
    h1 = cell(torch.tensor([[1.0]]))
    h2 = cell(torch.tensor([[0.0]]), h1)
    assert abs(h1.item() - 0.761594) < 1e-5 and abs(h2.item() - 0.363400) < 1e-5


@pytest.mark.parametrize("kind", ["rnn", "lstm", "gru"])
def test_char_lm_convention_and_state_carry(kind):
    """(logits, loss) convention, ignore_index=-100, and carrying the state equals one long pass."""
    torch.manual_seed(3)
    m = char_rnn.CharRNNLM(11, kind=kind, n_embd=8, hidden_size=12, n_layer=2).eval()
    idx = torch.randint(0, 11, (2, 9))
    logits, loss = m(idx)
    assert logits.shape == (2, 9, 11) and loss is None
    targets = torch.randint(0, 11, (2, 9))
    targets[:, :4] = -100
    _, loss = m(idx, targets)
    expected = F.cross_entropy(logits[:, 4:].reshape(-1, 11), targets[:, 4:].reshape(-1))
    torch.testing.assert_close(loss, expected)
    a, st = m.forward_with_state(idx[:, :5])
    b, _ = m.forward_with_state(idx[:, 5:], st)
    torch.testing.assert_close(torch.cat([a, b], 1), logits, atol=1e-6, rtol=1e-5)
    g = m.generate(idx[:, :3], 4, temperature=0)
    assert g.shape == (2, 7) and torch.equal(g[:, :3], idx[:, :3])


def test_char_lm_learns():
    """An LSTM LM on the periodic text 'abcdeabcde...' must beat the unigram loss log(5) = 1.609
    by far (the next character is a deterministic function of the current one)."""
    torch.manual_seed(4)
    text = torch.arange(5).repeat(40)  # 200 tokens, vocab 5
    m = char_rnn.CharRNNLM(5, kind="lstm", n_embd=8, hidden_size=16)
    opt = torch.optim.Adam(m.parameters(), lr=3e-2)
    x, y = text[:-1].view(1, -1)[:, :160].reshape(8, 20), text[1:161].reshape(8, 20)
    for _ in range(60):
        _, loss = m(x, y)
        opt.zero_grad(), loss.backward(), opt.step()
    assert loss.item() < 0.2 * math.log(5)


def test_config_sizes():
    full, smoke = char_rnn.CharRNNConfig.for_size("full"), char_rnn.CharRNNConfig.for_size("smoke")
    assert smoke.hidden_size < full.hidden_size and smoke.max_steps < full.max_steps
    m = char_rnn.CharRNNLM.from_config(smoke, vocab_size=7)
    assert m.lm_head.out_features == 7 and isinstance(m.rnn, nn.LSTM)  # fused=True: torch's layer
    unfused = char_rnn.CharRNNLM.from_config(char_rnn.CharRNNConfig(fused=False), vocab_size=7)
    assert isinstance(unfused.rnn, rnn.LSTM)
    fused = char_rnn.CharRNNLM.from_config(char_rnn.CharRNNConfig(), vocab_size=7)
    assert sum(p.numel() for p in unfused.parameters()) == sum(
        p.numel() for p in fused.parameters()
    )


def test_chinese_config_and_one_layer_dropout():
    zh, en = (char_rnn.CharRNNConfig.for_size("smoke", language=lang) for lang in ("zh", "en"))
    assert (zh.corpus, zh.prompt, en.corpus, en.prompt) == (
        "poems-zh",
        "《",
        "animal-swaps",
        "the ",
    )
    assert zh.max_steps * zh.batch_size < en.max_steps * en.batch_size  # 39k characters only
    assert char_rnn.CharRNNConfig.for_size("full", language="zh").corpus == "fortunes-zh"
    # one fused layer: torch's between-layer dropout would only warn; the head's dropout still acts
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        m = char_rnn.CharRNNLM(5, n_embd=8, hidden_size=16, n_layer=1, dropout=0.5, fused=True)
    x = torch.randint(0, 5, (2, 7))
    assert not torch.equal(m(x)[0], m(x)[0])  # training mode: a new dropout mask each call
    m.eval()
    torch.testing.assert_close(m(x)[0], m(x)[0])


@pytest.mark.parametrize("kind", ["rnn", "lstm", "gru"])
def test_fused_char_lm_equals_ours_with_copied_weights(kind):
    """fused=True swaps in torch's layer: with the same weights, the same logits and carried state."""
    torch.manual_seed(7)
    ours = char_rnn.CharRNNLM(9, kind, n_embd=6, hidden_size=10, n_layer=2).eval()
    fused = char_rnn.CharRNNLM(9, kind, n_embd=6, hidden_size=10, n_layer=2, fused=True).eval()
    ours.rnn.copy_from_torch(fused.rnn)
    ours.tok_emb.load_state_dict(fused.tok_emb.state_dict())
    ours.lm_head.load_state_dict(fused.lm_head.state_dict())
    idx = torch.randint(0, 9, (3, 8))
    a, sa = ours.forward_with_state(idx)
    b, sb = fused.forward_with_state(idx)
    torch.testing.assert_close(a, b, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(sa, sb, atol=1e-5, rtol=1e-5)
    with pytest.raises(TypeError):
        char_rnn.grad_norm_by_distance(fused, idx)


def test_swap_text_needs_more_memory_than_an_ngram_has():
    """Every generated line keeps the rule; a 7-gram, seeing only 6 characters, cannot predict the
    repeated B 12 characters back: its loss there stays near log2(9) bits (any animal but A), while
    the first letters of the line are nearly free."""
    from llmcourse.smoothing import KneserNey

    text = swap_text.swap_sentences(600, seed=1)
    lines = text.splitlines()
    assert swap_text.swap_check(text) == {
        part: (600, 600) for part in ("second B", "second verb", "last animal")
    }
    assert swap_text.swap_check("the cat saw the dog, so the cat hit the dog.") == {
        "second B": (0, 1),
        "second verb": (0, 1),
        "last animal": (0, 1),
    }
    assert (
        swap_text.swap_sentences(50, seed=3)
        == swap_text.swap_sentences(50, seed=3)
        != swap_text.swap_sentences(50, seed=4)
    )
    kn = KneserNey(7).fit([list(ln) for ln in lines[:500]])
    held = [list(ln) for ln in lines[500:]]
    ctx, words = kn.ngrams(held)
    bits = (
        -torch.tensor(kn.score_ids(ctx, words)).log2().view(len(held), -1)
    )  # all lines have 44 chars
    b2 = lines[0].index(", so the ") + len(", so the ")
    assert bits[:, b2].mean() > 2.5  # log2(9) = 3.17 when nothing about B is known
    assert bits[:, :4].mean() < 0.1  # "the " at the line start


def test_load_char_text_generates_the_swap_corpus():
    cfg = char_rnn.CharRNNConfig.for_size("smoke")
    assert cfg.corpus == char_rnn.SWAP_CORPUS
    text = char_rnn.load_char_text(cfg, seed=2)
    assert text == swap_text.swap_sentences(4000, seed=2) and len(text.splitlines()) == 4000


def test_grad_probe_golden_no_recurrence():
    """With W_hh = 0 a vanilla RNN has no memory: h_T depends on x_T only, so
    dL_T/dx_t = 0 for every t < T, and only distance 0 has a non-zero norm."""
    torch.manual_seed(5)
    m = char_rnn.CharRNNLM(6, kind="rnn", n_embd=4, hidden_size=5)
    with torch.no_grad():
        m.rnn.cells[0].weight_hh.zero_()
    for wrt in ("input", "hidden"):
        norms = char_rnn.grad_norm_by_distance(m, torch.randint(0, 6, (2, 9)), wrt=wrt)
        assert norms.shape == (8,) and norms[0] > 0
        if wrt == "input":
            assert torch.all(norms[1:] == 0)
        else:  # dL/dh_t for t<T is zero too: h_{t+1} ignores h_t
            assert torch.all(norms[1:] == 0)


def test_grad_probe_matches_finite_difference():
    """The probe's dL_T/dx_t equals a finite-difference estimate along the gradient direction."""
    torch.manual_seed(6)
    m = char_rnn.CharRNNLM(5, kind="gru", n_embd=3, hidden_size=4).double()
    seq = torch.randint(0, 5, (7,))
    norms = char_rnn.grad_norm_by_distance(m, seq, wrt="input")
    x = m.tok_emb(seq[:-1]).detach().unsqueeze(0).requires_grad_(True)
    out, _ = m.rnn(x)
    loss = F.cross_entropy(m.lm_head(out[:, -1]), seq[-1:])
    (g,) = torch.autograd.grad(loss, x)
    t, eps = 2, 1e-6  # distance 6-1-2 = 3
    d = g[0, t] / g[0, t].norm()
    xp, xm = x.detach().clone(), x.detach().clone()
    xp[0, t] += eps * d
    xm[0, t] -= eps * d
    lp = F.cross_entropy(m.lm_head(m.rnn(xp)[0][:, -1]), seq[-1:])
    lm = F.cross_entropy(m.lm_head(m.rnn(xm)[0][:, -1]), seq[-1:])
    fd = (lp - lm) / (2 * eps)
    assert abs(fd.item() - norms[3].item()) < 1e-6


@pytest.mark.parametrize("kind", ["gru", "lstm"])
def test_step_mask_equals_torch_packed_sequences(kind):
    """With right-padded inputs and step_mask = real positions, the final state is the state after
    each sequence's last real token: torch's pack_padded_sequence gives the same."""
    torch.manual_seed(7)
    ref = TORCH_LAYERS[kind](3, 5, num_layers=2, batch_first=True)
    ours = rnn.LAYERS[kind](3, 5, num_layers=2)
    ours.copy_from_torch(ref)
    x, lengths = torch.randn(3, 6, 3), torch.tensor([6, 2, 4])
    mask = torch.arange(6)[None] < lengths[:, None]
    packed = nn.utils.rnn.pack_padded_sequence(x, lengths, batch_first=True, enforce_sorted=False)
    out_ref, st_ref = ref(packed)
    out_ref, _ = nn.utils.rnn.pad_packed_sequence(out_ref, batch_first=True)
    out, st = ours(x, step_mask=mask)
    torch.testing.assert_close(out[mask], out_ref[mask], atol=1e-5, rtol=1e-5)
    if kind == "lstm":
        st, st_ref = torch.cat(st), torch.cat(st_ref)
    torch.testing.assert_close(st, st_ref, atol=1e-5, rtol=1e-5)


def test_exercise_lstm_step():
    from llmcourse.course import exercises

    def mine(x, h, c, W_ih, W_hh, b):
        i, f, g, o = (x @ W_ih.T + h @ W_hh.T + b).chunk(4, -1)
        c = torch.sigmoid(f) * c + torch.sigmoid(i) * torch.tanh(g)
        return torch.sigmoid(o) * torch.tanh(c), c

    def wrong_order(x, h, c, W_ih, W_hh, b):  # a classic slip: i, g, f, o
        i, g, f, o = (x @ W_ih.T + h @ W_hh.T + b).chunk(4, -1)
        c = torch.sigmoid(f) * c + torch.sigmoid(i) * torch.tanh(g)
        return torch.sigmoid(o) * torch.tanh(c), c

    exercises.check("03.lstm_step", mine, trials=3, seed=0)
    with pytest.raises(exercises.ExerciseError):
        exercises.check("03.lstm_step", wrong_order, trials=3, seed=0)


def test_exercise_rnn_forward():
    from llmcourse.course import exercises

    def mine(x, h0, W_ih, W_hh, b):
        h, out = h0, []
        for t in range(x.shape[1]):
            h = torch.tanh(x[:, t] @ W_ih.T + h @ W_hh.T + b)
            out.append(h)
        return torch.stack(out, dim=1)

    def no_carry(x, h0, W_ih, W_hh, b):  # the classic slip: every step starts again from h0
        return torch.stack(
            [torch.tanh(x[:, t] @ W_ih.T + h0 @ W_hh.T + b) for t in range(x.shape[1])], dim=1
        )

    exercises.check("03.rnn_forward", mine, trials=5)
    with pytest.raises(exercises.ExerciseError, match="wrong values"):
        exercises.check(
            "03.rnn_forward", no_carry, trials=0
        )  # the fixed case (T=3) alone catches it


def test_exercise_gru_step_matches_torch_and_catches_cho_form():
    from llmcourse.course import exercises

    def mine(x, h, W_ih, W_hh, b_ih, b_hh):
        x_r, x_z, x_n = (x @ W_ih.T + b_ih).chunk(3, -1)
        h_r, h_z, h_n = (h @ W_hh.T + b_hh).chunk(3, -1)
        r, z = torch.sigmoid(x_r + h_r), torch.sigmoid(x_z + h_z)
        return (1 - z) * torch.tanh(x_n + r * h_n) + z * h

    def cho_form(x, h, W_ih, W_hh, b_ih, b_hh):  # reset gate applied to h before the product
        H = h.shape[1]
        x_r, x_z, x_n = (x @ W_ih.T + b_ih).chunk(3, -1)
        h_r, h_z, _ = (h @ W_hh.T + b_hh).chunk(3, -1)
        r, z = torch.sigmoid(x_r + h_r), torch.sigmoid(x_z + h_z)
        n = torch.tanh(x_n + (r * h) @ W_hh[2 * H :].T + b_hh[2 * H :])
        return (1 - z) * n + z * h

    def torch_gru_step(x, h, W_ih, W_hh, b_ih, b_hh):
        cell = nn.GRUCell(x.shape[1], h.shape[1])
        cell.load_state_dict(
            {"weight_ih": W_ih, "weight_hh": W_hh, "bias_ih": b_ih, "bias_hh": b_hh}
        )
        with torch.no_grad():
            return cell(x, h)

    exercises.check("03.gru_step", mine, trials=5)
    exercises.check("03.gru_step", torch_gru_step, trials=5)
    with pytest.raises(exercises.ExerciseError, match="wrong values"):
        exercises.check("03.gru_step", cho_form, trials=5, seed=0)


def test_swap_text_doctests():
    import doctest

    assert doctest.testmod(swap_text).failed == 0
