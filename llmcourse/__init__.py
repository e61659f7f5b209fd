"""llmcourse: the reusable code of an open course that builds language models step by step.

Importing this package is deliberately cheap: no torch work happens here, so a notebook's
setup cell returns at once. Submodules are imported on first use (`llmcourse.runtime`, ...).
"""

__version__ = "0.1.0"  # pyproject.toml says the same (tests/test_setup_cells.py checks it)

# The one place that names the repository: the notebooks' setup cells install
# `llmcourse @ git+{REPO_URL}@{release_tag()}` (scripts/setup_cells.py writes them), and the scripts
# build their GitHub and Colab links from it.
GITHUB_REPO = "llmcourse/llmcourse"  # owner/name on GitHub
REPO_URL = f"https://github.com/{GITHUB_REPO}"


def release_tag(version: str = __version__) -> str:
    """The git tag of a release, "v0.1.0": what a notebook's setup cell installs on Colab/Kaggle."""
    return f"v{version}"
