"""Cost arithmetic: GPU memory, ZeRO stages, inference cost (machinery)."""
