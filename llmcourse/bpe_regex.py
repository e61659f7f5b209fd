"""Byte-level BPE, part 2: `RegexBPE` (regex pre-split + special tokens) and the bridge to
Hugging Face `tokenizers`.

GPT-2 noticed that raw BPE wastes its vocabulary on tokens like "dog." "dog!" "dog?": merges that
cross the boundary between a word and the punctuation after it. Its fix is to cut the text into
chunks with a regex first (letters, numbers, punctuation and whitespace apart; a leading space stays
with the word) and to learn and apply merges only *inside* a chunk. GPT-4's cl100k pattern refines
this: at most three digits per chunk, case-insensitive contractions, and newlines kept together.

Special tokens ("<|endoftext|>", "<|user|>", ...) are strings the model must see as one id, never
split into bytes: documents are separated by them in pretraining and chat turns in SFT. They are
cut out of the text before the regex runs, and get the ids just after the merges.

References: Radford et al. (GPT-2, 2019) for the pre-split pattern; OpenAI's tiktoken for the
cl100k pattern and the allowed-special idea; Hugging Face `tokenizers` (byte-level BPE with the
GPT-2 bytes-to-unicode alphabet) for `to_hf_tokenizer`.
Left out: tiktoken's "disallowed special" check (here text that looks like a special token but is
not allowed is encoded as ordinary text), and any normalisation. The `\\p{L}`/`\\p{N}` classes need
the `regex` package (a dependency of `transformers`); Python's `re` has no Unicode properties.
"""

from __future__ import annotations

from collections import Counter
from typing import TYPE_CHECKING

import regex

from llmcourse.bpe import ByteBPE, Pair, Tokenizer

if TYPE_CHECKING:
    import tokenizers

# GPT-2: contractions, optional space + letters / numbers / other symbols, then whitespace runs.
GPT2_SPLIT_PATTERN = r"""'(?:[sdmt]|ll|ve|re)| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+"""
# GPT-4 (cl100k): case-insensitive contractions, a word may take one leading non-letter, numbers in
# groups of at most 3 digits, punctuation keeps trailing newlines, newline runs stay one chunk.
GPT4_SPLIT_PATTERN = (
    r"""'(?i:[sdmt]|ll|ve|re)|[^\r\n\p{L}\p{N}]?+\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]++[\r\n]*"""
    r"""|\s*[\r\n]|\s+(?!\S)|\s+"""
)


class RegexBPE(ByteBPE):
    """+ a regex pre-split (merges never cross chunk boundaries) and special tokens.

    Unlike `ByteBPE`: the text is cut into chunks by `pattern` before training and encoding, the
    corpus becomes distinct chunks with counts (so the incremental training pays off), repeated
    chunks are encoded once and cached, and `encode` recognises registered special tokens.
    Leaves out: rejecting special-token text that is not allowed (it is encoded as plain text).

    >>> tok = RegexBPE(special_tokens=["<|endoftext|>"])
    >>> tok.train("hello hello hello world", vocab_size=256 + 4 + 1)
    >>> tok.split("hello world!")
    ['hello', ' world', '!']
    >>> tok.decode(tok.encode("hello<|endoftext|>")) == "hello<|endoftext|>"
    True
    """

    def __init__(
        self, pattern: str = GPT4_SPLIT_PATTERN, special_tokens: list[str] | None = None
    ) -> None:
        super().__init__()
        self.pattern = pattern
        self._cache: dict[bytes, list[int]] = {}  # chunk -> ids, cleared whenever the merges change
        if special_tokens:
            self.register_special_tokens(special_tokens)

    def split(self, text: str) -> list[str]:
        """The chunks of `text`; text between matches (a pattern that misses characters) is kept as
        its own chunk, so "".join(split(text)) == text always holds."""
        chunks, end = [], 0
        for m in regex.finditer(self.pattern, text):
            if m.start() > end:
                chunks.append(text[end : m.start()])
            chunks.append(m.group())
            end = m.end()
        if end < len(text):
            chunks.append(text[end:])
        return chunks

    def register_special_tokens(self, tokens: list[str]) -> None:
        """Add special tokens, with ids after the merges and any earlier specials."""
        specials = dict(self.special_tokens)
        for text in tokens:
            if not text:
                raise ValueError("a special token cannot be empty")
            specials.setdefault(text, 256 + len(self.merges) + len(specials))
        self._set(self.merges, specials)

    def _set(self, merges: dict[Pair, int], special_tokens: dict[str, int]) -> None:
        super()._set(merges, special_tokens)
        self._cache = {}

    def _special_split(self, text: str, allowed: set[str]) -> list[str]:
        """Alternating [plain, special, plain, ...] pieces; the longest special wins on overlap."""
        if not allowed or not text:
            return [text]
        alternatives = "|".join(regex.escape(s) for s in sorted(allowed, key=len, reverse=True))
        return regex.split(f"({alternatives})", text)  # the capturing group keeps the specials

    def chunk_counts(self, text: str) -> dict[bytes, int]:
        """Distinct chunks and their counts; special tokens are cut out and never learned from."""
        counts: Counter[bytes] = Counter()
        for k, piece in enumerate(self._special_split(text, set(self.special_tokens))):
            if k % 2 == 0:  # even pieces are plain text, odd ones the specials themselves
                counts.update(chunk.encode("utf-8") for chunk in self.split(piece))
        return dict(counts)

    def encode_ordinary(self, text: str) -> list[int]:
        """Encode `text` ignoring special tokens: split, then apply the merges chunk by chunk."""
        ids: list[int] = []
        for chunk in self.split(text):
            data = chunk.encode("utf-8")
            if data not in self._cache:
                if len(self._cache) > 200_000:  # keep the cache bounded on huge corpora
                    self._cache.clear()
                self._cache[data] = self._encode_chunk(data)
            ids.extend(self._cache[data])
        return ids

    def encode(self, text: str, allowed_special: str | set[str] = "all") -> list[int]:
        """Token ids of `text`. `allowed_special`: "all" (every registered special token becomes its
        one id), "none" (special-token text is encoded as ordinary text) or a set of token strings.
        """
        if allowed_special == "all":
            allowed = set(self.special_tokens)
        elif allowed_special == "none":
            allowed = set()
        elif isinstance(allowed_special, (set, frozenset)):
            unknown = set(allowed_special) - set(self.special_tokens)
            if unknown:
                raise ValueError(f"not registered special tokens: {sorted(unknown)}")
            allowed = set(allowed_special)
        else:
            raise ValueError(
                f'allowed_special must be "all", "none" or a set, not {allowed_special!r}'
            )
        ids: list[int] = []
        for k, piece in enumerate(self._special_split(text, allowed)):
            ids.extend([self.special_tokens[piece]] if k % 2 else self.encode_ordinary(piece))
        return ids


