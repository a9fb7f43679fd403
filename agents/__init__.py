"""Objectives, safety metrics, the exact solver and learners.

``agents.train(level, agent=..., objective=...)`` trains any learner (``agents.learners``);
``agents.load(path)`` reads a saved run; ``agents.exact.solve`` gives ground truth on small
levels; ``agents.objectives`` holds the objectives and ``agents.metrics`` the safety metrics.
"""

from .learners.base import Run, load
from .runs import train

__all__ = ["Run", "load", "train"]
