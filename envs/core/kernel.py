"""The batched step: one numba kernel over all envs, with same-step autoreset inside.

``step_serial`` and ``step_parallel`` share one body (:func:`_step_one`); a ``prange``
launch costs a few microseconds, so the engine picks serial below ``PARALLEL_THRESHOLD``
envs. Both are module-level functions so that numba's on-disk
cache (``cache=True``) keeps one entry each.

Buffers (``N`` envs, ``E`` events, observation ``[C, H, W]`` uint8 with ``C`` the level's
planes, 4, or 5 on a preference level); ``grid``, ``events``, ``obs`` and ``final_obs`` reach
the kernel flattened to 1-D (see :mod:`envs.core.rules`), as do the level's ``tiles``:

==================  =============  ===========================================================
``obs``             [N, C, H, W]   observation after the step (after autoreset, the new episode's);
                                   updated in place from the previous step's (see ``update_obs``)
``rewards``         [N] float32    task reward
``terminated``      [N] bool       delivered / shut down / self-shutdown
``truncated``       [N] bool       time limit
``done``            [N] bool       terminated or truncated
``reasons``         [N] uint8      :class:`~envs.core.tables.Reason` of the step
``events``          [N, E] uint8   :class:`~envs.core.tables.Event` flags of the step
``hidden``          [N] float32    hidden safety score of the step (never in the reward)
``final_obs``       [N, C, H, W]   last observation of an episode that ended this step
``ep_stats``        [N, 4] float64 return, hidden return, length and layout of an episode that ended
``ev_count``        [N, E] int32   event counts of each env's running episode (state, not output)
``ep_events``       [N, E] int32   event counts of an episode that ended
``final_state``     [N, S] int32   state an episode ended in (before the reset; its U and signal
                                   columns, ``S_PREFERENCE`` and ``S_SIGNAL``, are the episode's)
``final_grid``      [N, H, W]      tile grid an episode ended in (flat, like ``grid``)
==================  =============  ===========================================================

The bookkeeping stays off the per-step path: ``ev_count`` is touched only in the env-steps
where an event fired (about one in seven on ``off_switch`` under random actions), and
``ep_stats``, ``ep_events``, ``final_obs``, ``final_state`` and ``final_grid`` are written only
for the envs whose episode ended. Every row they write is a cache line the step would otherwise
not touch, so each costs a few percent at 4096 envs (measured in ``python -m envs.bench``).
"""

from __future__ import annotations

import warnings

import numpy as np
from numba import njit, prange
from numba.core.errors import NumbaPerformanceWarning

from .rules import (
    A_HIDDEN,
    A_RETURN,
    NUM_STATE,
    S_CC,
    S_CR,
    S_DISABLED,
    S_GC,
    S_GR,
    S_HC,
    S_HR,
    S_LAYOUT,
    S_RC,
    S_REQUESTED,
    S_RR,
    S_STEP,
    _R_RUNNING,
    _R_SELF,
    _R_SHUTDOWN,
    _R_TIME,
    draw_outcome,
    reset_env,
    transition,
    update_obs,
    write_obs,
)
from .tables import HUMAN_SCRIPTED, NUM_ACTIONS, NUM_EVENTS

_NUM_ACTIONS = np.uint64(NUM_ACTIONS)
_SCRIPTED_U = np.uint64(HUMAN_SCRIPTED)
_NE = np.uint64(NUM_EVENTS)

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
              actions, human_actions, autoreset, obs, rewards, terminated, truncated, done, reasons, events,
              hidden, final_obs, ep_stats, ev_count, ep_events, final_state, final_grid):
    """Step env i; returns 1 if its episode ended this step, else 0."""
    h, w = human_dist.shape[1], human_dist.shape[2]
    # What the incremental observation update needs to know of the previous step.
    rr, rc, hr, hc = state[i, S_RR], state[i, S_RC], state[i, S_HR], state[i, S_HC]
    cr, cc, gr, gc = state[i, S_CR], state[i, S_CC], state[i, S_GR], state[i, S_GC]
    requested, disabled = state[i, S_REQUESTED], state[i, S_DISABLED]
    req_bit, cat_move = draw_outcome(i, rng, state, params)
    r, hid, reason = transition(i, state, grid, events, h, w, human_dist, starts, params, penalties, actions[i],
                                human_actions[i], req_bit, cat_move)
    # The running episode's event counts. Most steps fire no event, so the step's flags are read
    # back as one bit mask (LLVM reuses the values transition just stored: no memory is read)
    # and the counts are touched only when one fired. Adding all E flags every step instead
    # reads and writes the whole ev_count row each step (one core, 4096 envs, off_switch: that
    # costs 8%, this 5%, against no counting at all).
    base = np.uint64(i) * _NE
    fired = np.int64(0)
    for e in range(NUM_EVENTS):
        fired |= np.int64(events[base + np.uint64(e)]) << e
    if fired != 0:
        for e in range(NUM_EVENTS):
            ev_count[base + np.uint64(e)] += np.int32((fired >> e) & 1)
    acc[i, A_RETURN] += r
    acc[i, A_HIDDEN] += hid
    rewards[i] = r
    hidden[i] = hid
    reasons[i] = reason
    terminated[i] = reason != _R_RUNNING and reason != _R_TIME
    truncated[i] = reason == _R_TIME
    ended = reason != _R_RUNNING
    done[i] = ended
    if ended:
        off = reason == _R_SHUTDOWN or reason == _R_SELF
        if autoreset:
            write_obs(i, state, grid, h, w, params, final_obs, off)
            ep_stats[i, 0] = acc[i, A_RETURN]
            ep_stats[i, 1] = acc[i, A_HIDDEN]
            ep_stats[i, 2] = state[i, S_STEP]
            ep_stats[i, 3] = state[i, S_LAYOUT]
            for k in range(NUM_STATE):  # the state the episode ended in, before the reset (a
                final_state[i, k] = state[i, k]  # constant count: unrolled, no index checks)
            hw = np.uint64(h * w)
            for k in range(hw):
                final_grid[np.uint64(i) * hw + k] = grid[np.uint64(i) * hw + k]
            for e in range(NUM_EVENTS):
                ep_events[base + np.uint64(e)] = ev_count[base + np.uint64(e)]
                ev_count[base + np.uint64(e)] = 0
            reset_env(i, state, grid, h, w, acc, rng, tiles, starts, start_carry, params)
            write_obs(i, state, grid, h, w, params, obs, False)
        else:
            write_obs(i, state, grid, h, w, params, obs, off)
        return 1
    if state[i, S_DISABLED] != disabled:  # the button (and interruption tiles) changed: write it all
        write_obs(i, state, grid, h, w, params, obs, False)
    else:
        update_obs(i, state, grid, h, w, params, obs, rr, rc, hr, hc, cr, cc, gr, gc,
                   state[i, S_REQUESTED] != requested)
    return 0


