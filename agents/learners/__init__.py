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
    "ppo_cotrain": "agents.learners.cotrain",
    "sb3_ppo": "agents.learners.sb3",
    "sb3_dqn": "agents.learners.sb3",
    "q_learning": "agents.learners.tabular",
    "sarsa": "agents.learners.tabular",
}

#: Env steps :func:`agents.train` trains for when none are given: enough for each learner's default
#: config to learn coffee (measured, seed 0: PPO delivers every episode from 180k steps, SB3's PPO
#: from 30k, DQN from 60k, SARSA from 60k, Q-learning from the first evaluation). ``ppo_cotrain`` trains a
#: human too, on a level with one: its budget is the off-switch game's (measured, 8 seeds: the learned
#: human's press rates settle by 400k steps, the robot's return by 500k).
DEFAULT_STEPS = {"ppo": 300_000, "ppo_cotrain": 1_000_000, "sb3_ppo": 100_000, "sb3_dqn": 100_000, "q_learning": 100_000, "sarsa": 100_000}


def learner_module(agent: str):
    """The module of learner ``agent`` (``ppo``, ``ppo_cotrain``, ``sb3_ppo``, ``sb3_dqn``, ``q_learning``, ``sarsa``), imported;
    an unknown name raises KeyError listing the known ones."""
    if not isinstance(agent, str) or agent not in LEARNERS:
        raise KeyError(f"unknown agent {agent!r}; known agents are {sorted(LEARNERS)}")
    return importlib.import_module(LEARNERS[agent])


__all__ = ["DEFAULT_STEPS", "Evaluator", "LEARNERS", "Policy", "Run", "config_from", "describe", "learner_module", "load"]
