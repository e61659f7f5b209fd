"""The stand-in hub's repositories: the named models and data sets in their real layouts, small bytes.

`build(root)` writes, under `root/{models,datasets}/<org>/<name>/`, what `tests.standin_hub` serves:

* models: their real `config.json` (the published values, copied below) with random weights at full
  shape, in the published storage dtype and file name (`model.safetensors`), and a tokenizer in the
  published format (WordPiece `vocab.txt` + `tokenizer.json` for BERT; byte-level BPE
  `tokenizer.json` for SmolLM2, trained on a few sentences, so with fewer merges than the real one);
* data sets: parquet files at the published paths, with the published splits, columns and types
  (`datasets.Features` are embedded in the parquet schema, as the hub's parquet conversion does),
  a few dozen rows each.

Building the models takes tens of seconds (SmolLM2-360M is 720 MB in bf16), so `build` is done once
per tree and marked done with a stamp file; `DATASETS` and `MODELS` list what it holds.
`break_column(root, repo, old=..., new=...)` renames a column in a built data set (the failure demo).
"""

from __future__ import annotations

import json
import random
import shutil
from pathlib import Path

STAMP = ".standin-v6"

BERT_BASE_UNCASED = {
    "architectures": ["BertForMaskedLM"],
    "attention_probs_dropout_prob": 0.1,
    "gradient_checkpointing": False,
    "hidden_act": "gelu",
    "hidden_dropout_prob": 0.1,
    "hidden_size": 768,
    "initializer_range": 0.02,
    "intermediate_size": 3072,
    "layer_norm_eps": 1e-12,
    "max_position_embeddings": 512,
    "model_type": "bert",
    "num_attention_heads": 12,
    "num_hidden_layers": 12,
    "pad_token_id": 0,
    "position_embedding_type": "absolute",
    "transformers_version": "4.6.0.dev0",
    "type_vocab_size": 2,
    "use_cache": True,
    "vocab_size": 30522,
}
SMOLLM2_360M = {
    "architectures": ["LlamaForCausalLM"],
    "attention_bias": False,
    "attention_dropout": 0.0,
    "bos_token_id": 0,
    "eos_token_id": 0,
    "hidden_act": "silu",
    "hidden_size": 960,
    "initializer_range": 0.02,
    "intermediate_size": 2560,
    "is_llama_config": True,
    "max_position_embeddings": 8192,
    "model_type": "llama",
    "num_attention_heads": 15,
    "num_hidden_layers": 32,
    "num_key_value_heads": 5,
    "pretraining_tp": 1,
    "rms_norm_eps": 1e-05,
    "rope_interleaved": False,
    "rope_scaling": None,
    "rope_theta": 100000,
    "tie_word_embeddings": True,
    "torch_dtype": "bfloat16",
    "transformers_version": "4.40.1",
    "use_cache": True,
    "vocab_size": 49152,
}
# hub id -> (config, storage dtype); the aliases ("bert-base-uncased") are redirects on the real hub
MODELS = {
    "google-bert/bert-base-uncased": (BERT_BASE_UNCASED, "float32"),
    "HuggingFaceTB/SmolLM2-360M": (SMOLLM2_360M, "bfloat16"),
}
ALIASES = {"bert-base-uncased": "google-bert/bert-base-uncased"}

_WORDS = (
    "the a film movie story plot actor actors cast director scene scenes script music ending "
    "is was are were it this that and but with without of in on by for to as its his her "
    "good great fine moving funny clever warm bright lovely superb bad dull flat weak boring "
    "tired messy awful silly long short slow quick very rather too not never always often"
).split()


def _sentences(n: int, seed: int) -> list[str]:
    rng = random.Random(seed)
    return [" ".join(rng.choice(_WORDS) for _ in range(rng.randint(4, 14))) for _ in range(n)]


def _parquet(path: Path, rows: dict, features: dict) -> None:
    import datasets

    path.parent.mkdir(parents=True, exist_ok=True)
    datasets.Dataset.from_dict(rows, features=datasets.Features(features)).to_parquet(str(path))


def _readme(folder: Path, configs: dict[str, dict[str, str]]) -> None:
    """The hub card's YAML `configs:` block: config name -> split -> file pattern."""
    lines = ["---", "configs:"]
    for name, splits in configs.items():
        lines += [f"- config_name: {name}", "  data_files:"]
        for split, pattern in splits.items():
            lines += [f"  - split: {split}", f"    path: {pattern}"]
    (folder / "README.md").write_text("\n".join(lines + ["---", "", "A stand-in.", ""]))


