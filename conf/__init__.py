"""Hydra configuration groups (roadmap stage 5; not yet built)."""
