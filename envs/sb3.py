"""stable-baselines3 shell: a real SB3 ``VecEnv`` directly over one batched engine.

::

    from stable_baselines3 import PPO
    from envs.sb3 import StopButtonVecEnv

    env = StopButtonVecEnv("coffee", num_envs=16, seed=0)   # level params as keywords
    model = PPO("MlpPolicy", env, seed=0).learn(20_000)

The ``num_envs`` envs are rows of one :class:`~envs.core.engine.Engine`, stepped by one
kernel call (no per-env Python objects, no ``DummyVecEnv``). Autoreset is SB3's: when an
episode ends, the returned observation already belongs to the next episode.

Observations (``observation=``):

``"one_hot"`` (default)
    float32 ``[NUM_ONE_HOT_PLANES, H, W]`` in ``[0, 1]``, as :func:`envs.wrappers.one_hot`
    makes them: one plane per tile code and per entity code, the request flag, the time left
    scaled to ``[0, 1]``. The raw grid holds *codes* (categories, not magnitudes) and a time
    plane up to 255, which a plain ``MlpPolicy`` reads badly; one-hot planes it reads well. A
    float Box is no image to SB3 (its image check wants uint8), so nothing is transposed or
    divided by 255, and ``MlpPolicy`` just flattens it.
``"codes"``
    the raw uint8 ``[4, H, W]`` grid (the single env's observation space). Its bounds are not
    0..255, so SB3 does not take it for an image either; pair it with
    :func:`policy_kwargs` (``PPO("MlpPolicy", env, policy_kwargs=policy_kwargs(env))``), whose
    :class:`OneHotExtractor` expands the codes inside the network into exactly the
    ``"one_hot"`` features. A replay buffer then stores 4 bytes a cell instead of 108, which
    is what ``agents.learners.sb3`` does for DQN and PPO alike.

``step`` returns fresh arrays (SB3 keeps the previous observation across the next step).
``infos`` is a list of one dict per env. An env where nothing happened gets an empty dict
(the same empty dicts every step, replaced if anyone writes into them). A step where an
event fired adds ``events`` (uint8 flags, index with :class:`~envs.core.tables.Event`) and
that step's ``hidden_reward``. An episode's last step adds:

* ``terminal_observation``: its last observation (``engine.final_obs``, in the chosen
  observation format) and ``TimeLimit.truncated``: it hit the step limit without terminating,
  as SB3's ``DummyVecEnv`` sets them (PPO bootstraps the value there, DQN's replay buffer does
  not treat it as terminal);
* ``episode``: ``{"r", "l", "t"}`` as SB3's ``Monitor`` writes it (``r`` the sum of the
  rewards this VecEnv handed out, i.e. the objective's return when an objective is set,
  ``l`` the length, ``t`` seconds since the VecEnv was built), which fills
  ``model.ep_info_buffer`` and so ``rollout/ep_rew_mean``. :meth:`env_is_wrapped` therefore
  answers True for ``Monitor``;
* ``reason`` (:class:`~envs.core.tables.Reason`), ``episode_return`` (the *task* return, whatever
  the objective), ``episode_hidden_return``, ``episode_length``, ``episode_events`` (int32 counts
  per event), ``episode_layout``, ``episode_preference`` and ``episode_signal`` (the human's
  utility U of the robot's plan and the robot's signal of it, +1 or -1), the same fields as the
  gymnasium vector env's ``final_info``, from which safety metrics are computed.

``reward_fn``: what replaces the task reward, or None (the default: ``engine.rewards`` as they
are). An object with ``before_step(engine)`` (called just before each ``engine.step``) and
``after_step(engine, actions)`` returning float ``[num_envs]``: the rewards of the step just
taken. ``agents.learners.sb3.make_vec_env(level, n, objective=...)`` builds this VecEnv with an
objective's rewards (:class:`agents.learners.rewards.ObjectiveRewards`); this shell knows
nothing of objectives. The metric fields above always come from the task reward and the events.

Seeding: ``seed`` (or SB3's ``env.seed(s)``, which ``PPO(seed=s)`` calls) seeds the next
:meth:`reset`; env ``i`` runs stream ``i`` of the seed, so the same seed gives the same
trajectories.
"""

from __future__ import annotations

import time
import warnings
from typing import Any

import numpy as np
import torch
from gymnasium import spaces
from stable_baselines3.common.monitor import Monitor
from stable_baselines3.common.torch_layers import BaseFeaturesExtractor
from stable_baselines3.common.vec_env import VecEnv

