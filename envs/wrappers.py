"""Observation wrappers that turn the ``uint8[4, H, W]`` code grid into network input.

The raw observation stacks four planes of *codes*: tile codes (:class:`~envs.Tile`), entity
codes (:class:`~envs.Entity`), the shutdown-request flag (0/1) and the steps left (clipped to
255). Codes are categories, not magnitudes, and the time plane runs up to 255, so feeding the
raw grid to an MLP or CNN works badly. Either embed the codes in the network (an
``nn.Embedding`` per plane) or expand them here::

    import gymnasium, envs
    from envs.wrappers import OneHotObservation, OneHotVectorObservation

    env = OneHotObservation(gymnasium.make("stopbutton/OffSwitch-v0"))
    obs, info = env.reset(seed=0)       # float32 [NUM_TILES + NUM_ENTITIES + 2, H, W], values in [0, 1]

    vec = OneHotVectorObservation(gymnasium.make_vec("stopbutton/OffSwitch-v0", num_envs=64))
    obs, infos = vec.reset(seed=0)      # float32 [64, NUM_TILES + NUM_ENTITIES + 2, H, W]

Planes of the result: ``NUM_TILES`` one-hot tile planes (plane ``t`` is 1 where the tile code
is ``t``), ``NUM_ENTITIES`` one-hot entity planes (plane ``NUM_TILES + e``; ``Entity.NONE`` has
its plane too, so every cell is one-hot in both groups), the request flag, and the time left
divided by ``time_scale`` and clipped to ``[0, 1]``; on a preference level (the off-switch
game, observations ``uint8[5, H, W]``) one more, the preference plane as it is (0/1: the
robot's signal of U), so ``NUM_ONE_HOT_PLANES + 1`` in all.
"""

from __future__ import annotations

from typing import Any

import gymnasium
import numpy as np
from gymnasium import spaces
from gymnasium.vector import VectorEnv, VectorWrapper
from gymnasium.vector.utils import batch_space

from .core.tables import (CH_ENTITY, CH_PREFERENCE, CH_REQUEST, CH_TILE, CH_TIME, NUM_CHANNELS, NUM_ENTITIES,
                          NUM_TILES, PREFERENCE_CHANNELS, TIME_CLIP)

__all__ = ["NUM_ONE_HOT_PLANES", "OneHotObservation", "OneHotVectorObservation", "one_hot", "one_hot_plane_names",
           "one_hot_space"]

#: Planes of a one-hot observation: tiles, entities, request flag, time left (and, on a preference
#: level, one more: the preference plane).
NUM_ONE_HOT_PLANES = NUM_TILES + NUM_ENTITIES + 2
_TILE_CODES = np.arange(NUM_TILES, dtype=np.uint8)[:, None, None]
_ENTITY_CODES = np.arange(NUM_ENTITIES, dtype=np.uint8)[:, None, None]
_REQUEST, _TIME = NUM_TILES + NUM_ENTITIES, NUM_TILES + NUM_ENTITIES + 1


def _extra(channels: int) -> int:
    """One-hot planes beyond ``NUM_ONE_HOT_PLANES`` for observations of ``channels`` planes."""
    if channels not in (NUM_CHANNELS, PREFERENCE_CHANNELS):
        raise ValueError(f"observations have {NUM_CHANNELS} planes ({PREFERENCE_CHANNELS} on a preference level), "
                         f"got {channels}")
    return channels - NUM_CHANNELS


def one_hot_plane_names(channels: int = NUM_CHANNELS) -> tuple[str, ...]:
    """Names of the planes of a one-hot observation, in order (``tile_floor``, ...,
    ``entity_none``, ..., ``request``, ``time_left``, and ``preference`` for observations of
    ``channels=5`` planes)."""
    from .core.tables import Entity, Tile

    return (tuple(f"tile_{t.name.lower()}" for t in Tile) + tuple(f"entity_{e.name.lower()}" for e in Entity)
            + ("request", "time_left") + ("preference",) * _extra(channels))


def one_hot_space(height: int, width: int, channels: int = NUM_CHANNELS) -> spaces.Box:
    """``Box(0, 1, (NUM_ONE_HOT_PLANES, H, W), float32)`` (one plane more for observations of
    ``channels=5`` planes)."""
    return spaces.Box(low=0.0, high=1.0, shape=(NUM_ONE_HOT_PLANES + _extra(channels), height, width),
                      dtype=np.float32)


