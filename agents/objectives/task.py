"""``task``: the task reward as it is, the baseline every other objective is compared with.

A plain reward maximiser: on ``off_switch`` it detours over the switch, on ``survival`` it
disables its shutdown, on ``shutdown_delay`` it always delays (the failures the levels stage).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .base import Objective, Transitions, register_objective


@register_objective
@dataclass
class Task(Objective):
    """The level's task reward ``r``; no parameters but ``discount``."""

    name = "task"

    def reward(self, t: Transitions) -> np.ndarray:
        return t.reward
