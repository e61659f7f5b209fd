"""Diagrams of model structure: the life cycle, an RNN, attention, the Transformer, BERT, GPT, KV cache.

Each function draws one figure with the kit of `draw.py` and is registered with its caption and alt
text; `diagrams.show(name)` puts it in the notebook that teaches it. The names in the pictures are
the course's own (`tok_emb`, `blocks`, `final_norm`, `lm_head` of `llmcourse.gpt`; `q_proj` ...
`out_proj` of `llmcourse.attention`), and the norm placement is each model's: post-norm for the
2017 Transformer (notebook 05's default) and BERT, pre-norm for GPT. Every diagram reads bottom
to top or left to right, the way data flows. Left out: dropout layers, biases and batch sizes.
"""

from __future__ import annotations

from typing import Any

from . import draw
from .catalog import register

SMALL = draw.FONT - 1  # the size of labels and details


def _block(ax: Any, xy, size, title: str, detail: str = "", *, role: str = "model", **kw):
    """A box with a title (bold, unless it is data) and, under it, smaller detail lines."""
    x, y, w, h = draw.box(ax, xy, size, role=role, **kw)
    top = y + h / 2 + (0.17 * (detail.count("\n") + 1) if detail else 0)
    draw.text(ax, (x + w / 2, top), title, bold=role != "data")
    if detail:
        _note(ax, (x + w / 2, top - 0.34), detail, va="top")


def _column(ax: Any, cx: float, y: float, items, *, w: float, gap: float = 0.45) -> float:
    """Blocks stacked upwards from y, centred on cx, each fed by an arrow from the one below;
    `items` are (height, title, detail, role). Returns the top of the last block."""
    for i, (h, title, detail, role) in enumerate(items):
        if i:
            draw.arrow(ax, (cx, y - gap), (cx, y))
        _block(ax, (cx - w / 2, y), (w, h), title, detail, role=role)
        y += h + gap
    return y - gap


def _path(ax: Any, points, *, dashed: bool = False) -> None:
    """A polyline through `points` with an arrow head on its last segment (an elbow connector)."""
    xs, ys = zip(*points[:-1])
    ax.plot(xs, ys, color=draw.INK, lw=1.3, ls="--" if dashed else "-", solid_capstyle="butt")
    draw.arrow(ax, points[-2], points[-1], dashed=dashed)


def _plus(ax: Any, xy, r: float = 0.25) -> None:
    """A circled plus: a residual addition, or embeddings added together."""
    import matplotlib.pyplot as plt

    ax.add_patch(plt.Circle(xy, r, facecolor="white", edgecolor=draw.INK, lw=1.3, zorder=3))
    ax.text(xy[0], xy[1] - 0.02, "+", ha="center", va="center", fontsize=12, zorder=4)


def _note(ax: Any, xy, s: str, *, size: float = SMALL, **kw) -> None:
    """A small grey label: a shape, a formula, a side remark."""
    draw.text(ax, xy, s, size=size, color=kw.pop("color", draw.MUTED), **kw)


