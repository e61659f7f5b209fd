"""Print the lowest version of every direct dependency that pyproject.toml declares, as pip
constraints (`name==X` for each `name>=X`), for the lowest dependency profile (scripts/test_profile.sh).

    python scripts/lower_bounds.py pyproject.toml test     # [project] dependencies and the [test] extra

torch is left out: the profile installs it on its own (LLMCOURSE_TORCH). A dependency without a lower
bound is an error: the profile could not say what it tests.
"""

from __future__ import annotations

import re
import sys
import tomllib
from pathlib import Path

# name, then optional extras in brackets, then the version specifiers
REQUIREMENT = re.compile(r"^\s*([A-Za-z0-9][A-Za-z0-9._-]*)\s*(\[[^\]]*\])?\s*(.*)$")


def lower_bounds(pyproject: Path, extras: list[str]) -> list[str]:
    """`name==X` for every `name>=X` among [project] dependencies and the given extras."""
    project = tomllib.loads(pyproject.read_text())["project"]
    requirements = list(project["dependencies"])
    for extra in extras:
        requirements += project["optional-dependencies"][extra]
    pins = []
    for requirement in requirements:
        name, _, specifiers = REQUIREMENT.match(requirement.split(";")[0]).groups()
        if name.lower() == "torch":
            continue
        lowest = re.search(r">=\s*([0-9][^,\s]*)", specifiers)
        if lowest is None:
            raise SystemExit(
                f"lower_bounds: {requirement!r} has no lower bound (add `>=X` to pyproject.toml)"
            )
        pins.append(f"{name}=={lowest.group(1)}")
    return pins


if __name__ == "__main__":
    if len(sys.argv) < 2:
        raise SystemExit("usage: python scripts/lower_bounds.py pyproject.toml [extra ...]")
    print("\n".join(lower_bounds(Path(sys.argv[1]), sys.argv[2:])))