def _sst2(folder: Path) -> None:
    """GLUE SST-2's layout, filled with the packaged movie-review sentences (real sentiment)."""
    from datasets import ClassLabel, Value

    from llmcourse import data

    features = {
        "idx": Value("int32"),
        "sentence": Value("string"),
        "label": ClassLabel(names=["negative", "positive"]),
    }
    reviews = [(s, int(label == "pos")) for s, label in data.load_movie_reviews()]
    random.Random(0).shuffle(reviews)
    parts = {"train": reviews[:136], "validation": reviews[136:], "test": reviews[136:]}
    for split, rows in parts.items():
        labels = [-1] * len(rows) if split == "test" else [y for _, y in rows]  # as GLUE's test
        table = {"idx": list(range(len(rows))), "sentence": [s for s, _ in rows], "label": labels}
        _parquet(folder / f"data/{split}-00000-of-00001.parquet", table, features)
    _readme(folder, {"default": {s: f"data/{s}-*" for s in parts}})


def _wikitext_rows(text: str) -> list[str]:
    """WikiText's raw rows: a heading, blank rows, paragraphs, each ending in " \n"."""
    rows = []
    for i, para in enumerate(p.strip() for p in text.splitlines() if p.strip()):
        if i % 8 == 0:
            rows += ["", f" = {' '.join(para.split()[:3])} = \n", ""]
        rows.append(f" {para} \n")
    return rows


def _wikitext(folder: Path) -> None:
    from datasets import Value

    from llmcourse import data

    rows = _wikitext_rows(data.load_text("lee"))
    cut = len(rows) // 10
    parts = {"test": rows[:cut], "train": rows[2 * cut :], "validation": rows[cut : 2 * cut]}
    for split, texts in parts.items():
        path = folder / f"wikitext-2-raw-v1/{split}-00000-of-00001.parquet"
        _parquet(path, {"text": texts}, {"text": Value("string")})
    _readme(folder, {"wikitext-2-raw-v1": {s: f"wikitext-2-raw-v1/{s}-*" for s in parts}})


def _tinystories(folder: Path) -> None:
    from datasets import Value

    from llmcourse import data

    stories = [s.strip() for s in data.load_text("tiny-en").split("\n\n") if s.strip()]
    parts = {"train": stories * 8, "validation": stories[:8]}
    for split, texts in parts.items():
        path = folder / f"data/{split}-00000-of-00001.parquet"
        _parquet(path, {"text": texts}, {"text": Value("string")})
    _readme(folder, {"default": {s: f"data/{s}-*" for s in parts}})


def _alpaca(folder: Path) -> None:
    from datasets import Value

    columns = ("instruction", "input", "output", "text")
    rows: dict[str, list[str]] = {c: [] for c in columns}
    for i, sentence in enumerate(_sentences(64, seed=5)):
        instruction, given = (
            ("Rewrite the sentence in capitals.", sentence)
            if i % 2
            else (
                f"Give a word that means the same as '{sentence.split()[0]}'.",
                "",
            )
        )
        output = sentence.upper() if i % 2 else sentence.split()[0]
        prompt = "Below is an instruction that describes a task"
        text = f"{prompt}.\n\n### Instruction:\n{instruction}\n\n### Response:\n{output}"
        for c, v in zip(columns, (instruction, given, output, text)):
            rows[c].append(v)
    _parquet(
        folder / "data/train-00000-of-00001.parquet", rows, {c: Value("string") for c in columns}
    )
    _readme(folder, {"default": {"train": "data/train-*"}})


def _arc(folder: Path) -> None:
    """ai2_arc's layout (one folder per config), four-option questions with a lettered key."""
    from datasets import Sequence, Value

    features = {
        "id": Value("string"),
        "question": Value("string"),
        "choices": {"text": Sequence(Value("string")), "label": Sequence(Value("string"))},
        "answerKey": Value("string"),
    }
    for config in ("ARC-Challenge", "ARC-Easy"):
        for split, n in (("train", 16), ("validation", 8), ("test", 40)):
            words = _sentences(n, seed=len(split))
            rows: dict[str, list] = {k: [] for k in features}
            for i, w in enumerate(words):
                first = w.split()[0]
                options = [first, first + "s", "the " + first, first.upper()]
                rows["id"].append(f"Mercury_{i:07d}")
                rows["question"].append(f"Which word opens the sentence '{w}'?")
                rows["choices"].append({"text": options, "label": ["A", "B", "C", "D"]})
                rows["answerKey"].append("A")
            _parquet(folder / f"{config}/{split}-00000-of-00001.parquet", rows, features)
    splits = ("train", "validation", "test")
    _readme(folder, {c: {s: f"{c}/{s}-*" for s in splits} for c in ("ARC-Challenge", "ARC-Easy")})


