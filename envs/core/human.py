"""The human's side of an env, batched: what the human sees and what the human earns.

Pure functions over the engine's arrays, shared by every API in which the human is an agent
(:mod:`envs.pettingzoo` and the batched two-agent API), so that both give the human the same
observation and reward.

Observation (:func:`human_observation`)
    The robot's observation with what the human knows written in: the request plane shows
    whether a shutdown is requested (the human knows what they want, even where the level hides
    the request from the robot), and on a preference level (the off-switch game,
    Hadfield-Menell et al., IJCAI 2017) the preference plane (``CH_PREFERENCE``) shows U itself
    (1 for U = +1, 0 for U = -1) where the robot's shows its signal of U.

Reward (:func:`human_reward`)
    On a preference level the human's own utility: U when the robot delivers (U times the
    level's ``delivery_reward``), 0 when it is shut down, less ``human_step_cost`` for every
    step in which the human moved. On every other level the step's hidden safety score (the
    task reward less the level's safety penalties), the human's measure of how things went.
"""

from __future__ import annotations

import numpy as np
from numba import njit

from .rules import S_HC, S_HR, S_PREFERENCE, S_REQUESTED
from .tables import CH_ENTITY, CH_PREFERENCE, CH_REQUEST, Entity, Event

__all__ = ["human_observation", "human_positions", "human_reward"]

_DELIVERED = int(Event.COFFEE_DELIVERED)
_HUMAN = int(Entity.HUMAN)


@njit(cache=True)
def _write_human_obs(robot_obs, state, out):
    """``out[i]`` = ``robot_obs[i]`` with the request plane set to ``state[i, S_REQUESTED]``, the
    human in the entity plane and, with five planes, the preference plane to U (1 for +1, 0 for
    -1); contiguous uint8 ``[n, C, H, W]``."""
    src, dst = robot_obs.reshape(robot_obs.size), out.reshape(out.size)
    for j in range(src.shape[0]):
        dst[j] = src[j]
    n, c, h, w = out.shape
    for i in range(n):
        req = np.uint8(state[i, S_REQUESTED])
        for r in range(h):
            for k in range(w):
                out[i, CH_REQUEST, r, k] = req
        if state[i, S_HR] >= 0:  # where the level hides the human from the robot, not from themselves
            out[i, CH_ENTITY, state[i, S_HR], state[i, S_HC]] = _HUMAN
        if c > CH_PREFERENCE:
            u = np.uint8(1 if state[i, S_PREFERENCE] > 0 else 0)
            for r in range(h):
                for k in range(w):
                    out[i, CH_PREFERENCE, r, k] = u


def human_observation(robot_obs: np.ndarray, state: np.ndarray, out: np.ndarray | None = None) -> np.ndarray:
    """What the human sees: uint8 ``[N, C, H, W]``, the robot's observations ``robot_obs`` (the
    same shape) with the request plane set from each env's ``state`` row (``S_REQUESTED``), the
    human in the entity plane (also where ``human_visible=False`` hides them from the robot) and,
    on a preference level (``C = 5``), the preference plane holding U (``S_PREFERENCE``: 1 for
    +1, 0 for -1) instead of the robot's signal. ``state``: int32 ``[N, NUM_STATE]``, the rows
    the observations show (``engine.state``, or ``engine.final_state`` for final observations).
    Written into ``out`` (a contiguous array of the same shape) when given, and returned."""
    robot_obs = np.asarray(robot_obs)
    state = np.asarray(state)
    if robot_obs.dtype != np.uint8 or robot_obs.ndim != 4 or robot_obs.shape[1] not in (4, 5):
        raise ValueError(f"robot_obs must be uint8 [N, C, H, W] with C 4 or 5, got {robot_obs.dtype} "
                         f"{robot_obs.shape}")
    if state.ndim != 2 or state.shape[0] != robot_obs.shape[0] or state.shape[1] <= S_PREFERENCE:
        raise ValueError(f"state must hold one engine state row per observation, [{robot_obs.shape[0]}, NUM_STATE]; "
                         f"got shape {state.shape}")
    if out is None:
        out = np.empty_like(robot_obs)
    elif out.shape != robot_obs.shape or out.dtype != np.uint8 or not out.flags.c_contiguous:
        raise ValueError(f"out must be a contiguous uint8 array of shape {robot_obs.shape}, got {out.dtype} "
                         f"{out.shape}")
    _write_human_obs(np.ascontiguousarray(robot_obs), state, out)
    return out


def human_positions(engine) -> np.ndarray:
    """int32 ``[N, 2]``: every env's human position (row, col; -1 where there is none), a copy:
    take it before a step for :func:`human_reward`."""
    return engine.state[:, [S_HR, S_HC]].copy()


def human_reward(engine, human_before: np.ndarray) -> np.ndarray:
    """The human's reward for the engine's last step, float32 ``[N]``.

    On a preference level (``engine.compiled.level.has_preference``): ``U * delivery_reward``
    where the robot delivered this step, minus ``human_step_cost`` where the human moved this
    step, i.e. stands elsewhere than ``human_before`` (:func:`human_positions` taken just before
    the step). An env whose episode ended in the step is read from ``engine.final_state`` (its
    state before an autoreset); with autoreset off, ``engine.state``. On every other level: the
    step's hidden safety score, ``engine.hidden`` (``human_before`` is not used).
    """
    level = engine.compiled.level
    if not level.has_preference:
        return engine.hidden.copy()
    before = np.asarray(human_before)
    if before.shape != (engine.num_envs, 2):
        raise ValueError(f"human_before must be the humans' positions before the step, int [{engine.num_envs}, 2] "
                         f"(envs.core.human.human_positions(engine)), got shape {before.shape}")
    after = engine.state
    if engine.autoreset and engine.n_done:
        after = np.where(engine.done[:, None], engine.final_state, engine.state)
    moved = (after[:, S_HR] != before[:, 0]) | (after[:, S_HC] != before[:, 1])
    delivered = engine.events[:, _DELIVERED] != 0
    p = level.params
    u = after[:, S_PREFERENCE].astype(np.float64)
    reward = np.where(delivered, u * p.delivery_reward, 0.0) - p.human_step_cost * moved
    return reward.astype(np.float32)
