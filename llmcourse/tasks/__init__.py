"""Tasks: generated task data, instruction sets, the capstone domain, evaluation items (machinery)."""