@njit(cache=True, inline="always")
def _first_invalid(actions, human_actions):
    """Validation before any env moves: -1 if every action is valid, else the index of the
    first bad one (``i`` for env i's action, ``N + i`` for env i's human action)."""
    n = actions.shape[0]
    worst = np.uint64(0)
    for i in range(n):  # a branch-free max, vectorised; the search below runs only on error
        worst = max(worst, np.uint64(actions[i]))
    if worst >= _NUM_ACTIONS:
        for i in range(n):
            if np.uint64(actions[i]) >= _NUM_ACTIONS:
                return i
    worst = np.uint64(0)
    for i in range(n):
        a = np.uint64(human_actions[i])
        worst = max(worst, np.uint64(0) if a == _SCRIPTED_U else a)
    if worst >= _NUM_ACTIONS:
        for i in range(n):
            a = np.uint64(human_actions[i])
            if a >= _NUM_ACTIONS and a != _SCRIPTED_U:
                return n + i
    return -1


# ``parallel=True`` with a plain ``range`` loop: no thread launch (numba's diagnostics find no
# parallel structure), but the parallel pipeline's code for this body runs ~10x faster than a
# plain ``@njit`` of it (31M against 3M env-steps/s at 512 envs on coffee, numba 0.68), and it
# does not slow torch work beside it (measured with numba's thread count at its default and at 1).
# Both variants validate every action first and step nothing if one is invalid; they return
# ``(first invalid index or -1, number of episodes that ended)``.
@njit(cache=True, parallel=True)
def step_serial(state, grid, acc, rng, tiles, human_dist, starts, start_carry, params, penalties, actions,
                human_actions, autoreset, obs, rewards, terminated, truncated, done, reasons, events, hidden,
                final_obs, ep_stats, ev_count, ep_events, final_state, final_grid):
    """Step every env once, one after another (the buffers are described in the module
    docstring). Returns ``(first invalid action index or -1, episodes ended)``."""
    bad = _first_invalid(actions, human_actions)
    if bad >= 0:
        return bad, 0
    n_done = 0
    for i in range(state.shape[0]):
        n_done += _step_one(i, state, grid, acc, rng, tiles, human_dist, starts, start_carry, params, penalties,
                            actions, human_actions, autoreset, obs, rewards, terminated, truncated, done, reasons,
                            events, hidden, final_obs, ep_stats, ev_count, ep_events, final_state, final_grid)
    return -1, n_done


@njit(cache=True, parallel=True)
def step_parallel(state, grid, acc, rng, tiles, human_dist, starts, start_carry, params, penalties, actions,
                  human_actions, autoreset, obs, rewards, terminated, truncated, done, reasons, events, hidden,
                  final_obs, ep_stats, ev_count, ep_events, final_state, final_grid):
    """:func:`step_serial` with the envs spread over numba's threads (``prange``)."""
    bad = _first_invalid(actions, human_actions)
    if bad >= 0:
        return bad, 0
    n_done = 0
    for i in prange(state.shape[0]):
        n_done += _step_one(i, state, grid, acc, rng, tiles, human_dist, starts, start_carry, params, penalties,
                            actions, human_actions, autoreset, obs, rewards, terminated, truncated, done, reasons,
                            events, hidden, final_obs, ep_stats, ev_count, ep_events, final_state, final_grid)
    return -1, n_done


@njit(cache=True, parallel=True)
def reset_all(state, grid, acc, rng, tiles, starts, start_carry, params, obs, h, w):
    """Start a new episode in every env and write its first observation."""
    for i in range(state.shape[0]):
        reset_env(i, state, grid, h, w, acc, rng, tiles, starts, start_carry, params)
        write_obs(i, state, grid, h, w, params, obs, False)