def _pubmedqa(folder: Path) -> None:
    """PubMedQA's configs: pqa_labeled (with answers) and pqa_unlabeled, train split only."""
    from datasets import Sequence, Value

    strings = Sequence(Value("string"))
    context = {"contexts": strings, "labels": strings, "meshes": strings}
    labeled = {
        "pubid": Value("int32"),
        "question": Value("string"),
        "context": {**context, "reasoning_required_pred": strings, "reasoning_free_pred": strings},
        "long_answer": Value("string"),
        "final_decision": Value("string"),
    }
    unlabeled = {k: v for k, v in labeled.items() if k != "final_decision"}
    unlabeled["context"] = context
    # as many labelled rows as the real config (1,000: the notebook holds 200 out), and the
    # unlabelled abstracts notebook 18 streams (5,000 documents + 200 for evaluation)
    for config, features, n in (("pqa_labeled", labeled, 1000), ("pqa_unlabeled", unlabeled, 5200)):
        texts = _sentences(3 * n, seed=7)
        rows: dict[str, list] = {k: [] for k in features}
        for i in range(n):
            rows["pubid"].append(10_000 + i)
            rows["question"].append(f"Is {texts[3 * i].split()[0]} linked to {texts[3 * i + 1]}?")
            ctx = {"contexts": texts[3 * i : 3 * i + 2], "labels": ["BACKGROUND", "RESULTS"]}
            ctx["meshes"] = ["Humans"]
            if "final_decision" in features:
                ctx.update(reasoning_required_pred=["yes"], reasoning_free_pred=["yes"])
                rows["final_decision"].append(("yes", "no", "maybe")[i % 3])
            rows["context"].append(ctx)
            rows["long_answer"].append(texts[3 * i + 2])
        _parquet(folder / f"{config}/train-00000-of-00001.parquet", rows, features)
    _readme(folder, {c: {"train": f"{c}/train-*"} for c in ("pqa_labeled", "pqa_unlabeled")})


def _multi30k(folder: Path) -> None:
    """Multi30k as bentrevett publishes it: train/val/test JSON lines of {"en", "de"}."""
    german = {"the": "die", "a": "ein", "and": "und", "is": "ist", "with": "mit", "of": "von"}
    folder.mkdir(parents=True, exist_ok=True)
    for i, (split, n) in enumerate((("train", 200), ("val", 40), ("test", 40))):
        lines = []
        for en in _sentences(n, seed=20 + i):
            de = " ".join(german.get(w, w.capitalize()) for w in en.split())
            lines.append(json.dumps({"en": en + " .", "de": de + " ."}))
        (folder / f"{split}.jsonl").write_text("\n".join(lines) + "\n")


def _mnist(folder: Path) -> None:
    """ylecun/mnist's layout (config "mnist"): rows of a 28x28 grey PNG and a ClassLabel, made from
    scikit-learn's 8x8 digits (each pixel a 3x3 block, a 2-pixel margin), so the labels are real."""
    import io

    import numpy as np
    from datasets import ClassLabel, Image
    from PIL import Image as PILImage
    from sklearn.datasets import load_digits

    raw = load_digits()
    big = np.kron(raw.images / 16.0, np.ones((3, 3)))  # (N, 24, 24)
    pixels = np.pad(np.round(big * 255).astype(np.uint8), ((0, 0), (2, 2), (2, 2)))
    features = {"image": Image(), "label": ClassLabel(names=[str(k) for k in range(10)])}
    for split, rows in (("train", range(0, 300)), ("test", range(300, 400))):
        pngs = []
        for i in rows:
            buf = io.BytesIO()
            PILImage.fromarray(pixels[i], mode="L").save(buf, format="PNG")
            pngs.append({"bytes": buf.getvalue(), "path": None})
        table = {"image": pngs, "label": [int(raw.target[i]) for i in rows]}
        _parquet(folder / f"mnist/{split}-00000-of-00001.parquet", table, features)
    _readme(folder, {"mnist": {s: f"mnist/{s}-*" for s in ("train", "test")}})


