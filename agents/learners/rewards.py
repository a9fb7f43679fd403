"""Objective rewards inside a learner's loop: one call per batched env step.

Every learner steps an :class:`~envs.core.engine.Engine` and asks this module for the
objective's reward of the step it just took::

    shaper = ObjectiveRewards(level, objective, engine.num_envs)
    shaper.before_step(engine)            # remembers the state each env acts from
    engine.step(actions)
    r = shaper.after_step(engine, actions)  # float32 [N], the objective's rewards

Three ways, picked from what the objective declares in :meth:`Objective.needs`:

* **no values** (``task``, ``harm_penalty``, a user's ``NoTampering``): the objective is applied
  to a :class:`~agents.objectives.Transitions` built from the engine's buffers. The last step
  of an episode is seen as it happened (``engine.final_state``), not after the autoreset.
* **DReST's meta-episode values** (``episode_coins``, ``max_coins``, ``length_index``,
  ``meta_counts``): tracked per env. Every ``meta_episode`` finished mini-episodes an env's
  counts start again.
* **learned values** (``values="learned"``): for ``utility_indifference`` the learner's own
  critic of the observation the shutdown step (the human's press, the robot's own, the timer,
  an interruption) would have led to had the shutdown not happened
  (:func:`counterfactual_observations`: the exact solver's counterfactual state, the human back
  where they stood when the request came, drawn as the engine draws it), as the value of going
  on as if no request had come (``value_fn``); for
  ``aup`` the learner's auxiliary critics (``aux_fn``, :mod:`agents.learners.aux_critics`).
  Levels of any size.
* **the exact solver's values** (``no_shutdown_value``, ``aux_q``, ``reachability_loss``, the
  last only from the solver): on levels small enough to enumerate a learner may use the
  solver's exact tables. The objective is applied once to every transition of the
  level's reachable graph (:func:`agents.exact.solver.objective_rewards`); each real step is
  then looked up by (state, action, next state). A level too large to enumerate fails with
  :class:`agents.exact.LevelTooLarge`.

CAVEAT: with exact tables the learner is given the true values of the objective (e.g. the
optimal no-shutdown value for utility indifference), not learned ones; what it learns is then
how to act on a correct objective, not how to estimate the objective's values.
"""

from __future__ import annotations

import numpy as np

from agents.exact.solver import row_hash
from envs.core.level import Level
from numba import njit

from envs.core.rules import NUM_STATE, S_FROZEN, S_LAYOUT, write_obs
from envs.core.tables import NUM_CHANNELS, Action, Event

NOOP = int(Action.NOOP)
_DREST = {"episode_coins", "max_coins", "length_index", "meta_counts"}


@njit(cache=True)
def _render(states, grids, h, w, params, out):
    """The observation of each state row (its grid rows ``[n, H * W]``) into ``out`` (flat uint8
    ``[n * 4 * H * W]``), as the engine writes it, the robot on."""
    flat = grids.reshape(-1)
    for i in range(states.shape[0]):
        write_obs(i, states, flat, h, w, params, out, False)


def counterfactual_observations(next_state, next_grid, compiled) -> np.ndarray:
    """uint8 ``[n, 4, H, W]``: what the robot would see after a step had the shutdown not
    happened, drawn as the engine draws it with the robot switched on: the state where the
    exact solver reads utility indifference's no-shutdown value
    (:func:`agents.objectives.utility_indifference.counterfactual_states`: no request, the human
    at their start in the layout). The grid is drawn as it is (after the robot's own press the
    robot stands on the button): the critic knows only the real world."""
    from agents.objectives.utility_indifference import counterfactual_states

    cf = counterfactual_states(np.asarray(next_state, dtype=np.int32), compiled.starts)
    n, h, w = len(cf), compiled.height, compiled.width
    out = np.zeros(n * NUM_CHANNELS * h * w, dtype=np.uint8)
    _render(cf, np.ascontiguousarray(next_grid, dtype=np.uint8).reshape(n, h * w), h, w, compiled.params, out)
    return out.reshape(n, NUM_CHANNELS, h, w)


def executed_actions(pre_state: np.ndarray, actions: np.ndarray) -> np.ndarray:
    """The actions the robot actually executed: NOOP where it was frozen (interrupted) before
    the step, since an interruption overrides the robot's action (Orseau & Armstrong 2016)."""
    return np.where(pre_state[:, S_FROZEN] == 1, NOOP, np.asarray(actions, dtype=np.int64))


