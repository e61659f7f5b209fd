"""Generated sequence-to-sequence tasks: translation-like problems with a real structure, offline.

* "dates":   a date written any of eight ways -> ISO 8601.
      "the 3rd of March, 1997" | "03/03/1997" | "March 3, 1997" | "Monday, 3 March 1997" |
      "the third of march nineteen ninety-seven" | ...  ->  "1997-03-03"
* "numbers": a number in British English words -> digits.
      "four hundred and twelve" -> "412";  "two million and six" -> "2000006"
* "reverse": a string of 2 to `max_digits` digits -> the same digits backwards.
      "40172" -> "27104"

The first two are small translation problems: the output is a deterministic function of the
input, but the model must learn re-ordering (day/month/year), a many-to-one lexicon (March, Mar,
03, third ...), and, for numbers, positional arithmetic (which words fill which digit). Numbers
written with more words are longer, so accuracy can be plotted against input length. "reverse" is
the smallest task of that kind (Sutskever et al. 2014 fed their encoder reversed sentences): each
output digit copies one input digit, from a position that depends on the length, so it needs
memory of the whole input and a clean alignment, and nothing else; it trains in seconds on a CPU.

Splits test generalisation, never memorisation: "train" and "test" never share a value (a date,
a number); a fixed hash puts one value in five into "test". Two harder splits hold out what the
model never saw at all:
* "unseen_years" (dates only): every date of the 20 years in `TEST_YEARS`, which "train" and "test"
  never contain. The year must be *composed* from digits seen in other years; small models tend to
  answer with a training year instead (1943 -> "1934"): a test of compositional generalisation.
* "long" (numbers and reverse): 7-9 digit numbers, longer than anything in training (up to 6
  digits), or digit strings 1-4 digits longer than `max_digits`: a test of length generalisation,
  which models usually fail.

`task_vocab()` is a character vocabulary with <pad>=0, <bos>=1, <eos>=2 (the ids
`llmcourse.transformer.TransformerConfig` expects); `encode_pairs` builds padded tensors in the
course's `forward(src, tgt_in, targets)` format.

`load_parallel_corpus` is the full-size stand-in for a real translation corpus (Multi30k en-de,
Elliott et al. 2016, through `datasets`), with an offline fall-back to the generated dates task.
Left out: subword tokenisation of the real corpus (see llmcourse.bpe), BLEU.
"""

from __future__ import annotations

import calendar
import datetime as dt
import random
import re
import string
import zlib
from dataclasses import dataclass

import torch

from llmcourse.config import Sized
from llmcourse.data.vocab import CharVocab

TASKS = ("dates", "numbers", "reverse")
SPLITS = ("train", "test", "unseen_years", "long")
TEST_YEARS = frozenset(
    {
        1907,
        1919,
        1926,
        1938,
        1943,
        1955,
        1962,
        1974,
        1981,
        1993,
        2006,
        2018,
        2025,
        2037,
        2044,
        2059,
        2063,
        2071,
        2088,
        2096,
    }
)
YEARS = (1900, 2099)  # inclusive range of generated years

_ONES = (
    "zero one two three four five six seven eight nine ten eleven twelve thirteen fourteen "
    "fifteen sixteen seventeen eighteen nineteen"
).split()
_TENS = "_ _ twenty thirty forty fifty sixty seventy eighty ninety".split()
_SCALES = ((10**9, "billion"), (10**6, "million"), (10**3, "thousand"))
_ORD = {
    "one": "first",
    "two": "second",
    "three": "third",
    "five": "fifth",
    "eight": "eighth",
    "nine": "ninth",
    "twelve": "twelfth",
}


# ------------------------------------------------------------------------------------ numbers
def _below_100(n: int) -> str:
    if n < 20:
        return _ONES[n]
    tens, ones = divmod(n, 10)
    return _TENS[tens] + (f"-{_ONES[ones]}" if ones else "")  # hyphenated: "forty-two"


def _below_1000(n: int) -> str:
    hundreds, rest = divmod(n, 100)
    if not hundreds:
        return _below_100(rest)
    words = f"{_ONES[hundreds]} hundred"
    return words + (f" and {_below_100(rest)}" if rest else "")  # British "and"


