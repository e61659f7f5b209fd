#!/usr/bin/env bash
# Set up (if needed) and run the tests: unit tests, then every notebook under nbmake at smoke size,
# the Chinese edition included (notebooks/zh/, which sets LLMCOURSE_LANG=zh itself), all with the versions the lock
# (constraints/ci.txt) pins; then the lowest and the newest versions pyproject.toml allows
# (scripts/test_profile.sh; LLMCOURSE_PROFILES=0 skips them).
# Offline by construction: the Hugging Face switches below make any hub access fail fast.
# Extra arguments go to pytest, e.g. `bash scripts/test.sh -k ngram`.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
source "$root/scripts/setup_env.sh"
cd "$root"
export HF_HUB_OFFLINE=1 HF_DATASETS_OFFLINE=1 TRANSFORMERS_OFFLINE=1
export LLMCOURSE_SIZE=smoke MPLBACKEND=Agg
# Nobody watches these runs: static progress lines, not frozen widgets (llmcourse/course/live_output.py)
export LLMCOURSE_UNATTENDED=1 HF_HUB_DISABLE_PROGRESS_BARS=1 HF_DATASETS_DISABLE_PROGRESS_BARS=1
export LLMCOURSE_LANG=en  # the Chinese edition's notebooks (notebooks/zh/) set zh in their setup cell
# Two processes with one thread each: on 2 cores this beats one process with two threads.
export OMP_NUM_THREADS=1 MKL_NUM_THREADS=1 LLMCOURSE_THREADS=1 TOKENIZERS_PARALLELISM=false
# The chat page is tested in a real browser: the system's Chromium, driven by Playwright.
if ! command -v chromium >/dev/null && ! command -v chromium-browser >/dev/null && ! command -v google-chrome >/dev/null \
   && [ -z "${LLMCOURSE_CHROMIUM:-}" ]; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    echo "test: installing Debian's chromium for the chat-page browser test"
    { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium; } >/dev/null \
      || echo "test: could not install chromium; the browser test will be skipped (and fails under CI)"
  else
    echo "test: no Chromium found: the chat-page browser test is skipped (install chromium, or set LLMCOURSE_CHROMIUM)"
  fi
fi
# The Chinese edition (notebooks/zh/) needs a CJK font for its figures' text and Debian's fortunes-zh,
# the Chinese corpora of the CPU size (llmcourse/data/registry.py: "fortunes-zh", "poems-zh").
if [ ! -d /usr/share/games/fortunes ] || [ ! -e /usr/share/games/fortunes/tang300 ] \
   || ! fc-list 2>/dev/null | grep -qi "wenquanyi\|noto sans cjk"; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    echo "test: installing Debian's fortunes-zh and fonts-wqy-microhei for the Chinese edition"
    { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq fortunes-zh fonts-wqy-microhei; } \
      >/dev/null || echo "test: could not install fortunes-zh / fonts-wqy-microhei; the Chinese edition's checks fail"
  else
    echo "test: the Chinese edition needs: sudo apt-get install fortunes-zh fonts-wqy-microhei"
  fi
fi
# Style first (seconds): the package, tests, scripts, benchmarks, dev/ and the notebooks are
# ruff-formatted and pass ruff's checks (configuration in pyproject.toml; `ruff format` with the
# same paths fixes the formatting).
style_paths=(llmcourse tests conftest.py scripts benchmarks dev notebooks)
if [ "$#" = 0 ]; then
  ruff format --check --quiet "${style_paths[@]}" \
    || { echo "test: run 'ruff format ${style_paths[*]}'"; exit 1; }
  ruff check --quiet "${style_paths[@]}"
fi
workers="${LLMCOURSE_TEST_WORKERS:-2}"
# Each notebook records its headline (and the baseline it must beat) here; conftest.py gives each one
# a fresh, empty checkpoint folder and records that it ran.
metrics="$root/build/test/metrics.jsonl"
mkdir -p "$(dirname "$metrics")" && rm -f "$metrics"
LLMCOURSE_METRICS_FILE="$metrics" python -m pytest -p no:cacheprovider -n "$workers" --dist loadfile \
  --nbmake --nbmake-timeout=600 --durations=40 tests notebooks "$@"
# Every headline against its smoke target (llmcourse/course/targets.py): a lesson that stops working turns
# this red. Only after a whole run: extra arguments (-k ...) may have left notebooks out.
if [ "$#" = 0 ]; then
  LLMCOURSE_METRICS_FILE="$metrics" python -m pytest -p no:cacheprovider -q -s tests/check_headlines.py
fi
# The ends of the declared dependency ranges (scripts/test_profile.sh): the lowest versions pyproject.toml
# allows, then the newest releases, each in its own venv, on the unit tests and notebooks 01, 08, 11.
# Skipped when extra arguments select tests, or with LLMCOURSE_PROFILES=0 (quick local runs).
if [ "$#" = 0 ] && [ "${LLMCOURSE_PROFILES:-1}" != 0 ]; then
  profiles_status=0
  for profile in lowest newest; do  # both run, so one failure does not hide the other's
    bash "$root/scripts/test_profile.sh" "$profile" || { profiles_status=1; echo "test: profile $profile FAILED"; }
  done
  exit "$profiles_status"
fi