def bytes_to_unicode() -> dict[int, str]:
    """GPT-2's byte -> character table: each byte gets a visible, non-space character.

    Bytes that already print as themselves (!..~, ¡..¬, ®..ÿ) keep their character; the other 68
    (controls, space, DEL, NBSP, soft hyphen) get U+0100, U+0101, ... in byte order. Hugging Face
    stores byte-level vocabularies in this alphabet, so b" the" is written "Ġthe".

    >>> table = bytes_to_unicode(); table[ord("a")], table[ord(" ")], table[ord("\\n")]
    ('a', 'Ġ', 'Ċ')
    """
    keep = [
        *range(ord("!"), ord("~") + 1),
        *range(ord("¡"), ord("¬") + 1),
        *range(ord("®"), ord("ÿ") + 1),
    ]
    table, shifted = {}, 0
    for b in range(256):
        if b in keep:
            table[b] = chr(b)
        else:
            table[b] = chr(256 + shifted)
            shifted += 1
    return table


def to_hf_tokenizer(tok: Tokenizer) -> tokenizers.Tokenizer:
    """The same vocabulary, merges, pre-split and special tokens as a Hugging Face `tokenizers`
    tokenizer (models.BPE + Split(pattern) + ByteLevel), for comparison and for fast encoding.

    Raises ValueError if two ids share the same bytes (possible in principle with BPE, since
    "ab"+"c" and "a"+"bc" both spell "abc"): a Hugging Face vocabulary maps each string to one id.
    """
    from tokenizers import AddedToken, Regex, decoders, models, pre_tokenizers
    from tokenizers import Tokenizer as HFTokenizer

    table = bytes_to_unicode()

    def spell(token: bytes) -> str:
        return "".join(table[b] for b in token)

    vocab: dict[str, int] = {}
    for i in range(256 + len(tok.merges)):
        word = spell(tok.vocab[i])
        if word in vocab:
            raise ValueError(f"ids {vocab[word]} and {i} are both {tok.vocab[i]!r}")
        vocab[word] = i
    merges = [(spell(tok.vocab[a]), spell(tok.vocab[b])) for a, b in tok.merges]
    hf = HFTokenizer(models.BPE(vocab=vocab, merges=merges, ignore_merges=False))
    steps = [pre_tokenizers.Split(Regex(tok.pattern), behavior="isolated")] if tok.pattern else []
    steps.append(pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False))
    hf.pre_tokenizer = pre_tokenizers.Sequence(steps)
    hf.decoder = decoders.ByteLevel()
    specials = sorted(tok.special_tokens, key=tok.special_tokens.get)  # in id order
    hf.add_special_tokens([AddedToken(s, special=True, normalized=False) for s in specials])
    for s in specials:
        assert hf.token_to_id(s) == tok.special_tokens[s], (
            "special token ids must follow the merges"
        )
    return hf
