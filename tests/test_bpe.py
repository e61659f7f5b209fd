"""Byte-level BPE: golden case, round trip, naive == incremental training, Hugging Face `tokenizers`
reference, special tokens, determinism, save/load."""

import doctest
import random

import pytest
import regex
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from llmcourse import bpe, bpe_regex
from llmcourse.bpe import ByteBPE, Tokenizer, naive_train, train_merges
from llmcourse.bpe_regex import GPT2_SPLIT_PATTERN, RegexBPE, to_hf_tokenizer
from llmcourse.data import load_text

tokenizers = pytest.importorskip("tokenizers")  # a dependency of transformers: always present

SPECIALS = ["<|endoftext|>", "<|user|>", "<|assistant|>"]
# any Unicode text Python can encode: every category except surrogates (UTF-8 cannot hold them)
any_text = st.text(alphabet=st.characters(blacklist_categories=("Cs",)), max_size=60)
HYP = settings(
    max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)


@pytest.fixture(scope="module")
def corpus() -> str:
    """English news, Chinese prose, digits, emoji and code: enough to learn a few hundred merges."""
    extra = "x = [1, 22, 333, 4444]\nif x:\n\tprint('ok')  # done\r\n 😀👍🏽 Ünïcödé naïve café\n"
    return load_text("lee", max_chars=12_000) + load_text("tiny-zh") + extra * 3


@pytest.fixture(scope="module")
def trained(corpus):
    """One trained tokenizer per rung (the base class gets ByteBPE's merges)."""
    byte_tok = ByteBPE()
    byte_tok.train(corpus[:3000], vocab_size=256 + 60)
    base = Tokenizer()
    base._set(byte_tok.merges, {})
    regex_tok = RegexBPE(special_tokens=SPECIALS)
    regex_tok.train(corpus, vocab_size=256 + 300 + len(SPECIALS))
    gpt2_tok = RegexBPE(pattern=GPT2_SPLIT_PATTERN)
    gpt2_tok.train(corpus, vocab_size=256 + 200)
    return {
        "Tokenizer": base,
        "ByteBPE": byte_tok,
        "RegexBPE": regex_tok,
        "RegexBPE-gpt2": gpt2_tok,
    }


def test_doctests():
    for module in (bpe, bpe_regex):
        assert doctest.testmod(module).failed == 0


@pytest.mark.parametrize("naive", [False, True])
def test_golden_aaabdaaabac(naive):
    """Hand derivation ("a"=97, "b"=98, "c"=99, "d"=100), ties -> smallest pair of ids:

    a a a b d a a a b a c   pairs: (a,a) 4, (a,b) 2, (b,d) (d,a) (b,a) (a,c) 1
    merge 1: (97,97) -> 256, left to right, so "aaa" -> [256, a]:
    256 a b d 256 a b a c   pairs: (256,a) 2, (a,b) 2, ... tie at 2: (97,98) < (256,97)
    merge 2: (97,98) -> 257
    256 257 d 256 257 a c   pairs: (256,257) 2, others 1
    merge 3: (256,257) -> 258
    258 d 258 a c           = [258, 100, 258, 97, 99]
    """
    tok = ByteBPE()
    tok.train("aaabdaaabac", vocab_size=259, naive=naive)
    assert tok.merges == {(97, 97): 256, (97, 98): 257, (256, 257): 258}
    assert tok.encode("aaabdaaabac") == [258, 100, 258, 97, 99]
    assert tok.vocab[258] == b"aaab" and tok.decode([258, 100]) == "aaabd"


@pytest.mark.parametrize("name", ["Tokenizer", "ByteBPE", "RegexBPE", "RegexBPE-gpt2"])
@pytest.mark.parametrize(
    "text",
    [
        "",
        "a",
        " ",
        "hello world",
        "😀👍🏽👨‍👩‍👧",
        "你好，世界。",
        "Привет мир 123",
        "\x00\x01\x1b\t\r\n\x7f\u200b\ufeff",
        "a<|endoftext|>b",
        "  \n\n  1234567 ...",
    ],
)
def test_round_trip_tricky(trained, name, text):
    tok = trained[name]
    assert tok.decode(tok.encode(text)) == text


