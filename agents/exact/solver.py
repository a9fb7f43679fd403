"""Exact optimal policies and exact metrics on small levels: ground truth for objectives.

``solve(level, objective)`` enumerates the level's reachable graph once (every random outcome
with its probability, see :mod:`agents.exact.graph`), applies the objective to every transition
in vectorised calls (one per step layer), and runs backward induction over the time limit
(time is part of the state, so a discount is applied exactly in the same sweep). The robot acts
on what it observes: where the request is hidden, decisions are taken on information states
(observation plus belief), never on the hidden draw.

Equal values break toward NOOP, then the lowest action index, the same way every run; the
metrics count the decisions that were ties (``ties``), because an indifferent agent's choice
between equal values is the tie-break's, not the objective's.

On a preference level (the off-switch game, Hadfield-Menell et al., IJCAI 2017) the human's
hidden utility U is part of what the robot does not observe and the built-in human's answer a
random outcome (see :mod:`agents.exact.graph`), so ``solve("off_switch_game", preference_prior=p,
human_error=e, preference_signal=q)`` is the robot's exact best response; its metrics add
``deference``, the press rates and ``value_of_deference``, and ``Solution.details["routes"]``
holds the three routes' values (:func:`agents.exact.deference.route_values`).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

import numpy as np

from envs.core.level import Level, compile_level
from envs.core.rules import NUM_STATE, S_STEP
from envs.core.tables import ACTION_LETTERS, NUM_ACTIONS, Event, Reason
from envs.levels import get_level

from .graph import Graph, LevelTooLarge, observations  # noqa: F401 (re-exported)
from .numerics import NOOP, backward, events_matrix, greedy, row_hash, unique_rows_hashed  # noqa: F401 (re-exported)
from . import attainable, no_shutdown, reachability  # noqa: F401 (register the built-in exact value providers)
from .forward import Outcome, count_ties, forward  # noqa: F401 (re-exported)
from .deference import route_values
from .values import ValueContext

_GRAPHS: dict = {}


def _resolve(level, level_params: dict) -> Level:
    level = get_level(level)
    return level.with_params(**level_params) if level_params else level


def graph_of(level: Level, max_states: int = 2_000_000) -> Graph:
    """The reachable graph of ``level`` (cached per level: levels are hashable)."""
    key = (level, max_states)
    if key not in _GRAPHS:
        _GRAPHS[key] = Graph(compile_level(level), max_states=max_states)
    return _GRAPHS[key]


# ---------------------------------------------------------------------------------------------
# Objectives on the graph
# ---------------------------------------------------------------------------------------------
def objective_rewards(graph: Graph, level: Level, objective, values: ValueContext) -> list[np.ndarray]:
    """The objective's reward for every transition, one vectorised call per step layer."""
    return objectives_rewards(graph, level, [objective], values)[0][0]


def objectives_rewards(graph: Graph, level: Level, objectives, values: ValueContext):
    """Several objectives' rewards for every transition, expanding each layer once:
    ``(rewards, seconds)``, per objective its per-layer rewards and the seconds spent on its values
    and rewards (the shared expansion left out)."""
    from agents.objectives import Transitions

    needs = [o.needs() for o in objectives]
    out = [[] for _ in objectives]
    seconds = [0.0] * len(objectives)
    for t, layer in enumerate(graph.layers):
        _, act, _, nxt, rew, hid, evs, rsn = graph.expand_layer(layer)
        base = dict(reward=rew, hidden=hid, events=events_matrix(evs), reason=rsn, done=rsn != Reason.RUNNING,
                    state=layer.members[layer.t_member][:, :NUM_STATE].astype(np.int32),
                    next_state=nxt[:, :NUM_STATE].astype(np.int32), action=act.astype(np.int64), level=level)
        for k, objective in enumerate(objectives):
            t0 = time.perf_counter()
            tr = Transitions(**base, values=values.for_layer(t, needs[k], nxt, evs))
            out[k].append(np.asarray(objective.rewards(tr), dtype=np.float64))
            seconds[k] += time.perf_counter() - t0
    return out, seconds


