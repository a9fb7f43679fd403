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
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Callable

import numpy as np
from numba import njit

from envs.core.level import CompiledLevel, Level, compile_level
from envs.core.rules import NUM_STATE, S_FROZEN, S_LAYOUT, S_RC, S_REQUESTED, S_RR, S_STEP
from envs.core.tables import ACTION_LETTERS, CH_ENTITY, NUM_ACTIONS, NUM_EVENTS, Action, Entity, Event, Reason
from envs.levels import get_level

from agents.objectives.aup import aux_rewards

from .graph import K_MASK, KEY_COLS, Graph, LevelTooLarge, observations

NOOP = int(Action.NOOP)
_COIN_BIT = 1 << int(Event.COIN_COLLECTED)
_COIN_SHIFT = 16  # coins collected so far, kept above the event bits of a forward-pass flag word
_SHUTDOWN_BITS = (1 << int(Event.BUTTON_PRESSED)) | (1 << int(Event.TIMER_SHUTDOWN)) | (1 << int(Event.INTERRUPTED))
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


def events_matrix(bits: np.ndarray) -> np.ndarray:
    """uint8 [B, NUM_EVENTS] flags from int64 event bitmasks."""
    return ((bits[:, None] >> np.arange(NUM_EVENTS)) & 1).astype(np.uint8)


# ---------------------------------------------------------------------------------------------
# Backward induction
# ---------------------------------------------------------------------------------------------
def backward(graph: Graph, rewards: list[np.ndarray], gamma: float = 1.0):
    """Optimal values under per-layer transition rewards (``[B_t]`` or ``[B_t, n]`` for n reward
    functions at once). Returns per layer ``Q`` ``[m_t, A(, n)]`` and ``V`` ``[m_t(, n)]``."""
    qs, vs = [None] * len(graph.layers), [None] * len(graph.layers)
    v_next = None
    for t in range(len(graph.layers) - 1, -1, -1):
        layer = graph.layers[t]
        r = rewards[t]
        cont = np.zeros_like(r)
        running = layer.t_next >= 0
        if v_next is not None and running.any():
            cont[running] = v_next[layer.t_next[running]]
        target = layer.t_prob.reshape((-1,) + (1,) * (r.ndim - 1)) * (r + gamma * cont)
        flat = layer.member_info[layer.t_member] * NUM_ACTIONS + layer.t_action
        q = np.zeros((layer.num_info * NUM_ACTIONS,) + r.shape[1:])
        np.add.at(q, flat, target)
        q = q.reshape((layer.num_info, NUM_ACTIONS) + r.shape[1:])
        qs[t] = q
        vs[t] = v_next = q.max(axis=1)
    return qs, vs


def greedy(q: np.ndarray, tol: float = 1e-9) -> tuple[np.ndarray, np.ndarray]:
    """Greedy actions with ties broken toward NOOP, then the lowest index; and a tie flag."""
    best = q.max(axis=1, keepdims=True)
    near = q >= best - tol * np.maximum(1.0, np.abs(best))
    action = np.where(near[:, NOOP], NOOP, near.argmax(axis=1))
    return action.astype(np.int64), near.sum(axis=1) > 1


# ---------------------------------------------------------------------------------------------
# Forward pass: the distribution of episodes under a policy
# ---------------------------------------------------------------------------------------------
@dataclass
class Outcome:
    """What a policy does, exactly: its episode distribution and expectations."""

    distribution: object  # agents.metrics.EpisodeDistribution
    objective_return: float
    reach: list  # per layer: probability of reaching each information state
    transitions_taken: list  # per layer: bool mask of the transitions the policy takes