@register(
    "llm_life_cycle",
    title="The life cycle of an LLM: three training stages, then evaluation and serving",
    alt=(
        "Left to right: raw text feeds 1. pretraining (notebook 08), which gives a base model; "
        "instruction-answer pairs feed 2. supervised fine-tuning (notebooks 11-12), which gives a "
        "chat model; preference pairs feed 3. alignment with RLHF or DPO (notebook 13), which gives "
        "an aligned model. The three training stages are framed together; the aligned model goes "
        "to evaluation (notebook 16), which loops back to fine-tuning, and then to serving "
        "(notebook 14)."
    ),
    notebook="00",
)
def llm_life_cycle():
    fig, ax = draw.canvas(22.6, 8.0, title="The life cycle of an LLM")
    w, gap, y, h = 3.1, 1.6, 3.0, 1.7
    xs = [0.5 + i * (w + gap) for i in range(5)]
    stages = [
        ("1. pretraining", "next-token prediction\nnotebook 08", "train"),
        ("2. SFT", "supervised fine-tuning\nnotebooks 11–12", "train"),
        ("3. alignment", "RLHF / DPO\nnotebook 13", "train"),
        ("evaluation", "metrics, benchmarks\nnotebook 16", "loss"),
        ("serving", "API server, KV cache\nnotebook 14", "model"),
    ]
    data = ["raw text: trillions\nof tokens, no labels", "instruction–answer\npairs, dialogues"]
    data += ["preference pairs:\nchosen vs rejected"]
    red, blue = draw.ROLES["train"][1], draw.ROLES["model"][1]
    frame = (3 * w + 2 * gap + 0.35, 5.1)
    draw.group(ax, (xs[0] - 0.2, y - 0.3), frame, "the three training stages", color=red)
    for i, (title, detail, role) in enumerate(stages):
        _block(ax, (xs[i], y), (w, h), title, detail, role=role)
        if i < 3:  # the data of each training stage, above it
            draw.box(
                ax, (xs[i] + 0.2, y + h + 0.8), (w - 0.4, 1.3), data[i], role="data", fontsize=9
            )
            draw.arrow(ax, (xs[i] + w / 2, y + h + 0.8), (xs[i] + w / 2, y + h))
        if i < 4:  # the model each stage hands on, named under the arrow
            draw.arrow(ax, (xs[i] + w, y + h / 2), (xs[i + 1], y + h / 2))
    for i, name in enumerate(["base\nmodel", "chat\nmodel", "aligned\nmodel"]):
        _note(ax, (xs[i] + w + gap / 2, y + h / 2 - 0.55), name, color=blue, bold=True)
    # evaluation sends you back to tuning
    draw.arrow(ax, (xs[3] + w / 2, y), (xs[1] + w / 2, y), curve=-0.25, dashed=True)
    _note(ax, ((xs[1] + xs[3]) / 2 + w / 2, 1.5), "iterate: back to tuning", italic=True)
    _note(ax, (xs[4] + w / 2, y + h + 1.45), "prompting and RAG\non the served model:\nnotebook 15")
    names = {"train": "training stage", "loss": "measure", "model": "deployed model"}
    draw.legend(ax, (0.5, 0.3), ["data", "train", "loss", "model"], labels=names)
    return fig


@register(
    "rnn_unrolled",
    title="An RNN, folded and unrolled over four time steps: one cell, the same weights at every step",
    alt=(
        "On the left, one RNN cell with a loop: its hidden state feeds back into it. On the right "
        "the same cell unrolled over four steps: each step reads the input x_t from below and the "
        "previous hidden state h_t-1 from the left (h_0 = 0), passes h_t to the right and to an "
        "output y_t above. A dashed frame around the four cells says they share the same weights "
        "W_ih and W_hh."
    ),
    notebook="03",
)
def rnn_unrolled():
    fig, ax = draw.canvas(21.6, 7.3, title="A recurrent network, unrolled in time")
    cy, ch, cw, top = 3.0, 1.3, 2.2, 5.6  # the cells' bottom, height, width; the outputs' bottom
    x0, step, mid = 7.8, 3.3, cy + ch / 2
    # one column per step; the first, at the left, is the folded cell with its loop
    for x, t in [(0.6, "t")] + [(x0 + i * step, str(i + 1)) for i in range(4)]:
        draw.box(ax, (x, cy), (cw, ch), "RNN\ncell", role="model")
        draw.box(ax, (x + 0.3, 0.6), (cw - 0.6, 0.8), f"$x_{t}$", role="data")
        draw.box(ax, (x + 0.3, top), (cw - 0.6, 0.8), f"$y_{t}$", role="op")
        draw.arrow(ax, (x + cw / 2, 1.4), (x + cw / 2, cy))
        draw.arrow(ax, (x + cw / 2, cy + ch), (x + cw / 2, top))
        if t != "t":  # the state goes on to the next step
            draw.arrow(ax, (x + cw, mid), (x + step if t != "4" else x + cw + 1.0, mid))
            _note(ax, (x + cw + 0.55, mid + 0.3), f"$h_{t}$")
    draw.arrow(ax, (0.6 + cw, cy + 1.05), (0.6 + cw, cy + 0.25), curve=-1.4)
    _note(ax, (3.45, cy + ch + 0.25), "$h_{t-1}$")
    _note(ax, (4.45, mid + 0.3), "unroll", italic=True)
    draw.arrow(ax, (3.95, mid), (4.95, mid))
    frame = (x0 + 3 * step + cw + 0.2 - 5.3, ch + 1.3)
    draw.group(ax, (5.3, cy - 0.45), frame, "the same weights\n$W_{ih}$, $W_{hh}$ at every step")
    draw.text(ax, (x0 - 0.75, mid), "$h_0 = 0$", ha="right")
    draw.arrow(ax, (x0 - 0.7, mid), (x0, mid))
    draw.text(ax, (x0 + 3 * step + cw + 1.1, mid), "…", ha="left")
    formula = r"$h_t = \tanh(W_{ih}\,x_t + b_{ih} + W_{hh}\,h_{t-1} + b_{hh})$;   "
    _note(
        ax,
        (10.8, 0.2),
        formula + r"$y_t$: a linear layer on $h_t$ (the next-token logits)",
        color=draw.INK,
    )
    return fig


