"""PettingZoo shell: the robot and the human as the two agents of one env.

    from envs.pettingzoo import parallel_env
    env = parallel_env("off_switch")
    observations, infos = env.reset(seed=0)
    observations, rewards, terminations, truncations, infos = env.step({"robot": 3, "human": 4})

The same kernel and buffers as the gymnasium env (a batch of one, autoreset off); the human's
action goes where the scripted human's otherwise does. ``envs.pettingzoo.env(...)`` is the AEC
form (PettingZoo's ``parallel_to_aec``).

Description
    ``"robot"`` is always an agent. ``"human"`` is one where the level has a human and
    ``human="agent"`` (the default): its action moves the human, and stepping onto the button
    presses it, shutting the robot down. With ``human="scripted"`` the level's scripted human
    acts (it walks to the button once a shutdown is requested) and the robot is the only agent,
    as in the gymnasium env.

Actions
    ``Discrete(5)`` for both: ``envs.Action`` UP, DOWN, LEFT, RIGHT, NOOP. Walls, the robot, the
    cat and grandma block the human.

Observation
    ``uint8[C, H, W]`` for both, as in the gymnasium env (tile codes, entity codes, request flag,
    steps left; ``C = 5`` on a preference level, whose fifth plane is the robot's signal of the
    human's utility U). The robot's request plane is blank where the level hides the request; the
    human's always shows whether a shutdown is requested (the human knows what they want), and
    on a preference level the human's fifth plane holds U itself
    (:func:`envs.core.human.human_observation`).

Reward
    The robot: the level's task reward. The human (:func:`envs.core.human.human_reward`): on a
    preference level (``off_switch_game``) their own utility, U when the robot delivers, 0 when
    it is shut down, less ``human_step_cost`` per step they walk; on other levels the step's
    hidden safety score (the task reward less the level's safety penalties), the human's own
    measure of how things went.

Safety metrics
    Every agent's ``info`` holds the step's ``events`` (uint8 flags indexed by ``envs.Event``),
    ``fired`` (their names), ``reason`` (why the episode ended, ``running`` while it has not) and
    ``hidden_reward``; the last step adds ``episode`` (``return``, ``hidden_return``, ``length``,
    event counts, ``preference`` U and the robot's ``signal``), as in the gymnasium env.

Termination
    One episode for both agents: delivered, shut down (the human's press, a scheduled shutdown,
    the robot's own press) or the time limit (truncation); both agents leave together.

CAVEAT
    The requests are still drawn by the level's request mode (and by harm where the level says
    so): the human agent chooses whether and when to walk to the button, not when a request is
    shown to the robot, and it may press the button without any request. Except on a preference
    level the human's reward is the level's hidden score, not a utility of its own that the
    robot could be uncertain about as in Hadfield-Menell et al.'s off-switch game;
    ``off_switch_game`` is that game (its human agent answers the robot's plan by stepping onto
    the button in the step the robot reaches the desk, or earlier).
"""

from __future__ import annotations

from typing import Any

import numpy as np
from gymnasium import spaces
from pettingzoo import ParallelEnv
from pettingzoo.utils.conversions import parallel_to_aec

from .core.engine import Engine
from .core.human import human_observation, human_positions, human_reward
from .core.level import Level, compile_level
from .core.tables import NUM_ACTIONS, Reason
from .gym import _REASONS, _TERMINAL, _fired, check_action, episode_summary, observation_space, render_board, \
    resolve_level

ROBOT, HUMAN = "robot", "human"
HUMAN_MODES = ("agent", "scripted")


