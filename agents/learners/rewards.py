"""Objective rewards inside a learner's loop: one call per batched env step.

Every learner steps an :class:`~envs.core.engine.Engine` and asks this module for the
objective's reward of the step it just took::

    shaper = ObjectiveRewards(level, objective, engine.num_envs)
    shaper.before_step(engine)            # remembers the state each env acts from
    engine.step(actions)
    r = shaper.after_step(engine, actions)  # float32 [N], the objective's rewards

How the values an objective declares in :meth:`Objective.needs` are computed is decided by
their providers (:mod:`agents.values`), never by the objective's name:

* **no values** (``task``, ``harm_penalty``, a user's ``NoTampering``): the objective is applied
  to a :class:`~agents.objectives.Transitions` built from the engine's buffers. The last step
  of an episode is seen as it happened (``engine.final_state``), not after the autoreset.
* **online values** (:mod:`agents.learners.values`): *tracked* ones (DReST's meta-episode counts)
  always; *learned* ones (utility indifference's no-shutdown value from the learner's critic,
  AUP's auxiliary Q-values from its auxiliary critics) with ``values="learned"``, on levels of
  any size. Each step's values go into the :class:`~agents.objectives.Transitions`.
* **the exact solver's values** (every other case: ``values="exact"``, or a value with no online
  provider, such as ``reachability_loss``): on levels small enough to enumerate, the objective
  is applied once to every transition of the level's reachable graph
  (:func:`agents.exact.solver.objective_rewards`); each real step is then looked up by (state,
  action, next state). A :class:`agents.exact.cache.TableCache` (``cache=``) keeps these tables
  on disk between runs. A level too large to enumerate fails with
  :class:`agents.exact.LevelTooLarge`.

CAVEAT: with exact tables the learner is given the true values of the objective (e.g. the
optimal no-shutdown value for utility indifference), not learned ones; what it learns is then
how to act on a correct objective, not how to estimate the objective's values.
"""

from __future__ import annotations

import numpy as np

from envs.core.level import Level
from envs.core.rules import S_FROZEN
from envs.core.tables import Action

from agents.exact.solver import row_hash

from .values import counterfactual_observations  # noqa: F401 (re-exported; importing it registers the online providers)

NOOP = int(Action.NOOP)


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
    64-bit hashes: the first is searched, the second confirms). ``cache``: a
    :class:`agents.exact.cache.TableCache` (or a directory) that keeps the arrays between runs."""

    def __init__(self, level: Level, objective, max_states: int, cache=None):
        from agents.exact.cache import TableCache
        from agents.exact.solver import graph_of

        self.graph = graph_of(level, max_states)
        if cache is None:
            arrays = self._build(level, objective, max_states)
        else:
            cache = cache if isinstance(cache, TableCache) else TableCache(cache)
            arrays = cache.get(level, objective, max_states, lambda: self._build(level, objective, max_states))
        self.hash, self.check, self.values = arrays["hash"], arrays["check"], arrays["values"]

    def _build(self, level, objective, max_states) -> dict:
        from agents.exact.solver import objective_rewards
        from agents.exact.values import ValueContext

        g = self.graph
        vals = np.concatenate(objective_rewards(g, level, objective, ValueContext(g, level, max_states)))
        h1, h2 = _transition_index(g)
        # the same (state, action, next state) can sit in several information states (hidden
        # request): one entry each, with the mean reward (equal for belief-free objectives)
        uniq, first, inv = np.unique(h1, return_index=True, return_inverse=True)
        inv = inv.reshape(-1)
        if not (h2[first][inv] == h2).all():
            raise RuntimeError("two transitions share a 64-bit hash: cannot build the exact table")
        values = np.bincount(inv, weights=vals, minlength=len(uniq)) / np.bincount(inv, minlength=len(uniq))
        return {"hash": uniq, "check": h2[first], "values": values}

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


def is_plain_task(objective) -> bool:
    """Whether ``objective``'s rewards are the task reward itself (:class:`~agents.objectives.Task`
    with its own ``reward``), so a learner may hand out the engine's rewards as they are."""
    from agents.objectives import Task

    return isinstance(objective, Task) and type(objective).reward is Task.reward and not objective.needs()


