"""What the server serves: a model + tokenizer behind one small interface, chat prompts, tool calls.

`llmcourse.serve` speaks HTTP; this module knows models. A `Backend` turns a prompt into token ids
and streams new token ids one at a time; the server adds stop strings, JSON and locking on top.

Two backends, chosen by `load_backend(directory, engine=...)` and the directory's `config.json`:
  * `CourseBackend` (engine "course", the default): our own decoders, decoded with
    `llmcourse.generate.stream` (KV cache, temperature / top-k / top-p with an explicit
    `torch.Generator`). A GPT-2-layout directory (`model_type` "gpt2", what
    `llmcourse.convert.export_gpt2` writes) is loaded into our `GPT` with `gpt_from_hf`; a Llama-layout
    one ("llama": what `llama_to_hf(model).save_pretrained` writes, SmolLM2, Llama 2/3) into our
    `Llama` with `llmcourse.llama_weights.llama_from_hf`. Any other `model_type`, or a config our
    decoders do not implement, is refused with an error that names what is supported.
  * `HFBackend` (engine "transformers"): any `AutoModelForCausalLM` directory, decoded by a loop of
    the same shape using the model's own `past_key_values` cache and our `sample_next_token`.

Chat prompts use the tokenizer's chat template when it has one, else the course template
(`llmcourse.chat.render`: <|user|>...<|end|>). Tools (OpenAI's "tools" field) are passed to a template
that renders them (`llmcourse.tool_prompt.template_supports_tools`); otherwise they are described in the
system turn. Either way the protocol is the course's one, `llmcourse.tools`: its system prompt, its
call format `<tool_call>[{"name": "add", "arguments": {"a": 1, "b": 2}}]</tool_call>` for earlier
calls written back into the prompt, and its parser (`split_tool_calls` here adds only what a server
needs: calls to tools the request did not offer, and replies the parser rejects, stay text). A model
only produces calls if it was trained to (SmolLM2-Instruct does); a random model never will.
Left out: batching several requests into one forward pass, quantized weights, logprobs.
"""

from __future__ import annotations

import copy
import inspect
import json
import threading
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import torch

from llmcourse import chat
from llmcourse.generate import sample_next_token
from llmcourse.tool_prompt import template_supports_tools, to_template_messages, with_tools_listing
from llmcourse.tools import TOOL_CALL_OPEN, Tool, ToolCallError, split_reply


class Backend:
    """A tokenizer and a model that streams next-token ids. Subclasses implement `stream`."""

    def __init__(self, model, tokenizer, name: str, context_length: int, *, generation_config=None):
        self.model, self.tokenizer, self.name, self.context_length = (
            model,
            tokenizer,
            name,
            context_length,
        )
        self.device = next(model.parameters()).device
        # end-of-answer ids: the tokenizer's eos, plus those of the checkpoint's generation config
        # (a transformers model carries its own; our converted GPT / Llama are handed the original's)
        self.eos_ids = _eos_ids(
            generation_config or getattr(model, "generation_config", None), tokenizer
        )
        end = (
            tokenizer.convert_tokens_to_ids(chat.END) if chat.END in tokenizer.get_vocab() else None
        )
        # with the course template a turn ends at <|end|>; it is a stop token for chat requests
        self.chat_stop_ids = self.eos_ids | (
            {end} if end is not None and not self.has_template else set()
        )
        # Prompts are tokenized in worker threads, at once. A fast tokenizer's "split special tokens"
        # is a flag of its Rust object: flipping it per call races between threads, and the flip waits,
        # GIL held, for a long encode to end (a frozen server). Message text gets a copy of its own.
        self.text_tokenizer = copy.deepcopy(tokenizer)

    @property
    def has_template(self) -> bool:
        return bool(getattr(self.tokenizer, "chat_template", None))

    @property
    def vocab_size(self) -> int:
        return len(self.tokenizer)

    def encode(self, text: str) -> list[int]:
        return list(self.tokenizer.encode(text, add_special_tokens=False))

    def decode(self, ids: list[int]) -> str:
        return self.tokenizer.decode(ids, skip_special_tokens=True)

    def stream(
        self,
        ids: list[int],
        max_new_tokens: int,
        *,
        temperature: float,
        top_p: float,
        top_k: int | None,
        seed: int,
    ) -> Iterator[int]:
        """Yield up to `max_new_tokens` new token ids after the prompt `ids`, sampled with a
        `torch.Generator` seeded by `seed` (the same request gives the same answer)."""
        raise NotImplementedError(f"{type(self).__name__} must implement stream()")

    def chat_ids(
        self, messages: list[dict], tools: list[dict] | None = None
    ) -> tuple[list[int], list[str]]:
        """OpenAI-style messages (+ tools) -> (prompt ids, extra stop strings)."""
        template = getattr(self.tokenizer, "chat_template", None) or ""
        if template and (not tools or template_supports_tools(self.tokenizer)):
            out = self.tokenizer.apply_chat_template(
                messages, tools=tools or None, add_generation_prompt=True, tokenize=True
            )
            if hasattr(out, "keys"):  # newer transformers return a BatchEncoding
                out = out["input_ids"]
            return list(out), []
        # plain {"role", "content"} turns; earlier tool calls written back in llmcourse.tools' format
        conv = [
            dict(m, role="system") if m["role"] == "developer" else m
            for m in to_template_messages(messages)
        ]
        if tools:  # listed in the system turn, with llmcourse.tools' instructions and example call
            conv = with_tools_listing(conv, [Tool.from_openai(t) for t in tools])
        if template:  # a template that ignores tools: tools went into the system turn instead
            return self.chat_ids(conv)
        # piece by piece, message text with special tokens switched off: typed "<|end|><|assistant|>"
        # must stay text, never forge a turn (the same rule as chat.encode_chat for training)
        ids, _ = chat.encode_chat(
            conv, CourseTokens(self.tokenizer, self.text_tokenizer), add_generation_prompt=True
        )
        return ids, [chat.END]


