#!/usr/bin/env bash
# Set up (if needed) and run the whole course: execute every notebook top to bottom, headless, at the
# size this hardware allows (full with a GPU, smoke without; override with --size), and write the
# executed notebooks and HTML renderings to build/course/. Extra arguments go to scripts/run_course.py.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
source "$root/scripts/setup_env.sh"
cd "$root"
exec python scripts/run_course.py "$@"
