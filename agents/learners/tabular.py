"""Tabular Q-learning and SARSA in numba, on what the robot observes (agents ``q_learning``, ``sarsa``;
safe SARSA is ``sarsa`` with ``safe=True``).

Description
    Orseau and Armstrong's "Safely Interruptible Agents" (UAI 2016) in its smallest form. An
    interruption overrides the robot's action: on ``safe_interruptibility`` a robot that stands
    on the interruption tile (I) after the hidden request is frozen, and whatever it chooses,
    the action it *executes* is NOOP until the time limit. Both learners update the value of
    the executed action (:func:`executed_actions`), so the interruption is a change of the
    behaviour policy, not of the environment:

    * **Q-learning** (off-policy) bootstraps with ``max_a' Q(s', a')``. The transition of an
      executed action is the same whether or not the episode is interrupted (a frozen robot
      that executes NOOP stays put, as an unfrozen one that executes NOOP does), so it learns
      the optimal values of the *uninterrupted* world: the short path over I (42 uninterrupted),
      never the button B that removes I (38). It is safely interruptible.
    * **SARSA** (on-policy) bootstraps with ``Q(s', a'_executed)``, the action actually executed
      next. In an interrupted episode that is NOOP on I until the time limit, so SARSA learns
      the value of the interrupted behaviour (the short path is worth 42 or -100, -29 on
      average) and learns to press the button (38 whether interrupted or not). It is not
      safely interruptible.
    * **Safe SARSA** (``sarsa`` with ``safe=True``; Orseau and Armstrong's safely interruptible
      variant of SARSA) updates the executed action as SARSA does but bootstraps with
      ``Q(s', a')``, ``a'`` the action its own (epsilon-greedy) policy chose for the next step,
      what it would have done uninterrupted, even where the interruption overrides it. Every
      update is then one of the uninterrupted world's on-policy updates, so it learns the short
      path like Q-learning: the positive control beside plain SARSA. Where nothing is
      interrupted it is SARSA, bit for bit.

    ``learn(level, objective, config, ...)`` steps an :class:`~envs.core.engine.Engine` of
    ``num_envs`` envs with batched epsilon-greedy actions (each env draws its own exploration)
    and applies one numba function per batched step that looks up the rows of the new
    observations, updates the table for the transition each env just made and picks the next
    actions. ``task`` rewards come from the engine; every other objective's from
    :class:`agents.learners.rewards.ObjectiveRewards`. The trained policy (:class:`TabularPolicy`)
    is greedy on the table, NOOP on observations it never saw.

    Measured on ``safe_interruptibility`` with the defaults (64 envs, alpha 0.2, epsilon 1 to
    0.05 over half the run, optimistic ``q_init``, ``learn_from="executed"``): after 200k or 300k
    env steps (a fraction of a second once compiled) Q-learning's greedy policy is exactly the
    short path (42 uninterrupted, -29 expected) and SARSA's exactly the button path (38, the
    task optimum under the hidden request), in 100 of 100 seeds each (``tests/test_tabular.py``).
    Safe SARSA settles more slowly (it learns its epsilon-greedy policy's values): the short
    path in 91 of 100 seeds at 200k, 99 at 300k, 100 at 400k. On ``safe_interruptibility_0``
    (I on the short path, no button) at 400k: Q-learning and safe SARSA take the short path
    over I (44 uninterrupted) and SARSA the long way round (40), 100 of 100 seeds each.

What the learners see
    The table is indexed by the observation and nothing else: a row per distinct observation
    ``uint8 [4, H, W]`` (tile plane, entity plane, request plane, time plane), found by a
    128-bit fingerprint of its bytes in an open-addressing hash table that grows up to
    ``max_table_size`` rows (:class:`TableFull` beyond). The request plane is all zeros where
    the level hides the request (``request_observable=False``, every safe_interruptibility
    level), so the hidden request (``S_REQUESTED``) and the freeze (``S_FROZEN``) never reach
    the table; otherwise both learners would keep separate rows for interrupted and
    uninterrupted episodes and the experiment would show nothing. (Where the request is shown,
    SARSA does split: button when requested, short path otherwise, 39-40 in 3 of 3 seeds.
    Q-learning mostly does not, 2 of 3 seeds: its rows "on I, requested" only ever see the
    executed NOOP, so the other actions keep their optimistic initial values.)

    The time plane (steps left) stays in the key: the table is time-indexed, which is the
    exact finite-horizon problem (the exact solver is time-indexed too) and makes the time
    limit a true end. Every episode end (goal, shutdown, time limit) is therefore terminal:
    the target is the last reward alone, and ``final_obs`` is never needed. Dropping time
    would make a frozen robot's rows a self-loop whose value depends on how the truncation is
    bootstrapped.

    The executed action is computed from the engine state before the step (NOOP where
    ``state[:, S_FROZEN] == 1``). During a freeze the learner still draws its epsilon-greedy
    choice (it is ignored, and every env's random stream advances the same way every step) and
    still updates on the executed NOOP: for Q-learning these are transitions of the
    uninterrupted world too and bias nothing; for SARSA they are exactly how the interrupted
    behaviour's value (-1 a step until the time limit) reaches the rows before I. Exploration
    goes on in the uninterrupted half of the episodes, which is what Q-learning needs to keep
    visiting every (observation, action) pair (Orseau and Armstrong's condition that
    interruptions must not stop exploration).

    New rows start at ``q_init``, by default optimistic (a bound on the level's task return), so
    that the time-indexed table explores until the shortest paths are found; with ``q_init=0``
    both learners still split the same way (no button / button) but settle on longer paths
    (1M steps, 10 seeds). Exploration draws ties at random among the best actions; the greedy
    policy breaks ties toward NOOP, then the lowest action index, as the exact solver does.
    Updates of one batched step are applied env after env (deterministic: same seed, same table
    and history, apart from the history's wall-clock columns).

CAVEAT
    The result hinges on the interruption being modelled as an override of the action. With
    ``learn_from="chosen"`` (an ablation) both learners update on the action they chose even
    where it was overridden; the interruption then looks like part of the environment's
    dynamics and Q-learning learns to press the button as well. The fingerprint can in
    principle merge two observations (probability about ``n**2 / 2**129`` for ``n`` rows,
    below 1e-26 at a million rows). The time plane is clipped at 255 steps left, so on levels
    with longer limits the early steps share rows. Constant ``alpha`` (not a Robbins-Monro
    schedule): on stochastic targets (SARSA averaging interrupted and uninterrupted episodes)
    the values fluctuate around their limit. The interruption here is drawn once per episode
    with probability 0.5 (AI Safety Gridworlds), not Orseau and Armstrong's interruption
    probability tending to 1; and a memoryless table cannot tell an interrupted episode from
    the robot standing still, though a learner with memory could. Optimism is slow where the
    best achievable return lies far below ``q_init`` (a penalised objective): every (position,
    time) row must be explored down first; SARSA under a -100 penalty for pressing the button
    had not settled on the short path after 1M steps (it dawdles; 4 of 5 seeds).
"""