def number_to_words(n: int) -> str:
    """British English words for 0 <= n < 10**12.

    >>> number_to_words(412), number_to_words(1005), number_to_words(2_300_040)
    ('four hundred and twelve', 'one thousand and five', 'two million three hundred thousand and forty')
    """
    if not 0 <= n < 10**12:
        raise ValueError("n must be in [0, 10**12)")
    if n < 1000:
        return _below_1000(n)
    parts = []
    for value, name in _SCALES:
        if n >= value:
            parts.append(f"{_below_1000(n // value)} {name}")
            n %= value
    if n:  # the last group: "and" before a bare 1..99 ("one thousand and five")
        parts.append(("and " if n < 100 else "") + _below_1000(n))
    return " ".join(parts)


def ordinal_words(n: int) -> str:
    """1 -> "first", 23 -> "twenty-third" (for day numbers; any 1 <= n < 100)."""
    words = _below_100(n)
    head, _, last = words.rpartition("-")
    if last in _ORD:
        last = _ORD[last]
    elif last.endswith("y"):
        last = last[:-1] + "ieth"  # twenty -> twentieth
    else:
        last += "th"
    return f"{head}-{last}" if head else last


def ordinal_suffix(n: int) -> str:
    """1 -> "1st", 2 -> "2nd", 3 -> "3rd", 11 -> "11th", 22 -> "22nd"."""
    suffix = "th" if 10 <= n % 100 <= 20 else {1: "st", 2: "nd", 3: "rd"}.get(n % 10, "th")
    return f"{n}{suffix}"


def year_words(y: int) -> str:
    """How a year is said: 1997 "nineteen ninety-seven", 1905 "nineteen oh five",
    1900 "nineteen hundred", 2005 "two thousand and five", 2024 "twenty twenty-four"."""
    if 2000 <= y <= 2009:
        return number_to_words(y)
    hi, lo = divmod(y, 100)
    if lo == 0:
        return f"{_below_100(hi)} hundred"
    return f"{_below_100(hi)} " + (f"oh {_ONES[lo]}" if lo < 10 else _below_100(lo))


def _is_test_number(n: int) -> bool:
    # Knuth's multiplicative hash: a fixed, scattered one-in-five choice of held-out values
    return (n * 2654435761 % 2**32) % 5 == 0


def _sample_number(rng: random.Random, split: str) -> tuple[str, str]:
    if split == "unseen_years":
        raise ValueError("'unseen_years' is a split of the dates task")
    lo, hi = (7, 9) if split == "long" else (1, 6)
    while True:
        digits = rng.randint(lo, hi)  # uniform over lengths, so long inputs are not rare
        n = rng.randint(10 ** (digits - 1) if digits > 1 else 0, 10**digits - 1)
        if split == "long" or _is_test_number(n) == (split == "test"):
            return number_to_words(n), str(n)


# ------------------------------------------------------------------------------------ reverse
def _sample_reverse(rng: random.Random, split: str, max_digits: int) -> tuple[str, str]:
    if split == "unseen_years":
        raise ValueError("'unseen_years' is a split of the dates task")
    # from 2 digits: a single digit is its own reverse, and there are only ten of them
    lo, hi = (max_digits + 1, max_digits + 4) if split == "long" else (2, max_digits)
    while True:
        digits = "".join(rng.choices(string.digits, k=rng.randint(lo, hi)))  # uniform lengths
        # crc32, unlike hash(), is the same in every Python process: a fixed one-in-five test set
        if split == "long" or (zlib.crc32(digits.encode()) % 5 == 0) == (split == "test"):
            return digits, digits[::-1]


