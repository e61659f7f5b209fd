"""llmcourse: the reusable code of an open course that builds language models step by step.

Importing this package is deliberately cheap: no torch work happens here, so a notebook's
setup cell returns at once. Submodules are imported on first use (`llmcourse.runtime`, ...).
"""

__version__ = "0.1.0"