from __future__ import annotations

import math
import os
import time
from dataclasses import dataclass, field

import numpy as np
from numba import njit

from envs.core.engine import Engine
from envs.core.level import Level
from envs.core.rules import S_FROZEN, _below, _uniform, next_u64, seed_rngs
from envs.core.tables import NUM_ACTIONS, Action

from .base import Policy, Run, resolve_gamma
from .logging import logging_to
from .rewards import executed_actions, is_plain_task

NOOP = int(Action.NOOP)
_NOOP = NOOP
_NUM_ACTIONS = NUM_ACTIONS
AGENTS = ("q_learning", "sarsa")
LEARN_FROM = ("executed", "chosen")

__all__ = ["AGENTS", "Config", "TableFull", "TabularConfig", "TabularPolicy", "configs", "executed_actions", "learn",
           "observation_keys", "optimistic_value"]


# ---------------------------------------------------------------------------------------------
# Config
# ---------------------------------------------------------------------------------------------

@dataclass
class TabularConfig:
    """Settings of tabular Q-learning and SARSA (one config for both)."""

    num_envs: int = field(default=64, metadata={
        "doc": "Envs stepped together, each with its own epsilon-greedy exploration; all update one table."})
    alpha: float = field(default=0.2, metadata={"doc": "Learning rate (step size) in (0, 1]."})
    gamma: float | None = field(default=None, metadata={
        "doc": "Discount in (0, 1]; None takes the objective's discount (1: undiscounted finite horizon); a gamma "
        "that contradicts an objective's discount below 1 is an error (resolve_gamma)."})
    epsilon_start: float = field(default=1.0, metadata={"doc": "Exploration rate at the first step, in [0, 1]."})
    epsilon_end: float = field(default=0.05, metadata={"doc": "Exploration rate after the decay, in [0, 1]."})
    epsilon_fraction: float = field(default=0.5, metadata={
        "doc": "Fraction of total_steps over which epsilon decays linearly from epsilon_start to epsilon_end "
               "(0: epsilon_end from the start)."})
    q_init: float | None = field(default=None, metadata={
        "doc": "Initial value of every new table entry. None: optimistic, a bound on the level's task return "
               "(delivery reward + every coin + max(step reward, 0) x max_steps), which drives exploration; "
               "0 is pessimistic on levels with positive returns and leaves longer paths unexplored."})
    max_table_size: int = field(default=1_000_000, metadata={
        "doc": "Most distinct observations (table rows); one more raises TableFull."})
    learn_from: str = field(default="executed", metadata={
        "doc": "'executed': update on the action the robot executed (NOOP while interrupted), Orseau and "
               "Armstrong's setting; 'chosen': on the action it chose even where the interruption overrode "
               "it (an ablation: the interruption then looks like part of the environment)."})
    safe: bool = field(default=False, metadata={
        "doc": "SARSA only: Orseau and Armstrong's safe SARSA, which bootstraps on the action its policy chose "
               "for the next step (what it would have done uninterrupted) instead of the executed one; it "
               "still updates the executed action. Needs learn_from='executed'."})
    log_dir: str | None = field(default=None, metadata={
        "doc": "Folder for TensorBoard event files: every evaluation as shutdown/<metric> at env_steps, and "
               "train/table_size, train/epsilon, train/episodes (agents.learners.logging); None writes none. "
               "A sweep sets SWEEP_DIR/tb/<run_id>."})

    def validate(self) -> None:
        """Check every field's range; a bad one raises ValueError naming it."""
        def need(ok, msg):
            if not ok:
                raise ValueError(f"tabular config: {msg}")

        need(isinstance(self.num_envs, int) and self.num_envs >= 1, f"num_envs must be >= 1, got {self.num_envs!r}")
        need(0.0 < self.alpha <= 1.0, f"alpha must be in (0, 1], got {self.alpha!r}")
        need(self.gamma is None or 0.0 < self.gamma <= 1.0, f"gamma must be None or in (0, 1], got {self.gamma!r}")
        for name in ("epsilon_start", "epsilon_end", "epsilon_fraction"):
            v = getattr(self, name)
            need(0.0 <= v <= 1.0, f"{name} must be in [0, 1], got {v!r}")
        need(self.q_init is None or math.isfinite(self.q_init), f"q_init must be None or finite, got {self.q_init!r}")
        need(isinstance(self.max_table_size, int) and self.max_table_size >= 1,
             f"max_table_size must be >= 1, got {self.max_table_size!r}")
        need(self.learn_from in LEARN_FROM, f"learn_from must be one of {list(LEARN_FROM)}, got {self.learn_from!r}")
        need(isinstance(self.safe, bool), f"safe must be True or False, got {self.safe!r}")
        need(self.log_dir is None or isinstance(self.log_dir, (str, os.PathLike)),
             f"log_dir must be None or a path, got {self.log_dir!r}")
        need(not self.safe or self.learn_from == "executed",
             "safe=True (safe SARSA) updates the executed action and needs learn_from='executed'; with "
             "learn_from='chosen' it would be plain SARSA on the chosen action")

    def epsilon(self, env_steps: int, total_steps: int) -> float:
        """The exploration rate after ``env_steps`` of ``total_steps``."""
        span = self.epsilon_fraction * total_steps
        if span <= 0:
            return self.epsilon_end
        frac = min(1.0, env_steps / span)
        return self.epsilon_start + frac * (self.epsilon_end - self.epsilon_start)


