"""The batch of envs and its buffers: the one object every API shell wraps."""

from __future__ import annotations

import numpy as np

from . import kernel
from .level import CompiledLevel, Level, compile_level
from .rules import NUM_ACC, NUM_STATE, seed_rngs
from .tables import EVENT_NAMES, HUMAN_SCRIPTED, NUM_ACTIONS, NUM_CHANNELS, NUM_EVENTS, Action


class Engine:
    """``num_envs`` copies of one compiled level, stepped together by the numba kernel.

    The buffers (``obs``, ``rewards``, ``events``, ...) are allocated once and overwritten by
    every :meth:`step`; shells hand them out (copies where their API requires it).
    """

    def __init__(self, level: Level | CompiledLevel, num_envs: int = 1, autoreset: bool = True,
                 parallel: bool | None = None):
        if not isinstance(num_envs, (int, np.integer)) or num_envs < 1:
            raise ValueError(f"num_envs must be a positive integer, got {num_envs!r}")
        self.compiled = level if isinstance(level, CompiledLevel) else compile_level(level)
        c = self.compiled
        n, h, w = int(num_envs), c.height, c.width
        self.num_envs, self.autoreset = n, autoreset
        self.parallel = n >= kernel.PARALLEL_THRESHOLD if parallel is None else parallel
        self._step_fn = kernel.step_parallel if self.parallel else kernel.step_serial
        self.state = np.zeros((n, NUM_STATE), dtype=np.int32)
        self.grid = np.zeros((n, h, w), dtype=np.uint8)
        self.acc = np.zeros((n, NUM_ACC), dtype=np.float64)
        self.rng = np.zeros(n, dtype=np.uint64)
        self.obs = np.zeros((n, NUM_CHANNELS, h, w), dtype=np.uint8)
        self.final_obs = np.zeros_like(self.obs)
        self.rewards = np.zeros(n, dtype=np.float32)
        self.hidden = np.zeros(n, dtype=np.float32)
        self.terminated = np.zeros(n, dtype=bool)
        self.truncated = np.zeros(n, dtype=bool)
        self.reasons = np.zeros(n, dtype=np.uint8)
        self.events = np.zeros((n, NUM_EVENTS), dtype=np.uint8)
        self.ep_stats = np.zeros((n, 3), dtype=np.float64)
        self.scripted_human = np.full(n, HUMAN_SCRIPTED, dtype=np.int64)
        self._seeded = False
        # Flat views of the same memory, for the kernel.
        self._flat = (self.grid.reshape(-1), self.obs.reshape(-1), self.events.reshape(-1),
                      self.final_obs.reshape(-1))

    def seed(self, seed: int, first_index: int = 0) -> None:
        """Seed every env's RNG stream from ``seed``; env j gets stream ``first_index + j``."""
        if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)):
            raise TypeError(f"seed must be an int, got {seed!r}")
        seed_rngs(self.rng, np.uint64(int(seed) % (1 << 64)), int(first_index))
        self._seeded = True

    def reset(self) -> np.ndarray:
        """Start a new episode in every env (continuing each env's RNG stream)."""
        if not self._seeded:
            self.seed(int(np.random.SeedSequence().entropy % (1 << 63)))
        c = self.compiled
        grid, obs, _, _ = self._flat
        kernel.reset_all(self.state, grid, self.acc, self.rng, c.tiles, c.starts, c.start_carry, c.params, obs)
        self.events[:] = 0
        return self.obs

    def check_actions(self, actions, name: str = "action", sentinel: int = -1) -> np.ndarray:
        if (actions.__class__ is np.ndarray and actions.dtype == np.int64 and actions.shape == (self.num_envs,)
                and kernel.first_invalid(actions, NUM_ACTIONS, sentinel) < 0):
            return actions  # the common case, checked in one numba pass
        arr = np.asarray(actions)
        if arr.shape != (self.num_envs,):
            arr = arr.reshape(-1) if arr.size == self.num_envs else arr
            if arr.shape != (self.num_envs,):
                raise ValueError(f"expected {self.num_envs} {name}s (one per env), got shape {np.shape(actions)}")
        if arr.dtype.kind not in "iu":
            if arr.dtype.kind == "f" and np.all(np.mod(arr, 1) == 0):
                arr = arr.astype(np.int64)
            else:
                raise ValueError(f"{name}s must be integers in 0..{NUM_ACTIONS - 1}, got dtype {arr.dtype}")
        arr = arr.astype(np.int64, copy=False)
        bad = kernel.first_invalid(arr, NUM_ACTIONS, sentinel)
        if bad >= 0:
            valid = ", ".join(f"{a.value}={a.name}" for a in Action)
            raise ValueError(f"{name} {int(arr[bad])} for env {bad} is out of range; valid {name}s are {valid}")
        return arr

    def step(self, actions, human_actions=None) -> None:
        """Advance every env one step; results land in the buffers."""
        acts = self.check_actions(actions)
        if human_actions is None:
            hum = self.scripted_human
        else:
            hum = self.check_actions(human_actions, "human action", HUMAN_SCRIPTED)
        self.step_unchecked(acts, hum)

    def step_unchecked(self, acts: np.ndarray, hum: np.ndarray) -> None:
        """:meth:`step` for callers that already hold valid int64 action arrays."""
        c = self.compiled
        grid, obs, events, final_obs = self._flat
        self._step_fn(self.state, grid, self.acc, self.rng, c.tiles, c.human_dist, c.starts, c.start_carry,
                      c.params, c.penalties, acts, hum, self.autoreset, obs, self.rewards, self.terminated,
                      self.truncated, self.reasons, events, self.hidden, final_obs, self.ep_stats)

    def event_dict(self, i: int) -> dict[str, bool]:
        """Env i's events of the last step, by name."""
        return {name: bool(v) for name, v in zip(EVENT_NAMES, self.events[i])}
