"""Batched gymnasium shell: ``gymnasium.make_vec("stopbutton/OffSwitch-v0", num_envs=4096)``.

A real :class:`gymnasium.vector.VectorEnv` with same-step autoreset: when an episode ends, the
returned observation already belongs to the next episode, and ``infos["final_obs"]`` /
``infos["final_info"]`` (masked by ``infos["_final_obs"]`` / ``infos["_final_info"]``) hold the
last observation and the episode's summary.

``infos`` always holds, per env, this step's ``events`` ``[N, E]`` (index with
:class:`~envs.core.tables.Event`), ``reason`` ``[N]`` (:class:`~envs.core.tables.Reason`) and
``hidden_reward`` ``[N]``. ``final_info`` adds the ended episode's ``episode_return``,
``episode_hidden_return``, ``episode_length``, ``episode_layout`` (the layout of a pool the
episode ran in), ``episode_events`` ``[N, E]`` (how often each event fired in the episode,
e.g. ``[:, Event.SHUTDOWN_DELAYED]``), and ``episode_preference`` / ``episode_signal`` (int32:
the human's utility U of the robot's plan and the robot's signal of it, +1 or -1; both +1 on a
level that is no preference level).

Buffers: rewards, ``terminated`` and ``truncated`` are fresh arrays every step. With
``copy=False`` (the default, for speed) the observation and the arrays in ``infos`` are the
engine's buffers, overwritten by the next step: copy what you keep. The observation buffer is
read-only, because the kernel updates it in place from the previous step's and a write would
corrupt the observations that follow; so is ``episode_layout`` on a level of one layout (the
same array of zeros every step). ``copy=True`` hands out fresh, writable copies of all of
them. Pass ``copy`` as a keyword of ``make_vec`` (``gymnasium.make_vec(id, num_envs=N, copy=True)``).
"""

from __future__ import annotations

import gymnasium
import numpy as np
from gymnasium import spaces
from gymnasium.vector import AutoresetMode, VectorEnv
from gymnasium.vector.utils import batch_space

from .core.engine import Engine
from .core.level import Level, compile_level
from .core.rules import S_PREFERENCE, S_SIGNAL
from .core.tables import NUM_ACTIONS
from .gym import observation_space, resolve_level
from .render import ansi
from . import pictures


def _copied(infos: dict) -> dict:
    """``infos`` with every array copied (nested dicts too); the masks are fresh already."""
    return {k: _copied(v) if isinstance(v, dict) else (v.copy() if k[0] != "_" else v) for k, v in infos.items()}


class StopButtonVectorEnv(VectorEnv):
    """``num_envs`` envs of one level in one numba kernel. Keywords other than ``level``,
    ``num_envs``, ``render_mode``, ``copy`` and ``parallel`` override the level's params."""

    metadata = {"render_modes": ["ansi", "rgb_array"], "render_fps": 4, "autoreset_mode": AutoresetMode.SAME_STEP}

    def __init__(self, num_envs: int = 1, level: str | Level = "off_switch", render_mode: str | None = None,
                 copy: bool = False, parallel: bool | None = None, **overrides):
        if render_mode is not None and render_mode not in self.metadata["render_modes"]:
            raise ValueError(f"render_mode {render_mode!r} is not supported; use one of {self.metadata['render_modes']}")
        self.level = resolve_level(level, overrides)
        self.compiled = compile_level(self.level)
        self.engine = Engine(self.compiled, num_envs=num_envs, autoreset=True, parallel=parallel)
        self.num_envs = self.engine.num_envs
        self.single_observation_space = observation_space(self.compiled.height, self.compiled.width,
                                                          self.compiled.num_channels)
        self.observation_space = batch_space(self.single_observation_space, self.num_envs)
        self.single_action_space = spaces.Discrete(NUM_ACTIONS)
        self.action_space = batch_space(self.single_action_space, self.num_envs)
        self.render_mode = render_mode
        self.copy = copy
        # final_info's episode_layout: on a level of one layout always 0, so one read-only array
        # of zeros serves every step; reading the layouts out of ep_stats (a strided float64
        # column, every row of it) cost about 8% of the step at 4096 envs on 2 cores.
        self._one_layout = self.compiled.starts.shape[0] == 1
        self._layout_zeros = np.zeros(self.num_envs, dtype=np.int64)
        self._layout_zeros.flags.writeable = False

    def reset(self, *, seed: int | None = None, options: dict | None = None):
        """Start a new episode in every env (env i on stream i of ``seed``); ``(obs, infos)``."""
        if seed is not None:
            if isinstance(seed, (list, tuple, np.ndarray)):
                raise TypeError("StopButtonVectorEnv.reset takes one int seed (env i then uses stream i of it), "
                                f"not a sequence: {seed!r}")
            self.engine.seed(seed)
            self._np_random, self._np_random_seed = gymnasium.utils.seeding.np_random(seed)
        obs = self.engine.reset()
        e = self.engine
        infos = {"events": e.events, "reason": e.reasons, "hidden_reward": e.hidden}
        return (obs.copy(), _copied(infos)) if self.copy else (obs, infos)

    def step(self, actions):
        """Step every env (an array of ``num_envs`` actions); see the module docstring for ``infos``."""
        e = self.engine
        n_ended = e.step(actions)
        infos = {"events": e.events, "reason": e.reasons, "hidden_reward": e.hidden}
        if n_ended:
            done = e.done.copy()
            infos["final_obs"] = e.final_obs
            infos["_final_obs"] = done
            infos["final_info"] = {
                "events": e.events, "_events": done, "reason": e.reasons, "_reason": done,
                "episode_return": e.ep_stats[:, 0], "_episode_return": done,
                "episode_hidden_return": e.ep_stats[:, 1], "_episode_hidden_return": done,
                "episode_length": e.ep_stats[:, 2], "_episode_length": done,
                "episode_events": e.ep_events, "_episode_events": done,
                "episode_layout": self._layout_zeros if self._one_layout else e.ep_stats[:, 3].astype(np.int64),
                "_episode_layout": done,
                "episode_preference": e.final_state[:, S_PREFERENCE], "_episode_preference": done,
                "episode_signal": e.final_state[:, S_SIGNAL], "_episode_signal": done,
            }
            infos["_final_info"] = done
        if self.copy:
            return e.obs.copy(), e.rewards.copy(), e.terminated.copy(), e.truncated.copy(), _copied(infos)
        # Rewards and flags are small: fresh arrays every step, as every vector env gives.
        return e.obs, e.rewards.copy(), e.terminated.copy(), e.truncated.copy(), infos

    def render(self):
        """A tuple with one text (``ansi``) or picture (``rgb_array``) per env."""
        if self.render_mode == "ansi":
            return tuple(ansi(o) for o in self.engine.obs)
        if self.render_mode == "rgb_array":
            return tuple(pictures.rgb_array(o, max_steps=self.level.params.max_steps) for o in self.engine.obs)
        return None
