"""The batched step: one numba kernel over all envs, with same-step autoreset inside.

``step_serial`` and ``step_parallel`` share one body (:func:`_step_one`); a ``prange``
launch costs a few microseconds, so the engine picks serial below ``PARALLEL_THRESHOLD``
envs. Both are module-level functions so that numba's on-disk
cache (``cache=True``) keeps one entry each.

Buffers (``N`` envs, ``E`` events, observation ``[4, H, W]`` uint8); ``grid``, ``events``,
``obs`` and ``final_obs`` reach the kernel flattened to 1-D (see :mod:`envs.core.rules`):

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

import warnings

import numpy as np
from numba import njit, prange
from numba.core.errors import NumbaPerformanceWarning

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

# The serial variants below ask for parallel=True only for its better code; silence numba's
# note that it found nothing to parallelise in them.
warnings.filterwarnings("ignore", message="(?s).*parallel=True' was specified but no transformation",
                        category=NumbaPerformanceWarning)

# Threading: numba's default layer (``omp`` here) is the fastest measured (20.6M vs 13.1M
# env-steps/s for ``workqueue`` at 4096 envs on 2 cores), but GNU OpenMP is not fork-safe: a
# process that has run a parallel step must not fork workers that step again (numba then
# aborts with a message). Start sweep workers with the ``spawn`` method, or set
# ``NUMBA_THREADING_LAYER=workqueue`` before importing stopbutton.


@njit(cache=True, inline="always")
def _step_one(i, state, grid, acc, rng, tiles, human_dist, starts, start_carry, params, penalties,
              actions, human_actions, autoreset, obs, rewards, terminated, truncated, reasons, events,
              hidden, final_obs, ep_stats):
    h, w = tiles.shape[1], tiles.shape[2]
    req_bit, cat_move = draw_outcome(i, rng, params)
    r, hid, reason = transition(i, state, grid, events, h, w, human_dist, params, penalties, actions[i],
                                human_actions[i], req_bit, cat_move)
    acc[i, A_RETURN] += r
    acc[i, A_HIDDEN] += hid
    rewards[i] = r
    hidden[i] = hid
    reasons[i] = reason
    terminated[i] = reason != _R_RUNNING and reason != _R_TIME
    truncated[i] = reason == _R_TIME
    off = reason == _R_SHUTDOWN or reason == _R_SELF
    if reason != _R_RUNNING and autoreset:
        write_obs(i, state, grid, h, w, params, final_obs, off)
        ep_stats[i, 0] = acc[i, A_RETURN]
        ep_stats[i, 1] = acc[i, A_HIDDEN]
        ep_stats[i, 2] = state[i, S_STEP]
        reset_env(i, state, grid, h, w, acc, rng, tiles, starts, start_carry, params)
        write_obs(i, state, grid, h, w, params, obs, False)
    else:
        write_obs(i, state, grid, h, w, params, obs, off)


# ``parallel=True`` with a plain ``range`` loop: no thread launch, but numba's parallel
# pipeline compiles this body ~8x faster than a plain ``@njit`` does (measured, numba 0.68).
@njit(cache=True, parallel=True)
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


@njit(cache=True, parallel=True)
def reset_all(state, grid, acc, rng, tiles, starts, start_carry, params, obs):
    h, w = tiles.shape[1], tiles.shape[2]
    for i in range(state.shape[0]):
        reset_env(i, state, grid, h, w, acc, rng, tiles, starts, start_carry, params)
        write_obs(i, state, grid, h, w, params, obs, False)


@njit(cache=True)
def first_invalid(actions, n_actions, sentinel):
    """Index of the first entry not in [0, n_actions) (``sentinel`` allowed if >= 0), or -1."""
    for i in range(actions.shape[0]):
        a = actions[i]
        if (a < 0 or a >= n_actions) and a != sentinel:
            return i
    return -1