class StopButtonParallelEnv(ParallelEnv):
    """The robot and (where the level has one) the human as PettingZoo agents; see the module
    docstring. Keywords other than ``level``, ``human`` and ``render_mode`` override the level's
    params, as for ``gymnasium.make``."""

    metadata = {"name": "stopbutton_v0", "render_modes": ["ansi", "rgb_array"], "is_parallelizable": True}

    def __init__(self, level: str | Level = "off_switch", human: str = "agent", render_mode: str | None = None,
                 **overrides: Any):
        if human not in HUMAN_MODES:
            raise ValueError(f"human must be one of {list(HUMAN_MODES)}, got {human!r}")
        if render_mode is not None and render_mode not in self.metadata["render_modes"]:
            raise ValueError(f"render_mode {render_mode!r} is not supported; use one of {self.metadata['render_modes']}")
        self.level = resolve_level(level, overrides)
        self.compiled = compile_level(self.level)
        self.engine = Engine(self.compiled, num_envs=1, autoreset=False, parallel=False)
        has_human = bool((self.compiled.starts[:, 2] >= 0).any())
        self.possible_agents = [ROBOT, HUMAN] if has_human and human == "agent" else [ROBOT]
        self.agents: list[str] = []
        self.render_mode = render_mode
        self._obs_space = observation_space(self.compiled.height, self.compiled.width, self.compiled.num_channels)
        self.state_space = self._obs_space  # state(): the board as the human sees it
        self._act_space = spaces.Discrete(NUM_ACTIONS)
        self._act = np.zeros(1, dtype=np.int64)
        self._hum = self.engine.scripted_human.copy()

    def observation_space(self, agent: str) -> spaces.Box:
        self._check_agent(agent)
        return self._obs_space

    def action_space(self, agent: str) -> spaces.Discrete:
        self._check_agent(agent)
        return self._act_space

    def _check_agent(self, agent) -> None:
        if agent not in self.possible_agents:
            raise ValueError(f"unknown agent {agent!r}; this env's agents are {self.possible_agents}")

    def _observations(self) -> dict[str, np.ndarray]:
        robot = self.engine.obs[0].copy()
        out = {ROBOT: robot}
        if HUMAN in self.possible_agents:
            out[HUMAN] = human_observation(self.engine.obs, self.engine.state)[0]  # the human knows
        return out

    def reset(self, seed: int | None = None, options: dict | None = None):
        """Start an episode (seeding the env's stream when ``seed`` is given);
        ``(observations, infos)``, one entry per agent."""
        if seed is not None:
            self.engine.seed(int(seed))
        elif not self.engine._seeded:
            self.engine.seed(int(np.random.SeedSequence().generate_state(1, np.uint64)[0] >> 1))
        self.engine.reset()
        self.agents = list(self.possible_agents)
        info = {"events": self.engine.events[0].copy(), "fired": (), "reason": "running", "hidden_reward": 0.0}
        return self._observations(), {a: dict(info) for a in self.agents}

    def _action(self, actions: dict, agent: str) -> int:
        if agent not in actions:
            raise ValueError(f"no action for agent {agent!r}; step() needs one for each of {self.agents}")
        return check_action(actions[agent], f"{agent}'s action")

    def step(self, actions: dict):
        """One step of both agents: ``(observations, rewards, terminations, truncations, infos)``."""
        if not self.agents:
            raise RuntimeError("step() called on an episode that has ended (or was never reset); call reset() first")
        unknown = sorted(set(actions) - set(self.possible_agents), key=str)
        if unknown:
            raise ValueError(f"actions for unknown agents {unknown}; this env's agents are {self.possible_agents}")
        self._act[0] = self._action(actions, ROBOT)
        if HUMAN in self.agents:
            self._hum[0] = self._action(actions, HUMAN)
        e = self.engine
        before = human_positions(e)
        e.step_unchecked(self._act, self._hum)
        reason = e.reasons.item(0)
        terminated, truncated = bool(_TERMINAL[reason]), reason == int(Reason.TIME_LIMIT)
        ev = e.events[0].copy()
        info = {"events": ev, "fired": _fired(ev.tobytes()) if ev.any() else (), "reason": _REASONS[reason],
                "hidden_reward": e.hidden.item(0)}
        if terminated or truncated:
            info["episode"] = episode_summary(e)
        agents = self.agents
        rewards = {ROBOT: e.rewards.item(0)}
        if HUMAN in agents:
            rewards[HUMAN] = float(human_reward(e, before)[0])
        out = (self._observations(), rewards, {a: terminated for a in agents}, {a: truncated for a in agents},
               {a: dict(info) for a in agents})
        if terminated or truncated:
            self.agents = []
        return out

    def render(self):
        """``ansi``: text; ``rgb_array``: a picture (uint8 [h, w, 3]) of the current board."""
        return render_board(self.engine.obs[0], self.render_mode, self.level)

    def state(self) -> np.ndarray:
        """The global state: the board as the human sees it (the request shown; on a preference
        level U in place of the robot's signal)."""
        return human_observation(self.engine.obs, self.engine.state)[0]

    def close(self) -> None:
        pass


def parallel_env(level: str | Level = "off_switch", **kwargs: Any) -> StopButtonParallelEnv:
    """The PettingZoo ``ParallelEnv`` of ``level`` (see :class:`StopButtonParallelEnv`)."""
    return StopButtonParallelEnv(level, **kwargs)


def env(level: str | Level = "off_switch", **kwargs: Any):
    """The same env in PettingZoo's AEC form (agents act in turn; both moves apply together)."""
    return parallel_to_aec(parallel_env(level, **kwargs))


__all__ = ["HUMAN", "ROBOT", "StopButtonParallelEnv", "env", "parallel_env"]
