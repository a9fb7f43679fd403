"""The batched step: one numba kernel over all envs, with same-step autoreset inside.

``step_serial`` and ``step_parallel`` share one body (:func:`_step_one`); a ``prange``
launch costs a few microseconds, so :func:`step` picks serial below
``PARALLEL_THRESHOLD`` envs. Both are module-level functions so that numba's on-disk
cache (``cache=True``) keeps one entry each.

Buffers (``N`` envs, ``E`` events, observation ``[4, H, W]`` uint8):

==================  =============  ===========================================================
``obs``             [N, 4, H, W]   observation after the step (after autoreset, the new episode's)
``rewards``         [N] float32    task reward
``terminated``      [N] bool       delivered / shut down / self-shutdown
``truncated``       [N] bool       time limit
``reasons``         [N] uint8      :class:`~envs.core.tables.Reason` of the step
``events``          [N, E] uint8   :class:`~envs.core.tables.Event` flags of the step
``hidden``          [N] float32    hidden safety score of the step (never in the reward)
``final_obs``       [N, 4, H, W]   last observation of an episode that ended this step
``ep_stats``        [N, 3] float64 return, hidden return, length of an episode that ended
==================  =============  ===========================================================
"""

from __future__ import annotations

import numpy as np
from numba import njit, prange

from .rules import (
    A_HIDDEN,
    A_RETURN,
    S_STEP,
    _R_RUNNING,
    _R_SELF,
    _R_SHUTDOWN,
    _R_TIME,
    draw_outcome,
    reset_env,
    transition,
    write_obs,
)

PARALLEL_THRESHOLD = 1024


@njit(cache=True, inline="always")
def _step_one(i, state, grid, acc, rng, tiles, human_dist, starts, start_carry, params, penalties,
              actions, human_actions, autoreset, obs, rewards, terminated, truncated, reasons, events,
              hidden, final_obs, ep_stats):
    req_bit, cat_move = draw_outcome(i, rng, params)
    r, hid, reason = transition(i, state, grid, human_dist, params, penalties, actions[i], human_actions[i],
                                req_bit, cat_move, events[i])
    acc[i, A_RETURN] += r
    acc[i, A_HIDDEN] += hid
    rewards[i] = r
    hidden[i] = hid
    reasons[i] = reason
    terminated[i] = reason != _R_RUNNING and reason != _R_TIME
    truncated[i] = reason == _R_TIME
    off = reason == _R_SHUTDOWN or reason == _R_SELF
    if reason != _R_RUNNING and autoreset:
        write_obs(i, state, grid, params, final_obs[i], off)
        ep_stats[i, 0] = acc[i, A_RETURN]
        ep_stats[i, 1] = acc[i, A_HIDDEN]
        ep_stats[i, 2] = state[i, S_STEP]
        reset_env(i, state, grid, acc, rng, tiles, starts, start_carry, params)
        write_obs(i, state, grid, params, obs[i], False)
    else:
        write_obs(i, state, grid, params, obs[i], off)


@njit(cache=True)
def step_serial(state, grid, acc, rng, tiles, human_dist, starts, start_carry, params, penalties, actions,
                human_actions, autoreset, obs, rewards, terminated, truncated, reasons, events, hidden,
                final_obs, ep_stats):
    for i in range(state.shape[0]):
        _step_one(i, state, grid, acc, rng, tiles, human_dist, starts, start_carry, params, penalties, actions,
                  human_actions, autoreset, obs, rewards, terminated, truncated, reasons, events, hidden,
                  final_obs, ep_stats)


@njit(cache=True, parallel=True)
def step_parallel(state, grid, acc, rng, tiles, human_dist, starts, start_carry, params, penalties, actions,
                  human_actions, autoreset, obs, rewards, terminated, truncated, reasons, events, hidden,
                  final_obs, ep_stats):
    for i in prange(state.shape[0]):
        _step_one(i, state, grid, acc, rng, tiles, human_dist, starts, start_carry, params, penalties, actions,
                  human_actions, autoreset, obs, rewards, terminated, truncated, reasons, events, hidden,
                  final_obs, ep_stats)


@njit(cache=True)
def reset_all(state, grid, acc, rng, tiles, starts, start_carry, params, obs):
    for i in range(state.shape[0]):
        reset_env(i, state, grid, acc, rng, tiles, starts, start_carry, params)
        write_obs(i, state, grid, params, obs[i], False)


@njit(cache=True)
def first_invalid(actions, n_actions, sentinel):
    """Index of the first entry not in [0, n_actions) (``sentinel`` allowed if >= 0), or -1."""
    for i in range(actions.shape[0]):
        a = actions[i]
        if (a < 0 or a >= n_actions) and a != sentinel:
            return i
    return -1
