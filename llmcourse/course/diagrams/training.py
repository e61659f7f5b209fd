"""Diagrams of training, adaptation and serving: chat template and loss mask, LoRA, RLHF against DPO,
ZeRO stages, paged KV cache with continuous batching, and a RAG pipeline.

Each function draws one figure with the kit of `draw.py` and is registered with its caption and alt
text; the names inside the figures are the package's own (`chat.encode_chat`, `lora.LoRALinear`,
`rag.build_prompt`, ...), so a reader can find in the code what the picture shows. Blocks are listed
as (x, y, w, h, text, role) rows and drawn by `_boxes`, which keeps each layout readable as a table.
"""

from __future__ import annotations

from . import draw
from .catalog import register


def _boxes(ax, rows, **style) -> None:
    """Draw (x, y, w, h, text, role) rows with one shared style (fontsize, bold)."""
    for x, y, w, h, text, role in rows:
        draw.box(ax, (x, y), (w, h), text, role=role, **style)


def _chain(ax, y: float, spans) -> None:
    """Horizontal arrows at height `y`, one per (x_from, x_to) pair."""
    for a, b in spans:
        draw.arrow(ax, (a, y), (b, y))


def _note(ax, xy, s: str, *, size: float = draw.FONT - 1, ha: str = "left") -> None:
    """Secondary text, muted."""
    draw.text(ax, xy, s, ha=ha, size=size, color=draw.MUTED)


# a conversation and the tokens our template renders it to (`llmcourse.chat`), with the 0/1 mask
# `encode_chat` returns: the assistant's content and its <|end|> are trained, nothing else
_CHAT = [
    ("system", "Be brief.", ["<|system|>", "Be", "brief.", "<|end|>", "\\n"], [0, 0, 0, 0, 0]),
    ("user", "2+2?", ["<|user|>", "2+2?", "<|end|>", "\\n"], [0, 0, 0, 0]),
    ("assistant", "4", ["<|assistant|>", "4", "<|end|>", "\\n"], [0, 1, 1, 0]),
]


def _token_width(token: str) -> float:
    return max(0.75, 0.15 * len(token) + 0.35)


@register(
    "chat_template_loss_mask",
    title="The chat template renders a conversation into tokens; the loss mask trains only the "
    "assistant's answer and its <|end|>",
    alt="Three messages (system, user, assistant) are rendered by the chat template into one row of "
    "tokens, each turn opened by a role token such as <|user|> and closed by <|end|>. Under the tokens, "
    "the loss mask is 1 only on the assistant's answer and its <|end|>; the training target at each "
    "position is the next token where that token is trained and -100 (no loss) everywhere else.",
    notebook="11",
)
def chat_template_loss_mask():
    tokens = [t for _, _, toks, _ in _CHAT for t in toks]
    mask = [m for _, _, _, ms in _CHAT for m in ms]
    # the target at position t is token t + 1 where that token is trained, else -100; none at the end
    targets = [(tokens[i] if mask[i] else "-100") for i in range(1, len(tokens))] + [""]
    widths = [max(_token_width(t), _token_width(g)) for t, g in zip(tokens, targets)]
    xs = [2.9 + sum(widths[:i]) + 0.12 * i for i in range(len(tokens))]
    fig, ax = draw.canvas(xs[-1] + widths[-1] + 0.4, 8.2, title="Chat template and SFT loss mask")
    y_tok, y_mask, y_tgt = 5.3, 4.15, 2.8
    rows = [("messages", 7.4), ("tokens", 5.7), ("loss mask", 4.45), ("target", 3.2)]
    for label, y in rows:
        draw.text(ax, (0.3, y), label, ha="left", bold=True)
    start = 0
    for role, content, toks, _ in _CHAT:
        end = start + len(toks) - 1
        mid = (xs[start] + xs[end] + widths[end]) / 2
        draw.box(ax, (mid - 1.6, 7.0), (3.2, 0.8), f'{role}: "{content}"', role="data")
        label = "chat.encode_chat" if start == 0 else None
        draw.arrow(ax, (mid, 7.0), (mid, y_tok + 0.85), text=label)
        start = end + 1
    for tok, m, target, x, w in zip(tokens, mask, targets, xs, widths):
        special = tok.startswith("<|")
        role = "op" if special else "data"
        draw.box(ax, (x, y_tok), (w, 0.8), tok, role=role, fontsize=9, bold=special)
        mask_box = (x + w / 2 - 0.3, y_mask, 0.6, 0.6, str(m), "loss" if m else "frozen")
        _boxes(ax, [mask_box], fontsize=9)
        if target:
            _boxes(
                ax,
                [(x, y_tgt, w, 0.8, target, "frozen" if target == "-100" else "loss")],
                fontsize=9,
            )
    head = tokens.index("<|assistant|>")  # its target is the answer's first token
    end = (xs[head] + widths[head] - 0.3, y_tgt + 0.8)
    draw.arrow(ax, (xs[head + 1] + 0.1, y_tok), end, color=draw.MUTED)
    _note(
        ax,
        (0.3, 1.75),
        "target at position t = token t+1 where the mask is 1, else -100 (ignored by "
        "cross_entropy); chat.to_training_example builds it",
    )
    names = {"op": "role token", "data": "text token", "loss": "trained (in the loss)"}
    names["frozen"] = "context (no loss)"
    draw.legend(ax, (0.3, 0.55), list(names), labels=names)
    return fig