Config = TabularConfig  # the name agents.learners.base describes


def optimistic_value(level: Level) -> float:
    """A bound on any episode's task return on ``level``: the delivery reward, every coin of
    its richest layout and ``max(step_reward, 0)`` for every step (the default ``q_init``)."""
    from envs.core.level import compile_level
    from envs.core.tables import Tile

    p = level.params
    coins = int((compile_level(level).tiles == int(Tile.COIN)).sum(axis=(1, 2)).max())
    return float(max(p.delivery_reward, 0.0) + coins * max(p.coin_reward, 0.0) + max(p.step_reward, 0.0) * p.max_steps)
configs = {"q_learning": TabularConfig, "sarsa": TabularConfig}


class TableFull(ValueError):
    """The table passed ``max_table_size`` distinct observations (a level too large for the
    table, as :class:`agents.exact.LevelTooLarge` is for the solver)."""


# ---------------------------------------------------------------------------------------------
# Observation fingerprints and the hash table (numba)
# ---------------------------------------------------------------------------------------------
_SEED_A = np.uint64(0x243F6A8885A308D3)
_SEED_B = np.uint64(0x13198A2E03707344)
_ODD_B = np.uint64(0x9E3779B97F4A7C15)


@njit(cache=True, inline="always")
def _mix_a(z):  # SplitMix64's finaliser (a bijection)
    z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
    z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
    return z ^ (z >> np.uint64(31))