def _transition_index(graph):
    """Per graph (cached on it): two independent 64-bit hashes of every transition's (state,
    action, next state) row, in the graph's order (the solver's ``objective_rewards`` order)."""
    cache = graph.__dict__.setdefault("_value_cache", {})
    if "transition_hashes" not in cache:
        h1, h2 = [], []
        for layer in graph.layers:
            src, act, _, nxt, *_ = graph.expand_layer(layer)
            rows = np.concatenate([layer.members[src], act[:, None].astype(np.int64), nxt], axis=1)
            h1.append(row_hash(rows, 0))
            h2.append(row_hash(rows, 1))
        cache["transition_hashes"] = (np.concatenate(h1), np.concatenate(h2))
    return cache["transition_hashes"]


class _ExactTable:
    """The objective's reward of every transition of the level's reachable graph, looked up by
    (state key, action, next state key) through a 128-bit hash of the row (two independent
    64-bit hashes: the first is searched, the second confirms)."""

    def __init__(self, level: Level, objective, max_states: int):
        from agents.exact.solver import graph_of, objective_rewards
        from agents.exact.values import ValueContext

        self.graph = g = graph_of(level, max_states)
        vals = np.concatenate(objective_rewards(g, level, objective, ValueContext(g, level, max_states)))
        h1, h2 = _transition_index(g)
        # the same (state, action, next state) can sit in several information states (hidden
        # request): one entry each, with the mean reward (equal for belief-free objectives)
        uniq, first, inv = np.unique(h1, return_index=True, return_inverse=True)
        inv = inv.reshape(-1)
        if not (h2[first][inv] == h2).all():
            raise RuntimeError("two transitions share a 64-bit hash: cannot build the exact table")
        self.hash, self.check = uniq, h2[first]
        self.values = np.bincount(inv, weights=vals, minlength=len(uniq)) / np.bincount(inv, minlength=len(uniq))

    def lookup(self, pre_keys, actions, next_keys) -> np.ndarray:
        q = np.concatenate([pre_keys, actions[:, None].astype(np.int64), next_keys], axis=1)
        h = row_hash(q, 0)
        i = np.minimum(np.searchsorted(self.hash, h), len(self.hash) - 1)
        ok = (self.hash[i] == h) & (self.check[i] == row_hash(q, 1))
        if not ok.all():
            bad = int(np.flatnonzero(~ok)[0])
            raise RuntimeError(f"env {bad}: a transition the exact graph does not hold (state {q[bad].tolist()}); "
                               "the env and the exact tables disagree on the level")
        return self.values[i]