@register(
    "lora",
    title="LoRA: a frozen weight W plus a trainable low-rank update (alpha/r)·B·A",
    alt="The input x goes through two paths: the frozen pretrained weight W (out x in), and a trainable "
    "path that projects down with A (r x in, random init) to r numbers and back up with B (out x r, "
    "zero init), scaled by alpha/r. The two outputs are added: h = Wx + (alpha/r)·BAx, with r much "
    "smaller than in and out, so only r·(in + out) numbers are trained.",
    notebook="12",
)
def lora():
    fig, ax = draw.canvas(18, 11.2, title="LoRA (Hu et al. 2021)")
    _boxes(
        ax,
        [
            (1.0, 0.4, 9.0, 0.8, "x   (in numbers)", "data"),
            (6.0, 2.4, 4.0, 1.1, "A  (r × in)\nrandom init (Kaiming)", "train"),
            (7.3, 4.05, 1.4, 0.7, "Ax  (r)", "data"),
            (6.0, 5.3, 4.0, 1.1, "B  (out × r)\nzero init", "train"),
            (7.0, 7.0, 2.0, 0.7, "× α/r", "op"),
            (1.0, 9.9, 9.0, 0.8, "h = W x + (α/r) · B A x   (out numbers)", "data"),
        ],
    )
    _boxes(
        ax, [(1.0, 2.4, 4.4, 5.0, "W\n(out × in)\n\nfrozen,\npretrained", "frozen")], fontsize=11
    )
    _boxes(ax, [(4.95, 8.3, 0.8, 0.8, "+", "op")], fontsize=13, bold=True)
    arrows = [((3.2, 1.2), (3.2, 2.4)), ((8.0, 1.2), (8.0, 2.4)), ((8.0, 3.5), (8.0, 4.05))]
    arrows += [((8.0, 4.75), (8.0, 5.3)), ((8.0, 6.4), (8.0, 7.0)), ((3.2, 7.4), (4.95, 8.7))]
    arrows += [((8.0, 7.7), (5.75, 8.7)), ((5.35, 9.1), (5.35, 9.9))]
    for start, end in arrows:
        draw.arrow(ax, start, end)
    draw.text(ax, (10.3, 4.4), "r ≪ in, out", ha="left", bold=True)
    notes = [
        "trained: A and B, r·(in + out) numbers",
        "frozen: W, in·out numbers",
        "",
        "in = out = 768, r = 8:",
        "12,288 trained instead of 589,824 (2 %)",
        "",
        "B = 0 at the start: h = W x exactly",
        "α/r: changing r keeps the update's scale",
        "after training, merge: W' = W + (α/r)·B A",
    ]
    for k, line in enumerate(notes):
        draw.text(ax, (12.2, 9.0 - 0.55 * k), line, ha="left", size=draw.FONT - 1)
    draw.text(
        ax, (12.2, 2.6), "llmcourse.lora.LoRALinear", ha="left", color=draw.MUTED, italic=True
    )
    draw.legend(ax, (12.2, 1.2), ["frozen", "train", "data"])
    return fig


PI_REF = r"$\pi_{\mathrm{ref}}$"