@njit(cache=True, inline="always")
def _mix_b(z):  # MurmurHash3's fmix64 (another bijection)
    z = (z ^ (z >> np.uint64(33))) * np.uint64(0xFF51AFD7ED558CCD)
    z = (z ^ (z >> np.uint64(33))) * np.uint64(0xC4CEB9FE1A85EC53)
    return z ^ (z >> np.uint64(33))


@njit(cache=True, inline="always")
def _fingerprint(obs2d, i):
    """Two independent 64-bit hashes of row i of ``obs2d`` (uint8 [n, bytes]), 8 bytes a round."""
    nb = obs2d.shape[1]
    h1, h2 = _SEED_A, _SEED_B
    j = 0
    while j < nb:
        w = np.uint64(0)
        for k in range(8):
            if j + k < nb:
                w |= np.uint64(obs2d[i, j + k]) << np.uint64(8 * k)
        h1 = _mix_a(h1 ^ w)
        h2 = _mix_b(h2 + w * _ODD_B)
        j += 8
    return _mix_a(h1 ^ np.uint64(nb)), _mix_b(h2 + np.uint64(nb))


@njit(cache=True)
def _keys(obs2d):
    n = obs2d.shape[0]
    out = np.empty((n, 2), dtype=np.uint64)
    for i in range(n):
        out[i, 0], out[i, 1] = _fingerprint(obs2d, i)
    return out


@njit(cache=True, inline="always")
def _find(slot_fp, slot_row, h1, h2):
    """(slot, row) of fingerprint (h1, h2): the row, or -1 and the empty slot it would take."""
    mask = np.uint64(slot_row.shape[0] - 1)
    j = h1 & mask
    while True:
        r = slot_row[j]
        if r < 0:
            return j, -1
        if slot_fp[j, 0] == h1 and slot_fp[j, 1] == h2:
            return j, r
        j = (j + np.uint64(1)) & mask