# -------------------------------------------------------------------------------------- dates
def date_formats(d: dt.date) -> list[str]:
    """Every way the generator writes d (day/month order is British: 03/04/1997 is 3 April)."""
    month, mon = calendar.month_name[d.month], calendar.month_abbr[d.month]
    weekday = calendar.day_name[d.weekday()]
    out = [
        f"{d.day} {month} {d.year}",
        f"{month} {d.day}, {d.year}",
        f"the {ordinal_suffix(d.day)} of {month}, {d.year}",
        f"{d.day:02d}/{d.month:02d}/{d.year}",
        f"{mon} {d.day} {d.year}",
        f"{weekday}, {d.day} {month} {d.year}",
        f"the {ordinal_words(d.day)} of {month.lower()} {year_words(d.year)}",
    ]
    if 1969 <= d.year <= 2068:  # two-digit years only where strptime's %y pivot is unambiguous
        out.append(f"{d.day:02d}/{d.month:02d}/{d.year % 100:02d}")
    return out


def _sample_date(rng: random.Random, split: str) -> tuple[str, str]:
    if split == "long":
        raise ValueError("the dates task has no 'long' split (its lengths are set by the format)")
    while True:
        year = rng.randint(*YEARS)
        d = dt.date(year, 1, 1) + dt.timedelta(
            days=rng.randrange(366 if calendar.isleap(year) else 365)
        )
        if split == "unseen_years":
            ok = year in TEST_YEARS
        else:  # train and test: other years, split by a hash of the day number
            ok = year not in TEST_YEARS and _is_test_number(d.toordinal()) == (split == "test")
        if ok:
            return rng.choice(date_formats(d)), d.isoformat()


_SAMPLERS = {"dates": _sample_date, "numbers": _sample_number}


def make_dataset(
    task: str,
    n: int,
    seed: int = 0,
    *,
    split: str = "train",
    min_len: int | None = None,
    max_len: int | None = None,
    max_digits: int = 20,
) -> list[tuple[str, str]]:
    """n distinct (source, target) string pairs of `task` from `split`.

    min_len/max_len bound the source length in characters (for accuracy-against-length plots).
    max_digits: the longest digit string of the "reverse" task (other tasks ignore it).
    The same arguments always give the same list.

    >>> make_dataset("numbers", 2, seed=1)
    [('five hundred and forty-two', '542'), ('forty-three', '43')]
    """
    if task not in TASKS or split not in SPLITS:
        raise ValueError(f"task must be one of {TASKS}, split one of {SPLITS}")
    rng = random.Random(f"{task}|{split}|{seed}")  # a string seed is stable across Pythons
    pairs: dict[str, str] = {}
    tries = 0
    while len(pairs) < n:
        tries += 1
        if tries > 100 * n + 1000:
            raise ValueError(f"could not find {n} distinct pairs within the length bounds")
        if task == "reverse":
            src, tgt = _sample_reverse(rng, split, max_digits)
        else:
            src, tgt = _SAMPLERS[task](rng, split)
        if (min_len is None or len(src) >= min_len) and (max_len is None or len(src) <= max_len):
            pairs.setdefault(src, tgt)
    return list(pairs.items())


@dataclass
class TaskConfig(Sized):
    task: str = "dates"  # "dates", "numbers" or "reverse"
    n_train: int = 50_000  # training pairs
    n_test: int = 2_000  # held-out pairs (unseen values)
    seed: int = 0  # generator seed
    max_digits: int = 20  # "reverse" only: the longest digit string (train and test)

    smoke_overrides = {"n_train": 10_000, "n_test": 500, "max_digits": 10}


# -------------------------------------------------------------------------------- vocab, tensors
SPECIALS = ("<pad>", "<bos>", "<eos>", "<unk>")
PAD_ID, BOS_ID, EOS_ID = 0, 1, 2
ALPHABET = " " + string.ascii_letters + string.digits + ",-./'"


def task_vocab() -> CharVocab:
    """One character vocabulary for both tasks, sources and targets: <pad>=0, <bos>=1, <eos>=2."""
    return CharVocab(list(SPECIALS) + sorted(ALPHABET), specials=SPECIALS)