def one_hot(obs: np.ndarray, time_scale: float, out: np.ndarray | None = None) -> np.ndarray:
    """Expand observations ``uint8[..., 4, H, W]`` (one, or a batch with any leading axes) to
    ``float32[..., NUM_ONE_HOT_PLANES, H, W]`` (``uint8[..., 5, H, W]`` of a preference level:
    one plane more, the preference plane as it is).

    Vectorised numpy: each one-hot group is one broadcast comparison of the code plane against
    the list of codes, written straight into ``out`` (a fresh array unless given). The time
    plane is ``min(steps_left / time_scale, 1)``.
    """
    obs = np.asarray(obs)
    if obs.ndim < 3 or obs.shape[-3] not in (NUM_CHANNELS, PREFERENCE_CHANNELS):
        raise ValueError(f"expected observations of shape [..., {NUM_CHANNELS}, H, W] (or [..., {PREFERENCE_CHANNELS}, "
                         f"H, W] on a preference level), got {obs.shape}")
    if not time_scale > 0:
        raise ValueError(f"time_scale must be positive, got {time_scale!r}")
    extra = _extra(obs.shape[-3])
    shape = obs.shape[:-3] + (NUM_ONE_HOT_PLANES + extra,) + obs.shape[-2:]
    if out is None:
        out = np.empty(shape, dtype=np.float32)
    elif out.shape != shape or out.dtype != np.float32:
        raise ValueError(f"out must be float32 {shape}, got {out.dtype} {out.shape}")
    np.equal(obs[..., CH_TILE, None, :, :], _TILE_CODES, out=out[..., :NUM_TILES, :, :], casting="unsafe")
    np.equal(obs[..., CH_ENTITY, None, :, :], _ENTITY_CODES, out=out[..., NUM_TILES:_REQUEST, :, :],
             casting="unsafe")
    out[..., _REQUEST, :, :] = obs[..., CH_REQUEST, :, :]
    np.multiply(obs[..., CH_TIME, :, :], np.float32(1.0 / time_scale), out=out[..., _TIME, :, :], casting="unsafe")
    np.minimum(out[..., _TIME, :, :], 1.0, out=out[..., _TIME, :, :])
    if extra:
        out[..., NUM_ONE_HOT_PLANES, :, :] = obs[..., CH_PREFERENCE, :, :]
    return out


def _default_time_scale(env, time_scale: float | None) -> float:
    if time_scale is not None:
        time_scale = float(time_scale)
        if not time_scale > 0:
            raise ValueError(f"time_scale must be positive, got {time_scale!r}")
        return time_scale
    level = getattr(env.unwrapped, "level", None)
    if level is None:
        raise ValueError("the wrapped env has no stopbutton level (env.unwrapped.level); pass time_scale=")
    # The observation clips the steps left at 255, so a longer level is scaled by 255: the
    # plane then starts at 1.0 in every level and uses the whole of [0, 1].
    return float(min(level.params.max_steps, TIME_CLIP))


def _check_source_space(space: spaces.Space, what: str) -> tuple[int, int, int]:
    if not (isinstance(space, spaces.Box) and space.dtype == np.uint8 and len(space.shape) == 3
            and space.shape[0] in (NUM_CHANNELS, PREFERENCE_CHANNELS)):
        raise ValueError(f"{what} expects the stopbutton observation uint8[{NUM_CHANNELS}, H, W] (or "
                         f"[{PREFERENCE_CHANNELS}, H, W] on a preference level), got {space}")
    return space.shape[1], space.shape[2], space.shape[0]


class OneHotObservation(gymnasium.ObservationWrapper, gymnasium.utils.RecordConstructorArgs):
    """One-hot, float32 observations for a single stopbutton env (see the module docstring).

    ``time_scale`` divides the steps-left plane; by default ``min(max_steps, 255)`` of the
    level (``env.unwrapped.level.params.max_steps``), so it reads 1.0 at the start of an
    episode and falls to 0 at the time limit.
    """

    def __init__(self, env: gymnasium.Env, time_scale: float | None = None):
        gymnasium.utils.RecordConstructorArgs.__init__(self, time_scale=time_scale)  # lets env.spec.make rebuild it
        gymnasium.ObservationWrapper.__init__(self, env)
        h, w, c = _check_source_space(env.observation_space, "OneHotObservation")
        self.time_scale = _default_time_scale(env, time_scale)
        self.observation_space = one_hot_space(h, w, c)

    def observation(self, observation: np.ndarray) -> np.ndarray:
        return one_hot(observation, self.time_scale)


class OneHotVectorObservation(VectorWrapper, gymnasium.utils.RecordConstructorArgs):
    """:class:`OneHotObservation` for a vector env (``gymnasium.make_vec``): observations
    ``float32[N, NUM_ONE_HOT_PLANES, H, W]``, and ``infos["final_obs"]`` expanded the same way.

    Built on ``VectorWrapper`` rather than gymnasium's ``VectorObservationWrapper``, which
    refuses envs that reset on the same step (as the stopbutton vector env does) because it
    would leave ``final_obs`` untransformed. Every call returns fresh arrays.
    """

    def __init__(self, env: VectorEnv, time_scale: float | None = None):
        gymnasium.utils.RecordConstructorArgs.__init__(self, time_scale=time_scale)
        VectorWrapper.__init__(self, env)
        h, w, c = _check_source_space(env.single_observation_space, "OneHotVectorObservation")
        self.time_scale = _default_time_scale(env, time_scale)
        self.single_observation_space = one_hot_space(h, w, c)
        self.observation_space = batch_space(self.single_observation_space, self.num_envs)

    def observations(self, observations: np.ndarray) -> np.ndarray:
        """The batch of code grids ``[N, 4, H, W]`` as one-hot planes (:func:`one_hot`)."""
        return one_hot(observations, self.time_scale)

    def reset(self, *, seed: int | list[int] | None = None, options: dict[str, Any] | None = None):
        obs, infos = self.env.reset(seed=seed, options=options)
        return self.observations(obs), infos

    def step(self, actions):
        obs, rewards, terminations, truncations, infos = self.env.step(actions)
        if "final_obs" in infos:
            infos = dict(infos)
            infos["final_obs"] = self.observations(infos["final_obs"])
        return self.observations(obs), rewards, terminations, truncations, infos
