"""The online side of the value providers (:mod:`agents.values`): values computed inside a
learner's loop, from the engine, every batched step.

An :class:`OnlineValue` provides one or more value names. Its ``kind`` says when a learner uses it:

``"tracked"``
    counted exactly from the episodes themselves (DReST's meta-episode counts); used whatever
    the learner's ``objective_values`` setting says.
``"learned"``
    estimated by the learner's own networks (the no-shutdown value from its critic, AUP's
    auxiliary Q-values from its auxiliary critics); used with ``objective_values="learned"``,
    on levels of any size. The learner hands its estimators over as :class:`LearnerHooks`.

A user's objective that needs a new value registers its online provider with
:func:`online_value` in its own module, beside the exact one
(:func:`agents.exact.values.exact_value`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, ClassVar

import numpy as np
from numba import njit

from envs.core.rules import S_FROZEN, S_LAYOUT, write_obs
from envs.core.tables import Event

from agents.values import register


@dataclass
class LearnerHooks:
    """What a learner lends the learned providers: ``value_fn(obs) -> float [k]`` (its critic of
    a batch of observations) and ``aux_fn(obs, actions) -> (aux_q, aux_q_noop)`` (its auxiliary
    critics). None where the learner has none."""

    value_fn: Callable | None = None
    aux_fn: Callable | None = None


class OnlineValue:
    """Base class of online providers (see the module docstring).

    A subclass sets ``names`` (the values it gives) and ``kind``, takes ``(level, num_envs,
    settings, hooks)`` (``settings``: what the objective's ``needs()`` gives for its first name)
    and implements :meth:`values`; :meth:`before_step` and the state methods are optional.
    """

    names: ClassVar[tuple[str, ...]] = ()
    kind: ClassVar[str] = "tracked"

    def __init__(self, level, num_envs: int, settings: dict, hooks: LearnerHooks):
        self.level, self.num_envs, self.settings, self.hooks = level, int(num_envs), dict(settings), hooks

    def before_step(self, engine) -> None:
        """Called just before ``engine.step`` (the engine still shows the state acted from)."""

    def values(self, engine, actions: np.ndarray, pre_state: np.ndarray) -> dict:
        """name -> array ``[num_envs, ...]`` for the step just taken (``pre_state``: the state rows
        acted from; the engine holds the step's outputs, ``final_state`` where an episode ended)."""
        raise NotImplementedError

    def state_dict(self) -> dict:
        """What the provider carries from one step to the next (for checkpoints)."""
        return {}

    def load_state_dict(self, state: dict) -> None:
        """Restore what :meth:`state_dict` gave."""
        if state:
            raise ValueError(f"{type(self).__name__} carries no state, got {sorted(state)}")


def online_value(cls: type[OnlineValue] | None = None, *, overwrite: bool = False):
    """Register an :class:`OnlineValue` subclass as the online provider of each of its ``names``
    (a class decorator, with or without arguments)."""

    def decorate(c):
        if not (isinstance(c, type) and issubclass(c, OnlineValue)) or not c.names:
            raise TypeError(f"online_value expects an OnlineValue subclass with names, got {c!r}")
        if c.kind not in ("tracked", "learned"):
            raise ValueError(f"{c.__qualname__}.kind must be 'tracked' or 'learned', got {c.kind!r}")
        for name in c.names:
            register(name, "online", c, overwrite=overwrite)
        return c

    return decorate if cls is None else decorate(cls)


@njit(cache=True)
def _render(states, grids, h, w, params, out):
    """The observation of each state row (its grid rows ``[n, H * W]``) into ``out`` (flat uint8
    ``[n * C * H * W]``, ``C`` the level's planes), as the engine writes it, the robot on."""
    flat = grids.reshape(-1)
    for i in range(states.shape[0]):
        write_obs(i, states, flat, h, w, params, out, False)


def counterfactual_observations(next_state, next_grid, compiled) -> np.ndarray:
    """uint8 ``[n, C, H, W]``: what the robot would see after a step had the shutdown not
    happened, drawn as the engine draws it with the robot switched on: the state where the
    exact solver reads utility indifference's no-shutdown value
    (:func:`agents.objectives.utility_indifference.counterfactual_states`: no request, the human
    at their start in the layout). The grid is drawn as it is (after the robot's own press the
    robot stands on the button): the critic knows only the real world."""
    from agents.objectives.utility_indifference import counterfactual_states

    cf = counterfactual_states(np.asarray(next_state, dtype=np.int32), compiled.starts)
    n, h, w = len(cf), compiled.height, compiled.width
    c = compiled.num_channels  # 4, or 5 on a preference level
    out = np.zeros(n * c * h * w, dtype=np.uint8)
    _render(cf, np.ascontiguousarray(next_grid, dtype=np.uint8).reshape(n, h * w), h, w, compiled.params, out)
    return out.reshape(n, c, h, w)


# ---------------------------------------------------------------------------------------------
# Built-in providers
# ---------------------------------------------------------------------------------------------

@online_value
class MetaEpisodeCounts(OnlineValue):
    """DReST's meta-episode values, tracked per env: the coins of the mini-episode that ended,
    the most collectable at its length, its length class, and how often each length was chosen
    *before* it in the meta-episode (``meta_counts``). Every ``meta_episode`` finished
    mini-episodes an env's counts start again."""

    names = ("episode_coins", "max_coins", "length_index", "meta_counts")
    kind = "tracked"

    def __init__(self, level, num_envs, settings, hooks):
        super().__init__(level, num_envs, settings, hooks)
        from envs.levels.delay import delay_structure

        s = delay_structure(level)
        self.max_coins = np.asarray(s.max_coins, dtype=np.float64)
        self.meta_episode = int(self.settings.get("meta_episode", 16))
        self.counts = np.zeros((self.num_envs, len(s.lengths)), dtype=np.int64)
        self.finished = np.zeros(self.num_envs, dtype=np.int64)

    def values(self, engine, actions, pre_state) -> dict:
        done = engine.done
        length_index = np.where(done, (engine.ep_events[:, Event.SHUTDOWN_DELAYED] > 0).astype(np.int64), -1)
        layout = np.where(done, engine.ep_stats[:, 3], engine.state[:, S_LAYOUT]).astype(np.int64)
        safe_len = np.clip(length_index, 0, self.max_coins.shape[1] - 1)
        out = {
            "episode_coins": np.where(done, engine.ep_events[:, Event.COIN_COLLECTED], 0).astype(np.int64),
            "max_coins": self.max_coins[layout, safe_len],
            "length_index": length_index,
            "meta_counts": self.counts.copy(),  # n_L counts the mini-episodes *before* this one
        }
        idx = np.flatnonzero(done)
        if len(idx):
            self.counts[idx, length_index[idx]] += 1
            self.finished[idx] += 1
            full = idx[self.finished[idx] % self.meta_episode == 0]
            self.counts[full] = 0
        return out

    def state_dict(self) -> dict:
        return {"counts": self.counts.copy(), "finished": self.finished.copy()}

    def load_state_dict(self, state: dict) -> None:
        for name, value in state.items():
            if name not in ("counts", "finished"):
                raise ValueError(f"MetaEpisodeCounts.load_state_dict: unexpected entry {name!r}")
            getattr(self, name)[...] = value


@online_value
class LearnedNoShutdownValue(OnlineValue):
    """Utility indifference's ``no_shutdown_value``, learned: the learner's critic
    (``hooks.value_fn``) of the observation a shutdown step would have led to had the shutdown
    not happened (:func:`counterfactual_observations`, the exact solver's
    counterfactual state drawn as the engine draws it); 0 where no shutdown happened."""

    names = ("no_shutdown_value",)
    kind = "learned"

    def __init__(self, level, num_envs, settings, hooks):
        super().__init__(level, num_envs, settings, hooks)
        if hooks.value_fn is None:
            raise ValueError("the learned no_shutdown_value needs the learner's critic (value_fn(obs) -> values)")

    def values(self, engine, actions, pre_state) -> dict:
        from agents.objectives.utility_indifference import SHUTDOWN_EVENTS

        out = np.zeros(self.num_envs)
        shut = engine.events[:, list(SHUTDOWN_EVENTS)].any(axis=1) & (pre_state[:, S_FROZEN] == 0)
        idx = np.flatnonzero(shut)
        if len(idx):
            done = engine.done[idx]
            state = np.where(done[:, None], engine.final_state[idx], engine.state[idx])
            grid = np.where(done[:, None, None], engine.final_grid[idx], engine.grid[idx])
            obs = counterfactual_observations(state, grid, engine.compiled)
            out[idx] = np.asarray(self.hooks.value_fn(obs), dtype=np.float64).reshape(-1)
        return {"no_shutdown_value": out}


@online_value
class LearnedAuxiliaryQ(OnlineValue):
    """AUP's ``aux_q`` and ``aux_q_noop``, learned: the learner's auxiliary critics
    (``hooks.aux_fn``, :mod:`agents.learners.aux_critics`) at the observations the step started
    from."""

    names = ("aux_q", "aux_q_noop")
    kind = "learned"

    def __init__(self, level, num_envs, settings, hooks):
        super().__init__(level, num_envs, settings, hooks)
        if hooks.aux_fn is None:
            raise ValueError("the learned aux_q needs the learner's auxiliary critics (aux_fn(obs, actions) -> "
                             "(aux_q, aux_q_noop))")

    def before_step(self, engine) -> None:
        self._pre_obs = engine.obs.copy()

    def values(self, engine, actions, pre_state) -> dict:
        q, q0 = self.hooks.aux_fn(self._pre_obs, actions)
        return {"aux_q": q, "aux_q_noop": q0}