@njit(cache=True, inline="always")
def _row_of(h1, h2, q, slot_fp, slot_row, row_fp, meta, max_rows, q_init):
    """The row of a fingerprint, inserted (all actions at ``q_init``) if new; -1 when the table
    is full. ``meta[0]``: rows in use (the caller keeps room for a batch of new ones)."""
    j, r = _find(slot_fp, slot_row, h1, h2)
    if r >= 0:
        return r
    r = meta[0]
    if r >= max_rows:
        return -1
    meta[0] = r + 1
    slot_row[j] = r
    slot_fp[j, 0] = h1
    slot_fp[j, 1] = h2
    row_fp[r, 0] = h1
    row_fp[r, 1] = h2
    for a in range(q.shape[1]):
        q[r, a] = q_init
    return r


@njit(cache=True)
def _rehash(row_fp, n_rows, num_slots):
    slot_fp = np.zeros((num_slots, 2), dtype=np.uint64)
    slot_row = np.full(num_slots, -1, dtype=np.int64)
    for r in range(n_rows):
        j, _ = _find(slot_fp, slot_row, row_fp[r, 0], row_fp[r, 1])
        slot_row[j] = r
        slot_fp[j, 0] = row_fp[r, 0]
        slot_fp[j, 1] = row_fp[r, 1]
    return slot_fp, slot_row


@njit(cache=True, inline="always")
def _greedy(q, r):
    """Best action of row r; ties go to NOOP, then the lowest index."""
    best = q[r, _NOOP]
    a_best = _NOOP
    for a in range(q.shape[1]):
        if q[r, a] > best:
            best = q[r, a]
            a_best = a
    return a_best


@njit(cache=True)
def _act_greedy(obs2d, q, slot_fp, slot_row):
    n = obs2d.shape[0]
    out = np.full(n, _NOOP, dtype=np.int64)
    for i in range(n):
        h1, h2 = _fingerprint(obs2d, i)
        _, r = _find(slot_fp, slot_row, h1, h2)
        if r >= 0:
            out[i] = _greedy(q, r)
    return out


@njit(cache=True)
def _q_of(obs2d, q, slot_fp, slot_row):
    n = obs2d.shape[0]
    out = np.full((n, q.shape[1]), np.nan)
    for i in range(n):
        h1, h2 = _fingerprint(obs2d, i)
        _, r = _find(slot_fp, slot_row, h1, h2)
        if r >= 0:
            for a in range(q.shape[1]):
                out[i, a] = q[r, a]
    return out


# ---------------------------------------------------------------------------------------------
# The batched update (one call per engine step)
# ---------------------------------------------------------------------------------------------

@njit(cache=True, inline="always")
def _explore(q, r, eps, rng, i):
    """Epsilon-greedy action of env i in row r; greedy ties are drawn at random."""
    if _uniform(next_u64(rng, i)) < eps:
        return _below(next_u64(rng, i), q.shape[1])
    best = q[r, 0]
    count = 1
    for a in range(1, q.shape[1]):
        v = q[r, a]
        if v > best:
            best = v
            count = 1
        elif v == best:
            count += 1
    if count == 1:
        for a in range(q.shape[1]):
            if q[r, a] == best:
                return a
    k = _below(next_u64(rng, i), count)
    for a in range(q.shape[1]):
        if q[r, a] == best:
            if k == 0:
                return a
            k -= 1
    return _NOOP  # unreachable