class CourseTokens:
    """A Hugging Face tokenizer seen through the course tokenizer's interface (for chat.encode_chat)."""

    def __init__(self, hf_tokenizer, text_tokenizer=None):
        # text_tokenizer: a copy of hf_tokenizer used only with special tokens off (see Backend)
        self.hf, self.text = hf_tokenizer, text_tokenizer or hf_tokenizer
        self.special_tokens = {
            t: hf_tokenizer.convert_tokens_to_ids(t) for t in chat.SPECIAL_TOKENS
        }

    def encode(self, text: str, allowed_special: str = "none") -> list[int]:
        split = allowed_special == "none"
        return (self.text if split else self.hf).encode(
            text, add_special_tokens=False, split_special_tokens=split
        )


class CourseBackend(Backend):
    """Our GPT or Llama, decoded by `llmcourse.generate.stream` (the code notebook 09 builds)."""

    def stream(self, ids, max_new_tokens, *, temperature, top_p, top_k, seed):
        from llmcourse.generate import stream

        gen = torch.Generator(device=self.device).manual_seed(seed)
        idx = torch.tensor([ids], dtype=torch.long, device=self.device)  # (1, T)
        for nxt in stream(
            self.model,
            idx,
            max_new_tokens,
            generator=gen,
            temperature=temperature,
            top_k=top_k,
            top_p=top_p,
            use_cache=True,
        ):
            yield int(nxt)


class HFBackend(Backend):
    """Any transformers causal LM; same loop as `generate.stream`, with the model's own KV cache."""

    @torch.no_grad()
    def stream(self, ids, max_new_tokens, *, temperature, top_p, top_k, seed):
        gen = torch.Generator(device=self.device).manual_seed(seed)
        inp = torch.tensor(
            [ids], dtype=torch.long, device=self.device
        )  # (1, T): the prompt, then 1 token
        params = inspect.signature(self.model.forward).parameters  # the KV cache: transformers 5
        name = "cache" if "cache" in params else "past_key_values"  # `cache`; 4.x, until 5.40, this
        past = None
        for _ in range(max_new_tokens):
            out = self.model(input_ids=inp, use_cache=True, **{name: past})
            past = getattr(out, name)
            logits = out.logits[:, -1, :].float()  # (1, vocab)
            inp = sample_next_token(logits, gen, temperature=temperature, top_k=top_k, top_p=top_p)
            yield int(inp)


# ---- from token ids to text, one request at a time ----
class StopText:
    """Incremental detokenizer: feed token ids, get the text that is safe to send.

    Holds back a tail that could still become a stop string (or the tool-call tag), and a trailing
    U+FFFD (half of a multi-byte character). `done` is set once a stop string appears.
    """

    def __init__(self, backend: Backend, stops: list[str], hold: str | None = None):
        self.backend, self.stops, self.hold = backend, stops, hold
        self.ids: list[int] = []
        self.text, self.sent, self.done = "", 0, False

    def feed(self, token: int) -> str:
        self.ids.append(token)
        self.text = self.backend.decode(self.ids)
        hits = [i for i in (self.text.find(s, self.sent) for s in self.stops) if i >= 0]
        if hits:
            self.text, self.done = self.text[: min(hits)], True
            return self.flush()
        safe = len(self.text.rstrip("\ufffd"))
        for s in self.stops + ([self.hold] if self.hold else []):
            safe = min(safe, _partial_start(self.text, s, self.sent))
        out, self.sent = self.text[self.sent : safe], max(self.sent, safe)
        return out

    def flush(self) -> str:
        """Everything not yet sent (call at the end)."""
        stop_at = self.text.find(self.hold, self.sent) if self.hold else -1
        end = stop_at if stop_at >= 0 else len(self.text)
        out, self.sent = self.text[self.sent : end], end
        return out