@register(
    "attention_heads",
    title="Scaled dot-product attention (left) and multi-head attention built from it (right)",
    alt=(
        "Left, bottom to top: Q and K are multiplied into scores QK^T, divided by the square root "
        "of d, optionally masked (causal or padding), turned into weights by a softmax, and the "
        "weights multiply V to give the output. Right: the input x goes through q_proj, k_proj "
        "and v_proj, is split into h heads, each head runs the attention on the left on its own "
        "slice, and the heads are concatenated and mixed by out_proj."
    ),
    notebook="04",
)
def attention_heads():
    fig, ax = draw.canvas(21.0, 11.6, title="Attention: one head, and many")
    # left: softmax(QK^T / sqrt(d)) V, bottom to top
    draw.text(ax, (3.9, 11.1), "scaled dot-product attention", bold=True)
    for x, name in [(0.6, "Q"), (2.6, "K"), (6.9, "V")]:
        draw.box(ax, (x, 0.5), (1.4, 0.8), f"${name}$", role="data")
        draw.arrow(ax, (x + 0.7, 1.3), (x + 0.7, 2.1 if name != "V" else 8.3))
    steps = [
        (r"matmul  $Q K^\top$", "scores (Tq, Tk)"),
        (r"scale  $\div \sqrt{d}$", "variance back to 1"),
        ("mask (optional)", "causal, padding: −∞"),
        ("softmax", "each row sums to 1"),
    ]
    for i, (name, note) in enumerate(steps):
        y = 2.1 + 1.55 * i
        draw.box(ax, (0.6, y), (3.4, 0.9), name, role="op", dashed=name.startswith("mask"))
        _note(ax, (4.2, y + 0.45), note, size=draw.FONT - 2, ha="left")
        draw.arrow(ax, (2.3, y + 0.9), (2.3, y + 1.55 if i < 3 else 8.3))
    draw.box(ax, (0.6, 8.3), (7.7, 0.9), "matmul  weights × $V$", role="op")
    draw.box(ax, (2.2, 9.8), (3.2, 0.8), "output (Tq, d)", role="data")
    draw.arrow(ax, (3.8, 9.2), (3.8, 9.8))
    # right: multi-head attention, bottom to top
    draw.text(ax, (15.2, 11.1), "multi-head attention", bold=True)
    ax.plot([8.9, 8.9], [0.4, 10.9], color="#c8c8c8", lw=1.0)
    draw.box(ax, (13.2, 0.5), (4.0, 0.8), "$x$  (B, T, C)", role="data")
    for i, name in enumerate(["q_proj", "k_proj", "v_proj"]):
        x = 10.2 + 3.6 * i
        draw.box(ax, (x, 2.0), (2.8, 0.9), name, role="model")
        draw.arrow(ax, (15.2, 1.3), (x + 1.4, 2.0))
        draw.arrow(ax, (x + 1.4, 2.9), (x + 1.4, 3.6))
    split = "(B, T, C) → (B, h, T, C/h)"
    _block(ax, (10.2, 3.6), (10.0, 1.1), "split into h heads", split, role="op")
    for k in range(3, 0, -1):  # a stack of heads, drawn back to front
        draw.box(ax, (11.0 + 0.3 * k, 5.5 + 0.25 * k), (7.6, 1.2), role="model")
    _block(ax, (11.0, 5.5), (7.6, 1.2), "attention per head (left)", "each on its own slice C/h")
    _note(ax, (19.75, 6.1), "× h", italic=True, ha="left")
    draw.arrow(ax, (15.2, 4.7), (15.2, 5.5))
    draw.arrow(ax, (15.2, 7.25), (15.2, 7.9))
    _block(
        ax,
        (10.2, 7.9),
        (10.0, 1.1),
        "concatenate the heads",
        "(B, h, T, C/h) → (B, T, C)",
        role="op",
    )
    _block(ax, (13.2, 9.7), (4.0, 0.9), "out_proj")
    draw.arrow(ax, (15.2, 9.0), (15.2, 9.7))
    return fig