@pytest.mark.parametrize("name", ["Tokenizer", "ByteBPE", "RegexBPE", "RegexBPE-gpt2"])
def test_round_trip_any_unicode(trained, name):
    tok = trained[name]

    @HYP
    @given(any_text)
    def check(text):
        ids = tok.encode(text)
        assert tok.decode(ids) == text
        assert all(0 <= i < tok.vocab_size for i in ids)

    check()


@settings(max_examples=60, deadline=None)
@given(st.text(alphabet="ab c1.\n", max_size=120), st.integers(0, 25))
def test_incremental_training_equals_naive_small(text, num_merges):
    for tok in (ByteBPE(), RegexBPE()):
        counts = tok.chunk_counts(text)
        assert train_merges(counts, num_merges) == naive_train(counts, num_merges)


def test_incremental_training_equals_naive_random_text(corpus):
    rng = random.Random(0)
    words = corpus.split()[:400] + ["😀", "你好", "123", "\n", "  "]
    text = " ".join(rng.choice(words) for _ in range(1500))
    counts = RegexBPE().chunk_counts(text)
    fast = train_merges(counts, 150)
    assert len(fast) == 150 and fast == naive_train(counts, 150)


def test_training_is_deterministic(corpus):
    a, b = RegexBPE(special_tokens=SPECIALS), RegexBPE(special_tokens=SPECIALS)
    a.train(corpus, 256 + 120 + 3)
    b.train(corpus, 256 + 120 + 3)
    assert list(a.merges.items()) == list(b.merges.items()) and a.special_tokens == b.special_tokens


@pytest.mark.parametrize("name", ["ByteBPE", "RegexBPE", "RegexBPE-gpt2"])
def test_same_ids_as_hf_tokenizers(trained, corpus, name):
    """Same vocabulary and merges, expressed in GPT-2's byte alphabet -> identical ids."""
    tok = trained[name]
    hf = to_hf_tokenizer(tok)
    rng = random.Random(1)
    words = corpus.split() + ["😀", "\n", "\t", "  ", "123456", "'S", "DON'T", "ſ", "ℌ"]
    for _ in range(20):  # random text made of corpus words and odd characters
        text = " ".join(rng.choice(words) for _ in range(rng.randint(0, 60)))
        assert tok.encode(text) == hf.encode(text, add_special_tokens=False).ids
    assert tok.encode(corpus[-2000:]) == hf.encode(corpus[-2000:], add_special_tokens=False).ids

    @HYP
    @given(any_text)
    def check(text):  # any Unicode text (no special-token strings appear in it by chance)
        assert tok.encode(text) == hf.encode(text, add_special_tokens=False).ids

    check()


def test_hf_reference_with_special_tokens(trained):
    tok = trained["RegexBPE"]
    hf = to_hf_tokenizer(tok)
    text = "<|user|>Hi there!<|assistant|>Hello 😀<|endoftext|><|endoftext|>x"
    assert tok.encode(text) == hf.encode(text, add_special_tokens=False).ids


def test_special_tokens_are_one_id_and_follow_the_merges(trained):
    tok = trained["RegexBPE"]
    n = 256 + len(tok.merges)
    assert tok.special_tokens == {s: n + i for i, s in enumerate(SPECIALS)}
    assert tok.vocab_size == n + len(SPECIALS)
    for s in SPECIALS:
        assert tok.encode(s) == [tok.special_tokens[s]]
        assert tok.encode(s, allowed_special="none") != [tok.special_tokens[s]]
        assert tok.special_tokens[s] not in tok.encode(s, allowed_special="none")
    ids = tok.encode("hi<|user|>yo<|endoftext|>", allowed_special={"<|user|>"})
    assert (
        ids.count(tok.special_tokens["<|user|>"]) == 1
        and tok.special_tokens["<|endoftext|>"] not in ids
    )
    user = tok.special_tokens["<|user|>"]
    assert ids == tok.encode("hi") + [user] + tok.encode("yo<|endoftext|>", allowed_special="none")
    with pytest.raises(ValueError):
        tok.encode("x", allowed_special={"<|nope|>"})
    # no learned token holds a piece of a special token's text that spans "<|"
    assert not any(b"<|" in tok.vocab[i] for i in tok.merges.values())


