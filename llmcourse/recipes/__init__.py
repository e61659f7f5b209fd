"""Recipes: multi-stage experiments built from the concept modules (machinery)."""