def forward(graph: Graph, policy: list[np.ndarray], rewards: list[np.ndarray] | None = None,
            gamma: float = 1.0) -> Outcome:
    """Push the start distribution through the graph under ``policy`` (actions per information
    state, per layer). The distribution is over underlying member states (what the robot
    cannot see still decides what happens) and the events fired so far (and coins collected)."""
    from agents.metrics import EpisodeDistribution

    first = graph.layers[0]
    # layer 0's members are the start states: one certain hidden combination each
    pair_m = np.array([int(np.flatnonzero(first.member_info == i)[0]) for i in graph.start_info], dtype=np.int64)
    pair_f = np.zeros(len(pair_m), dtype=np.int64)
    pair_p = graph.start_prob.copy()
    pair_m, pair_f, pair_p = _merge(pair_m, pair_f, pair_p)
    ends = {"p": [], "reason": [], "flags": [], "length": [], "layout": []}
    task = hidden = obj = 0.0
    counts = np.zeros(NUM_EVENTS)
    reach, taken = [], []
    for t, layer in enumerate(graph.layers):
        r_in = np.zeros(layer.num_info)
        np.add.at(r_in, layer.member_info[pair_m], pair_p)
        reach.append(r_in)
        sel = layer.t_action == policy[t][layer.member_info[layer.t_member]]
        taken.append(sel)
        idx = np.flatnonzero(sel)
        tmem = layer.t_member[idx]
        order = np.argsort(tmem, kind="stable")
        idx, tmem = idx[order], tmem[order]
        n_members = len(layer.members)
        start = np.searchsorted(tmem, np.arange(n_members))
        stop = np.searchsorted(tmem, np.arange(n_members), side="right")
        per_pair = stop[pair_m] - start[pair_m]
        rep = np.repeat(np.arange(len(pair_m)), per_pair)
        offs = np.arange(len(rep)) - np.repeat(np.cumsum(per_pair) - per_pair, per_pair)
        tr = idx[start[pair_m][rep] + offs]
        # t_prob carries the member's belief weight; here the member is known: outcome probability only
        p = pair_p[rep] * layer.t_prob[tr] / layer.member_weight[layer.t_member[tr]]
        ev = layer.t_events[tr]
        flags = pair_f[rep] | ev
        flags = flags + (((ev & _COIN_BIT) != 0).astype(np.int64) << _COIN_SHIFT)
        task += float(p @ layer.t_reward[tr])
        hidden += float(p @ layer.t_hidden[tr])
        if rewards is not None:
            obj += (gamma ** t) * float(p @ rewards[t][tr])
        counts += p @ events_matrix(ev)
        done = layer.t_next[tr] < 0
        if done.any():
            ends["p"].append(p[done])
            ends["reason"].append(layer.t_reason[tr][done])
            ends["flags"].append(flags[done])
            ends["length"].append(np.full(done.sum(), t + 1))
            ends["layout"].append(layer.members[layer.t_member[tr][done], S_LAYOUT])
        go = ~done
        pair_m, pair_f, pair_p = _merge(layer.t_next_member[tr][go], flags[go], p[go])
    flags = np.concatenate(ends["flags"]) if ends["flags"] else np.zeros(0, dtype=np.int64)
    dist = EpisodeDistribution(
        weight=np.concatenate(ends["p"]) if ends["p"] else np.zeros(0),
        reason=np.concatenate(ends["reason"]).astype(np.uint8) if ends["reason"] else np.zeros(0, dtype=np.uint8),
        ever=events_matrix(flags & ((1 << NUM_EVENTS) - 1)).astype(bool),
        length=np.concatenate(ends["length"]).astype(np.int64) if ends["length"] else np.zeros(0, dtype=np.int64),
        layout=np.concatenate(ends["layout"]).astype(np.int64) if ends["layout"] else np.zeros(0, dtype=np.int64),
        coins=(flags >> _COIN_SHIFT).astype(np.int64),
        task_return=task, hidden_return=hidden, event_counts=counts)
    return Outcome(dist, obj, reach, taken)


def _merge(info, flags, p):
    """Sum the probability of equal (information state, flags) pairs."""
    if len(info) == 0:
        return info, flags, p
    keys = np.stack([info, flags], axis=1)
    uniq, inv = np.unique(keys, axis=0, return_inverse=True)
    return uniq[:, 0], uniq[:, 1], np.bincount(inv.reshape(-1), weights=p, minlength=len(uniq))