from . import pictures
from .core.engine import Engine
from .core.level import Level, compile_level
from .core.rules import S_PREFERENCE, S_SIGNAL
from .core.tables import NUM_ACTIONS, NUM_ENTITIES, NUM_TILES, PREFERENCE_CHANNELS, TIME_CLIP, Reason
from .gym import observation_space, resolve_level
from .render import ansi
from .wrappers import NUM_ONE_HOT_PLANES, one_hot, one_hot_space

__all__ = ["OBSERVATIONS", "OneHotExtractor", "StopButtonVecEnv", "policy_kwargs"]

#: The observation formats of :class:`StopButtonVecEnv`.
OBSERVATIONS = ("one_hot", "codes")
_REASONS = tuple(Reason)
_PER_ENV_METHODS = ("render", "get_wrapper_attr", "has_wrapper_attr")


def _time_scale(level: Level, time_scale: float | None) -> float:
    """``time_scale``, or the level's ``min(max_steps, 255)`` (the time plane then starts at 1)."""
    if time_scale is None:
        return float(min(level.params.max_steps, TIME_CLIP))
    if isinstance(time_scale, bool) or not isinstance(time_scale, (int, float, np.integer, np.floating)) \
            or not time_scale > 0:
        raise ValueError(f"time_scale must be a positive number, got {time_scale!r}")
    return float(time_scale)


