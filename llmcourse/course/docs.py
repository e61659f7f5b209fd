"""The course's own text as a retrieval corpus, and questions whose answers sit in known files.

RAG is easiest to judge on documents you can open yourself. Our document set is this course:

  * the markdown cells of `notebooks/*.ipynb`, `docs/*.md` and `README.md` — when the repository is
    on disk (a clone; the notebook finds it by walking up from the working directory);
  * the module docstrings of the installed `llmcourse` package — always there, even on Colab
    after `pip install`, because they ship with the code.

`QUESTIONS` are written by hand: each names the file it was written from (its *gold* document),
every other file that states the answer too (`also`, each checked by reading it), and a short
answer, so retrieval can be scored with `llmcourse.rag.hit_rate`: a hit is a chunk of any of them.
Several questions are paraphrases that share few words with their answer, where dense embeddings
should beat BM25, and several share rare words with it, where BM25 is hard to beat. The gold files
are the ones that *state* the answer, not the ones that merely mention the topic; a file added
later that states it again must join `also`, or it counts as a miss when retrieved
(`tests/test_course_docs.py` finds such files for the questions whose answer is a fixed phrase).
Scoring is per file, not per passage: a chunk of a gold file counts even when the sentence that
answers sits in another chunk of it (the notebook prints what was retrieved, to read).
Left out: PDFs and HTML, code bodies (only docstrings), de-duplication of repeated passages.
"""

from __future__ import annotations

import ast
import json
from collections.abc import Collection, Sequence
from dataclasses import dataclass
from pathlib import Path

from llmcourse.rag import Chunk, chunk_text


@dataclass(frozen=True)
class Question:
    question: str  # what a learner might ask
    gold: str  # doc id of the file the question was written from
    answer: str  # a short reference answer (for reading, not exact match)
    also: tuple[str, ...] = ()  # doc ids of the other files that state the answer

    @property
    def golds(self) -> tuple[str, ...]:
        """Every file that answers the question: `gold`, then `also`."""
        return (self.gold, *self.also)


QUESTIONS: tuple[Question, ...] = (
    Question(
        "Why does a freshly added low-rank adapter leave the model's outputs unchanged before training?",
        "llmcourse/lora.py",
        "B starts at zero (A Kaiming-uniform), so W + BA = W at the start",
        also=("notebooks/12_peft.ipynb",),
    ),
    Question(
        "Which loss does direct preference optimization minimise, and what is the frozen reference?",
        "llmcourse/dpo.py",
        "-log sigmoid(beta * difference of policy/reference log-ratios); a frozen copy of the SFT model",
        also=("notebooks/13_dpo.ipynb",),
    ),
    Question(
        "What is the worst rounding error when weights are stored as 8-bit integers with one scale per row?",
        "llmcourse/quantize.py",
        "max|w_row| / 254",
        also=("notebooks/09_generation.ipynb",),
    ),
    Question(
        "How much memory per weight does full training with Adam in half precision need?",
        "llmcourse/cost/memory.py",
        "16 bytes",
        also=(
            "notebooks/00_start_here.ipynb",
            "notebooks/12_peft.ipynb",
            "notebooks/17_many_gpus.ipynb",
            "README.md",
        ),
    ),
    Question(
        "Why scale the scores down before the softmax when comparing queries with keys?",
        "llmcourse/attention.py",
        "to keep unit variance so the softmax does not saturate",
        also=("notebooks/04_attention.ipynb",),
    ),
    Question(
        "What lets gradients survive long distances in an LSTM?",
        "llmcourse/rnn.py",
        "the additive update of the cell state c",
        also=("notebooks/03_rnn.ipynb",),
    ),
    Question(
        "How do interpolation and Kneser-Ney smoothing use lower-order n-grams?",
        "llmcourse/smoothing.py",
        "they mix in the (n-1)-gram estimate recursively, down to uniform",
        also=("notebooks/01_ngram.ipynb",),
    ),
    Question(
        "How does word2vec throw away very common words during training?",
        "llmcourse/word2vec.py",
        "frequent-word subsampling: keep with probability min(1, sqrt(t/f) + t/f)",
        also=("notebooks/02_word_vectors.ipynb",),
    ),
    Question(
        "Why is there never an out-of-vocabulary symbol when text is split into byte pieces?",
        "llmcourse/bpe.py",
        "its base alphabet is the 256 bytes",
        also=("notebooks/06_tokenization.ipynb",),
    ),
    Question(
        "Which tokens of a conversation does supervised fine-tuning train on?",
        "llmcourse/chat.py",
        "only the assistant's content and its end token; the rest gets target -100",
        also=(
            "notebooks/06_tokenization.ipynb",
            "notebooks/11_sft.ipynb",
            "llmcourse/sft.py",
            "llmcourse/recipes/adapt.py",
        ),
    ),
    Question(
        "Why is the per-token average used when choosing between answer options of different lengths?",
        "llmcourse/evaluate.py",
        "the raw sum of log-probabilities favours short options",
        also=(
            "notebooks/16_evaluation.ipynb",
            "llmcourse/tasks/benchmarks.py",
        ),
    ),
    Question(
        "What learning-rate schedule does the training loop follow?",
        "llmcourse/train.py",
        "linear warmup, then cosine decay",
        also=(
            "notebooks/08_gpt_pretraining.ipynb",
            "notebooks/17_many_gpus.ipynb",
            "llmcourse/deepspeed_config.py",
            "llmcourse/recipes/llamafactory_export.py",
        ),
    ),
    Question(
        "How are checkpoints saved so that a crash cannot leave a half-written one?",
        "llmcourse/checkpoint.py",
        "written to a temporary folder, then renamed atomically",
    ),
    Question(
        "Why do the input embedding and the output projection of our GPT use one and the same matrix?",
        "llmcourse/gpt.py",
        "weight tying (Press & Wolf 2017)",
        also=(
            "notebooks/00_start_here.ipynb",
            "notebooks/08_gpt_pretraining.ipynb",
        ),
    ),
    Question(
        "In nucleus sampling, which tokens are kept?",
        "llmcourse/generate.py",
        "the smallest set of most likely tokens whose probability reaches top_p",
        also=("notebooks/09_generation.ipynb",),
    ),
    Question(
        "How are the held-out instruction examples kept apart from the training ones?",
        "llmcourse/tasks/instructions.py",
        "a hash of the operands decides the split",
    ),
    Question(
        "What does prompt tuning learn while the whole model stays frozen?",
        "llmcourse/ptuning.py",
        "n_virtual embedding vectors placed before every input",
        also=(
            "notebooks/12_peft.ipynb",
            "llmcourse/prefix_tuning.py",
        ),
    ),
    Question(
        "When several processes train together, how do they end up taking the same optimizer step?",
        "llmcourse/distributed.py",
        "DDP all-reduces (averages) the gradients during backward",
        also=("notebooks/17_many_gpus.ipynb",),
    ),
    Question(
        "What must the first code cell of every notebook be?",
        "docs/CONVENTIONS.md",
        "exactly the setup cell that installs the package on Colab/Kaggle",
    ),
    Question(
        "Which two commands set up the environment and run the course or the tests?",
        "README.md",
        "bash scripts/course.sh and bash scripts/test.sh",
        also=("notebooks/00_start_here.ipynb",),
    ),
    Question(
        "What limit of static word vectors do contextual models remove?",
        "notebooks/02_word_vectors.ipynb",
        "one vector per word, whatever its sense ('bank')",
        also=("notebooks/03_rnn.ipynb",),
    ),
    Question(
        "What do a bidirectional LSTM and ELMo add to a language model?",
        "notebooks/03_rnn.ipynb",
        "context from both directions; contextual word representations",
        also=("notebooks/02_word_vectors.ipynb",),
    ),
)


