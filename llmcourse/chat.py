"""Chat format: roles, a template that renders a conversation to token ids, and the SFT loss mask.

A chat model is a plain language model trained on conversations written in a fixed *template*:
special tokens mark who speaks, and the model learns to continue after "<|assistant|>". Supervised
fine-tuning trains only on what the assistant says: system, user and tool turns are context, so their
positions get target -100 and contribute nothing to the loss (the *loss mask*).

Our template (one special token per role, one to end a turn):

    <|system|>You are terse.<|end|>
    <|user|>2+2?<|end|>
    <|assistant|>4<|end|>

The assistant's content *and* its <|end|> are trained (so the model learns to stop); the role headers
are not. `encode_chat` works with the course tokenizer (`llmcourse.bpe`, special tokens registered) and
`encode_chat_hf` with any Hugging Face tokenizer through its own `apply_chat_template`.
Left out: multi-modal content, function-call JSON schemas (notebook 15 renders tools into the system turn).
"""

from __future__ import annotations

from dataclasses import dataclass

ROLES = ("system", "user", "assistant", "tool")
END = "<|end|>"
SPECIAL_TOKENS = [f"<|{r}|>" for r in ROLES] + [END]
IGNORE = -100


@dataclass(frozen=True)
class Message:
    role: str  # one of ROLES
    content: str  # the text of the turn


def as_messages(conversation) -> list[Message]:
    """Accept Message objects or OpenAI-style dicts; check roles and content."""
    out = []
    for i, m in enumerate(conversation):
        if isinstance(m, dict):
            if "role" not in m or "content" not in m:
                raise ValueError(f"message {i} needs 'role' and 'content' keys, got {sorted(m)}")
            m = Message(m["role"], m["content"])
        if m.role not in ROLES:
            raise ValueError(f"message {i}: unknown role {m.role!r}; use one of {ROLES}")
        if not isinstance(m.content, str):
            raise ValueError(
                f"message {i}: content must be a string, got {type(m.content).__name__}"
            )
        out.append(m)
    return out


def render(conversation, add_generation_prompt: bool = False) -> str:
    """The conversation as template text (what the model actually reads)."""
    text = "".join(f"<|{m.role}|>{m.content}{END}\n" for m in as_messages(conversation))
    return text + ("<|assistant|>" if add_generation_prompt else "")


def _special_id(tokenizer, token: str) -> list[int]:
    specials = getattr(tokenizer, "special_tokens", None) or {}
    if token not in specials:
        raise ValueError(
            f"tokenizer has no special token {token!r}: register {SPECIAL_TOKENS} when you "
            "build it (e.g. RegexBPE.register_special_tokens)"
        )
    return [specials[token]]


def _plain(tokenizer, text: str) -> list[int]:
    """Encode message text with special tokens *disabled*: a user who types "<|end|><|assistant|>"
    must not be able to forge a turn (the classic prompt-injection-by-token bug)."""
    try:
        return tokenizer.encode(text, allowed_special="none")
    except TypeError:  # a tokenizer without special-token handling cannot be tricked this way
        return tokenizer.encode(text)


def encode_chat(
    conversation, tokenizer, add_generation_prompt: bool = False
) -> tuple[list[int], list[int]]:
    """Token ids and a 0/1 loss mask (1 = train on this token) for the course tokenizer.

    Each piece is encoded separately, so a header can never merge with the text next to it.
    """
    ids: list[int] = []
    mask: list[int] = []
    newline = _plain(tokenizer, "\n")
    for m in as_messages(conversation):
        train = 1 if m.role == "assistant" else 0
        head, body, end = (
            _special_id(tokenizer, f"<|{m.role}|>"),
            _plain(tokenizer, m.content),
            _special_id(tokenizer, END),
        )
        ids += head + body + end + newline
        mask += [0] * len(head) + [train] * (len(body) + len(end)) + [0] * len(newline)
    if add_generation_prompt:
        ids += _special_id(tokenizer, "<|assistant|>")
        mask += [0]
    return ids, mask


def encode_chat_hf(conversation, tokenizer) -> tuple[list[int], list[int]]:
    """Ids and loss mask through a Hugging Face tokenizer's own chat template.

    We render growing prefixes of the conversation; the tokens each assistant turn adds are trained.
    This relies on the template being prefix-stable (rendering n turns is a prefix of rendering n+1),
    which holds for the common templates; if it does not, we raise rather than guess.
    """
    messages = [{"role": m.role, "content": m.content} for m in as_messages(conversation)]
    ids: list[int] = []
    mask: list[int] = []
    for i, m in enumerate(messages):
        full = hf_template_ids(tokenizer, messages[: i + 1])
        if full[: len(ids)] != ids:
            raise ValueError(
                "this chat template is not prefix-stable; use return_assistant_tokens_mask "
                "with a template that has {% generation %} markers instead"
            )
        added = full[len(ids) :]
        if m["role"] == "assistant":
            # the header the template puts before an assistant turn is context, not a target
            header = (
                hf_template_ids(tokenizer, messages[:i], add_generation_prompt=True)[len(ids) :]
                if i
                else []
            )
            n_head = len(header) if full[: len(ids) + len(header)] == ids + header else 0
            mask += [0] * n_head + [1] * (len(added) - n_head)
        else:
            mask += [0] * len(added)
        ids = full
    return ids, mask


def hf_template_ids(tokenizer, messages, add_generation_prompt: bool = False) -> list[int]:
    """Token ids of `messages` rendered by a Hugging Face tokenizer's own chat template."""
    out = tokenizer.apply_chat_template(
        messages, tokenize=True, add_generation_prompt=add_generation_prompt
    )
    if isinstance(out, dict) or hasattr(out, "keys"):  # newer transformers return a BatchEncoding
        out = out["input_ids"]
    return list(out)


def to_training_example(ids: list[int], mask: list[int], block_size: int | None = None):
    """(ids, mask) -> (idx, targets) tensors for `model(idx, targets)`: next-token targets with -100
    wherever the *target* token is masked. Truncates to block_size + 1 tokens."""
    import torch

    if len(ids) != len(mask):
        raise ValueError(f"ids ({len(ids)}) and mask ({len(mask)}) differ in length")
    if block_size is not None:
        ids, mask = ids[: block_size + 1], mask[: block_size + 1]
    t = torch.tensor(ids, dtype=torch.long)
    targets = t[1:].clone()
    targets[torch.tensor(mask[1:], dtype=torch.bool).logical_not()] = IGNORE
    return t[:-1], targets


# ------------------------------------------------------------------------- checked by notebook 11's exercises
def loss_mask(roles: list[str], lengths: list[int]) -> list[int]:
    """loss_mask(roles, lengths) -> the 0/1 list `encode_chat` returns for messages laid out as header
    token, lengths[i] content tokens, <|end|>, newline token: 1 on an assistant's content and its <|end|>."""
    mask: list[int] = []
    for role, n in zip(roles, lengths):
        train = 1 if role == "assistant" else 0
        mask += [0] + [train] * (n + 1) + [0]
    return mask
