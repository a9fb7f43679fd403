"""Command-line apps. ``python -m experiments.demo`` plays levels with scripted policies."""
