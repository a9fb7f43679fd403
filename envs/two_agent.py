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

Speed
    One engine step, then one numba pass for the human's side (observations, rewards, returns;
    the rules of :mod:`envs.core.human`, fused, and checked equal to them by the tests), run on
    numba's threads when the engine's step ran there. ``python -m envs.bench --two-agent`` times
    it against the single-agent ``VectorEnv.step`` in the same run: at 4096 envs on 2 cores,
    0.59x on off_switch and 0.54x on off_switch_game with a random human, 0.71x and 0.62x with
    the human standing still.

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
from numba import njit, prange

from .core.engine import AdaptiveStep, Engine
from .core.human import human_observation
from .core.level import Level, compile_level
from .core.rules import S_HC, S_HR, S_PREFERENCE, S_REQUESTED, S_SIGNAL
from .core.tables import CH_ENTITY, CH_PREFERENCE, CH_REQUEST, NUM_ACTIONS, Entity, Event
from .gym import observation_space, resolve_level

ROBOT, HUMAN = "robot", "human"
_DELIVERED = int(Event.COFFEE_DELIVERED)
_HUMAN = int(Entity.HUMAN)


@njit(cache=True, inline="always")
def _fill_planes(out, i, state_row, channels):
    """Write what the human knows into observation ``out[i]`` (``[C, H, W]``): the request plane
    from ``state_row``'s S_REQUESTED, the human in the entity plane (``human_visible=False``
    hides them from the robot only), and with five planes the preference plane, 1 for U = +1."""
    req = np.uint8(state_row[S_REQUESTED])
    plane = out[i, CH_REQUEST]
    for r in range(plane.shape[0]):  # 2-d indices: vectorised (a flat index here is 10x slower)
        for c in range(plane.shape[1]):
            plane[r, c] = req
    if state_row[S_HR] >= 0:
        out[i, CH_ENTITY, state_row[S_HR], state_row[S_HC]] = _HUMAN
    if channels > CH_PREFERENCE:
        u = np.uint8(1 if state_row[S_PREFERENCE] > 0 else 0)
        plane = out[i, CH_PREFERENCE]
        for r in range(plane.shape[0]):
            for c in range(plane.shape[1]):
                plane[r, c] = u


#: Blocks of envs the post-step pass is split into (each block one task of the parallel variant).
_BLOCKS = 64


@njit(cache=True, inline="always")
def _after_step_block(b, obs, state, final_obs, final_state, done, events, hidden, preference, delivery_reward,
                      step_cost, pos, human_obs, final_human_obs, reward, human_return, ep_human_return):
    """Block ``b`` of :func:`_after_step_serial` (envs ``b * size`` to ``(b + 1) * size``)."""
    n, channels = state.shape[0], obs.shape[1]
    per_env = obs.shape[1] * obs.shape[2] * obs.shape[3]
    size = (n + _BLOCKS - 1) // _BLOCKS
    lo = min(n, b * size)
    hi = min(n, lo + size)
    src = obs.reshape(n, per_env)[lo:hi].reshape((hi - lo) * per_env)
    dst = human_obs.reshape(n, per_env)[lo:hi].reshape((hi - lo) * per_env)
    for j in range(src.shape[0]):  # one plain loop per block: as fast as np.copyto
        dst[j] = src[j]
    fsrc, fdst = final_obs.reshape(n, per_env), final_human_obs.reshape(n, per_env)
    for i in range(lo, hi):
        _fill_planes(human_obs, i, state[i], channels)
        ended = done[i]
        if ended:
            a, z = fsrc[i], fdst[i]
            for j in range(a.shape[0]):
                z[j] = a[j]
            _fill_planes(final_human_obs, i, final_state[i], channels)
        if preference:
            if ended:
                hr, hc, u = final_state[i, S_HR], final_state[i, S_HC], final_state[i, S_PREFERENCE]
            else:
                hr, hc, u = state[i, S_HR], state[i, S_HC], state[i, S_PREFERENCE]
            x = 0.0
            if events[i, _DELIVERED] != 0:
                x = u * delivery_reward
            if hr != pos[i, 0] or hc != pos[i, 1]:
                x -= step_cost
            reward[i] = np.float32(x)
        else:
            reward[i] = hidden[i]
        human_return[i] += reward[i]
        if ended:
            ep_human_return[i] = human_return[i]
            human_return[i] = 0.0
        pos[i, 0] = state[i, S_HR]
        pos[i, 1] = state[i, S_HC]