class StopButtonVecEnv(VecEnv):
    """``num_envs`` envs of ``level`` (a registered name or a :class:`~envs.Level`) as an SB3
    VecEnv; see the module docstring. Keywords other than those named override the level's
    params (``interruption_probability=1.0``)."""

    def __init__(self, level: str | Level, num_envs: int, seed: int | None = None, *, reward_fn=None,
                 observation: str = "one_hot", time_scale: float | None = None, render_mode: str | None = None,
                 parallel: bool | None = None, **level_params):
        if observation not in OBSERVATIONS:
            raise ValueError(f"observation must be one of {OBSERVATIONS}, got {observation!r}")
        if render_mode is not None and render_mode not in ("ansi", "rgb_array"):
            raise ValueError(f"render_mode {render_mode!r} is not supported; use 'ansi', 'rgb_array' or None")
        if seed is not None and (isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0):
            raise ValueError(f"seed must be a non-negative whole number or None, got {seed!r}")
        self.level = resolve_level(level, level_params)
        self.compiled = compile_level(self.level)
        self.engine = Engine(self.compiled, num_envs=num_envs, autoreset=True, parallel=parallel)
        n = self.engine.num_envs
        self.observation = observation
        self.time_scale = _time_scale(self.level, time_scale)
        h, w = self.compiled.height, self.compiled.width
        c = self.compiled.num_channels
        self.codes_space = observation_space(h, w, c)
        space = one_hot_space(h, w, c) if observation == "one_hot" else self.codes_space
        # VecEnv.__init__ reads render_mode through get_attr, which needs num_envs.
        self.render_mode, self.num_envs = render_mode, n
        super().__init__(n, space, spaces.Discrete(NUM_ACTIONS))
        self.metadata = {"render_modes": ["ansi", "rgb_array"]}
        if reward_fn is not None and not (callable(getattr(reward_fn, "before_step", None))
                                          and callable(getattr(reward_fn, "after_step", None))):
            raise TypeError(f"reward_fn must have before_step(engine) and after_step(engine, actions) methods (e.g. "
                            f"agents.learners.rewards.ObjectiveRewards), got {type(reward_fn).__name__}")
        self.reward_fn = reward_fn
        self._pending_seed = None if seed is None else int(seed)
        self._actions: np.ndarray | None = None
        self._returns = np.zeros(n, dtype=np.float64)  # of the rewards handed out, for episode["r"]
        self._blank = tuple({} for _ in range(n))
        self._t_start = time.time()

    # -- SB3 VecEnv ------------------------------------------------------------------------
    def _observe(self, obs: np.ndarray) -> np.ndarray:
        """A fresh array of ``obs`` (uint8 ``[..., 4, H, W]``) in this VecEnv's format."""
        return one_hot(obs, self.time_scale) if self.observation == "one_hot" else obs.copy()

    def seed(self, seed: int | None = None) -> list[int]:
        """Seed the next :meth:`reset` (``None``: a random seed). Env ``i`` runs stream ``i`` of
        the seed; returns the seed once per env."""
        if seed is None:
            seed = int(np.random.randint(0, np.iinfo(np.uint32).max, dtype=np.uint32))
        if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
            raise ValueError(f"seed must be a non-negative whole number or None, got {seed!r}")
        self._pending_seed = int(seed)
        return [int(seed)] * self.num_envs

    def reset(self) -> np.ndarray:
        """Start a new episode in every env (seeded if :meth:`seed` or the constructor gave a
        seed since the last reset; otherwise every env's stream continues)."""
        if self._pending_seed is not None:
            self.engine.seed(self._pending_seed)
            self._pending_seed = None
        self._reset_seeds()
        self._reset_options()
        obs = self.engine.reset()
        self._returns[:] = 0.0
        self._actions = None
        self.reset_infos = [{} for _ in range(self.num_envs)]
        return self._observe(obs)

    def step_async(self, actions: np.ndarray) -> None:
        a = np.asarray(actions)
        if a.shape == (self.num_envs, 1):  # SB3 sometimes keeps a trailing action axis
            a = a.reshape(self.num_envs)
        if a.dtype != np.int64 or not a.flags.c_contiguous:
            a = self.engine.check_actions(a)  # raises, naming the first bad entry
        self._actions = a

    def step_wait(self):
        """Step every env with the actions of :meth:`step_async`: ``(obs, rewards, dones, infos)``."""
        a, self._actions = self._actions, None
        if a is None:
            raise RuntimeError("step_wait() called without step_async(actions)")
        e = self.engine
        if self.reward_fn is None:
            e.step(a)
            rewards = e.rewards.copy()
        else:
            self.reward_fn.before_step(e)
            e.step(a)
            rewards = np.asarray(self.reward_fn.after_step(e, a), dtype=np.float32)
            if rewards.shape != (self.num_envs,):
                raise ValueError(f"reward_fn.after_step must return one reward per env, shape ({self.num_envs},), got "
                                 f"{rewards.shape}")
        self._returns += rewards
        dones = e.done.copy()
        if any(self._blank):  # someone wrote into an empty info: hand out fresh ones from now on
            self._blank = tuple({} for _ in range(self.num_envs))
        infos = list(self._blank)
        busy = np.flatnonzero(e.events.any(axis=1))
        for i in busy.tolist():
            infos[i] = {"events": e.events[i].copy(), "hidden_reward": float(e.hidden[i])}
        if e.n_done:
            ended = np.flatnonzero(dones)
            final = self._observe(e.final_obs[ended])
            timeout = (e.truncated & ~e.terminated)[ended].tolist()
            t = round(time.time() - self._t_start, 6)
            stats, reasons = e.ep_stats, e.reasons
            for k, i in enumerate(ended.tolist()):
                info = infos[i] if infos[i] is not self._blank[i] else {}
                info.update({
                    "terminal_observation": final[k], "TimeLimit.truncated": timeout[k],
                    "episode": {"r": float(self._returns[i]), "l": int(stats[i, 2]), "t": t},
                    "reason": _REASONS[reasons[i]], "episode_return": float(stats[i, 0]),
                    "episode_hidden_return": float(stats[i, 1]), "episode_length": int(stats[i, 2]),
                    "episode_events": e.ep_events[i].copy(), "episode_layout": int(stats[i, 3]),
                    "episode_preference": int(e.final_state[i, S_PREFERENCE]),
                    "episode_signal": int(e.final_state[i, S_SIGNAL]),
                })
                infos[i] = info
            self._returns[ended] = 0.0
        return self._observe(e.obs), rewards, dones, infos

    def close(self) -> None:
        """Nothing to release (the engine's buffers go with the object)."""

    # -- attributes and methods "of the envs": one engine, so one set shared by all --------
    def _all(self, indices) -> list[int]:
        idx = [int(i) for i in self._get_indices(indices)]
        bad = [i for i in idx if not 0 <= i < self.num_envs]
        if bad:
            raise IndexError(f"env index {bad[0]} is out of range for {self.num_envs} envs")
        return idx

    def get_attr(self, attr_name: str, indices=None) -> list[Any]:
        """The attribute, once per env: the envs are rows of one engine and share their
        attributes (``level``, ``render_mode``, ``engine``, ...). A missing one raises
        AttributeError (so ``has_attr`` works)."""
        value = getattr(self, attr_name)
        return [value] * len(self._all(indices))

    def set_attr(self, attr_name: str, value: Any, indices=None) -> None:
        """Set a shared attribute; only for all envs at once (``indices=None``)."""
        if sorted(set(self._all(indices))) != list(range(self.num_envs)):
            raise ValueError(f"the envs of a StopButtonVecEnv are rows of one engine and share their attributes; "
                             f"set {attr_name!r} for all envs at once (indices=None)")
        setattr(self, attr_name, value)

    def env_method(self, method_name: str, *method_args, indices=None, **method_kwargs) -> list[Any]:
        """The per-env methods there are: ``render`` (env ``i``'s picture or text, by its
        ``render_mode``), ``get_wrapper_attr`` and ``has_wrapper_attr``."""
        idx = self._all(indices)
        if method_name == "render":
            return [self._render_one(i) for i in idx]
        if method_name == "get_wrapper_attr":
            return self.get_attr(*method_args, indices=idx, **method_kwargs)
        if method_name == "has_wrapper_attr":
            return [hasattr(self, method_args[0])] * len(idx)
        raise AttributeError(f"StopButtonVecEnv has no per-env method {method_name!r} (its envs are rows of one "
                             f"engine, not objects); the per-env methods are {list(_PER_ENV_METHODS)}")

    def env_is_wrapped(self, wrapper_class, indices=None) -> list[bool]:
        """True for SB3's ``Monitor`` (the infos carry its ``episode`` entry), False otherwise."""
        return [wrapper_class is Monitor] * len(self._all(indices))

    # -- rendering -------------------------------------------------------------------------
    def _render_one(self, i: int):
        obs = self.engine.obs[i]
        if self.render_mode == "ansi":
            return ansi(obs)
        if self.render_mode == "rgb_array":
            return pictures.rgb_array(obs, max_steps=self.level.params.max_steps)
        return None

    def get_images(self) -> list[np.ndarray]:
        """One picture (uint8 ``[h, w, 3]``) per env."""
        return [pictures.rgb_array(o, max_steps=self.level.params.max_steps) for o in self.engine.obs]

    def render(self, mode: str | None = None):
        """``rgb_array``: every env's picture tiled into one (SB3's behaviour); ``ansi``: a
        tuple with one text per env. ``mode`` must be the ``render_mode`` given (or None)."""
        mode = mode or self.render_mode
        if mode == "ansi":
            if self.render_mode != "ansi":
                warnings.warn(f"render(mode='ansi') on a StopButtonVecEnv built with render_mode={self.render_mode!r}")
                return None
            return tuple(ansi(o) for o in self.engine.obs)
        return super().render(mode)


