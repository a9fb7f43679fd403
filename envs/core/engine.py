"""The batch of envs and its buffers: the one object every API shell wraps."""

from __future__ import annotations

from time import perf_counter

import numpy as np

from . import kernel
from .level import CompiledLevel, Level, compile_level
from .rules import NUM_ACC, NUM_STATE, seed_rngs
from .tables import HUMAN_SCRIPTED, NUM_ACTIONS, NUM_EVENTS, Action


class AdaptiveStep:
    """Calls the parallel or the serial step kernel, whichever has been the faster lately.

    Both kernels step every env the same way, so which one ran never changes a result; only the
    time does. The parallel kernel's threads wait for each other at the end of every step, so on
    a shared machine, when another process holds one of the cores, a step waits for the thread
    that lost its core: measured at 4096 envs on off_switch on 2 cores with other work running,
    0.5M env-steps/s for the parallel kernel against 22M for the serial one (on idle cores 44M
    against 23M). Each call is timed. The kernel in use is kept while its running mean per call
    (``ALPHA``: the newest call's weight, small enough that one stalled call does not switch)
    stays within ``MARGIN`` of the other's last measured cost. Every ``gap`` calls the other
    kernel is tried for ``TRIAL`` calls and kept if the mean of all but the slowest of them beat
    the running mean by ``MARGIN``; ``gap`` starts at ``FIRST_GAP`` and doubles up to
    ``MAX_GAP`` while the trials lose, so the losing kernel gets about ``TRIAL / MAX_GAP`` of
    the calls. ``kernels`` and ``clock`` are parameters for the tests.
    """

    FIRST_GAP, MAX_GAP, TRIAL = 16, 4096, 4
    ALPHA = 1 / 32
    MARGIN = 1.1

    def __init__(self, kernels=None, clock=perf_counter):
        self.kernels = (kernel.step_parallel, kernel.step_serial) if kernels is None else tuple(kernels)
        self.clock = clock
        self.current = 0  # index into kernels: the parallel one first
        self.cost = [0.0, 0.0]  # running mean seconds per call of each (0.0: not measured yet)
        self.gap = self.left = self.FIRST_GAP  # calls between trials; calls left to the next
        self.trial = 0  # calls left in a trial of ``current``
        self.trial_sum = self.trial_max = 0.0
        self.calls = [0, 0]  # calls made with each kernel

    @property
    def name(self) -> str:
        """The kernel in use now: ``"parallel"`` or ``"serial"``."""
        return ("parallel", "serial")[self.current]

    def __call__(self, *args):
        cur = self.current
        t0 = self.clock()
        out = self.kernels[cur](*args)
        dt = self.clock() - t0
        self.calls[cur] += 1
        if self.trial:  # trying ``cur``: at the trial's end keep it, or go back to the other
            self.trial_sum += dt
            self.trial_max = max(self.trial_max, dt)
            self.trial -= 1
            if not self.trial:
                # the mean of all but the slowest call: one stalled call is forgiven
                self.cost[cur] = mean = (self.trial_sum - self.trial_max) / (self.TRIAL - 1)
                if mean * self.MARGIN < self.cost[1 - cur]:
                    self.gap = self.FIRST_GAP
                else:
                    self.current = 1 - cur
                    self.gap = min(2 * self.gap, self.MAX_GAP)
                self.left = self.gap
            return out
        c = self.cost[cur]
        self.cost[cur] = c = dt if c == 0.0 else c + self.ALPHA * (dt - c)
        other = self.cost[1 - cur]
        self.left -= 1
        if other != 0.0 and c > self.MARGIN * other:  # slower than the other was: switch now
            self.current = 1 - cur
            self.gap = self.left = self.FIRST_GAP
        elif self.left <= 0:
            self.current = 1 - cur
            self.trial, self.trial_sum, self.trial_max = self.TRIAL, 0.0, 0.0
        return out