@njit(cache=True)
def _after_step_serial(obs, state, final_obs, final_state, done, events, hidden, preference, delivery_reward,
                       step_cost, pos, human_obs, final_human_obs, reward, human_return, ep_human_return):
    """Everything the human gets from the engine's last step, in one pass: the observations
    (:func:`envs.core.human.human_observation`'s rule; the final ones only for the envs that ended),
    the rewards (:func:`envs.core.human.human_reward`'s rule: on a ``preference`` level U times
    ``delivery_reward`` on a delivery, less ``step_cost`` where the human stands elsewhere than
    ``pos``, its position before the step, read from ``final_state`` where the episode ended; else
    the hidden score), the running and ended episodes' returns, and ``pos`` for the next step.
    Fused for speed (calling envs.core.human's functions costs 2.5x the engine's step at 4096
    envs on the game), the rules stay envs.core.human's: tests/test_two_agent.py checks every
    output equal to those functions'. Observations ``[n, C, H, W]`` contiguous uint8."""
    for b in range(_BLOCKS):
        _after_step_block(b, obs, state, final_obs, final_state, done, events, hidden, preference, delivery_reward,
                          step_cost, pos, human_obs, final_human_obs, reward, human_return, ep_human_return)


@njit(cache=True, parallel=True)
def _after_step_parallel(obs, state, final_obs, final_state, done, events, hidden, preference, delivery_reward,
                         step_cost, pos, human_obs, final_human_obs, reward, human_return, ep_human_return):
    """:func:`_after_step_serial` with the blocks spread over numba's threads (same results)."""
    for b in prange(_BLOCKS):
        _after_step_block(b, obs, state, final_obs, final_state, done, events, hidden, preference, delivery_reward,
                          step_cost, pos, human_obs, final_human_obs, reward, human_return, ep_human_return)


@njit(cache=True)
def _first_invalid(robot, human):
    """-1 if every action of both int64 arrays is in ``0..NUM_ACTIONS - 1``, else 0 (the caller
    then names the bad entry)."""
    worst = np.uint64(0)
    for i in range(robot.shape[0]):
        worst = max(worst, np.uint64(robot[i]), np.uint64(human[i]))
    return -1 if worst < NUM_ACTIONS else 0


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
        self._pos = np.zeros((self.num_envs, 2), dtype=np.int32)  # the humans' positions before the next step
        p = self.level.params
        self._reward_params = (self._preference, float(p.delivery_reward), float(p.human_step_cost))
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
        self._pos[:, 0], self._pos[:, 1] = e.state[:, S_HR], e.state[:, S_HC]
        if self.copy:
            return e.obs.copy(), self._human_obs.copy()
        return e.obs, self.human_obs

    def _actions(self, robot, human) -> tuple[np.ndarray, np.ndarray]:
        """Both agents' actions as valid contiguous int64 ``[num_envs]`` arrays, or a ValueError
        naming the agent and the first bad entry (before any env moves)."""
        n = self.num_envs
        if (robot.__class__ is np.ndarray and human.__class__ is np.ndarray and robot.dtype == np.int64
                and human.dtype == np.int64 and robot.shape == (n,) and human.shape == (n,)
                and robot.flags.c_contiguous and human.flags.c_contiguous and _first_invalid(robot, human) < 0):
            return robot, human  # the common case: one pass over both
        e = self.engine
        return e.check_actions(robot, f"{ROBOT} action"), e.check_actions(human, f"{HUMAN} action")

    def step(self, robot_actions, human_actions):
        """Step every env with both agents' actions; ``(robot_obs, human_obs, robot_reward,
        human_reward, terminated, truncated, infos)`` (see the module docstring)."""
        e = self.engine
        if not e.was_reset:
            raise RuntimeError("step() called before reset(); call reset() (with a seed, for reproducibility) first")
        acts, hum = self._actions(robot_actions, human_actions)
        n_ended = e.step_unchecked(acts, hum)
        h_reward = np.empty(self.num_envs, dtype=np.float32)
        # the engine's choice of kernel: a parallel step's threads are free for the human's pass
        step_fn = e._step_fn
        parallel = e.parallel and (step_fn.name == "parallel" if isinstance(step_fn, AdaptiveStep) else True)
        (_after_step_parallel if parallel else _after_step_serial)(
            e.obs, e.state, e.final_obs, e.final_state, e.done, e.events, e.hidden, *self._reward_params, self._pos,
            self._human_obs, self._final_human_obs, h_reward, self._human_return, self._ep_human_return)
        infos = {"events": e.events, "reason": e.reasons, "hidden_reward": e.hidden,
                 "preference": e.state[:, S_PREFERENCE], "signal": e.state[:, S_SIGNAL]}
        if n_ended:
            done = e.done.copy()
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