@settings(
    max_examples=80, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(st.lists(st.one_of(any_text, st.sampled_from(SPECIALS)), max_size=8))
def test_special_tokens_never_split(trained, pieces):
    tok = trained["RegexBPE"]
    text = "".join(pieces)
    ids = tok.encode(text)
    assert tok.decode(ids) == text
    n_special = sum(text.count(s) for s in SPECIALS)  # the specials cannot overlap each other
    assert sum(i in tok.special_tokens.values() for i in ids) == n_special


def test_regex_merges_never_cross_a_letter_boundary():
    """GPT-4's chunks never hold a letter followed by a non-letter, so neither can a token; raw
    byte-level BPE on the same text does learn such tokens ("dog." style)."""
    text = "the dog. the dog! the dog? a dog, the cat. the cat! " * 30
    crossing = regex.compile(r"\p{L}[^\p{L}]")
    byte_tok, regex_tok = ByteBPE(), RegexBPE()
    byte_tok.train(text, 256 + 40)
    regex_tok.train(text, 256 + 40)

    def n_crossing(tok):
        return sum(
            bool(crossing.search(tok.vocab[i].decode("utf-8", "ignore")))
            for i in tok.merges.values()
        )

    assert n_crossing(byte_tok) > 0 and n_crossing(regex_tok) == 0


@pytest.mark.parametrize("name", ["ByteBPE", "RegexBPE", "RegexBPE-gpt2"])
def test_save_load_round_trip(trained, tmp_path, name):
    tok = trained[name]
    path = tmp_path / "tok.json"
    tok.save(path)
    head = path.read_text(encoding="utf-8")
    assert '"format": "llmcourse-bpe"' in head and '"version": 1' in head  # human-readable
    loaded = Tokenizer.load(path)
    assert type(loaded) is type(tok) and loaded.pattern == tok.pattern
    assert list(loaded.merges.items()) == list(tok.merges.items())
    assert loaded.special_tokens == tok.special_tokens and loaded.vocab == tok.vocab
    sample = "Hello 世界 <|endoftext|> 12345!!\n"
    assert loaded.encode(sample) == tok.encode(sample)


def test_load_rejects_unknown_version_and_format(trained, tmp_path):
    path = tmp_path / "tok.json"
    trained["RegexBPE"].save(path)
    text = path.read_text(encoding="utf-8")
    (tmp_path / "v99.json").write_text(
        text.replace('"version": 1', '"version": 99'), encoding="utf-8"
    )
    with pytest.raises(ValueError, match="version 99 is not supported"):
        Tokenizer.load(tmp_path / "v99.json")
    (tmp_path / "other.json").write_text(
        '{"format": "something-else", "version": 1}', encoding="utf-8"
    )
    with pytest.raises(ValueError, match="not an llmcourse-bpe file"):
        Tokenizer.load(tmp_path / "other.json")


def test_errors_and_edge_cases():
    with pytest.raises(ValueError):
        ByteBPE().train("abc", vocab_size=100)
    tok = ByteBPE()
    tok.train("ab", vocab_size=300)  # runs out of pairs after one merge
    assert tok.merges == {(97, 98): 256} and tok.encode("abab") == [256, 256]
    dup = Tokenizer()  # "ab"+"c" and "a"+"bc" both spell "abc": not expressible in HF's vocab
    dup._set({(97, 98): 256, (256, 99): 257, (98, 99): 258, (97, 258): 259}, {})
    with pytest.raises(ValueError, match="both"):
        to_hf_tokenizer(dup)
