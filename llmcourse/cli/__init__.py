"""Thin command-line entry points: parse arguments into config dataclasses, call the package, save."""