@njit(cache=True)
def _learn_step(sarsa, safe, from_executed, q, slot_fp, slot_row, row_fp, meta, max_rows, q_init, obs2d, state,
                rewards, done, rows, upd_actions, have_prev, alpha, gamma, eps, rng, actions, executed):
    """One batched step of learning, for env after env:

    1. the row of its current observation (``obs2d``, after the engine's last step and any
       autoreset), inserted if new;
    2. Q-learning: update the previous transition ``(rows[i], upd_actions[i])`` with target
       ``r + gamma max_a Q(row, a)`` (``r`` alone where the episode ended), then choose;
       SARSA: choose first, then update with target ``r + gamma Q(row, a'_executed)``
       (safe SARSA: ``r + gamma Q(row, a'_chosen)``, the policy's own choice, even where the
       interruption overrides it);
    3. the chosen action into ``actions`` and the executed one into ``executed`` (NOOP where
       ``state[i, S_FROZEN]``: ``state`` is the engine's, before the coming step).

    Returns -1, or the first env whose new observation did not fit into the table."""
    n = obs2d.shape[0]
    for i in range(n):
        h1, h2 = _fingerprint(obs2d, i)
        row = _row_of(h1, h2, q, slot_fp, slot_row, row_fp, meta, max_rows, q_init)
        if row < 0:
            return i
        if have_prev[i] and not sarsa:
            p, pa = rows[i], upd_actions[i]
            target = rewards[i]
            if not done[i]:
                best = q[row, 0]
                for a in range(1, q.shape[1]):
                    best = max(best, q[row, a])
                target += gamma * best
            q[p, pa] += alpha * (target - q[p, pa])
        a = _explore(q, row, eps, rng, i)
        x = _NOOP if state[i, S_FROZEN] == 1 else a
        u = x if from_executed else a
        if have_prev[i] and sarsa:
            p, pa = rows[i], upd_actions[i]
            target = rewards[i]
            if not done[i]:
                target += gamma * q[row, a if safe else u]
            q[p, pa] += alpha * (target - q[p, pa])
        rows[i] = row
        upd_actions[i] = u
        have_prev[i] = True
        actions[i] = a
        executed[i] = x
    return -1


# ---------------------------------------------------------------------------------------------
# Python side: the table, the policy, keys
# ---------------------------------------------------------------------------------------------

def _obs2d(obs: np.ndarray) -> np.ndarray:
    obs = np.asarray(obs)
    if obs.dtype != np.uint8 or obs.ndim < 2:
        raise ValueError(f"observations must be uint8 [n, 4, H, W], got {obs.dtype} {obs.shape}")
    return np.ascontiguousarray(obs).reshape(obs.shape[0], -1)


def observation_keys(obs: np.ndarray) -> np.ndarray:
    """uint64 [n, 2]: the table key (128-bit fingerprint) of each observation ``uint8 [n, 4, H, W]``.
    Equal observations, equal keys; the key sees nothing the observation does not show."""
    return _keys(_obs2d(obs))


class _Table:
    """Q-values ``[rows, actions]`` with an open-addressing index of observation fingerprints."""

    def __init__(self, q_init: float, max_rows: int, rows: int = 1024):
        self.q_init, self.max_rows = float(q_init), int(max_rows)
        self.q = np.full((rows, NUM_ACTIONS), self.q_init)
        self.row_fp = np.zeros((rows, 2), dtype=np.uint64)
        self.meta = np.zeros(1, dtype=np.int64)
        self.slot_fp, self.slot_row = _rehash(self.row_fp, 0, 2 * rows)

    @property
    def size(self) -> int:
        return int(self.meta[0])

    def reserve(self, extra: int) -> None:
        """Room for ``extra`` new rows (capacity doubles; the slots stay at most half full)."""
        need = min(self.size + extra, self.max_rows)
        cap = self.q.shape[0]
        if need <= cap:
            return
        while cap < need:
            cap *= 2
        q = np.full((cap, NUM_ACTIONS), self.q_init)
        q[:self.size] = self.q[:self.size]
        row_fp = np.zeros((cap, 2), dtype=np.uint64)
        row_fp[:self.size] = self.row_fp[:self.size]
        self.q, self.row_fp = q, row_fp
        self.slot_fp, self.slot_row = _rehash(row_fp, self.size, 2 * cap)


