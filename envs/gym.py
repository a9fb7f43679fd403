"""Single-env gymnasium shell: ``gymnasium.make("stopbutton/OffSwitch-v0")``.

A batch of one on the same buffers and kernel as the vector env, with autoreset off.
"""

from __future__ import annotations

from typing import Any

import gymnasium
import numpy as np
from gymnasium import spaces

from .core.engine import Engine
from .core.level import Level, compile_level
from .core.rules import S_PREFERENCE, S_SIGNAL
from .core.tables import (CH_PREFERENCE, EVENT_NAMES, NUM_ACTIONS, NUM_CHANNELS, NUM_ENTITIES, NUM_TILES,
                          PREFERENCE_CHANNELS, Action, Reason)
from .levels import get_level
from .render import ansi
from . import pictures

_REASONS = tuple(r.name.lower() for r in Reason)
_TERMINAL = tuple(r in (Reason.DELIVERED, Reason.SHUTDOWN, Reason.SELF_SHUTDOWN) for r in Reason)
_TIME_LIMIT = int(Reason.TIME_LIMIT)


def _fired(flags: bytes) -> tuple[str, ...]:
    """Names of the events whose flag byte is set."""
    return tuple(name for name, f in zip(EVENT_NAMES, flags) if f)


def observation_space(height: int, width: int, channels: int = NUM_CHANNELS) -> spaces.Box:
    """The ``[C, H, W]`` uint8 grid: tile codes, entity codes, request flag, time left, and on
    a preference level (``channels=5``, :attr:`CompiledLevel.num_channels`) the preference
    plane (0/1: the robot's signal of U, or U in the human's observation)."""
    if channels not in (NUM_CHANNELS, PREFERENCE_CHANNELS):
        raise ValueError(f"channels must be {NUM_CHANNELS} or {PREFERENCE_CHANNELS} (a preference level), got {channels!r}")
    high = np.empty((channels, height, width), dtype=np.uint8)
    high[0], high[1], high[2], high[3] = NUM_TILES - 1, NUM_ENTITIES - 1, 1, 255
    if channels > CH_PREFERENCE:
        high[CH_PREFERENCE] = 1
    return spaces.Box(low=0, high=high, dtype=np.uint8)


def resolve_level(level: str | Level, overrides: dict[str, Any]) -> Level:
    """The registered level (or ``level`` itself) with ``overrides`` applied to its params."""
    level = get_level(level)
    return level.with_params(**overrides) if overrides else level


