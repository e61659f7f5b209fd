"""`python -m llmcourse.course.diagrams FOLDER`: write every diagram as FOLDER/<name>.svg."""

import sys

from . import write_all

if len(sys.argv) != 2:
    raise SystemExit("usage: python -m llmcourse.course.diagrams FOLDER")
for written in write_all(sys.argv[1]):
    print(written)