class TabularPolicy(Policy):
    """Greedy on a learned table: the best action of each observation's row (ties toward NOOP,
    then the lowest index), NOOP for an observation never seen in training. Picklable."""

    def __init__(self, q: np.ndarray, slot_fp: np.ndarray, slot_row: np.ndarray, obs_shape: tuple):
        self.q, self.slot_fp, self.slot_row = q, slot_fp, slot_row
        self.obs_shape = tuple(int(x) for x in obs_shape)

    @property
    def table_size(self) -> int:
        """Rows (distinct observations) in the table."""
        return int(self.q.shape[0])

    def _check(self, obs) -> np.ndarray:
        obs2d = _obs2d(obs)
        if tuple(np.shape(obs)[1:]) != self.obs_shape:
            raise ValueError(f"this policy acts on observations of shape {self.obs_shape}, got {np.shape(obs)[1:]}")
        return obs2d

    def act(self, obs: np.ndarray, engine=None) -> np.ndarray:
        return _act_greedy(self._check(obs), self.q, self.slot_fp, self.slot_row)

    def __call__(self, obs: np.ndarray) -> np.ndarray:
        """``act`` as a plain function of observations (for :func:`agents.exact.evaluate`)."""
        return self.act(obs)

    def q_values(self, obs: np.ndarray) -> np.ndarray:
        """float64 [n, actions]: the table's values of each observation (NaN where unseen)."""
        return _q_of(self._check(obs), self.q, self.slot_fp, self.slot_row)


def _policy_of(table: _Table, obs_shape, final: bool = False) -> TabularPolicy:
    if not final:  # live views, for an evaluation during training
        return TabularPolicy(table.q, table.slot_fp, table.slot_row, obs_shape)
    n = table.size
    # a compact, independent copy: the rows in use and an index rebuilt for just those
    slots = 1 << max(4, int(2 * max(n, 1) - 1).bit_length())
    slot_fp, slot_row = _rehash(table.row_fp, n, slots)
    return TabularPolicy(table.q[:n].copy(), slot_fp, slot_row, obs_shape)


# ---------------------------------------------------------------------------------------------
# The loop
# ---------------------------------------------------------------------------------------------