class StopButtonEnv(gymnasium.Env):
    """One stopbutton env. Keywords other than ``level`` and ``render_mode`` override the
    level's params (e.g. ``interruption_probability=1.0``).

    ``info`` holds this step's ``events`` (uint8 flags indexed by :class:`~envs.core.tables.Event`),
    ``fired`` (their names), ``reason`` (why the episode ended, ``running`` while it has not)
    and ``hidden_reward`` (the step's hidden safety score, never part of the reward). The last
    step's ``info["episode"]`` sums the episode up: ``return``, ``hidden_return``, ``length``,
    ``events`` (int32 counts per :class:`~envs.core.tables.Event`), and the human's utility of the
    robot's plan, ``preference`` (U, +1 or -1; +1 on a level that is no preference level), with
    the robot's ``signal`` of it.
    """

    metadata = {"render_modes": ["ansi", "rgb_array", "human"], "render_fps": 4}

    def __init__(self, level: str | Level = "off_switch", render_mode: str | None = None, **overrides):
        if render_mode is not None and render_mode not in self.metadata["render_modes"]:
            raise ValueError(f"render_mode {render_mode!r} is not supported; use one of {self.metadata['render_modes']}")
        self.level = resolve_level(level, overrides)
        self.compiled = compile_level(self.level)
        self.engine = Engine(self.compiled, num_envs=1, autoreset=False, parallel=False)
        self.observation_space = observation_space(self.compiled.height, self.compiled.width,
                                                   self.compiled.num_channels)
        self.action_space = spaces.Discrete(NUM_ACTIONS)
        self.render_mode = render_mode
        self._act = np.zeros(1, dtype=np.int64)
        self._done = True
        # One env steps in a few microseconds, so the per-call Python is kept lean: the
        # kernel's arguments are bound once, and views of env 0's buffers are kept.
        e = self.engine
        self._kernel, self._kernel_args = e._step_fn, e.kernel_args(self._act, e.scripted_human)
        self._obs0, self._events0 = e.obs[0], e.events[0]
        self._no_events = bytes(len(EVENT_NAMES))

    def reset(self, *, seed: int | None = None, options: dict | None = None):
        """Start an episode (seeding the env's stream when ``seed`` is given); ``(obs, info)``."""
        super().reset(seed=seed)
        if seed is not None:
            self.engine.seed(seed)
        elif not self.engine._seeded:
            self.engine.seed(int(self.np_random.integers(2**63 - 1)))
        self.engine.reset()
        self._done = False
        if self.render_mode == "human":
            self.render()
        return self.engine.obs[0].copy(), {"events": self.engine.events[0].copy(), "fired": (), "reason": "running",
                                           "hidden_reward": 0.0}

    def step(self, action):
        """One step: ``(obs, reward, terminated, truncated, info)``; see the class docstring for ``info``."""
        if self._done:
            raise RuntimeError("step() called on an episode that has ended (or was never reset); call reset() first")
        if action.__class__ is not int or not 0 <= action < NUM_ACTIONS:  # fast path for plain ints
            self._act[0] = check_action(action)
        else:
            self._act[0] = action
        e = self.engine
        self._kernel(*self._kernel_args)  # the action was checked above
        reason = e.reasons.item(0)
        terminated = _TERMINAL[reason]
        truncated = reason == _TIME_LIMIT
        self._done = terminated or truncated
        ev = self._events0.copy()
        flags = ev.tobytes()
        info = {"events": ev, "fired": () if flags == self._no_events else _fired(flags),
                "reason": _REASONS[reason], "hidden_reward": e.hidden.item(0)}
        if self._done:
            info["episode"] = episode_summary(e)
        if self.render_mode == "human":
            self.render()
        return self._obs0.copy(), e.rewards.item(0), terminated, truncated, info

    def render(self):
        """``ansi``: text; ``rgb_array``: a picture (uint8 [h, w, 3]); ``human``: a matplotlib window."""
        return render_board(self.engine.obs[0], self.render_mode, self.level)


def check_action(action, what: str = "action") -> int:
    """``action`` as an int in ``0..NUM_ACTIONS - 1``, or a ValueError naming ``what`` and the valid actions."""
    if isinstance(action, (bool, np.bool_)):
        raise ValueError(f"{what} must be an integer in 0..{NUM_ACTIONS - 1}, not a boolean (got {action!r})")
    try:
        a = int(action)
    except (TypeError, ValueError):
        raise ValueError(f"{what} must be an integer in 0..{NUM_ACTIONS - 1}, got {action!r}") from None
    if not 0 <= a < NUM_ACTIONS or a != action:
        valid = ", ".join(f"{x.value}={x.name}" for x in Action)
        raise ValueError(f"{what} {action!r} is out of range; valid actions are {valid}")
    return a


def episode_summary(engine) -> dict:
    """Env 0's finished episode (an engine without autoreset): ``return``, ``hidden_return``,
    ``length``, ``events`` (counts), ``preference`` (U) and ``signal`` (the robot's signal of U)."""
    return {"return": engine.acc.item(0, 0), "hidden_return": engine.acc.item(0, 1),
            "length": engine.state.item(0, 0), "events": engine.ev_count[0].copy(),
            "preference": engine.state.item(0, S_PREFERENCE), "signal": engine.state.item(0, S_SIGNAL)}


def render_board(obs: np.ndarray, mode: str | None, level: Level):
    """One board in a render mode: ``ansi`` text, an ``rgb_array`` picture, or a ``human`` window."""
    if mode == "ansi":
        return ansi(obs)
    if mode == "rgb_array":
        return pictures.rgb_array(obs, max_steps=level.params.max_steps)
    if mode == "human":
        pictures.show(obs, title=level.name, max_steps=level.params.max_steps)
    return None