def _sublayers(ax, cx, y0, names, *, side: float, w: float = 4.2):
    """Post-norm sub-layers stacked from y0: each is `name` then "Add & Norm", with its residual
    drawn on the `side` (x of the bypass line). Returns the y of the top of the stack."""
    edge = cx - w / 2 if side < cx else cx + w / 2
    y = y0
    for title, detail in names:
        _block(ax, (cx - w / 2, y + 0.6), (w, 0.9), title, detail)
        draw.arrow(ax, (cx, y), (cx, y + 0.6))
        draw.box(ax, (cx - w / 2, y + 1.9), (w, 0.65), "Add & Norm", role="op")
        draw.arrow(ax, (cx, y + 1.5), (cx, y + 1.9))
        _path(ax, [(cx, y + 0.3), (side, y + 0.3), (side, y + 2.225), (edge, y + 2.225)])
        y += 2.55
    return y


@register(
    "transformer_encoder_decoder",
    title="The Transformer of 2017: an encoder stack and a decoder stack, post-norm as in the paper",
    alt=(
        "Left, the encoder: source tokens are embedded, positions added, and N layers each apply "
        "self-attention and a feed-forward network, each followed by Add & Norm with a residual "
        "bypass. Right, the decoder: the target shifted right is embedded the same way, and N "
        "layers apply masked self-attention, cross-attention whose keys and values come from the "
        "encoder's output, and a feed-forward network, each followed by Add & Norm; a linear layer "
        "and a softmax give the next-token probabilities."
    ),
    notebook="05",
)
def transformer_encoder_decoder():
    fig, ax = draw.canvas(19.0, 16.6, title="The Transformer: encoder–decoder")
    ex, dx = 5.0, 13.6  # centres of the encoder and decoder columns
    for cx, tokens, emb, side in [
        (ex, "source tokens", "src_emb  × √C", "right"),
        (dx, "target, shifted right\n<bos> + target", "tgt_emb  × √C", "left"),
    ]:
        _column(ax, cx, 0.3, [(1.0, tokens, "", "data"), (0.8, emb, "", "model")], w=4.2, gap=0.5)
        draw.arrow(ax, (cx, 2.6), (cx, 2.95))
        _plus(ax, (cx, 3.2))
        _note(ax, (cx + (0.45 if side == "left" else -0.45), 3.2), "positions\n(sin, cos)", ha=side)
    # encoder: N x [self-attention, feed-forward], residual bypasses on the left
    draw.group(ax, (1.6, 3.6), (6.0, 5.6), "× N encoder layers")
    enc = [("self-attention", "sees every position"), ("feed-forward", "per position")]
    top = _sublayers(ax, ex, 3.45, enc, side=2.3)
    # decoder: N x [masked self-attention, cross-attention, feed-forward], bypasses on the right
    draw.group(ax, (10.9, 3.6), (6.5, 8.15), "× N decoder layers")
    dec = [("masked self-attention", "causal: no peeking ahead")]
    dec += [("cross-attention", "K, V: the encoder output"), ("feed-forward", "per position")]
    dtop = _sublayers(ax, dx, 3.45, dec, side=16.75)
    # the encoder's output is the memory every decoder layer's cross-attention reads
    _path(ax, [(ex, top), (ex, 10.3), (10.3, 10.3), (10.3, 7.05), (dx - 2.1, 7.05)])
    _note(ax, (ex + 0.2, 9.85), "encoder output (memory)", ha="left")
    draw.arrow(ax, (dx, dtop), (dx, 12.2))
    head = [(1.0, "lm_head", "linear, tied to tgt_emb", "model"), (0.8, "softmax", "", "op")]
    _column(ax, dx, 12.2, head + [(1.0, "next-token\nprobabilities", "", "data")], w=4.2, gap=0.6)
    draw.box(ax, (0.7, 12.3), (8.6, 2.2), "", role="note")
    note = "post-norm, as in the paper and notebook 05\n(norm_first=False):  "
    note += "x = LayerNorm(x + sublayer(x)).\nPre-norm (GPT, notebook 08) normalises first:\n"
    _note(ax, (5.0, 13.4), note + "x = x + sublayer(LayerNorm(x)).", color=draw.INK)
    draw.legend(ax, (0.7, 15.4), ["data", "model", "op"], labels={"model": "learned layer"})
    return fig