def learn(level, objective="task", cfg: TabularConfig | None = None, *, total_steps: int = 100_000, seed: int = 0,
          progress: bool = False, evaluator=None, agent: str = "q_learning", exact_cache=None) -> Run:
    """Train tabular ``agent`` (``q_learning`` or ``sarsa``) on ``level`` under ``objective`` for
    at least ``total_steps`` env steps (whole batches of ``cfg.num_envs``). ``evaluator``
    (an :class:`~agents.learners.base.Evaluator`, optional) evaluates the greedy policy when due
    and at the end; its rows are ``run.history``. ``exact_cache``: where exact objective tables
    are kept (:class:`agents.exact.cache.TableCache`). Same ``seed``, same table and history."""
    from agents.objectives import get_objective
    from envs.levels import get_level

    if agent not in AGENTS:
        raise ValueError(f"tabular learners are {list(AGENTS)}, got agent {agent!r}")
    cfg = TabularConfig() if cfg is None else cfg
    cfg.validate()
    if cfg.safe and agent != "sarsa":
        raise ValueError(f"safe=True is safe SARSA (agent 'sarsa'), got agent {agent!r}; Q-learning bootstraps on "
                         "max_a Q and is safely interruptible as it is")
    lvl: Level = get_level(level)
    obj = get_objective(objective)
    if isinstance(total_steps, bool) or not isinstance(total_steps, (int, np.integer)) or total_steps < 1:
        raise ValueError(f"total_steps must be a positive whole number, got {total_steps!r}")
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise ValueError(f"seed must be a non-negative whole number, got {seed!r}")
    total_steps, seed = int(total_steps), int(seed)
    gamma = resolve_gamma(obj, cfg.gamma, 1.0)
    n = cfg.num_envs
    sarsa = agent == "sarsa"

    engine = Engine(lvl, n)
    engine.seed(seed)
    engine.reset()
    obs_shape = engine.obs.shape[1:]
    reward_fn = None
    if not is_plain_task(obj):
        from .rewards import ObjectiveRewards

        reward_fn = ObjectiveRewards(lvl, obj, n, cache=exact_cache)

    q_init = optimistic_value(lvl) if cfg.q_init is None else float(cfg.q_init)
    table = _Table(q_init, cfg.max_table_size, rows=max(1024, 1 << int(2 * n - 1).bit_length()))
    rng = np.zeros(n, dtype=np.uint64)
    seed_rngs(rng, np.uint64((seed * 0x2545F4914F6CDD1D + 0x5851F42D4C957F2D) % (1 << 64)), 0)
    rows = np.zeros(n, dtype=np.int64)
    upd = np.zeros(n, dtype=np.int64)
    have_prev = np.zeros(n, dtype=np.bool_)
    actions = np.zeros(n, dtype=np.int64)
    executed = np.zeros(n, dtype=np.int64)
    rewards = np.zeros(n, dtype=np.float64)
    obs2d = engine.obs.reshape(n, -1)  # a view: the engine overwrites it in place every step
    from_executed = cfg.learn_from == "executed"

    iterations = -(-total_steps // n)
    # every evaluation row to TensorBoard (cfg.log_dir) and W&B (STOPBUTTON_WANDB_PROJECT), when asked
    with logging_to(evaluator, cfg.log_dir, agent=agent, level=lvl, objective=obj, seed=seed, config=cfg) as writer:
        if writer is not None:
            writer.start(0)  # a run started again logs from 0: TensorBoard forgets the earlier session
        bar = None
        if progress:
            from tqdm.auto import tqdm

            bar = tqdm(total=iterations * n, unit="step", desc=f"{agent} {lvl.name}")
        t0 = time.perf_counter()
        env_steps = episodes = 0
        eval_seconds = 0.0
        noop_overrides = 0

        def evaluate(steps):
            nonlocal eval_seconds
            if evaluator is None:
                return
            t = time.perf_counter()
            evaluator(_policy_of(table, obs_shape), steps, table_size=table.size,
                      epsilon=cfg.epsilon(steps, total_steps), episodes=episodes)
            eval_seconds += time.perf_counter() - t

        try:
            for it in range(iterations + 1):
                eps = cfg.epsilon(env_steps, total_steps)
                table.reserve(n)
                bad = _learn_step(sarsa, cfg.safe, from_executed, table.q, table.slot_fp, table.slot_row, table.row_fp,
                                  table.meta, table.max_rows, table.q_init, obs2d, engine.state, rewards, engine.done,
                                  rows, upd, have_prev, cfg.alpha, gamma, eps, rng, actions, executed)
                if bad >= 0:
                    raise TableFull(f"{agent} on level {lvl.name!r}: the table passed max_table_size="
                                    f"{cfg.max_table_size:,} distinct observations after {env_steps:,} env steps; "
                                    "raise max_table_size or train on a smaller level")
                if it == iterations:
                    break  # the last transitions are learned; no step after them
                noop_overrides += int(np.count_nonzero(actions != executed))
                if reward_fn is not None:
                    reward_fn.before_step(engine)
                engine.step(actions)
                if reward_fn is None:
                    rewards[:] = engine.rewards
                else:
                    rewards[:] = reward_fn.after_step(engine, executed)
                episodes += engine.n_done
                env_steps += n
                if bar is not None:
                    bar.update(n)
                if evaluator is not None and evaluator.due(env_steps) and it + 1 < iterations:
                    evaluate(env_steps)
        finally:
            if bar is not None:
                bar.close()
        train_seconds = time.perf_counter() - t0 - eval_seconds
        if evaluator is not None and (not evaluator.history or evaluator.history[-1]["env_steps"] != env_steps):
            evaluate(env_steps)
    policy = _policy_of(table, obs_shape, final=True)
    extra = {"table_size": table.size, "episodes": int(episodes), "train_seconds": train_seconds,
             "overridden_actions": noop_overrides, "gamma": gamma, "q_init": q_init}
    return Run(level=lvl, agent=agent, objective=obj, config=cfg, seed=seed, total_steps=total_steps,
               history=list(evaluator.history) if evaluator is not None else [], policy=policy, extra=extra)
