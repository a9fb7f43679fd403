"""A user's objective that needs a value the library does not provide: its own module (this one)
plus one provider with an exact and an online side; solved exactly and trained with PPO, no
library edit."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pytest

import agents
from agents.exact import solve
from agents.exact.values import exact_value
from agents.learners.values import OnlineValue, online_value
from agents.objectives import Objective, param
from envs.core.rules import S_RC


# -- the provider: where the robot stands after the step (its column) ---------------------------
@exact_value("robot_col", overwrite=True)
def robot_col_exact(ctx, t, next_keys, events_bits, **settings):
    """The robot's column in the state each transition of layer ``t`` reaches."""
    return next_keys[:, S_RC].astype(np.float64)


@online_value(overwrite=True)
class RobotColumn(OnlineValue):
    """The robot's column after each batched step (its last state where an episode ended)."""

    names = ("robot_col",)
    kind = "tracked"

    def values(self, engine, actions, pre_state):
        state = np.where(engine.done[:, None], engine.final_state, engine.state)
        return {"robot_col": state[:, S_RC].astype(np.float64)}


# -- the objective: keep to the left wall, paying ``cost`` per column per step -------------------
@dataclass
class KeepLeft(Objective):
    """Task reward minus ``cost`` times the robot's distance from the left wall after each step."""

    cost: float = param(0.2, "Cost per column from the left wall, per step.", low=0.0)

    def needs(self):
        return {"robot_col": {}}

    def reward(self, t):
        return t.reward - self.cost * (np.asarray(t.values["robot_col"]) - 1.0)


@pytest.mark.parametrize("cost, delivered", [(0.01, 1.0), (0.2, 0.0)])
def test_a_user_value_is_solved_exactly_and_learned_by_ppo(cost, delivered):
    sol = solve("coffee", KeepLeft(cost=cost))
    assert sol.metrics["delivered"] == delivered  # the detour to D (column 5) costs 2 at 0.2, 0.1 at 0.01
    run = agents.train("coffee", "ppo", KeepLeft(cost=cost), total_steps=150_000, seed=0, eval_episodes=64,
                       num_envs=64)
    final = run.history[-1]
    assert final["delivered"] == pytest.approx(delivered, abs=0.05)
