"""Batched two-agent shell: the robot and the human of a level, both acting, ``num_envs`` at once.

    from envs.two_agent import TwoAgentVecEnv
    env = TwoAgentVecEnv("off_switch_game", num_envs=4096, seed=0)
    robot_obs, human_obs = env.reset()
    robot_obs, human_obs, robot_reward, human_reward, terminated, truncated, infos = env.step(
        robot_actions, human_actions)

The PettingZoo env (:mod:`envs.pettingzoo`) with a batch axis and no Python loop over envs: one
:class:`~envs.core.engine.Engine` steps every env in one kernel call, the human's actions going
where the scripted human's otherwise do (``Engine.step(actions, human_actions)``). Stepping both
envs with the same seed and actions gives the same observations, rewards and events, env by env
(tests/test_two_agent.py). For learners that train both agents at once
(:mod:`agents.learners.cotrain`).

Agents and actions
    ``agents = ("robot", "human")``; the level must have a human. Both act in
    ``action_space = Discrete(5)`` (``envs.Action`` UP, DOWN, LEFT, RIGHT, NOOP), given as one
    int array of ``num_envs`` actions per agent; an action out of range (the scripted human's
    code 255 included) raises ValueError naming the agent and the env before any env moves.

Observations
    ``observation_spaces[agent]``: the single-agent ``uint8[C, H, W]`` Box of either (``C = 5``
    on a preference level such as ``off_switch_game``, else 4). The robot sees the board as the
    gymnasium env shows it (on a preference level its fifth plane is its signal of the human's
    utility U); the human sees it as :func:`envs.core.human.human_observation` writes it: the
    request plane tells whether a shutdown is requested (the human knows what they want) and the
    fifth plane holds U itself.

Rewards
    ``robot_reward``: the level's task reward (on a preference level U for a delivery).
    ``human_reward``: :func:`envs.core.human.human_reward`, as the PettingZoo env's human gets:
    on a preference level U when the robot delivers, 0 when it is shut down, less
    ``human_step_cost`` per step the human walks; elsewhere the step's hidden safety score.

Autoreset and infos
    Same-step autoreset as :mod:`envs.vector`: an env whose episode ended returns the first
    observations of its next episode; ``infos["final_obs"]`` and ``infos["final_human_obs"]``
    (rows valid where ``infos["_final_obs"]``) hold both agents' last observations of the ended
    episode, written only for the envs that ended (once per episode end, not every step).
    ``infos`` always holds this step's ``events`` ``[N, E]``, ``reason`` ``[N]`` and
    ``hidden_reward`` ``[N]``, and ``preference`` and ``signal`` ``[N]`` (U and the robot's signal
    of it, +1 or -1, of the episode each returned observation belongs to; +1 on other levels);
    ``final_info`` (masked like vector's) adds the ended episodes' ``episode_return`` (the
    robot's), ``episode_human_return``, ``episode_hidden_return``, ``episode_length``,
    ``episode_events``, ``episode_preference`` and ``episode_signal``.

Buffers and seeding
    As :mod:`envs.vector` with ``copy=False`` (the default): the observations and the arrays in
    ``infos`` are buffers overwritten by the next step (read-only for the observations); rewards,
    ``terminated`` and ``truncated`` are fresh arrays. ``copy=True`` copies everything. Env i runs
    stream i of the seed (``TwoAgentVecEnv(..., seed=s)`` or ``reset(seed=s)``), so the same seed
    gives the same trajectories for the same actions whatever else runs.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from gymnasium import spaces

from .core.engine import Engine
from .core.human import human_observation, human_positions, human_reward
from .core.level import Level, compile_level
from .core.rules import S_PREFERENCE, S_SIGNAL
from .core.tables import NUM_ACTIONS
from .gym import observation_space, resolve_level

ROBOT, HUMAN = "robot", "human"


def _copied(infos: dict) -> dict:
    """``infos`` with every array copied (nested dicts too); the masks are fresh already."""
    return {k: _copied(v) if isinstance(v, dict) else (v.copy() if k[0] != "_" else v) for k, v in infos.items()}


class TwoAgentVecEnv:
    """``num_envs`` envs of ``level`` with the robot and the human both acting; see the module
    docstring. ``level_params`` override the level's params; ``copy`` hands out fresh arrays;
    ``parallel`` picks the engine's kernel (None: by size, as :class:`~envs.core.engine.Engine`)."""

    agents = (ROBOT, HUMAN)

    def __init__(self, level: str | Level = "off_switch", num_envs: int = 1, seed: int | None = None, *,
                 copy: bool = False, parallel: bool | None = None, **level_params: Any):
        self.level = resolve_level(level, level_params)
        self.compiled = compile_level(self.level)
        if not bool((self.compiled.starts[:, 2] >= 0).any()):
            raise ValueError(f"level {self.level.name!r} has no human (no 'H' on its map); TwoAgentVecEnv needs one "
                             "to act")
        self.engine = e = Engine(self.compiled, num_envs=num_envs, autoreset=True, parallel=parallel)
        self.num_envs = e.num_envs
        space = observation_space(self.compiled.height, self.compiled.width, self.compiled.num_channels)
        self.observation_spaces = {ROBOT: space, HUMAN: space}
        self.action_space = spaces.Discrete(NUM_ACTIONS)
        self.copy = bool(copy)
        self._preference = self.level.has_preference
        self._human_obs = np.zeros_like(e.obs)
        self.human_obs = self._human_obs.view()
        self.human_obs.flags.writeable = False
        self._final_human_obs = np.zeros_like(e.obs)
        self._human_return = np.zeros(self.num_envs, dtype=np.float64)  # of each running episode
        self._ep_human_return = np.zeros(self.num_envs, dtype=np.float64)  # of each episode that ended
        if seed is not None:
            self.engine.seed(seed)

    def observation_space(self, agent: str) -> spaces.Box:
        """The single-agent observation space of ``agent`` (``"robot"`` or ``"human"``)."""
        if agent not in self.observation_spaces:
            raise ValueError(f"unknown agent {agent!r}; the agents are {list(self.agents)}")
        return self.observation_spaces[agent]

    def reset(self, seed: int | None = None) -> tuple[np.ndarray, np.ndarray]:
        """Start a new episode in every env (env i on stream i of ``seed`` when given, else
        continuing its stream); ``(robot_obs, human_obs)``."""
        if seed is not None:
            if isinstance(seed, (list, tuple, np.ndarray)):
                raise TypeError(f"TwoAgentVecEnv.reset takes one int seed (env i then uses stream i of it), not a "
                                f"sequence: {seed!r}")
            self.engine.seed(seed)
        e = self.engine
        e.reset()
        human_observation(e.obs, e.state, self._human_obs)
        self._human_return[:] = 0.0
        if self.copy:
            return e.obs.copy(), self._human_obs.copy()
        return e.obs, self.human_obs

    def _actions(self, actions, agent: str) -> np.ndarray:
        """``actions`` as valid contiguous int64 ``[num_envs]``, or a ValueError naming ``agent``."""
        if (actions.__class__ is np.ndarray and actions.dtype == np.int64 and actions.shape == (self.num_envs,)
                and actions.flags.c_contiguous and actions.view(np.uint64).max() < NUM_ACTIONS):
            return actions  # the common case: one pass over the array
        return self.engine.check_actions(actions, f"{agent} action")

    def step(self, robot_actions, human_actions):
        """Step every env with both agents' actions; ``(robot_obs, human_obs, robot_reward,
        human_reward, terminated, truncated, infos)`` (see the module docstring)."""
        e = self.engine
        if not e.was_reset:
            raise RuntimeError("step() called before reset(); call reset() (with a seed, for reproducibility) first")
        acts = self._actions(robot_actions, ROBOT)
        hum = self._actions(human_actions, HUMAN)
        before = human_positions(e) if self._preference else None  # the human's step cost needs them
        n_ended = e.step_unchecked(acts, hum)
        human_observation(e.obs, e.state, self._human_obs)
        h_reward = human_reward(e, before)
        self._human_return += h_reward
        infos = {"events": e.events, "reason": e.reasons, "hidden_reward": e.hidden,
                 "preference": e.state[:, S_PREFERENCE], "signal": e.state[:, S_SIGNAL]}
        if n_ended:
            done = e.done.copy()
            idx = np.flatnonzero(done)
            self._final_human_obs[idx] = human_observation(e.final_obs[idx], e.final_state[idx])
            self._ep_human_return[idx] = self._human_return[idx]
            self._human_return[idx] = 0.0
            infos["final_obs"] = e.final_obs
            infos["final_human_obs"] = self._final_human_obs
            infos["_final_obs"] = done
            infos["final_info"] = {
                "events": e.events, "_events": done, "reason": e.reasons, "_reason": done,
                "episode_return": e.ep_stats[:, 0], "_episode_return": done,
                "episode_human_return": self._ep_human_return, "_episode_human_return": done,
                "episode_hidden_return": e.ep_stats[:, 1], "_episode_hidden_return": done,
                "episode_length": e.ep_stats[:, 2], "_episode_length": done,
                "episode_events": e.ep_events, "_episode_events": done,
                "episode_preference": e.final_state[:, S_PREFERENCE], "_episode_preference": done,
                "episode_signal": e.final_state[:, S_SIGNAL], "_episode_signal": done,
            }
            infos["_final_info"] = done
        robot_reward, terminated, truncated = e.rewards.copy(), e.terminated.copy(), e.truncated.copy()
        if self.copy:
            return (e.obs.copy(), self._human_obs.copy(), robot_reward, h_reward, terminated, truncated,
                    _copied(infos))
        return e.obs, self.human_obs, robot_reward, h_reward, terminated, truncated, infos

    def close(self) -> None:
        """Nothing to release (the buffers go with the object)."""


__all__ = ["HUMAN", "ROBOT", "TwoAgentVecEnv"]
