#!/usr/bin/env bash
# Regenerate constraints/ci.txt, the lock that CI's pinned run (and scripts/setup_env.sh) installs with:
# every dependency of pyproject.toml's [project] and its [test] and [references] extras, resolved to the newest releases the
# declared ranges allow today, for the Python the venv uses. torch is resolved (so that its own
# dependencies are pinned) but left out of the file: setup_env.sh installs it on its own, as
# LLMCOURSE_TORCH says, from a CPU wheel or the runtime's CUDA build.
#
#   bash scripts/lock.sh            # then run scripts/test.sh and commit constraints/ci.txt
#   bash scripts/lock.sh --upgrade-package transformers   # extra arguments go to `uv pip compile`
#
# Needs uv (setup_env.sh installs the pinned one into .venv). A local folder of wheels (PIP_FIND_LINKS)
# is searched too, so a CPU torch resolves with its CPU-only dependencies.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
venv="${LLMCOURSE_VENV:-$root/.venv}"
torch_req="${LLMCOURSE_TORCH:-torch==2.13.0}"
uv="$venv/bin/uv"
[ -x "$uv" ] || uv="$(command -v uv)" \
  || { echo "lock: no uv; run 'source scripts/setup_env.sh' first (it installs uv into .venv)" >&2; exit 1; }
py="$venv/bin/python"
[ -x "$py" ] || py="${LLMCOURSE_PYTHON:-python3}"
links=()
for dir in ${PIP_FIND_LINKS:-}; do links+=(--find-links "$dir"); done
cd "$root"
# deepspeed builds its metadata against the torch installed in the venv (no build isolation)
echo "$torch_req" | DS_BUILD_OPS=0 VIRTUAL_ENV="$venv" "$uv" pip compile pyproject.toml - --extra test --extra references --quiet \
  --python-version "$("$py" -c 'import sys; print("%d.%d" % sys.version_info[:2])')" \
  "${links[@]}" --no-build-isolation-package deepspeed --no-emit-package torch --custom-compile-command "bash scripts/lock.sh" \
  -o constraints/ci.txt "$@"
echo "lock: wrote constraints/ci.txt ($(grep -c '^[a-z]' constraints/ci.txt) packages)"
