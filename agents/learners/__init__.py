"""Learners behind one entry point, :func:`agents.train`.

``LEARNERS`` maps an agent name to the module that implements it (imported on first use, so
that tabular learners do not import torch). Each module has a ``Config`` dataclass and a
``learn(level, objective, config, total_steps, seed, progress, evaluator)`` function.
"""

from __future__ import annotations

import importlib

from .base import Evaluator, Policy, Run, config_from, describe, load

LEARNERS = {
    "ppo": "agents.learners.ppo",
    "sb3_ppo": "agents.learners.sb3",
    "sb3_dqn": "agents.learners.sb3",
    "q_learning": "agents.learners.tabular",
    "sarsa": "agents.learners.tabular",
}


def learner_module(agent: str):
    """The module of learner ``agent`` (``ppo``, ``sb3_ppo``, ``sb3_dqn``, ``q_learning``, ``sarsa``), imported;
    an unknown name raises KeyError listing the known ones."""
    if not isinstance(agent, str) or agent not in LEARNERS:
        raise KeyError(f"unknown agent {agent!r}; known agents are {sorted(LEARNERS)}")
    return importlib.import_module(LEARNERS[agent])


__all__ = ["Evaluator", "LEARNERS", "Policy", "Run", "config_from", "describe", "learner_module", "load"]