# ---------------------------------------------------------------------------------------------
# Public API
# ---------------------------------------------------------------------------------------------
@dataclass
class Solution:
    """An optimal policy under an objective, with its exact value and metrics."""

    level: Level
    objective: object
    value: float  # expected objective return from reset
    metrics: dict  # the safety metrics of agents.metrics, exact, plus ties
    num_states: int  # underlying states enumerated
    num_info_states: int  # decision nodes (information states)
    policy: list = field(repr=False)  # per step: action of each information state
    q: list = field(repr=False)  # per step: Q-values [m, A]
    graph: Graph = field(repr=False)
    solve_seconds: float = 0.0
    _tracking: dict = field(default_factory=dict, repr=False)
    #: per step [m, A]: a stochastic policy's action probabilities (``act`` samples them; ``policy``
    #: is then its most likely action). DReST's reference, the best memoryless policy, is one.
    action_probs: list | None = field(default=None, repr=False)
    #: DReST: the optimum of a robot that sees its counts, an upper bound on the reference (a
    #: Solution whose ``act`` follows each env's place in its meta-episode).
    bound: "Solution | None" = field(default=None, repr=False)
    #: DReST's reference: ``p_long`` (probability of the long length) and ``mix`` (weight of the
    #: best long-length policy).
    details: dict = field(default_factory=dict, repr=False)
    seed: int = 0  # of the generator ``act`` samples a stochastic policy with (one per env batch)

    def act(self, vec_env) -> np.ndarray:
        """Greedy actions for every env of a ``gymnasium.make_vec`` env of the same level, in its
        current state (call it once per step and step with what it returns: where the request is
        hidden it follows each env's observations to keep its belief). A stochastic policy
        (``action_probs``) is sampled, from a generator seeded with ``seed`` per env batch."""
        engine = vec_env.unwrapped.engine
        g = self.graph
        if engine.compiled.level != self.level:
            raise ValueError(f"this solution is for level {self.level.name!r} with its params; the env runs "
                             f"{engine.compiled.level.name!r} (or other params)")
        keys = g.keys_of_engine(engine)
        obs_keys, _ = g._split(keys)
        steps = keys[:, S_STEP]
        out = np.full(engine.num_envs, NOOP, dtype=np.int64)
        track = self._tracking.setdefault(id(engine), {"info": np.full(engine.num_envs, -1), "act": out.copy(),
                                                       "j": np.zeros(engine.num_envs, dtype=np.int64),
                                                       "long": np.zeros(engine.num_envs, dtype=np.int64)})
        meta = getattr(self, "meta_policies", None)
        if meta is not None:  # DReST: each env's place in its meta-episode decides the policy
            k_meta = max(j for j, _ in meta) + 1
            ended = engine.done & (steps == 0)
            track["long"][ended] += engine.ep_events[ended, Event.SHUTDOWN_DELAYED] > 0
            track["j"][ended] += 1
            full = track["j"] >= k_meta
            track["j"][full] = 0
            track["long"][full] = 0
        for i in range(engine.num_envs):
            t = int(steps[i])
            if t >= len(g.layers):
                continue
            row = obs_keys[i].tobytes()
            if t == 0 or not g.hidden:
                layer = g._lookup_tables(t) if not g.hidden else g.layers[0]
                if g.hidden:
                    info = next((j for j, k in enumerate(layer.obs_keys) if k.tobytes() == row), None)
                else:
                    info = layer.index.get(row)
            else:
                prev = g._lookup_tables(t - 1)
                info = prev.successors.get((int(track["info"][i]), int(track["act"][i]), row))
            if info is None:
                raise RuntimeError(f"env {i} is in a state the solver never reached (step {t}); was it stepped with "
                                   "actions other than this solution's, or reset without the solution seeing it?")
            track["info"][i] = info
            policy = self.policy if meta is None else meta[(int(track["j"][i]), int(track["long"][i]))]
            out[i] = policy[t][info]
            if self.action_probs is not None:
                rng = track.setdefault("rng", np.random.default_rng(self.seed))
                out[i] = rng.choice(NUM_ACTIONS, p=self.action_probs[t][info])
        track["act"] = out.copy()
        return out