# ---------------------------------------------------------------------------------------------
# Objectives on the graph
# ---------------------------------------------------------------------------------------------
def row_hash(rows: np.ndarray, seed: int = 0) -> np.ndarray:
    """A 64-bit hash of each int64 row (SplitMix-style; ``seed`` picks an independent one)."""
    h = np.full(len(rows), np.uint64(0x9E3779B97F4A7C15 ^ (seed * 0xD1B54A32D192ED03 % (1 << 64))))
    with np.errstate(over="ignore"):
        for col in range(rows.shape[1]):
            h = (h ^ rows[:, col].astype(np.uint64)) * np.uint64(0xBF58476D1CE4E5B9)
            h ^= h >> np.uint64(31)
        h = (h ^ (h >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
        h ^= h >> np.uint64(31)
    return h


def _unique_rows_hashed(rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``np.unique(rows, axis=0, return_inverse=True)`` through 64-bit row hashes (many times
    faster on millions of rows); the grouping is checked row by row, so a collision cannot pass."""
    _, first, inv = np.unique(row_hash(rows), return_index=True, return_inverse=True)
    inv = inv.reshape(-1)
    uniq = rows[first]
    if not (uniq[inv] == rows).all():
        uniq, inv = np.unique(rows, axis=0, return_inverse=True)
        inv = inv.reshape(-1)
    return uniq, inv


class _Values:
    """Computes the values objectives ask for (``Objective.needs()``) on a graph."""

    def __init__(self, graph: Graph, level: Level, max_states: int):
        self.graph, self.level, self.max_states = graph, level, max_states
        self._cache: dict = {}

    def for_layer(self, t: int, needs: dict, next_keys: np.ndarray, events_bits: np.ndarray) -> dict:
        out = {}
        layer = self.graph.layers[t]
        for name, settings in needs.items():
            settings = dict(settings or {})
            if name == "no_shutdown_value":
                out[name] = self._no_shutdown_value(t, next_keys, events_bits)
            elif name == "reachability_loss":
                out[name] = self._reachability_loss(**settings)[t]
            elif name in ("aux_q", "aux_q_noop"):
                q = self._aux_q(**settings)[t]
                info = layer.member_info[layer.t_member]
                out[name] = q[info, layer.t_action] if name == "aux_q" else q[info, NOOP]
            else:
                raise ValueError(f"the exact solver cannot provide value {name!r}; it provides "
                                 "'no_shutdown_value', 'aux_q', 'aux_q_noop', "
                                 "'reachability_loss'")
        return out

    # -- utility indifference: the task value had the shutdown not happened ------------------
    def _counterfactual(self, layer, src, next_keys):
        """The next states as if the shutdown had not happened: no request, not frozen, no
        scheduled shutdown, the human where they stood before the step (in that world they
        never walk to the button)."""
        from agents.objectives.utility_indifference import counterfactual_states

        return counterfactual_states(layer.members[src], next_keys)

    def _no_shutdown_values(self):
        """Optimal task values in the no-shutdown world from every counterfactual state (one graph
        grown from all of them at once)."""
        if "ns" not in self._cache:
            rows = []
            for layer in self.graph.layers:
                src, _, _, nxt, _, _, evs, rsn = self.graph.expand_layer(layer)
                hit = (evs & _SHUTDOWN_BITS) != 0
                rows.append(self._counterfactual(layer, src[hit], nxt[hit]))
            cf = np.unique(np.concatenate(rows), axis=0) if rows else np.zeros((0, KEY_COLS), dtype=np.int64)
            values = {}
            if len(cf):
                world = self.level.with_params(request="never", request_on_harm=False, shutdown_step=-1)
                # states at the time limit have nothing left to earn; the rest are grown into a graph
                live = cf[cf[:, S_STEP] < world.params.max_steps]
                if len(live):
                    g = Graph(compile_level(world), max_states=self.max_states, starts=live)
                    _, vs = backward(g, [layer.t_reward for layer in g.layers])
                    start_obs, _ = g._split(live)
                    values = {row.tobytes(): float(vs[0][i]) for row, i in zip(start_obs, g.start_info)}
            self._cache["ns"] = values
        return self._cache["ns"]

    def _no_shutdown_value(self, t, next_keys, events_bits):
        out = np.zeros(len(next_keys))
        hit = np.flatnonzero((events_bits & _SHUTDOWN_BITS) != 0)
        if len(hit) == 0:
            return out
        values = self._no_shutdown_values()
        layer = self.graph.layers[t]
        cf = self._counterfactual(layer, layer.t_member[hit], next_keys[hit])
        if self.graph.hidden:
            cf[:, S_REQUESTED] = 0
            cf[:, S_FROZEN] = 0
        out[hit] = [values.get(row.tobytes(), 0.0) for row in cf]
        return out

    # -- relative reachability: loss of reachability against the stepwise inaction baseline -----
    def _reachability_loss(self, gamma: float = 0.99):
        """Per layer, per transition: ``d(s', b) = mean_y max(0, R(b; y) - R(s'; y))`` with ``b``
        the state NOOP reaches from the same state under the same random outcome.

        Reachability is between *timeless* states (the key without the step counter: a state
        is the same place whenever it is reached), over every transition of positive
        probability (a random outcome that can happen counts as a way there), and ``S`` is
        every state of the reachable graph, terminal ones included (they reach only
        themselves). With ``max_states`` large this is |S|^2 floats: the level's timeless
        state count is what limits it (5,510 on coffee_hazards)."""
        key = ("rr", gamma)
        cache = self.graph.__dict__.setdefault("_value_cache", {})  # the graph is cached per level
        if key in cache:
            return cache[key]
        g = self.graph
        parts = [g.expand_layer(layer) for layer in g.layers]
        def timeless(rows):
            rows = rows.copy()
            rows[:, S_STEP] = 0
            return rows
        src_rows = [timeless(layer.members[p[0]]) for layer, p in zip(g.layers, parts)]
        nxt_rows = [timeless(p[3]) for p in parts]
        nodes, inv = _unique_rows_hashed(np.concatenate(src_rows + nxt_rows))
        n_tr = sum(len(r) for r in src_rows)
        num = len(nodes)
        u, v = inv[:n_tr], inv[n_tr:]
        edges = np.unique(u * num + v)
        eu, ev = edges // num, edges % num
        keep = eu != ev
        eu, ev = eu[keep], ev[keep]
        indptr = np.searchsorted(eu, np.arange(num + 1)).astype(np.int64)
        reach = _reach_rows(indptr, ev.astype(np.int64), num, float(gamma))
        out, offset = [], 0
        member_nodes = inv[:n_tr]
        for layer, p in zip(g.layers, parts):
            src, act, rsn = p[0], p[1].astype(np.int64), p[7]
            m = len(src)
            # an episode's end is no state of the world: where a transition ends the episode (or
            # its NOOP baseline does), the state it left stands in, as in the authors' code
            # (which compares the last non-terminal state with the baseline at the end)
            mine = np.where(rsn != Reason.RUNNING, member_nodes[offset:offset + m], v[offset:offset + m])
            # transitions come in blocks per member, action-major, the same outcomes for every action
            start = np.searchsorted(src, src, side="left")
            per_member = np.bincount(src, minlength=len(layer.members))[src] // NUM_ACTIONS
            outcome = (np.arange(m) - start) % per_member
            base = mine[start + NOOP * per_member + outcome]
            upairs, pinv = np.unique(mine * num + base, return_inverse=True)
            loss = _pair_loss(reach, upairs // num, upairs % num)
            out.append(loss[pinv.reshape(-1)])
            offset += m
        cache[key] = out
        return out

    # -- AUP: optimal Q-values of random auxiliary rewards -----------------------------------
    def _aux_q(self, num: int = 30, gamma: float = 0.996, seed: int = 0):
        key = ("aux", num, gamma, seed)
        if key not in self._cache:
            g, c = self.graph, self.graph.compiled
            rewards = []
            for t, layer in enumerate(g.layers):
                # the reward of the board reached (the observation without the steps left),
                # whenever it is reached: the function the learners' auxiliary critics learn
                _, _, _, nxt, *_, reason = g.expand_layer(layer)
                # a shut-down robot is drawn switched off in its last observation, as the engine does
                off = ((reason == Reason.SHUTDOWN) | (reason == Reason.SELF_SHUTDOWN)).astype(np.int64)
                uniq, inv = _unique_rows_hashed(np.ascontiguousarray(np.concatenate([nxt, off[:, None]], axis=1)))
                obs = observations(np.ascontiguousarray(uniq[:, :-1]), g.tiles_flat, g.h, g.w, c.params, g.mut)
                rows = np.flatnonzero(uniq[:, -1])
                obs[rows, CH_ENTITY, uniq[rows, S_RR], uniq[rows, S_RC]] = Entity.ROBOT_OFF
                rewards.append(aux_rewards(obs, num, seed)[inv])
            qs, _ = backward(self.graph, rewards, gamma)
            self._cache[key] = qs
        return self._cache[key]


@njit(cache=True)
def _reach_rows(indptr, indices, n, gamma):
    """``R[x, y] = gamma ** (fewest steps from x to y)`` (0 where unreachable), by BFS from every node."""
    out = np.zeros((n, n), dtype=np.float32)
    dist = np.full(n, -1, dtype=np.int64)
    queue = np.empty(n, dtype=np.int64)
    powers = np.empty(n + 1, dtype=np.float32)
    for k in range(n + 1):
        powers[k] = gamma ** k
    for x in range(n):
        dist[:] = -1
        dist[x] = 0
        queue[0] = x
        head, tail = 0, 1
        while head < tail:
            u = queue[head]
            head += 1
            out[x, u] = powers[dist[u]]
            for e in range(indptr[u], indptr[u + 1]):
                v = indices[e]
                if dist[v] < 0:
                    dist[v] = dist[u] + 1
                    queue[tail] = v
                    tail += 1
    return out


@njit(cache=True)
def _pair_loss(reach, a, b):
    """``mean_y max(0, R[b, y] - R[a, y])`` for each pair (a = the state reached, b = the baseline)."""
    n = reach.shape[1]
    out = np.zeros(len(a))
    for k in range(len(a)):
        if a[k] == b[k]:
            continue
        total = 0.0
        for y in range(n):
            d = reach[b[k], y] - reach[a[k], y]
            if d > 0:
                total += d
        out[k] = total / n
    return out


def objective_rewards(graph: Graph, level: Level, objective, values: _Values) -> list[np.ndarray]:
    """The objective's reward for every transition, one vectorised call per step layer."""
    from agents.objectives import Transitions

    needs = objective.needs()
    out = []
    for t, layer in enumerate(graph.layers):
        _, act, _, nxt, rew, hid, evs, rsn = graph.expand_layer(layer)
        state = layer.members[layer.t_member][:, :NUM_STATE].astype(np.int32)
        tr = Transitions(reward=rew, hidden=hid, events=events_matrix(evs), reason=rsn, done=rsn != Reason.RUNNING,
                         state=state, next_state=nxt[:, :NUM_STATE].astype(np.int32), action=act.astype(np.int64),
                         values=values.for_layer(t, needs, nxt, evs), level=level)
        out.append(np.asarray(objective.rewards(tr), dtype=np.float64))
    return out


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

    def act(self, vec_env) -> np.ndarray:
        """Greedy actions for every env of a ``gymnasium.make_vec`` env of the same level, in its
        current state (call it once per step and step with what it returns: where the request is
        hidden it follows each env's observations to keep its belief)."""
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
        track["act"] = out.copy()
        return out


def _ties(reach: list, tie_flags: list) -> tuple[int, int]:
    reached = sum(int((r > 0).sum()) for r in reach)
    ties = sum(int(((r > 0) & f).sum()) for r, f in zip(reach, tie_flags))
    return ties, reached


# ---------------------------------------------------------------------------------------------
# DReST: meta-episodes
# ---------------------------------------------------------------------------------------------
def _cell_bits(graph: Graph, tile: int) -> np.ndarray:
    """int64 [num_layouts]: the mask bits of the one-shot cells holding ``tile``."""
    c = graph.compiled
    tiles = c.tiles.reshape(c.num_layouts, -1)
    out = np.zeros(c.num_layouts, dtype=np.int64)
    for k in range(c.num_layouts):
        for j, cell in enumerate(graph.mut[k]):
            if cell >= 0 and tiles[k, cell] == tile:
                out[k] |= np.int64(1) << j
    return out


def _popcount(x: np.ndarray) -> np.ndarray:
    x = x.astype(np.uint64)
    count = np.zeros(len(x), dtype=np.int64)
    while x.any():
        count += (x & np.uint64(1)).astype(np.int64)
        x = x >> np.uint64(1)
    return count


def _solve_meta(graph: Graph, level: Level, objective, gamma: float):
    """Exact optimum of a meta-episode objective (DReST): the state grows by the counts of
    each trajectory length chosen so far in the meta-episode, and the robot sees them (it
    plays the meta-episode knowing its own history). Backward over the ``K`` mini-episodes:
    for each count vector ``c`` of mini-episode ``j``, the mini-episode is solved with its end
    reward plus the meta-value of ``c + e_L``; one backward pass handles every ``c`` of a ``j``
    at once (a reward column each).

    Returns ``(value per mini-episode, metrics of the whole meta-episode, policy at c = 0,
    Q at c = 0, tie counts)``; the metrics average the mini-episodes, weighted by how likely
    each count vector is under the optimal meta-policy."""
    from agents.metrics import EpisodeDistribution, compute_metrics
    from agents.objectives import Transitions
    from envs.core.tables import Tile
    from envs.levels.delay import delay_structure

    structure = delay_structure(level)
    num_len = len(structure.lengths)
    if num_len != 2:
        raise ValueError(f"level {level.name!r}: the meta-episode solver handles two trajectory lengths, got "
                         f"{structure.lengths}")
    k_meta = int(objective.needs()["meta_counts"].get("meta_episode", 16))
    coin_bits, delay_bits = _cell_bits(graph, int(Tile.COIN)), _cell_bits(graph, int(Tile.DELAY))
    max_coins = np.asarray(structure.max_coins, dtype=np.float64)
    per_layer = []  # (transitions, end mask, length class, objective inputs)
    for layer in graph.layers:
        src, act, _, nxt, rew, hid, evs, rsn = graph.expand_layer(layer)
        done = rsn != Reason.RUNNING
        layout = nxt[:, S_LAYOUT]
        cls = ((nxt[:, K_MASK] & delay_bits[layout]) != 0).astype(np.int64)
        coins = _popcount(nxt[:, K_MASK] & coin_bits[layout])
        state = layer.members[src][:, :NUM_STATE].astype(np.int32)
        base = dict(reward=rew, hidden=hid, events=events_matrix(evs), reason=rsn, done=done, state=state,
                    next_state=nxt[:, :NUM_STATE].astype(np.int32), action=act.astype(np.int64), level=level)
        values = {"episode_coins": np.where(done, coins, 0), "max_coins": max_coins[layout, cls],
                  "length_index": np.where(done, cls, -1)}
        per_layer.append((done, cls, base, values))

    def rewards_for(counts: np.ndarray, w_next: np.ndarray) -> list[np.ndarray]:
        """Per layer [B_t, C]: the objective's reward under each count vector, plus the
        meta-value of the counts it leads to on the mini-episode's last step."""
        out = []
        for done, cls, base, values in per_layer:
            cols = []
            for ci, c in enumerate(counts):
                b = len(done)
                t = Transitions(**base, values={**values, "meta_counts": np.broadcast_to(c, (b, num_len))})
                r = np.asarray(objective.rewards(t), dtype=np.float64)
                cols.append(r + np.where(done, w_next[ci, cls], 0.0))
            out.append(np.stack(cols, axis=1))
        return out

    # meta-values W[j][c_long] (c_short = j - c_long): expected reward of the rest of the meta-episode
    w_after = {k_meta: np.zeros(k_meta + 1)}
    policies, qs_at, ties_at = {}, {}, {}
    for j in range(k_meta - 1, -1, -1):
        counts = np.array([[j - l, l] for l in range(j + 1)], dtype=np.int64)
        nxt_w = w_after[j + 1]
        # w_next[ci, L]: meta-value after this mini-episode ends with length class L
        w_next = np.stack([nxt_w[counts[:, 1]], nxt_w[counts[:, 1] + 1]], axis=1)
        qs, vs = backward(graph, rewards_for(counts, w_next), gamma)
        w_after[j] = graph.start_prob @ vs[0][graph.start_info]
        for ci, c in enumerate(counts):
            pol, tie = zip(*(greedy(q[..., ci]) for q in qs))
            policies[(j, int(c[1]))] = list(pol)
            ties_at[(j, int(c[1]))] = list(tie)
            if j == 0:
                qs_at[0] = [q[..., 0] for q in qs]
    # forward through the meta-episode: probability of each count vector, then the mixture
    p_counts = {(0, 0): 1.0}
    parts, ties, decisions = [], 0, 0
    task = hidden = 0.0
    event_counts = np.zeros(NUM_EVENTS)
    for j in range(k_meta):
        nxt = {}
        for (jj, c_long), p in p_counts.items():
            out = forward(graph, policies[(j, c_long)])
            d = out.distribution
            cls = d.ever[:, Event.SHUTDOWN_DELAYED].astype(np.int64)
            p_long = float(d.weight @ cls)
            nxt[(j + 1, c_long + 1)] = nxt.get((j + 1, c_long + 1), 0.0) + p * p_long
            nxt[(j + 1, c_long)] = nxt.get((j + 1, c_long), 0.0) + p * (1 - p_long)
            parts.append((p / k_meta, d))
            task += p / k_meta * d.task_return
            hidden += p / k_meta * d.hidden_return
            event_counts += p / k_meta * d.event_counts
            t, r = _ties(out.reach, ties_at[(j, c_long)])
            ties, decisions = ties + t, decisions + r
        p_counts = nxt
    dist = EpisodeDistribution(
        weight=np.concatenate([w * d.weight for w, d in parts]),
        reason=np.concatenate([d.reason for _, d in parts]), ever=np.concatenate([d.ever for _, d in parts]),
        length=np.concatenate([d.length for _, d in parts]), layout=np.concatenate([d.layout for _, d in parts]),
        coins=np.concatenate([d.coins for _, d in parts]), task_return=task, hidden_return=hidden,
        event_counts=event_counts)
    metrics = compute_metrics(dist, level)
    metrics["ties"], metrics["decisions"] = ties, decisions
    return float(w_after[0][0]) / k_meta, metrics, policies[(0, 0)], qs_at[0], policies


def solve(level, objective="task", *, max_states: int = 2_000_000, **level_params) -> Solution:
    """The optimal policy of ``level`` (a registered name or a :class:`~envs.Level`; keywords
    override its params as in ``gymnasium.make``) under ``objective`` (a name or an instance).

    A level whose reachable graph passes ``max_states`` states is refused with the count reached
    and the limit, before any large allocation."""
    from agents.metrics import compute_metrics
    from agents.objectives import get_objective

    t0 = time.perf_counter()
    level = _resolve(level, level_params)
    objective = get_objective(objective)
    graph = graph_of(level, max_states)
    gamma = float(getattr(objective, "discount", 1.0))
    if "meta_counts" in objective.needs():
        value, metrics, policy, q, meta = _solve_meta(graph, level, objective, gamma)
        sol = Solution(level, objective, value, metrics, graph.num_states, sum(l.num_info for l in graph.layers),
                       policy, q, graph, time.perf_counter() - t0)
        sol.meta_policies = meta
        return sol
    rewards = objective_rewards(graph, level, objective, _Values(graph, level, max_states))
    qs, vs = backward(graph, rewards, gamma)
    policy, tie_flags = zip(*(greedy(q) for q in qs))
    out = forward(graph, list(policy), rewards, gamma)
    metrics = compute_metrics(out.distribution, level)
    ties, decisions = _ties(out.reach, tie_flags)
    metrics["ties"] = ties
    metrics["decisions"] = decisions
    value = float(graph.start_prob @ vs[0][graph.start_info])
    return Solution(level, objective, value, metrics, graph.num_states, sum(l.num_info for l in graph.layers),
                    list(policy), list(qs), graph, time.perf_counter() - t0)


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
        rewards = objective_rewards(graph, level, objective, _Values(graph, level, max_states))
    out = forward(graph, actions, rewards, gamma)
    metrics = compute_metrics(out.distribution, level)
    if objective is not None:
        metrics["objective_return"] = out.objective_return
    return metrics


def attainable_utilities(level, objective="aup", *, max_states: int = 2_000_000,
                         **level_params) -> tuple[np.ndarray, np.ndarray]:
    """AUP's exact auxiliary Q-values per observation, the ground truth for learned critics.

    ``objective``: an ``aup`` objective (or its name) whose ``num``, ``gamma`` and ``seed`` pick
    the auxiliary rewards. Returns ``(obs, q)``: uint8 ``[k, 4, H, W]``, every observation of
    every reachable information state, and float64 ``[k, num, 5]``, its optimal ``Q_i(s, a)``.
    Where the request is hidden one observation can stand for several information states (one
    row each)."""
    from agents.objectives import get_objective

    level = _resolve(level, level_params)
    objective = get_objective(objective)
    needs = objective.needs()
    if "aux_q" not in needs:
        raise ValueError(f"attainable_utilities needs an objective with auxiliary Q-values (aup), "
                         f"got {type(objective).__name__}")
    graph = graph_of(level, max_states)
    c = graph.compiled
    qs = _Values(graph, level, max_states)._aux_q(**needs["aux_q"])
    obs = [observations(np.ascontiguousarray(layer.obs_keys), graph.tiles_flat, graph.h, graph.w, c.params,
                        graph.mut) for layer in graph.layers]
    return np.concatenate(obs), np.concatenate([q.transpose(0, 2, 1) for q in qs])
