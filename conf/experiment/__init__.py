"""Hydra config group (yaml files; a package so that wheels include them)."""