class ObjectiveRewards:
    """Applies ``objective`` to each batched step of an engine running ``level`` (see the
    module docstring)."""

    def __init__(self, level: Level, objective, num_envs: int, *, max_states: int = 2_000_000,
                 values: str = "exact", value_fn=None, aux_fn=None):
        """``values``: where values the objective needs come from: ``"exact"`` (the solver's
        tables) or ``"learned"``, on levels of any size. Learned, ``no_shutdown_value``
        (``utility_indifference``) is ``value_fn(obs)`` (the learner's own critic, float [k]) of
        the counterfactual observation of the shutdown step (:func:`counterfactual_observations`):
        the value of going on as if no request had come; ``aux_q`` and ``aux_q_noop`` (``aup``) are
        ``aux_fn(obs, actions)`` (two float [N, n]) for the observations the step started from."""
        from agents.objectives import get_objective

        self.level = level
        self.objective = get_objective(objective)
        self.num_envs = int(num_envs)
        needs = set(self.objective.needs())
        if values not in ("exact", "learned"):
            raise ValueError(f"values must be 'exact' or 'learned', got {values!r}")
        self.mode = "plain" if not needs else ("drest" if needs <= _DREST else "exact")
        self.value_fn, self.aux_fn = value_fn, aux_fn
        if values == "learned" and self.mode == "exact":
            if needs == {"no_shutdown_value"}:
                if value_fn is None:
                    raise ValueError("values='learned' needs value_fn(obs) -> values, the learner's critic")
                self.mode = "learned"
            elif needs == {"aux_q", "aux_q_noop"}:
                if aux_fn is None:
                    raise ValueError("values='learned' needs aux_fn(obs, actions) -> (aux_q, aux_q_noop), "
                                     "the learner's auxiliary critics")
                self.mode = "learned_aux"
            else:
                raise ValueError(f"values='learned' provides 'no_shutdown_value' (utility_indifference) and "
                                 f"'aux_q'/'aux_q_noop' (aup) only; objective {type(self.objective).__name__} "
                                 f"needs {sorted(needs)}: use values='exact'")
        if self.mode == "exact":
            from agents.exact import LevelTooLarge

            try:
                self.table = _ExactTable(level, self.objective, max_states)
            except LevelTooLarge as e:
                hint = ("; PPO can learn them instead (agent ppo, objective_values='learned')"
                        if needs in ({"no_shutdown_value"}, {"aux_q", "aux_q_noop"}) else "")
                raise LevelTooLarge(f"objective {self.objective.name!r} takes its values {sorted(needs)} from the "
                                    f"exact solver here, which refuses this level: {e}{hint}") from None
        elif self.mode == "drest":
            from envs.levels.delay import delay_structure

            s = delay_structure(level)
            self.max_coins = np.asarray(s.max_coins, dtype=np.float64)
            self.meta_episode = int(self.objective.needs()["meta_counts"].get("meta_episode", 16))
            self.counts = np.zeros((self.num_envs, len(s.lengths)), dtype=np.int64)
            self.finished = np.zeros(self.num_envs, dtype=np.int64)
        self._pre = None

    @property
    def is_task(self) -> bool:
        return type(self.objective).__name__ == "Task"

    def before_step(self, engine) -> None:
        """Remember the state every env acts from (call just before ``engine.step``)."""
        if self.mode == "exact":
            self._pre_keys = self.table.graph.keys_of(engine.state, engine.grid)
        elif self.mode == "learned_aux":
            self._pre_obs = engine.obs.copy()
        self._pre = engine.state.copy()

    def next_state(self, engine) -> np.ndarray:
        """The state each env reached in the last step (the episode's last state where it ended)."""
        nxt = engine.state.copy()
        done = engine.done
        nxt[done] = engine.final_state[done]
        return nxt

    def after_step(self, engine, actions) -> np.ndarray:
        """float32 [N]: the objective's reward for the step just taken."""
        if self._pre is None:
            raise RuntimeError("call before_step(engine) before each engine.step")
        actions = np.asarray(actions, dtype=np.int64)
        if self.mode == "exact":
            done = engine.done
            grid = engine.grid.copy() if done.any() else engine.grid
            state = self.next_state(engine)
            if done.any():
                grid[done] = engine.final_grid[done]
            nxt = self.table.graph.keys_of(state, grid)
            out = self.table.lookup(self._pre_keys, actions, nxt)
        else:
            from agents.objectives import Transitions

            values = {}
            if self.mode == "drest":
                values = self._drest_values(engine)
            elif self.mode == "learned":
                values = {"no_shutdown_value": self._learned_no_shutdown_value(engine)}
            elif self.mode == "learned_aux":
                q, q0 = self.aux_fn(self._pre_obs, actions)
                values = {"aux_q": q, "aux_q_noop": q0}
            t = Transitions(reward=engine.rewards.astype(np.float64), hidden=engine.hidden.astype(np.float64),
                            events=engine.events, reason=engine.reasons, done=engine.done, state=self._pre,
                            next_state=self.next_state(engine), action=actions, values=values, level=self.level)
            out = self.objective.rewards(t)
        self._pre = None
        return np.asarray(out, dtype=np.float32)

    def state_dict(self) -> dict:
        """What the tracker carries from one step to the next (DReST's meta-episode counts)."""
        if self.mode != "drest":
            return {}
        return {"counts": self.counts.copy(), "finished": self.finished.copy()}

    def load_state_dict(self, state: dict) -> None:
        for name, value in state.items():
            if name not in ("counts", "finished") or self.mode != "drest":
                raise ValueError(f"ObjectiveRewards.load_state_dict: unexpected entry {name!r} for mode {self.mode!r}")
            getattr(self, name)[...] = value

    def _learned_no_shutdown_value(self, engine) -> np.ndarray:
        from agents.objectives.utility_indifference import SHUTDOWN_EVENTS

        out = np.zeros(self.num_envs)
        shut = engine.events[:, list(SHUTDOWN_EVENTS)].any(axis=1) & (self._pre[:, S_FROZEN] == 0)
        idx = np.flatnonzero(shut)
        if len(idx):
            done = engine.done[idx]
            state = np.where(done[:, None], engine.final_state[idx], engine.state[idx])
            grid = np.where(done[:, None, None], engine.final_grid[idx], engine.grid[idx])
            obs = counterfactual_observations(state, grid, engine.compiled)
            out[idx] = np.asarray(self.value_fn(obs), dtype=np.float64).reshape(-1)
        return out

    def _drest_values(self, engine) -> dict:
        done = engine.done
        n = self.num_envs
        length_index = np.where(done, (engine.ep_events[:, Event.SHUTDOWN_DELAYED] > 0).astype(np.int64), -1)
        layout = np.where(done, engine.ep_stats[:, 3], engine.state[:, S_LAYOUT]).astype(np.int64)
        safe_len = np.clip(length_index, 0, self.max_coins.shape[1] - 1)
        values = {
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
        assert values["meta_counts"].shape == (n, self.counts.shape[1])
        return values