def find_course_root(start: str | Path | None = None) -> Path | None:
    """The repository folder (holding `notebooks/` and `llmcourse/`) at or above `start` (default: cwd)."""
    here = Path(start or Path.cwd()).resolve()
    for folder in (here, *here.parents):
        if (folder / "notebooks").is_dir() and (folder / "llmcourse").is_dir():
            return folder
    return None


def notebook_markdown(path: str | Path) -> str:
    """The markdown cells of a .ipynb file, joined by blank lines (code and outputs dropped)."""
    nb = json.loads(Path(path).read_text(encoding="utf-8"))
    cells = [c.get("source", "") for c in nb.get("cells", []) if c.get("cell_type") == "markdown"]
    return "\n\n".join("".join(s) if isinstance(s, list) else s for s in cells)


def module_docstrings() -> dict[str, str]:
    """{"llmcourse/<path>.py": its docstring} for every module of the installed package, subpackages
    included; an `__init__.py` counts only when it holds code (data/, serve/), not just a docstring."""
    import llmcourse

    root = Path(llmcourse.__file__).parent
    out = {}
    for path in sorted(root.rglob("*.py")):
        tree = ast.parse(path.read_text(encoding="utf-8"))
        doc = ast.get_docstring(tree)
        if doc and (path.name != "__init__.py" or len(tree.body) > 1):
            out[f"llmcourse/{path.relative_to(root).as_posix()}"] = doc
    return out


# The glossary defines every term of the course in one line: it matches almost every question without
# explaining anything, so retrieval over it would crowd out the text that does (hit@1 0.59 -> 0.41).
NOT_RETRIEVED = ("GLOSSARY.md", "CODEMAP.md")  # the code map repeats the module docstrings


def load_course_documents(root: str | Path | None = None, modules: bool = True) -> dict[str, str]:
    """{doc id: text}: notebooks' markdown, docs/*.md (but NOT_RETRIEVED) and README.md under `root`
    (found if None; skipped when there is no repository), plus the package's module docstrings if `modules`."""
    docs: dict[str, str] = {}
    root = Path(root) if root is not None else find_course_root()
    if root is not None:
        for path in sorted((root / "notebooks").glob("*.ipynb")):
            docs[f"notebooks/{path.name}"] = notebook_markdown(path)
        for path in sorted((root / "docs").glob("*.md")) + [root / "README.md"]:
            if path.is_file() and path.name not in NOT_RETRIEVED:
                docs[str(path.relative_to(root))] = path.read_text(encoding="utf-8")
    if modules:
        docs.update(module_docstrings())
    return docs


def chunk_documents(docs: dict[str, str], max_words: int = 120, overlap: int = 20) -> list[Chunk]:
    """Every document cut into overlapping word windows (`llmcourse.rag.chunk_text`), doc id kept."""
    return [
        c
        for doc_id, text in docs.items()
        for c in chunk_text(text, doc_id, max_words=max_words, overlap=overlap)
    ]


def answerable(
    docs: dict[str, str] | Sequence[str], questions: Sequence[Question] = QUESTIONS
) -> list[Question]:
    """The questions with a gold document in the set (on Colab, without a clone: the modules)."""
    return [q for q in questions if any(g in docs for g in q.golds)]


def reciprocal_rank(ranked: list[str], gold: str | Collection[str]) -> float:
    """reciprocal_rank(ranked ids best first, gold id or ids) -> 1 / rank of the first gold (from 1),
    0.0 if absent."""
    golds = {gold} if isinstance(gold, str) else set(gold)
    for i, doc in enumerate(ranked, start=1):
        if doc in golds:
            return 1.0 / i
    return 0.0
