"""Objectives, the exact solver and learners (roadmap stages 3 and 4; not yet built)."""