class Engine:
    """``num_envs`` copies of one compiled level, stepped together by the numba kernel.

    The buffers (``obs``, ``rewards``, ``events``, ...) are allocated once and overwritten by
    every :meth:`step`; shells hand them out (copies where their API requires it).

    ``parallel``: ``False`` steps with the serial kernel, ``True`` with the parallel one; ``None``
    (the default) with the serial one below ``kernel.PARALLEL_THRESHOLD`` envs and from there up
    with whichever of the two has been the faster lately (:class:`AdaptiveStep`).
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
        if parallel is None and self.parallel:
            self._step_fn = AdaptiveStep()
        else:
            self._step_fn = kernel.step_parallel if self.parallel else kernel.step_serial
        self.state = np.zeros((n, NUM_STATE), dtype=np.int32)
        self.grid = np.zeros((n, h, w), dtype=np.uint8)
        self.acc = np.zeros((n, NUM_ACC), dtype=np.float64)
        self.rng = np.zeros(n, dtype=np.uint64)
        # The kernel updates observations in place from the previous step's, so the buffer
        # handed out (``obs``) is a read-only view of the one the kernel writes (``_obs``).
        self._obs = np.zeros((n, c.num_channels, h, w), dtype=np.uint8)  # 4 planes, 5 on a preference level
        self.obs = self._obs.view()
        self.obs.flags.writeable = False
        self.final_obs = np.zeros_like(self._obs)
        self.rewards = np.zeros(n, dtype=np.float32)
        self.hidden = np.zeros(n, dtype=np.float32)
        self.terminated = np.zeros(n, dtype=bool)
        self.truncated = np.zeros(n, dtype=bool)
        self.done = np.zeros(n, dtype=bool)
        self.n_done = 0  # episodes that ended in the last step
        self.reasons = np.zeros(n, dtype=np.uint8)
        self.events = np.zeros((n, NUM_EVENTS), dtype=np.uint8)
        self.ep_stats = np.zeros((n, 4), dtype=np.float64)  # return, hidden return, length, layout
        self.ev_count = np.zeros((n, NUM_EVENTS), dtype=np.int32)  # events so far in each running episode
        self.ep_events = np.zeros((n, NUM_EVENTS), dtype=np.int32)  # ... of an episode that ended
        # The state and grid an episode ended in (written on autoreset, before the reset), so
        # that learners can see the true last transition of an episode.
        self.final_state = np.zeros_like(self.state)
        self.final_grid = np.zeros_like(self.grid)
        self.scripted_human = np.full(n, HUMAN_SCRIPTED, dtype=np.int64)
        self._seeded = False
        self.was_reset = False
        # Flat views of the same memory, for the kernel.
        self._flat = (self.grid.reshape(-1), self._obs.reshape(-1), self.events.reshape(-1),
                      self.final_obs.reshape(-1))
        self._tiles = np.ascontiguousarray(c.tiles).reshape(-1)
        grid, obs, events, final_obs = self._flat
        self._args_head = (self.state, grid, self.acc, self.rng, self._tiles, c.human_dist, c.starts, c.start_carry,
                           c.params, c.penalties)
        self._args_tail = (self.autoreset, obs, self.rewards, self.terminated, self.truncated, self.done,
                           self.reasons, events, self.hidden, final_obs, self.ep_stats, self.ev_count.reshape(-1),
                           self.ep_events.reshape(-1), self.final_state, self.final_grid.reshape(-1))

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
        kernel.reset_all(self.state, grid, self.acc, self.rng, self._tiles, c.starts, c.start_carry, c.params, obs,
                         c.height, c.width)
        # Nothing of the previous step survives a reset.
        for buf in (self.events, self.rewards, self.hidden, self.reasons, self.terminated, self.truncated, self.done,
                    self.ev_count):
            buf[...] = 0
        self.n_done = 0
        self.was_reset = True
        return self.obs

    def check_actions(self, actions, name: str = "action", sentinel: int | None = None) -> np.ndarray:
        """``actions`` as a contiguous int64 array of shape ``(num_envs,)``, or a ValueError
        naming the first bad entry (``sentinel``, if given, is allowed as well)."""
        arr = np.asarray(actions)
        if arr.shape != (self.num_envs,):
            raise ValueError(f"expected {self.num_envs} {name}s, one per env, as an array of shape "
                             f"({self.num_envs},); got shape {np.shape(actions)}")
        if arr.dtype.kind == "b":
            raise ValueError(f"{name}s must be integers in 0..{NUM_ACTIONS - 1}, not booleans (got {actions!r})")
        if arr.dtype.kind not in "iu":
            if arr.dtype.kind == "f" and np.all(np.mod(arr, 1) == 0):
                arr = arr.astype(np.int64)
            else:
                raise ValueError(f"{name}s must be integers in 0..{NUM_ACTIONS - 1}, got dtype {arr.dtype}")
        out_of_range = (arr < 0) | (arr >= NUM_ACTIONS)
        if sentinel is not None:
            out_of_range &= arr != sentinel
        bad = np.flatnonzero(out_of_range)
        if bad.size:
            valid = ", ".join(f"{a.value}={a.name}" for a in Action)
            raise ValueError(f"{name} {int(arr[bad[0]])} for env {int(bad[0])} is out of range; "
                             f"valid {name}s are {valid}")
        return np.ascontiguousarray(arr, dtype=np.int64)

    def kernel_args(self, acts: np.ndarray, hum: np.ndarray) -> tuple:
        """The step kernel's arguments for these int64 action arrays (the engine's buffers)."""
        return (*self._args_head, acts, hum, *self._args_tail)

    def step(self, actions, human_actions=None) -> int:
        """Advance every env one step; results land in the buffers. Returns the number of
        episodes that ended. An invalid action raises ``ValueError`` before any env moves."""
        if not self.was_reset:
            raise RuntimeError("step() called before reset(); call reset() (with a seed, for reproducibility) first")
        hum = self.scripted_human if human_actions is None else human_actions
        if (actions.__class__ is np.ndarray and actions.dtype == np.int64 and actions.shape == (self.num_envs,)
                and actions.flags.c_contiguous and hum.__class__ is np.ndarray and hum.dtype == np.int64
                and hum.shape == (self.num_envs,) and hum.flags.c_contiguous):
            # The common case: the kernel validates the actions itself, then steps.
            bad, n_done = self._step_fn(*self._args_head, actions, hum, *self._args_tail)
            if bad < 0:
                self.n_done = n_done
                return n_done
        acts = self.check_actions(actions)  # raises, naming the bad entry
        if human_actions is not None:
            hum = self.check_actions(human_actions, "human action", HUMAN_SCRIPTED)
        return self.step_unchecked(acts, hum)

    def step_unchecked(self, acts: np.ndarray, hum: np.ndarray) -> int:
        """:meth:`step` for callers that already hold valid, contiguous int64 action arrays (and
        have called :meth:`reset`)."""
        bad, n_done = self._step_fn(*self._args_head, acts, hum, *self._args_tail)
        if bad >= 0:  # the kernel checks anyway, and steps nothing when an action is bad
            raise ValueError(f"invalid action at index {bad} (an index >= {self.num_envs} is a human action)")
        self.n_done = n_done
        return n_done