# ---------------------------------------------------------------------------------------------
# One-hot inside the network, for the "codes" observations.
# ---------------------------------------------------------------------------------------------

class OneHotExtractor(BaseFeaturesExtractor):
    """SB3 features extractor: code grids ``[B, 4, H, W]`` (as SB3 hands them, float) to the
    flattened one-hot features ``[B, NUM_ONE_HOT_PLANES * H * W]``, exactly
    ``envs.wrappers.one_hot(obs, time_scale).reshape(B, -1)`` (a preference level's ``[B, 5, H,
    W]``: one plane more, its preference plane). No parameters of its own; the policy's MLP sits
    on top. ``time_scale``: divides the time-left plane (default 255)."""

    def __init__(self, observation_space: spaces.Box, time_scale: float | None = None):
        shape = getattr(observation_space, "shape", None)
        if (not isinstance(observation_space, spaces.Box) or shape is None or len(shape) != 3
                or shape[0] not in (4, PREFERENCE_CHANNELS)):
            raise ValueError(f"OneHotExtractor expects the stopbutton code grid Box [4, H, W] (or [5, H, W] on a "
                             f"preference level), got {observation_space}")
        self.extra = shape[0] - 4
        super().__init__(observation_space, (NUM_ONE_HOT_PLANES + self.extra) * shape[1] * shape[2])
        self.time_scale = float(TIME_CLIP if time_scale is None else time_scale)
        if not self.time_scale > 0:
            raise ValueError(f"time_scale must be positive, got {time_scale!r}")
        # Comparing against the code lists (kept as buffers, so they follow the policy's
        # device) is faster on small batches than F.one_hot with its permutes.
        self.register_buffer("tile_codes", torch.arange(NUM_TILES, dtype=torch.float32).view(1, -1, 1, 1),
                             persistent=False)
        self.register_buffer("entity_codes", torch.arange(NUM_ENTITIES, dtype=torch.float32).view(1, -1, 1, 1),
                             persistent=False)

    def forward(self, observations: torch.Tensor) -> torch.Tensor:
        obs = observations.float()
        tiles = (obs[:, 0:1] == self.tile_codes).float()
        entities = (obs[:, 1:2] == self.entity_codes).float()
        left = (obs[:, 3:4] * (1.0 / self.time_scale)).clamp(max=1.0)
        return torch.cat([tiles, entities, obs[:, 2:3], left, obs[:, 4:4 + self.extra]], dim=1).flatten(1)


def policy_kwargs(env: StopButtonVecEnv, **extra) -> dict:
    """SB3 ``policy_kwargs`` that one-hot a ``"codes"`` env's observations inside the network
    (with the env's time scale); ``extra`` (e.g. ``net_arch=[64, 64]``) is added."""
    if getattr(env, "observation", None) != "codes":
        raise ValueError("policy_kwargs(env) is for a StopButtonVecEnv built with observation='codes' (a 'one_hot' "
                         "env is one-hot already)")
    return {"features_extractor_class": OneHotExtractor, "features_extractor_kwargs": {"time_scale": env.time_scale},
            **extra}
