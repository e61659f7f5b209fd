"""Course tooling: notebook helpers, plots, exercises, targets, generated docs (machinery)."""