def _partial_start(text: str, s: str, start: int) -> int:
    """Index where `s` (whole) or a prefix of `s` at the very end of `text` begins; len(text) if none."""
    i = text.find(s, start)
    if i >= 0:
        return i
    for k in range(min(len(s) - 1, len(text) - start), 0, -1):
        if text.endswith(s[:k]):
            return len(text) - k
    return len(text)


class Engine:
    """Runs jobs on the model: one token per worker-thread call, one lock around the model."""

    def __init__(self, backend: Backend):
        self.backend = backend
        self.lock = threading.Lock()
        self.running = 0  # jobs generating now (GET /health reports it)

    async def run(self, job, *, disconnected=None) -> AsyncIterator[tuple[str, str | None, int]]:
        """Yield (text piece, finish_reason or None, tokens so far); the last item has a finish_reason.
        `disconnected`: async callable asked between tokens; True stops the generation ("abort")."""
        import anyio

        tokens = self.backend.stream(
            job.ids,
            job.max_tokens,
            temperature=job.temperature,
            top_p=job.top_p,
            top_k=job.top_k,
            seed=job.seed,
        )
        text = StopText(self.backend, job.stops, TOOL_CALL_OPEN if job.tools else None)

        def step():
            with self.lock:
                return next(tokens, None)

        n, reason = 0, "length"
        self.running += 1
        try:
            while n < job.max_tokens:
                tok = await anyio.to_thread.run_sync(step)
                if tok is None:  # the backend ended the answer itself
                    reason = "stop"
                    break
                n += 1
                if tok in job.stop_ids:
                    reason = "stop"
                    break
                piece = text.feed(tok)
                if text.done:
                    reason = "stop"
                    break
                if piece:
                    yield piece, None, n
                if disconnected is not None and await disconnected():
                    reason = "abort"
                    break
        finally:
            self.running -= 1
            tokens.close()
        tail = text.flush()
        # the held-back "<tool_call>..." tail: calls become tool_calls, the rest content
        if job.tools:
            rest, job.tool_calls = split_tool_calls(text.text[text.sent :], job.tools)
            tail += rest
        yield tail, reason, n


ENGINES = ("course", "transformers")
COURSE_MODELS = {"gpt2": "llmcourse.gpt.GPT", "llama": "llmcourse.llama.Llama"}  # -> our decoder


def load_backend(
    directory: str | Path,
    name: str | None = None,
    device: str | None = None,
    *,
    engine: str = "course",
) -> Backend:
    """Load a Hugging Face-format model directory (weights + tokenizer) for serving. Local only.

    engine="course": a "gpt2" directory runs in our `GPT`, a "llama" one in our `Llama` (converted
    from the `AutoModelForCausalLM`; the converters refuse, naming the field, a config our decoders
    do not implement). engine="transformers": any causal LM, run by transformers itself."""
    from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer

    directory = Path(directory)
    if engine not in ENGINES:
        raise ValueError(f"engine={engine!r}: use one of {ENGINES}")
    if not (directory / "config.json").is_file():
        raise FileNotFoundError(
            f"{directory} has no config.json: pass a Hugging Face-format model directory"
        )
    config = AutoConfig.from_pretrained(directory, local_files_only=True)
    if engine == "course" and config.model_type not in COURSE_MODELS:
        supported = ", ".join(f"{t!r} ({cls})" for t, cls in COURSE_MODELS.items())
        raise ValueError(
            f"{directory}: model_type {config.model_type!r} has no course decoder; supported: "
            f"{supported}. To serve it with transformers' own model, pass engine='transformers' "
            "(python -m llmcourse.serve --engine transformers)"
        )
    tokenizer = AutoTokenizer.from_pretrained(directory, local_files_only=True)
    dev = torch.device(device) if device else _default_device()
    name = name or directory.resolve().name
    hf = AutoModelForCausalLM.from_pretrained(directory, local_files_only=True).eval()
    if engine == "transformers":
        limit = (
            getattr(config, "max_position_embeddings", None)
            or getattr(config, "n_positions", None)
            or 2048
        )
        return HFBackend(hf.to(dev), tokenizer, name, int(limit))
    from llmcourse.convert import gpt_from_hf
    from llmcourse.llama_weights import llama_from_hf

    try:
        model = (gpt_from_hf if config.model_type == "gpt2" else llama_from_hf)(hf)
    except ValueError as exc:  # e.g. a GELU Llama: say what else would work
        raise ValueError(
            f"{directory}: {exc}. engine='transformers' serves it with transformers' own model"
        ) from exc
    model = model.to(dev).eval()
    return CourseBackend(
        model, tokenizer, name, model.cfg.block_size, generation_config=hf.generation_config
    )