@register(
    "bert_inputs",
    title="BERT's input is the sum of token, segment and position embeddings; "
    "MLM predicts the masked tokens, NSP reads [CLS]",
    alt=(
        "Bottom: the pair 'The dog [MASK] loudly' and 'The dog ate the [MASK]', written as "
        "[CLS] A [SEP] B [SEP]. Each token's input vector is its token embedding plus a segment "
        "embedding (A or B) plus a position embedding (0 to 11). The encoder mixes all positions "
        "in both directions; above it the masked-LM head predicts 'barked' and 'bone' at the two "
        "[MASK] positions, and the next-sentence head reads the [CLS] vector to say IsNext."
    ),
    notebook="07",
)
def bert_inputs():
    # a pair in the style of notebook 07's generated corpus ("The dog barked loudly.")
    tokens = "[CLS] The dog [MASK] loudly [SEP] The dog ate the [MASK] [SEP]".split()
    fig, ax = draw.canvas(22.6, 8.9, title="BERT: input embeddings and the two pretraining heads")
    x0, step, w = 3.0, 1.6, 1.45
    rows = [  # (label, y, role, text of column i)
        ("input", 0.35, "op", lambda i, t: t),
        ("token\ntok_emb", 1.45, "model", lambda i, t: r"$E_{\mathrm{" + t + "}}$"),
        ("segment\ntype_emb", 2.55, "model", lambda i, t: "$E_A$" if i <= 5 else "$E_B$"),
        ("position\npos_emb", 3.65, "model", lambda i, t: f"$E_{{{i}}}$"),
    ]
    for label, y, role, cell in rows:
        _note(ax, (0.3, y + 0.35), label, ha="left", bold=role == "op", color=draw.INK)
        for i, t in enumerate(tokens):
            size, dashed = (11, False) if role == "model" else (10, "MASK" in t)
            draw.box(
                ax,
                (x0 + i * step, y),
                (w, 0.7),
                cell(i, t),
                role=role,
                fontsize=size,
                dashed=dashed,
            )
            if role == "model" and y < 3:  # the rows are added, position by position
                draw.text(ax, (x0 + i * step + w / 2, y + 0.78), "+", size=11, bold=True)
    for i, seg in [(2.5, "segment A"), (8.5, "segment B")]:
        _note(ax, (x0 + i * step + w / 2, 0.02), seg, size=draw.FONT - 2, va="bottom")
    x = x0 + 6 * step - 0.08
    draw.arrow(ax, (x, 4.4), (x, 5.0), text="sum, then emb_norm (LayerNorm)")
    both = "self-attention with no causal mask: every position sees both sides"
    _block(ax, (x0, 5.0), (11 * step + w, 1.3), "BERT encoder: N post-norm blocks", both)
    for i, title, detail in [
        (0, "nsp_head", "pooled [CLS]\n→ IsNext"),
        (3, "mlm_head", "→ barked"),
        (10, "mlm_head", "→ bone"),
    ]:
        cx = x0 + i * step + w / 2
        h = 1.5 if "\n" in detail else 1.2
        _block(ax, (cx - 1.35, 7.0), (2.7, h), title, detail, role="loss")
        draw.arrow(ax, (cx, 6.3), (cx, 7.0))
    loss = "loss only at the chosen 15% of positions\n(target −100 everywhere else)"
    _note(ax, (x0 + 6.5 * step + w / 2, 7.6), loss)
    return fig