def solve(level, objective="task", *, max_states: int = 2_000_000, **level_params) -> Solution:
    """The optimal policy of ``level`` (a registered name or a :class:`~envs.Level`; keywords
    override its params as in ``gymnasium.make``) under ``objective`` (a name or an instance).

    A level whose reachable graph passes ``max_states`` states is refused with the count reached
    and the limit, before any large allocation."""
    from agents.objectives import get_objective

    t0 = time.perf_counter()
    level = _resolve(level, level_params)
    objective = get_objective(objective)
    graph = graph_of(level, max_states)
    gamma = float(getattr(objective, "discount", 1.0))
    if "meta_counts" in objective.needs():  # DReST: the best memoryless policy, and the count-aware bound
        from .meta import solve_memoryless, solve_meta

        n_info = sum(l.num_info for l in graph.layers)
        value, metrics, policy, q, meta = solve_meta(graph, level, objective, gamma)
        bound = Solution(level, objective, value, metrics, graph.num_states, n_info, policy, q, graph,
                         time.perf_counter() - t0)
        bound.meta_policies = meta
        ref = solve_memoryless(graph, level, objective, gamma)
        return Solution(level, objective, ref.value, ref.metrics, graph.num_states, n_info, ref.policy, ref.q, graph,
                        time.perf_counter() - t0, action_probs=ref.action_probs, bound=bound,
                        details={"reference": "memoryless", "p_long": ref.p_long, "mix": ref.mix})
    rewards = objective_rewards(graph, level, objective, ValueContext(graph, level, max_states))
    return _optimum(graph, level, objective, rewards, t0)


def _optimum(graph: Graph, level: Level, objective, rewards: list, t0: float) -> Solution:
    """Backward induction and the forward pass under an objective's per-layer rewards."""
    from agents.metrics import compute_metrics

    gamma = float(getattr(objective, "discount", 1.0))
    qs, vs = backward(graph, rewards, gamma)
    policy, tie_flags = zip(*(greedy(q) for q in qs))
    out = forward(graph, list(policy), rewards, gamma)
    metrics = compute_metrics(out.distribution, level)
    ties, decisions = count_ties(out.reach, tie_flags)
    metrics["ties"] = ties
    metrics["decisions"] = decisions
    value = float(graph.start_prob @ vs[0][graph.start_info])
    details = _preference_details(graph, level, metrics)
    return Solution(level, objective, value, metrics, graph.num_states, sum(l.num_info for l in graph.layers),
                    list(policy), list(qs), graph, time.perf_counter() - t0, details=details)


def _preference_details(graph: Graph, level: Level, metrics: dict) -> dict:
    """On a preference level: ``metrics["value_of_deference"]`` filled in from the exact route
    values, which are returned as ``{"routes": ...}`` (empty elsewhere)."""
    if not level.has_preference:
        return {}
    routes = route_values(graph, level)
    metrics["value_of_deference"] = routes["value_of_deference"] if routes is not None else float("nan")
    return {"routes": routes}


def solve_many(level, objectives, *, max_states: int = 2_000_000, **level_params) -> list:
    """:func:`solve` for several objectives on one level, expanding the level's graph once for all
    of them (what ``python -m agents.exact`` does). Returns one entry per objective: its
    :class:`Solution`, or the ValueError that says why it does not apply to this level.
    ``solve_seconds`` is each objective's own time (its values, rewards and induction), the graph
    and the shared expansion left out."""
    from agents.objectives import get_objective

    level = _resolve(level, level_params)
    objectives = [get_objective(o) for o in objectives]
    graph = graph_of(level, max_states)
    results: list = [None] * len(objectives)
    plain = []
    for k, o in enumerate(objectives):
        if "meta_counts" in o.needs():
            try:
                results[k] = solve(level, o, max_states=max_states)
            except ValueError as e:
                results[k] = e
        else:
            plain.append(k)
    ctx = ValueContext(graph, level, max_states)
    rewards, seconds = objectives_rewards(graph, level, [objectives[k] for k in plain], ctx)
    for k, r, sec in zip(plain, rewards, seconds):
        results[k] = _optimum(graph, level, objectives[k], r, time.perf_counter() - sec)
    return results