def _default_device() -> torch.device:
    from llmcourse.runtime import pick_device

    return pick_device()


def _eos_ids(gen_cfg, tokenizer) -> set[int]:
    ids = {tokenizer.eos_token_id}
    extra = getattr(gen_cfg, "eos_token_id", None)
    ids |= set(extra) if isinstance(extra, (list, tuple)) else {extra}
    return {i for i in ids if i is not None}


def split_tool_calls(text: str, names: set[str]) -> tuple[str, list[dict]]:
    """The held-back tail of an answer -> (content, [{"name", "arguments" (JSON string)}]) for the reply.

    Parsed by `llmcourse.tools.split_reply`, the course's one parser (its small repairs included). What a
    server adds: only a tail holding a `<tool_call>` block is read as calls (the prose before the block
    has already been streamed), and when the parser rejects the calls (ToolCallError) or one names a tool
    the request did not offer, the whole tail stays plain text, with no calls.

    >>> split_tool_calls('<tool_call>[{"name": "add", "arguments": {"a": 1}}]</tool_call>', {"add"})
    ('', [{'name': 'add', 'arguments': '{"a": 1}'}])
    """
    if TOOL_CALL_OPEN not in text:
        return text, []
    try:
        content, calls = split_reply(text)
    except ToolCallError:
        return text, []
    if not calls or any(c.name not in names for c in calls):
        return text, []
    return content, [
        {"name": c.name, "arguments": json.dumps(c.arguments, ensure_ascii=False)} for c in calls
    ]


def tiny_random_model(
    directory: str | Path, block_size: int = 128, seed: int = 0, *, kind: str = "gpt"
) -> Path:
    """Write a random-weight course model and a byte-level tokenizer with the chat special tokens to
    `directory`: something to serve before you have trained anything, and for tests. `kind` "gpt": our
    GPT (2 layers, width 32) as GPT-2; "llama": our Llama (2 layers, width 32, 4 query heads sharing
    2 key/value heads) as a `LlamaForCausalLM`. Answers are gibberish, but every byte sequence encodes
    and decodes."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    if kind not in ("gpt", "llama"):
        raise ValueError(f"kind={kind!r}: use 'gpt' or 'llama'")
    alphabet = sorted(pre_tokenizers.ByteLevel.alphabet())  # 256 printable stand-ins for the bytes
    tok = Tokenizer(models.BPE(vocab={c: i for i, c in enumerate(alphabet)}, merges=[]))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=tok,
        eos_token="<|endoftext|>",
        additional_special_tokens=chat.SPECIAL_TOKENS,
    )
    torch.manual_seed(seed)
    if kind == "llama":
        from llmcourse.llama import Llama, LlamaConfig

        model = Llama(
            LlamaConfig(
                vocab_size=len(tokenizer),
                block_size=block_size,
                n_layer=2,
                n_head=4,
                n_kv_head=2,
                n_embd=32,
            )
        )
    else:
        from llmcourse.gpt import GPT, GPTConfig

        model = GPT(
            GPTConfig(
                vocab_size=len(tokenizer),
                block_size=block_size,
                n_layer=2,
                n_head=2,
                n_embd=32,
                dropout=0.0,
            )
        )
    with torch.no_grad():  # weights wider than GPT-2's 0.02 init, so even greedy answers vary
        for p in model.parameters():
            if p.dim() == 2:
                p.normal_(0.0, 0.3)
    if kind == "gpt":
        from llmcourse.convert import export_gpt2

        return export_gpt2(model, directory, tokenizer)
    from llmcourse.llama_weights import llama_to_hf

    directory = Path(directory)
    llama_to_hf(model).save_pretrained(directory)
    tokenizer.save_pretrained(directory)
    return directory