@register(
    "gpt_block",
    title="The course's GPT (llmcourse.gpt): embeddings, n_layer pre-norm blocks on a residual "
    "stream, final_norm and lm_head",
    alt=(
        "Bottom to top: token ids go through tok_emb and positions through pos_emb; the two are "
        "added into the residual stream. Inside each of the n_layer blocks the stream branches "
        "off twice: norm1 (LayerNorm) then causal self-attention, added back; norm2 then the MLP, "
        "added back. After the blocks come final_norm and lm_head, whose weight matrix is the "
        "token embedding's (weight tying), giving logits over the vocabulary."
    ),
    notebook="08",
)
def gpt_block():
    fig, ax = draw.canvas(14.2, 15.4, title="GPT: a decoder-only Transformer (pre-norm)")
    sx, bx, sw, bw = 6.0, 10.9, 4.2, 4.2  # the stream's x, the branches' centre, box widths
    for cx, data, emb, shape in [
        (3.5, "idx: token ids\n(B, T)", "tok_emb", "(vocab, C)"),
        (8.5, "positions\n0 … T−1", "pos_emb", "(block_size, C)"),
    ]:
        _column(ax, cx, 0.3, [(0.9, data, "", "data"), (1.0, emb, shape, "model")], w=3.6, gap=0.6)
        draw.arrow(ax, (cx, 2.8), (sx + (0.2 if cx > sx else -0.2), 3.35))
    _plus(ax, (sx, 3.5))
    # one block: two branches off the residual stream, each added back
    draw.group(ax, (2.4, 4.1), (bx + bw / 2 + 0.35 - 2.4, 7.4), "")
    _note(ax, (bx + bw / 2 + 0.15, 11.3), "blocks: × n_layer", italic=True, ha="right", va="top")
    ax.plot([sx, sx], [3.75, 4.45], color=draw.INK, lw=1.3)
    for y, (norm, layer, detail), formula in [
        (4.45, ("norm1", "attn", "causal self-attention"), "x + attn(norm1(x))"),
        (7.85, ("norm2", "mlp", "Linear 4C, GELU, Linear"), "x + mlp(norm2(x))"),
    ]:
        ax.plot([sx, sx], [y, y + 2.6], color=draw.INK, lw=1.3)  # the stream passes by
        _path(ax, [(sx, y), (bx, y), (bx, y + 0.3)])
        branch = [(0.8, f"{norm}: LayerNorm", "", "op"), (1.0, layer, detail, "model")]
        _column(ax, bx, y + 0.3, branch, w=bw, gap=0.35)
        _path(ax, [(bx, y + 2.45), (bx, y + 2.85), (sx + 0.25, y + 2.85)])
        _plus(ax, (sx, y + 2.85))
        _note(ax, (sx - 0.4, y + 2.85), formula, ha="right")
    _note(ax, (sx - 0.15, 6.0), "residual\nstream", size=draw.FONT - 2, ha="right", italic=True)
    draw.arrow(ax, (sx, 10.95), (sx, 11.9))
    out = [(0.8, "final_norm: LayerNorm", "", "op"), (0.8, "lm_head", "", "model")]
    _column(ax, sx, 11.9, out + [(0.8, "logits (B, T, vocab)", "", "data")], w=sw, gap=0.4)
    # weight tying: lm_head reads out with tok_emb's matrix
    _path(ax, [(1.7, 2.3), (0.7, 2.3), (0.7, 13.5), (sx - sw / 2, 13.5)], dashed=True)
    _note(ax, (0.45, 8.0), "the same matrix (weight tying)", rotation=90)
    return fig