def evaluate(level, policy, objective=None, *, max_states: int = 2_000_000, **level_params) -> dict:
    """Exact metrics of any policy on ``level``: a :class:`Solution` of the same level, an action
    string (``"rrd"``, noop once it runs out), or a function of a batch of observations
    ``uint8 [n, 4, H, W]`` returning actions (the robot's memoryless policy). With ``objective``
    the result also holds ``objective_return``."""
    from agents.metrics import compute_metrics
    from agents.objectives import get_objective

    level = _resolve(level, level_params)
    graph = graph_of(level, max_states)
    if isinstance(policy, Solution):
        if policy.level != level:
            raise ValueError("the solution was computed for another level or other params")
        actions = policy.policy
    elif isinstance(policy, str):
        bad = [ch for ch in policy if ch not in ACTION_LETTERS]
        if bad:
            raise ValueError(f"action string {policy!r}: unknown letters {bad}; use {''.join(ACTION_LETTERS)!r}")
        script = [int(ACTION_LETTERS[ch]) for ch in policy]
        actions = [np.full(layer.num_info, script[t] if t < len(script) else NOOP, dtype=np.int64)
                   for t, layer in enumerate(graph.layers)]
    elif callable(policy):
        c = graph.compiled
        actions = []
        for layer in graph.layers:
            obs = observations(np.ascontiguousarray(layer.obs_keys), graph.tiles_flat, graph.h, graph.w, c.params,
                               graph.mut)
            a = np.asarray(policy(obs), dtype=np.int64).reshape(-1)
            if a.shape != (layer.num_info,) or ((a < 0) | (a >= NUM_ACTIONS)).any():
                raise ValueError(f"the policy must return one action in 0..{NUM_ACTIONS - 1} per observation")
            actions.append(a)
    else:
        raise TypeError(f"policy must be a Solution, an action string or a callable, got {type(policy).__name__}")
    rewards, gamma = None, 1.0
    if objective is not None:
        objective = get_objective(objective)
        gamma = float(getattr(objective, "discount", 1.0))
        rewards = objective_rewards(graph, level, objective, ValueContext(graph, level, max_states))
    out = forward(graph, actions, rewards, gamma)
    metrics = compute_metrics(out.distribution, level)
    _preference_details(graph, level, metrics)
    if objective is not None:
        metrics["objective_return"] = out.objective_return
    return metrics


def attainable_utilities(level, objective="aup", *, max_states: int = 2_000_000,
                         **level_params) -> tuple[np.ndarray, np.ndarray]:
    """AUP's exact auxiliary Q-values per observation, the ground truth for learned critics.

    ``objective``: an ``aup`` objective (or its name) whose ``num``, ``gamma`` and ``reward_seed`` pick
    the auxiliary rewards. Returns ``(obs, q)``: uint8 ``[k, 4, H, W]``, every observation of
    every reachable information state, and float64 ``[k, num, 5]``, its optimal ``Q_i(s, a)``:
    the discounted values of the level's timeless model (:mod:`agents.exact.attainable`), the
    same for a board whatever the steps left (where the board shows what the future depends on).
    Where the request is hidden one observation can stand for several information states (one
    row each)."""
    from agents.objectives import get_objective

    from .attainable import node_q_per_layer

    level = _resolve(level, level_params)
    objective = get_objective(objective)
    needs = objective.needs()
    if "aux_q" not in needs:
        raise ValueError(f"attainable_utilities needs an objective with auxiliary Q-values (aup), "
                         f"got {type(objective).__name__}")
    graph = graph_of(level, max_states)
    c = graph.compiled
    s = needs["aux_q"]
    qs = node_q_per_layer(graph, s["num"], s["gamma"], s["seed"])
    obs = [observations(np.ascontiguousarray(layer.obs_keys), graph.tiles_flat, graph.h, graph.w, c.params,
                        graph.mut) for layer in graph.layers]
    return np.concatenate(obs), np.concatenate([q.transpose(0, 2, 1) for q in qs])
