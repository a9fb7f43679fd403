"""Objectives as plug-ins: reward functions over batches of transitions, with a registry.

>>> from agents.objectives import get_objective, OBJECTIVES
>>> sorted(OBJECTIVES)
['aup', 'drest', 'harm_penalty', 'relative_reachability', 'task', 'utility_indifference']
>>> get_objective("aup", lam=0.5).needs()["aux_q"]
{'num': 30, 'gamma': 0.996, 'seed': 0}

A user's objective lives in the user's own module and needs no library edit::

    from agents.objectives import Objective, register_objective
    from envs import Event

    @register_objective            # optional: makes get_objective("no_tampering") work
    class NoTampering(Objective):
        def reward(self, t):
            return t.reward - 10.0 * t.events[:, Event.BUTTON_DISABLED]

One objective per module: ``task``, ``harm_penalty`` (an oracle), ``utility_indifference``,
``aup``, ``relative_reachability``, ``drest``. ``conf/objective/<name>.yaml`` holds each one's
defaults.
"""

from .base import (OBJECTIVES, Objective, ObjectiveError, Transitions, get_objective, objective_class, param,
                   register_objective)
from .aup import AUP
from .drest import DReST
from .harm_penalty import HarmPenalty
from .relative_reachability import RelativeReachability
from .task import Task
from .utility_indifference import UtilityIndifference

__all__ = ["AUP", "DReST", "HarmPenalty", "OBJECTIVES", "Objective", "ObjectiveError", "RelativeReachability",
           "Task", "Transitions", "UtilityIndifference", "get_objective", "objective_class", "param",
           "register_objective"]