@register(
    "kv_cache",
    title="One generation step with a KV cache: only the new token is projected; its query reads "
    "every cached key and value",
    alt=(
        "One layer at generation step t. The keys and values of tokens 1 to t-1, computed at earlier "
        "steps, sit in the cache (grey). Only the new token t goes through q_proj, k_proj and "
        "v_proj; its k_t and v_t are appended to the cache, and its query q_t attends to all t "
        "keys and values. A note gives the cache's memory: 2 x n_layer x B x T x n_kv x d_head x "
        "bytes per number."
    ),
    notebook="09",
)
def kv_cache():
    fig, ax = draw.canvas(19.4, 9.6, title="The KV cache: one decoding step of one layer")
    x0, step, w = 1.9, 1.45, 1.25
    right = x0 + 5 * step + w  # the new slots' right edge
    own = "the cache of one layer (each of the n_layer layers has its own)"
    draw.group(ax, (0.5, 2.5), (right + 0.35 - 0.5, 3.65), own)
    for row, y in [("k", 4.3), ("v", 2.9)]:
        draw.text(ax, (1.15, y + 0.4), row.upper(), bold=True)
        for i, s in enumerate(["1", "2", "3", "…", "t-1", "t"]):
            name = "…" if s == "…" else f"${row}_{{{s}}}$"
            new = s == "t"  # computed at this step; the others were computed at earlier ones
            draw.box(
                ax,
                (x0 + i * step, y),
                (w, 0.8),
                name,
                role="data" if new else "frozen",
                dashed=new,
                fontsize=11,
            )
    # the new token: the only one that goes through the projections at this step
    draw.box(ax, (12.4, 0.4), (5.0, 0.9), "token t (just sampled)", role="data")
    _block(ax, (12.4, 2.5), (5.0, 1.4), "q_proj, k_proj, v_proj", "on token t only: one position")
    draw.arrow(ax, (14.9, 1.3), (14.9, 2.5))
    draw.arrow(ax, (12.4, 3.6), (right + 0.05, 4.7))
    draw.arrow(ax, (12.4, 3.0), (right + 0.05, 3.3))
    _note(ax, (12.5, 4.45), "append $k_t$, $v_t$", ha="left")
    # the query of token t reads all t keys and values
    attend = r"softmax$(q_t K^\top / \sqrt{d_\mathrm{head}})\;V$"
    _block(ax, (1.0, 7.0), (9.6, 1.4), attend, "token t's output in this layer → the next layer")
    draw.arrow(ax, (5.5, 6.15), (5.5, 7.0), text="K, V of tokens 1 … t")
    _path(ax, [(16.4, 3.9), (16.4, 7.7), (10.6, 7.7)])
    draw.text(ax, (16.55, 5.8), "$q_t$", ha="left")
    draw.box(ax, (0.5, 0.3), (10.8, 1.7), "", role="note")
    memory = "memory = 2 × n_layer × B × T × n_kv × d_head × bytes per number\n(2: keys and values;"
    _note(
        ax,
        (5.9, 1.15),
        memory + " n_kv × d_head = n_embd for\nordinary multi-head attention)",
        color=draw.INK,
    )
    names = {"frozen": "cached earlier", "data": "new at step t"}
    draw.legend(ax, (12.4, 8.6), ["frozen", "data"], labels=names)
    return fig