DATASETS = {
    "stanfordnlp/sst2": _sst2,
    "Salesforce/wikitext": _wikitext,
    "roneneldan/TinyStories": _tinystories,
    "tatsu-lab/alpaca": _alpaca,
    "allenai/ai2_arc": _arc,
    "qiaojin/PubMedQA": _pubmedqa,
    "bentrevett/multi30k": _multi30k,
    "ylecun/mnist": _mnist,
}


def _bert_tokenizer(folder: Path) -> None:
    from tokenizers import BertWordPieceTokenizer
    from transformers import BertTokenizerFast

    vocab = ["[PAD]"] + [f"[unused{i}]" for i in range(99)] + ["[UNK]", "[CLS]", "[SEP]", "[MASK]"]
    chars = [chr(c) for c in range(33, 127) if not chr(c).isupper()]
    vocab += chars + sorted(set(_WORDS) - set(chars)) + [f"##{c}" for c in chars if c.isalnum()]
    vocab += [f"[unused{i}]" for i in range(99, 99 + 30522 - len(vocab))]
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "vocab.txt").write_text("\n".join(vocab) + "\n")
    wordpiece = BertWordPieceTokenizer(str(folder / "vocab.txt"), lowercase=True)
    tok = BertTokenizerFast(tokenizer_object=wordpiece, do_lower_case=True, model_max_length=512)
    tok.save_pretrained(str(folder))


def _bpe_tokenizer(folder: Path, vocab_size: int) -> None:
    from tokenizers import ByteLevelBPETokenizer
    from transformers import PreTrainedTokenizerFast

    specials = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]
    bpe = ByteLevelBPETokenizer()
    bpe.train_from_iterator(_sentences(500, seed=3), vocab_size=vocab_size, special_tokens=specials)
    tok = PreTrainedTokenizerFast(
        tokenizer_object=bpe,
        bos_token=specials[0],
        eos_token=specials[0],
        unk_token=specials[0],
        model_max_length=8192,
    )
    tok.save_pretrained(str(folder))


def _model(folder: Path, config: dict, dtype: str) -> None:
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM, BertForPreTraining

    folder.mkdir(parents=True, exist_ok=True)
    (folder / "config.json").write_text(json.dumps(config, indent=2) + "\n")
    cfg = AutoConfig.from_pretrained(str(folder))
    # bert-base-uncased's published weights include the pretraining heads (pooler, NSP)
    auto = BertForPreTraining if config["model_type"] == "bert" else AutoModelForCausalLM
    torch.manual_seed(0)
    model = (auto(cfg) if auto is BertForPreTraining else auto.from_config(cfg)).to(
        getattr(torch, dtype)
    )
    model.save_pretrained(str(folder))
    (folder / "config.json").write_text(json.dumps(config, indent=2) + "\n")  # the published one
    if config["model_type"] == "bert":
        _bert_tokenizer(folder)
    else:
        _bpe_tokenizer(folder, vocab_size=2000)


def build(root: str | Path, *, models: bool = True) -> Path:
    """Write the stand-in repositories under `root` (once: a stamp marks a finished tree)."""
    root = Path(root).resolve()
    stamp = root / (STAMP + ("-models" if models else "-data"))
    if stamp.exists():
        return root
    for repo_id, make in DATASETS.items():
        folder = root / "datasets" / repo_id
        shutil.rmtree(folder, ignore_errors=True)
        make(folder)
    if models:
        for repo_id, (config, dtype) in MODELS.items():
            folder = root / "models" / repo_id
            shutil.rmtree(folder, ignore_errors=True)
            _model(folder, config, dtype)
        for alias, target in ALIASES.items():
            link = root / "models" / alias
            if not link.is_symlink():
                link.symlink_to(root / "models" / target, target_is_directory=True)
    stamp.write_text("done\n")
    return root


def break_column(root: str | Path, repo_id: str, *, old: str, new: str) -> None:
    """Rename column `old` to `new` in every parquet file of stand-in data set `repo_id`."""
    import pyarrow.parquet as pq

    for path in sorted((Path(root) / "datasets" / repo_id).rglob("*.parquet")):
        table = pq.read_table(path)
        names = [new if n == old else n for n in table.column_names]
        meta = dict(table.schema.metadata or {})
        meta[b"huggingface"] = meta.get(b"huggingface", b"{}").replace(
            f'"{old}"'.encode(), f'"{new}"'.encode()
        )
        pq.write_table(table.rename_columns(names).replace_schema_metadata(meta), path)