def value_sources(objective, values: str = "exact") -> tuple[dict, list]:
    """Where each value ``objective`` needs comes from in a learner: ``(online, exact)``, the
    names computed online (name -> :class:`~agents.learners.values.OnlineValue` class: tracked
    ones always, learned ones with ``values="learned"``) and the names taken from the exact
    solver. Raises ValueError where ``values="learned"`` meets a value no learner provides, or
    where an objective's values would come from both sides."""
    from agents.values import PROVIDERS

    if values not in ("exact", "learned"):
        raise ValueError(f"values must be 'exact' or 'learned', got {values!r}")
    online, exact = {}, []
    for name in objective.needs():
        cls = PROVIDERS[name].online if name in PROVIDERS else None
        if cls is not None and (cls.kind == "tracked" or values == "learned"):
            online[name] = cls
        else:
            exact.append(name)
    label = objective.label()
    if exact and values == "learned":
        raise ValueError(f"values='learned': objective {label!r} needs {sorted(exact)}, which no learner provides "
                         f"online (the online values are {sorted(n for n, p in PROVIDERS.items() if p.online)}); use "
                         "values='exact'")
    if exact and online:
        raise ValueError(f"objective {label!r} needs {sorted(exact)} from the exact solver and {sorted(online)} online; "
                         "a learner takes all of an objective's values one way")
    return online, exact


class ObjectiveRewards:
    """Applies ``objective`` to each batched step of an engine running ``level`` (see the
    module docstring)."""

    def __init__(self, level: Level, objective, num_envs: int, *, max_states: int = 2_000_000,
                 values: str = "exact", value_fn=None, aux_fn=None, cache=None):
        """``values``: where the values the objective needs come from: ``"exact"`` (the solver's
        tables; tracked values online) or ``"learned"`` (every value online, on levels of any
        size). ``value_fn`` and ``aux_fn`` are the learner's estimators the learned providers use
        (:class:`agents.learners.values.LearnerHooks`). ``cache``: an
        :class:`agents.exact.cache.TableCache` (or a directory) for exact tables, or None."""
        from agents.objectives import get_objective
        from agents.values import PROVIDERS

        from .values import LearnerHooks

        self.level = level
        self.objective = get_objective(objective)
        self.num_envs = int(num_envs)
        needs = self.objective.needs()
        online, exact = value_sources(self.objective, values)
        self.mode = "exact" if exact else ("online" if online else "plain")
        self.providers = []
        if online:
            hooks = LearnerHooks(value_fn=value_fn, aux_fn=aux_fn)
            for cls in dict.fromkeys(online.values()):  # each provider once, in the order of needs()
                first = next(n for n in needs if online.get(n) is cls)
                self.providers.append(cls(level, self.num_envs, dict(needs[first] or {}), hooks))
        if exact:
            from agents.exact import LevelTooLarge

            try:
                self.table = _ExactTable(level, self.objective, max_states, cache=cache)
            except LevelTooLarge as e:
                learnable = [n for n in exact if n in PROVIDERS and PROVIDERS[n].online is not None]
                hint = ("; PPO can learn them instead (agent ppo, objective_values='learned')"
                        if learnable == exact else "")
                raise LevelTooLarge(f"objective {self.objective.label()!r} takes its values {sorted(exact)} from the exact solver "
                                    f"here, which refuses this level: {e}{hint}") from None
        self._pre = None

    def before_step(self, engine) -> None:
        """Remember the state every env acts from (call just before ``engine.step``)."""
        if self.mode == "exact":
            self._pre_keys = self.table.graph.keys_of(engine.state, engine.grid)
        for p in self.providers:
            p.before_step(engine)
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
            for p in self.providers:
                values.update(p.values(engine, actions, self._pre))
            t = Transitions(reward=engine.rewards.astype(np.float64), hidden=engine.hidden.astype(np.float64),
                            events=engine.events, reason=engine.reasons, done=engine.done, state=self._pre,
                            next_state=self.next_state(engine), action=actions, values=values, level=self.level)
            out = self.objective.rewards(t)
        self._pre = None
        return np.asarray(out, dtype=np.float32)

    def state_dict(self) -> dict:
        """What the online providers carry from one step to the next (DReST's meta-episode
        counts), by provider class name."""
        return {type(p).__name__: p.state_dict() for p in self.providers if p.state_dict()}

    def load_state_dict(self, state: dict) -> None:
        """Restore what :meth:`state_dict` gave."""
        mine = {type(p).__name__: p for p in self.providers}
        for name, value in state.items():
            if name not in mine:
                raise ValueError(f"ObjectiveRewards.load_state_dict: unexpected entry {name!r} (providers: "
                                 f"{sorted(mine)})")
            mine[name].load_state_dict(value)