def encode_pairs(pairs: list[tuple[str, str]], vocab: CharVocab) -> dict[str, torch.Tensor]:
    """Pad into {"src": (N, S), "tgt_in": (N, T), "targets": (N, T)}.

    tgt_in = <bos> + target; targets = target + <eos>, with -100 (ignored by the loss) after it.
    >>> b = encode_pairs([("ab", "c")], task_vocab()); b["tgt_in"].tolist(), b["targets"].tolist()
    ([[1, 48]], [[48, 2]])
    """
    src = [vocab.encode(s) for s, _ in pairs]
    tgt = [vocab.encode(t) for _, t in pairs]
    S, T = max(map(len, src)), max(map(len, tgt)) + 1
    out = {
        "src": torch.full((len(pairs), S), PAD_ID, dtype=torch.long),
        "tgt_in": torch.full((len(pairs), T), PAD_ID, dtype=torch.long),
        "targets": torch.full((len(pairs), T), -100, dtype=torch.long),
    }
    for i, (s, t) in enumerate(zip(src, tgt)):
        out["src"][i, : len(s)] = torch.tensor(s)
        out["tgt_in"][i, : len(t) + 1] = torch.tensor([BOS_ID] + t)
        out["targets"][i, : len(t) + 1] = torch.tensor(t + [EOS_ID])
    return out


def batch_sampler(data: dict[str, torch.Tensor], batch_size: int):
    """A `sample(generator) -> batch dict` function for `llmcourse.train.fit`: random rows."""
    N = data["src"].shape[0]

    def sample(generator: torch.Generator) -> dict[str, torch.Tensor]:
        rows = torch.randint(0, N, (batch_size,), generator=generator)
        return {k: v[rows] for k, v in data.items()}

    return sample


def decode_output(ids: torch.Tensor | list[int], vocab: CharVocab) -> str:
    """Model output ids -> string, stopping at <eos> and skipping <pad>/<bos>."""
    chars = []
    for i in ids.tolist() if isinstance(ids, torch.Tensor) else ids:
        if i == EOS_ID:
            break
        if i not in (PAD_ID, BOS_ID):
            chars.append(vocab.itos[i])
    return "".join(chars)


def date_error_kind(pred: str, target: str) -> str:
    """Name what is wrong in a predicted ISO date, so that a model's errors can be read in groups.

    >>> date_error_kind("1934-05-02", "1943-05-02"), date_error_kind("1943-02-05", "1943-05-02")
    ('year: right digits, wrong order', 'day or month')
    """
    if pred == target:
        return "correct"
    if not re.fullmatch(r"\d{4}-\d{2}-\d{2}", pred):
        return "not a date"
    (py, pm, pd), (ty, tm, td) = pred.split("-"), target.split("-")
    if py == ty:
        return "day or month"
    if (pm, pd) != (tm, td):
        return "year and day or month"
    # only the year is wrong: did the model get its digits but not their order?
    return "year: right digits, wrong order" if sorted(py) == sorted(ty) else "year: other digits"


def exact_match(outputs: torch.Tensor, pairs: list[tuple[str, str]], vocab: CharVocab) -> float:
    """Fraction of rows of outputs (N, L) whose decoded string equals the pair's target."""
    hits = [decode_output(o, vocab) == t for o, (_, t) in zip(outputs, pairs)]
    return sum(hits) / max(len(hits), 1)


# ------------------------------------------------------------------------------- a real corpus
PARALLEL_CORPORA = {"multi30k": ("bentrevett/multi30k", "en", "de")}  # name -> (hub id, src, tgt)


def load_parallel_corpus(
    name: str = "multi30k", split: str = "train", max_pairs: int | None = None
) -> list[tuple[str, str]]:
    """(source, target) sentence pairs of a small real parallel corpus, via `datasets`.

    Multi30k (Elliott et al. 2016): ~29k English-German image-caption pairs, cached by
    `data.hub_table` after the first online run. Offline (or when the download fails) this gives
    one fallback line and returns the generated "dates" task instead, so notebooks run anywhere;
    check for that line before quoting numbers.
    """
    from llmcourse import data

    hub_id, src_key, tgt_key = PARALLEL_CORPORA[name]
    rows = data.hub_table(
        hub_id, None, split, max_rows=max_pairs, instead="the generated 'dates' task"
    )
    if rows is not None:
        return [(r[src_key], r[tgt_key]) for r in rows]
    return make_dataset("dates", max_pairs or 2_000, split="train" if split == "train" else "test")