@register(
    "rlhf_vs_dpo",
    title="RLHF trains a reward model and then runs PPO; DPO optimises the same preferences with one "
    "loss against a frozen reference",
    alt="Top row, RLHF: the SFT model's answers are ranked by people, a reward model is trained on "
    "those preference pairs, and PPO then samples answers, scores them with the reward model and "
    "updates the policy with a KL penalty to the reference, four models in memory. Bottom row, DPO: "
    "the SFT model and fixed preference pairs (chosen, rejected) go into one classification-style loss "
    "comparing policy and frozen reference log-probabilities: no reward model, no sampling loop.",
    notebook="13",
)
def rlhf_vs_dpo():
    fig, ax = draw.canvas(22.5, 11.4, title="From RLHF to DPO")
    # RLHF: three stages; the third keeps four models in memory and samples while it trains
    draw.group(ax, (0.2, 5.9), (22.1, 5.3), "RLHF (InstructGPT, Ouyang et al. 2022)")
    y = 7.6
    _boxes(
        ax,
        [
            (0.5, y, 2.4, 1.4, "1. SFT model", "model"),
            (20.1, y, 2.0, 1.4, "aligned\nmodel", "model"),
        ],
    )
    ranked = "sample answers,\npeople rank them\n(chosen, rejected)"
    reward = "2. reward model r(x, y)\nBradley–Terry loss\n" r"$-\log\sigma(r_w - r_l)$"
    _boxes(
        ax, [(3.6, y, 3.3, 1.4, ranked, "data"), (7.6, y, 3.7, 1.4, reward, "train")], fontsize=9
    )
    draw.group(ax, (12.1, 6.15), (7.4, 4.3), "3. PPO loop: sample, score, update")
    objective = r"maximise $r(x, y) - \beta\,\mathrm{KL}(\pi\,\|\,\pi_{\mathrm{ref}})$"
    draw.text(ax, (15.8, 9.5), objective)
    ppo = [(r"policy $\pi$", "train"), ("value model", "train"), ("reward model", "frozen")]
    ppo.append(("reference " + PI_REF, "frozen"))
    for k, (name, role) in enumerate(ppo):
        x, y_k = 12.4 + 3.6 * (k % 2), 7.8 - 1.35 * (k // 2)
        _boxes(ax, [(x, y_k, 3.2, 1.05, name, role)], fontsize=9)
    _chain(ax, y + 0.7, [(2.9, 3.6), (6.9, 7.6), (11.3, 12.1), (19.5, 20.1)])
    # DPO: the same pairs, one loss, two models
    draw.group(ax, (0.2, 0.3), (22.1, 5.2), "DPO (Rafailov et al. 2023)")
    y = 1.9
    _boxes(
        ax,
        [(0.5, y, 2.4, 1.4, "SFT model", "model"), (20.1, y, 2.0, 1.4, "aligned\nmodel", "model")],
    )
    pairs = r"preference pairs" "\n" r"(x, chosen $y_w$," "\n" r"rejected $y_l$)"
    _boxes(ax, [(3.6, y, 3.3, 1.4, pairs, "data")], fontsize=9)
    draw.group(ax, (7.6, 0.6), (11.9, 4.1), "one loss on fixed pairs (dpo.dpo_loss)")
    models = [(7.9, 2.55, 3.2, 1.05, r"policy $\pi$", "train")]
    models.append((7.9, 1.0, 3.2, 1.05, "reference " + PI_REF, "frozen"))
    _boxes(ax, models, fontsize=9)
    _boxes(ax, [(12.1, 1.1, 7.1, 2.4, "", "loss")])
    loss = (
        r"$-\log\sigma\left(\beta\left[\log\frac{\pi(y_w)}{\pi_{\mathrm{ref}}(y_w)}"
        r" - \log\frac{\pi(y_l)}{\pi_{\mathrm{ref}}(y_l)}\right]\right)$"
    )
    draw.text(ax, (15.65, 2.85), loss, size=13)
    draw.text(ax, (15.65, 1.75), "no reward model, no sampling:\n2 models in memory", size=9)
    draw.arrow(ax, (11.1, 3.05), (12.1, 2.6), text="log p")
    draw.arrow(ax, (11.1, 1.55), (12.1, 2.0))
    _chain(ax, y + 0.7, [(2.9, 3.6), (6.9, 7.6), (19.5, 20.1)])
    return fig


# bytes per parameter for mixed-precision Adam (ZeRO paper, section 3.1): fp16 weights, fp16
# gradients, and K = 12 bytes of fp32 optimizer state (master weights, momentum, variance)
_STATES = [
    ("weights (fp16) 2 B", 2, "model"),
    ("gradients (fp16) 2 B", 2, "train"),
    ("Adam states (fp32 weights, m, v) 12 B", 12, "note"),
]
# (label, how many of the three states are sharded, bytes per GPU in units of Ψ, its value for N)
_STAGES = [
    ("DDP\n(FSDP NO_SHARD)", 0, "", lambda n: 16),
    ("ZeRO-1\noptimizer states sharded", 1, "4Ψ + 12Ψ/N", lambda n: 4 + 12 / n),
    ("ZeRO-2 (SHARD_GRAD_OP)\n+ gradients sharded", 2, "2Ψ + 14Ψ/N", lambda n: 2 + 14 / n),
    ("ZeRO-3 / FSDP (FULL_SHARD)\n+ weights sharded", 3, "16Ψ/N", lambda n: 16 / n),
]


@register(
    "zero_stages",
    title="What each GPU stores under DDP and the three ZeRO stages (mixed-precision Adam, "
    "16 bytes per parameter)",
    alt="Four rows, one per strategy, each with a memory bar for four GPUs split into weights "
    "(2 bytes per parameter), gradients (2) and Adam states (12). DDP fills every GPU with all three; "
    "ZeRO-1 keeps only a quarter of the Adam states on each GPU, ZeRO-2 also a quarter of the "
    "gradients, and ZeRO-3 (FSDP) a quarter of everything, so the bytes per GPU fall from 16 to 7, "
    "5.5 and 4 per parameter.",
    notebook="17",
)
def zero_stages():
    from matplotlib.patches import Rectangle

    def bar(x, y, w, role, *, empty=False, h=0.8):
        fill, edge = draw.ROLES[role]
        face = "white" if empty else fill
        ax.add_patch(Rectangle((x, y), w, h, facecolor=face, edgecolor=edge, linewidth=1.0))

    n, length, col, x0, row, top = 4, 3.8, 4.05, 4.4, 1.75, 8.6
    fig, ax = draw.canvas(23.4, 9.8, title="ZeRO: shard the training state over N GPUs")
    for g in range(n):
        draw.text(ax, (x0 + g * col + length / 2, top + 0.45), f"GPU {g}", bold=True)
    draw.text(ax, (x0 + n * col + 1.3, top + 0.45), f"bytes per GPU\n(N = {n})", bold=True)
    for s, (label, sharded, formula, per_gpu) in enumerate(_STAGES):
        y = top - (s + 1) * row + 0.55
        draw.text(ax, (0.3, y + 0.4), label, ha="left", size=draw.FONT - 1)
        for g in range(n):
            x = x0 + g * col
            for k, (_, size, role) in enumerate(_STATES):
                w = length * size / 16
                if (
                    k >= 3 - sharded
                ):  # sharded (from the optimizer states back): GPU g keeps slice g
                    bar(x, y, w, role, empty=True)
                    bar(x + g * w / n, y, w / n, role)
                else:
                    bar(x, y, w, role)
                x += w
        value = f"{formula}\n= {per_gpu(n):g}Ψ" if formula else f"{per_gpu(n):g}Ψ"
        draw.text(ax, (x0 + n * col + 1.3, y + 0.4), value)
    for k, (name, _, role) in enumerate(_STATES):
        x = 0.3 + [0, 5.0, 10.2][k]
        bar(x, 1.2, 0.6, role, h=0.4)
        draw.text(ax, (x + 0.8, 1.4), name, ha="left", size=draw.FONT - 1)
    _note(
        ax,
        (0.3, 0.5),
        "Ψ = parameters; a white slot is a shard another GPU holds. 7.5B parameters on 64 GPUs: "
        "120, 31.4, 16.6, 1.9 GB per GPU (ZeRO paper, Figure 1)",
    )
    return fig


def _schedule(lengths: list[int], slots: int, continuous: bool) -> list[tuple[int, int, int, int]]:
    """(request, slot, start step, length) for each request, as `serving.batch_steps` counts them."""
    runs, free = [], [0] * slots
    for i, n in enumerate(lengths):
        if continuous:  # the slot that frees first takes the next request
            slot = min(range(slots), key=lambda s: free[s])
            start = free[slot]
        else:  # groups of `slots`; a group starts when the previous group's longest one ends
            slot = i % slots
            start = max(free) if slot == 0 else runs[-slot][2]
        runs.append((i, slot, start, n))
        free[slot] = start + n
    return runs


@register(
    "paged_kv_batching",
    title="vLLM's two ideas: a paged KV cache and continuous batching",
    alt="Top: two sequences are cut into logical blocks of four tokens; each sequence's block table "
    "maps its logical blocks to physical blocks scattered in GPU memory, with free blocks between "
    "them and only the last block partly empty. Bottom: a timeline of three batch slots over decode "
    "steps; with static batching finished slots sit idle until the longest request ends, while with "
    "continuous batching a waiting request takes a slot at the step it frees, so the same six "
    "requests finish in fewer steps.",
    notebook="14",
)
def paged_kv_batching():
    fig, ax = draw.canvas(22.5, 14.6, title="Paged KV cache and continuous batching")
    # --- paged KV cache: logical blocks -> block table -> physical blocks ------------------------
    draw.group(ax, (0.2, 6.8), (22.1, 7.6), "Paged KV cache (Kwon et al. 2023, PagedAttention)")
    seqs = {  # name: (tokens, physical block of each logical block, role, height of its table)
        "A": ("The cat sat on the mat and then slept .".split(), [1, 3, 4], "model", 12.0),
        "B": ("Why is the sky blue ?".split(), [5, 7], "data", 8.8),
    }
    block, cell, mem_x, mem_top, mem_h = 4, 0.58, 15.6, 12.9, 0.7
    _note(ax, (4.8, 13.45), "logical blocks (4 tokens each)", ha="center")
    _note(ax, (12.1, 13.45), "block table\nlogical → physical", ha="center")
    _note(ax, (mem_x + 1.2, 13.45), "GPU memory", ha="center")
    used = {}
    for name, (toks, phys, role, yt) in seqs.items():
        y_seq = yt - 0.3 * (len(phys) - 1) - 0.3
        draw.text(ax, (0.5, y_seq + 0.3), name, bold=True)
        for b in range(len(phys)):
            bx = 1.0 + b * (block * cell + 0.35)
            _note(
                ax, (bx + block * cell / 2, y_seq + 0.85), str(b), size=draw.FONT - 2, ha="center"
            )
            for j in range(block):
                t = b * block + j
                filled = t < len(toks)
                cell_box = (bx + j * cell, y_seq, cell, 0.6, toks[t] if filled else "")
                _boxes(ax, [(*cell_box, role if filled else "op")], fontsize=7)
        draw.arrow(ax, (1.0 + 3 * (block * cell + 0.35) - 0.1, y_seq + 0.3), (11.3, y_seq + 0.3))
        for b, p in enumerate(phys):
            ry = yt - 0.6 * b
            _boxes(ax, [(11.4, ry - 0.3, 0.7, 0.6, str(b), "op")], fontsize=9)
            _boxes(ax, [(12.1, ry - 0.3, 0.7, 0.6, str(p), role)], fontsize=9, bold=True)
            draw.arrow(ax, (12.8, ry), (mem_x - 0.05, mem_top - p * mem_h - mem_h / 2))
            used[p] = (role, min(block, len(toks) - b * block))
    for p in range(8):
        y = mem_top - (p + 1) * mem_h
        _note(ax, (mem_x + 2.7, y + mem_h / 2), str(p), ha="center")
        role, filled = used.get(p, ("op", 0))
        for j in range(block):
            _boxes(
                ax,
                [(mem_x + j * 0.6, y + 0.05, 0.6, mem_h - 0.1, "", role if j < filled else "op")],
            )
    notes = ["a new block only when", "the last one is full:", "waste < 1 block", "per sequence"]
    notes += ["", "free: 0, 2, 6", "vLLM: 16 tokens", "per block"]
    for k, line in enumerate(notes):
        draw.text(ax, (19.0, 12.3 - 0.5 * k), line, ha="left", size=draw.FONT - 2)
    # --- continuous batching: the same requests, static against continuous ---------------------
    draw.group(ax, (0.2, 0.3), (22.1, 6.2), "Continuous batching (Yu et al. 2022, Orca)")
    lengths, slots, c = [2, 6, 3, 4, 3, 2], 3, 0.8
    for k, (label, continuous) in enumerate((("static", False), ("continuous", True))):
        runs = _schedule(lengths, slots, continuous)
        steps = max(s + n for _, _, s, n in runs)
        x0, y0 = 2.2 + k * 10.6, 2.0
        draw.text(ax, (x0 + 4.0, 5.45), f"{label} batching: {steps} steps", bold=True)
        for s in range(slots):
            y = y0 + (slots - 1 - s) * 1.0
            draw.text(ax, (x0 - 0.2, y + 0.4), f"slot {s}", ha="right", size=draw.FONT - 2)
            draw.box(ax, (x0, y), (10 * c, 0.8), role="op", dashed=True)
        for i, s, start, n in runs:
            y = y0 + (slots - 1 - s) * 1.0
            draw.box(ax, (x0 + start * c, y), (n * c, 0.8), f"R{i + 1}", role="model", fontsize=9)
        draw.arrow(ax, (x0, 1.45), (x0 + 10 * c, 1.45))
        _note(ax, (x0 + 5 * c, 1.05), "decode step", size=draw.FONT - 2, ha="center")
    lengths_text = ", ".join(map(str, lengths))
    line = f"six requests with {lengths_text} tokens to generate; dashed = an idle slot"
    _note(ax, (11.25, 0.7), line, size=draw.FONT - 2, ha="center")
    return fig


@register(
    "rag_pipeline",
    title="Retrieval-augmented generation: index the chunks once, then retrieve the top k for each "
    "question and put them in the prompt",
    alt="Offline, top row: documents are cut into overlapping chunks, an embedding model turns each "
    "chunk into a vector, and the vectors form the index. Online, bottom row: the question is embedded "
    "with the same model, the k chunks with the highest cosine similarity are retrieved from the index, "
    "numbered into a prompt with the question, and the LLM writes an answer that cites them.",
    notebook="15",
)
def rag_pipeline():
    fig, ax = draw.canvas(22.5, 9.6, title="RAG: retrieve, then generate")
    draw.group(ax, (0.2, 5.2), (22.1, 4.2), "offline, once: build the index")
    y = 6.0
    offline = [
        (0.6, y, 3.6, 2.0, "documents\nnotebooks, docs,\nREADME, docstrings", "data"),
        (5.2, y, 3.8, 2.0, "rag.chunk_text\nwindows of 120 words,\n20 shared", "op"),
        (10.0, y, 3.4, 2.0, "embedding model\nMiniLM (or LSA at\nsmoke size)", "frozen"),
        (
            14.6,
            y,
            4.2,
            2.0,
            "index: one unit vector\nper chunk (n × d)\nEmbeddingRetriever",
            "data",
        ),
    ]
    _boxes(ax, offline, fontsize=9)
    _chain(ax, y + 1.0, [(4.2, 5.2), (9.0, 10.0), (13.4, 14.6)])
    draw.group(ax, (0.2, 0.3), (22.1, 4.6), "online, per question")
    y = 1.0
    online = [
        (4.0, y, 2.8, 1.9, "embed\n(same model)", "frozen"),
        (7.6, y, 3.8, 1.9, "top k by cosine\nsimilarity\n.search(question, k)", "op"),
        (12.2, y, 3.8, 1.9, "rag.build_prompt\n[1] chunk … [k] chunk\nQuestion: …", "data"),
        (19.7, y, 2.3, 1.9, "answer\nciting [1]", "data"),
    ]
    _boxes(ax, online, fontsize=9)
    _boxes(ax, [(0.6, y, 2.6, 1.9, "question", "data"), (16.8, y, 2.2, 1.9, "chat\nLLM", "model")])
    _chain(ax, y + 0.95, [(3.2, 4.0), (6.8, 7.6), (11.4, 12.2), (16.0, 16.8), (19.0, 19.7)])
    # the search reads the index: an elbow from the index down and left to the top-k block
    ax.plot([16.7, 16.7, 9.5], [6.0, 4.1, 4.1], color=draw.INK, linewidth=1.3)
    draw.arrow(ax, (9.5, 4.1), (9.5, y + 1.9))
    draw.text(
        ax, (13.1, 4.3), "search the index", size=draw.FONT - 1, color=draw.MUTED, va="bottom"
    )
    _note(ax, (9.5, 0.62), "or BM25: word overlap, no model", size=draw.FONT - 2, ha="center")
    return fig
