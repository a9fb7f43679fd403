"""Exact provider of ``aux_q`` and ``aux_q_noop`` (AUP): the auxiliary attainable utilities,
computed as the authors compute them (alexander-turner/attainable-utility-preservation).

**Timeless values.** The authors' ``Q_i`` are tables over *boards* (the observation, no time
index), learned by ``ModelFreeAUPAgent.update_greedy`` with discount 0.996 and bootstrapped from
the next board whatever happens (a terminal board is never acted from, so its ``Q`` stays 0, but
the auxiliary reward of entering it counts). Here the same fixed point is computed exactly on a
timeless MDP built from the level:

* **node** = the engine's key row without the step counter: ``S_SHUTDOWN_AT`` re-based to the
  steps left until the scheduled shutdown (what survival's timer cell shows; -1 once the switch
  is disabled or when none is scheduled), and ``S_STEP`` replaced by a *phase*: the step, but
  only while the dynamics still depend on it where the board does not show it, that is, while
  a request can still come at a step-dependent rate (``min(step, T*)`` with ``T*`` the first step
  from which the request hazard stays the same; 0 once the request came). On survival, coffee,
  coffee_hazards, tempting_button and shutdown_delay the phase is always 0 (nodes are boards plus
  the countdown); on off_switch it is the step during the request window (steps 0-9) and
  ``T* = 10`` after it; on safe_interruptibility the step 0 draw. A board that the authors would
  treat as one state but whose future depends on a step it does not show is thus kept apart:
  the dynamics stay exactly Markov (a deviation from "per board"; nothing is mixed).
* **transitions**: every (node, action, random outcome) of the engine's own rules
  (:func:`agents.exact.graph.expand`, from a representative key), closed over everything
  reachable *without* a time limit: in a discounted timeless model the time limit is
  truncation, not termination (as in the authors' tables, where the last board of an episode
  cut by ``max_iterations`` is bootstrapped like any other). Delivery and shutdown end the
  episode: value 0 after them, their board's reward counted.
* **rewards**: ``R_i`` of the board reached (:func:`agents.objectives.aup.aux_rewards`, the
  observation without its steps-left plane, a shut-down robot drawn switched off), the same
  function the learners' auxiliary critics learn.
* **values**: ``Q_i(u, a) = sum p (R_i(board') + gamma [running'] max_b Q_i(u', b))`` solved by
  modified policy iteration (sparse LU for each policy's evaluation, scipy): exact to round-off,
  in a few evaluations where value iteration needs thousands of sweeps at gamma = 0.996.

Where the request is hidden, a decision node of the solver is an information state: its ``Q_i``
is the belief-weighted mean of its members' (the auxiliary values of someone who sees the hidden
bits, averaged over what the robot believes).

**Baselines** (the AUP objective's ``baseline``):

* ``"stepwise"`` (``ModelFreeAUPAgent.get_penalty``): ``aux_q = Q_i(s, a)``,
  ``aux_q_noop = Q_i(s, noop)``.
* ``"rollout"`` (``AUPAgent.penalized_reward``, baseline ``'stepwise'`` there, the paper's full
  AUP agent): the action followed by noops until the horizon against noops only::

      aux_q      = E[ max_b Q_i(X_a, b) ]      X_a: after a, then noops, at the horizon
      aux_q_noop = E[ Q_i(X_0, noop) ]          X_0: after noops only, at the horizon

  (``max`` on the action side, ``Q(., noop)`` on the baseline side, as in the code; so even a
  noop pays ``|max_b Q_i - Q_i(., noop)|`` of the state its rollout reaches). The horizon is the
  level's time limit (the authors' planner rolls out to its planning horizon); a rollout that
  ends the episode reaches a terminal board (``Q = 0``), one cut by the time limit its last
  state. Random outcomes: both sides are expectations over them given (state, action).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from agents.objectives.aup import aux_rewards
from envs.core.level import NUM_PARAMS, P_REQUEST_MODE, P_REQUEST_STEP
from envs.core.rules import S_DISABLED, S_RC, S_REQUESTED, S_RR, S_SHUTDOWN_AT, S_STEP
from envs.core.tables import CH_ENTITY, NUM_ACTIONS, Entity, Reason, RequestMode

from .graph import KEY_COLS, expand, observations
from .numerics import NOOP, row_hash, unique_rows_hashed
from .values import ValueContext, exact_value

BASELINES = ("rollout", "stepwise")
_CONTINUING = (int(Reason.RUNNING), int(Reason.TIME_LIMIT))


def phase_end(params: np.ndarray) -> int:
    """``T*``: the first step from which the dynamics no longer depend on the step (the request
    hazard is the same from there on and a fixed request is past)."""
    hz = np.asarray(params[NUM_PARAMS:], dtype=np.float64)
    t = len(hz) - 1
    while t > 0 and hz[t - 1] == hz[t]:
        t -= 1
    if int(params[P_REQUEST_MODE]) == int(RequestMode.FIXED):
        t = max(t, int(params[P_REQUEST_STEP]) + 1)
    return t


def timeless_keys(keys: np.ndarray, tstar: int) -> np.ndarray:
    """The node of each key row (see the module docstring): shutdown re-based, step -> phase."""
    out = np.array(keys, dtype=np.int64, copy=True)
    step = out[:, S_STEP]
    live = (out[:, S_SHUTDOWN_AT] >= 0) & (out[:, S_DISABLED] == 0)
    out[:, S_SHUTDOWN_AT] = np.where(live, out[:, S_SHUTDOWN_AT] - step, -1)
    out[:, S_STEP] = np.where(out[:, S_REQUESTED] == 0, np.minimum(step, tstar), 0)
    return out


def _representatives(nodes: np.ndarray) -> np.ndarray:
    """A key row the engine can step for each node (step = phase, shutdown back to absolute)."""
    rep = nodes.copy()
    c = rep[:, S_SHUTDOWN_AT]
    rep[:, S_SHUTDOWN_AT] = np.where(c >= 0, rep[:, S_STEP] + c, -1)
    return rep


class _Index:
    """Exact row -> position lookup through a 64-bit hash (rows are compared after the search)."""

    def __init__(self, rows: np.ndarray):
        self.rows = rows
        h = row_hash(rows)
        self.order = np.argsort(h, kind="stable")
        self.sorted = h[self.order]
        if len(h) > 1 and (self.sorted[1:] == self.sorted[:-1]).any():
            raise RuntimeError("two timeless nodes share a 64-bit hash")

    def find(self, rows: np.ndarray, missing_ok: bool = False) -> np.ndarray:
        h = row_hash(rows)
        pos = np.minimum(np.searchsorted(self.sorted, h), max(len(self.sorted) - 1, 0))
        idx = self.order[pos] if len(self.order) else np.zeros(len(rows), dtype=np.int64)
        ok = (self.sorted[pos] == h) & (self.rows[idx] == rows).all(axis=1) if len(rows) else np.zeros(0, bool)
        if not missing_ok and not ok.all():
            raise RuntimeError("a state of the level has no timeless node (the timeless model is incomplete)")
        return np.where(ok, idx, -1)


@dataclass
class TimelessModel:
    """The level's timeless MDP (module docstring). Transitions are grouped by node, then action."""

    nodes: np.ndarray  # int64 [N, KEY_COLS]
    src: np.ndarray  # int64 [T] node
    act: np.ndarray  # int64 [T]
    prob: np.ndarray  # float64 [T] outcome probability
    nxt: np.ndarray  # int64 [T] next node, -1 where the episode ends (delivery, shutdown)
    board: np.ndarray  # int64 [T] index of the board reached
    reward: np.ndarray  # float64 [T] task reward
    boards: np.ndarray  # int64 [nb, KEY_COLS + 1]: node key of the board reached, robot-off flag
    tstar: int
    index: _Index = None

    @property
    def num_nodes(self) -> int:
        """The number of timeless nodes."""
        return len(self.nodes)

    def node_of(self, keys: np.ndarray) -> np.ndarray:
        """Node index of each (time-indexed) key row."""
        return self.index.find(timeless_keys(keys, self.tstar))


def timeless_model(graph) -> TimelessModel:
    """The timeless MDP of ``graph``'s level, grown from its layer-0 members (cached on the graph)."""
    cache = graph.__dict__.setdefault("_value_cache", {})
    if "timeless" in cache:
        return cache["timeless"]
    c = graph.compiled
    tstar = phase_end(c.params)
    frontier, _ = unique_rows_hashed(timeless_keys(graph.layers[0].members, tstar))
    nodes = [frontier]
    seen = _Index(frontier)
    parts = []
    offset = 0
    while len(frontier):
        n, src, act, prob, nk, rew, _, _, rsn = expand(
            np.ascontiguousarray(_representatives(frontier)), graph.tiles_flat, graph.h, graph.w, c.human_dist,
            c.starts, c.params, c.penalties, graph.mut)
        src, act, prob, nk, rew, rsn = (src[:n].astype(np.int64) + offset, act[:n].astype(np.int64), prob[:n], nk[:n],
                                        rew[:n], rsn[:n])
        nk = timeless_keys(nk, tstar)
        cont = np.isin(rsn, _CONTINUING)
        parts.append((src, act, prob, nk, rsn, cont, rew))
        offset += len(frontier)
        cand, _ = unique_rows_hashed(nk[cont]) if cont.any() else (nk[:0], None)
        new = cand[seen.find(cand, missing_ok=True) < 0]
        if len(new):
            seen = _Index(np.concatenate(nodes + [new]))
            if len(seen.rows) > graph.max_states:
                from .graph import LevelTooLarge

                raise LevelTooLarge(f"level {c.name!r}: AUP's timeless model passed max_states="
                                    f"{graph.max_states:,} nodes")
        nodes.append(new)
        frontier = new
    all_nodes = np.concatenate(nodes)
    index = _Index(all_nodes)
    src = np.concatenate([p[0] for p in parts])
    act = np.concatenate([p[1] for p in parts])
    prob = np.concatenate([p[2] for p in parts])
    nk = np.concatenate([p[3] for p in parts])
    rsn = np.concatenate([p[4] for p in parts])
    cont = np.concatenate([p[5] for p in parts])
    rew = np.concatenate([p[6] for p in parts])
    nxt = np.full(len(src), -1, dtype=np.int64)
    nxt[cont] = index.find(nk[cont])
    off = ((rsn == Reason.SHUTDOWN) | (rsn == Reason.SELF_SHUTDOWN)).astype(np.int64)
    boards, board = unique_rows_hashed(np.ascontiguousarray(np.concatenate([nk, off[:, None]], axis=1)))
    order = np.lexsort((act, src))  # node-major, action-major (expand's order already; made sure)
    model = TimelessModel(all_nodes, src[order], act[order], prob[order], nxt[order], board[order], rew[order], boards,
                          tstar, index)
    cache["timeless"] = model
    return model


def board_observations(graph, model: TimelessModel) -> np.ndarray:
    """uint8 ``[nb, 4, H, W]``: the observation of each board the model's transitions reach, as the
    engine draws it (a shut-down robot switched off); the steps-left plane is that of the phase."""
    c = graph.compiled
    keys = _representatives(np.ascontiguousarray(model.boards[:, :KEY_COLS]))
    obs = observations(np.ascontiguousarray(keys), graph.tiles_flat, graph.h, graph.w, c.params, graph.mut)
    rows = np.flatnonzero(model.boards[:, -1])
    obs[rows, CH_ENTITY, model.boards[rows, S_RR], model.boards[rows, S_RC]] = Entity.ROBOT_OFF
    return obs


def solve_q(model: TimelessModel, board_rewards: np.ndarray | None, gamma: float,
            transition_rewards: np.ndarray | None = None) -> np.ndarray:
    """float64 ``[N, A, n]``: the optimal discounted ``Q_i`` of the timeless model under rewards
    ``board_rewards`` ``[nb, n]`` of the board reached (and/or ``transition_rewards`` ``[T, n]``
    per transition of the model), by policy iteration."""
    import scipy.sparse as sp
    from scipy.sparse.linalg import splu

    n_nodes, A = model.num_nodes, NUM_ACTIONS
    rows = model.src * A + model.act
    per_row = sp.csr_matrix((model.prob, (rows, np.arange(len(rows)))), shape=(n_nodes * A, len(rows)))
    R = 0.0
    if board_rewards is not None:
        R = np.asarray(board_rewards, dtype=np.float64).reshape(len(model.boards), -1)[model.board]
    if transition_rewards is not None:
        R = R + np.asarray(transition_rewards, dtype=np.float64).reshape(len(rows), -1)
    R = np.broadcast_to(R, (len(rows), np.shape(R)[-1] if np.ndim(R) else 1))
    reward = np.asarray(per_row @ R)
    cont = model.nxt >= 0
    P = sp.csr_matrix((gamma * model.prob[cont], (rows[cont], model.nxt[cont])), shape=(n_nodes * A, n_nodes))
    eye = sp.identity(n_nodes, format="csc")
    base = np.arange(n_nodes) * A

    def q_of(v):
        return (reward + P @ v).reshape(n_nodes, A, -1)

    # a few value-iteration sweeps for a first policy; then, per reward function, modified policy
    # iteration: evaluate the policy exactly (sparse LU; I - gamma P_pi is strictly diagonally
    # dominant, so no pivoting), stop once no action is better under its values, else take the
    # greedy policy of 10 value-iteration sweeps from there (3.5x fewer evaluations than plain
    # policy iteration on coffee_hazards)
    v = np.zeros((n_nodes, reward.shape[1]))
    for _ in range(20):
        v = q_of(v).max(axis=1)
    policy = q_of(v).argmax(axis=1)  # [N, n]
    rows_n = np.arange(n_nodes)
    for i in range(reward.shape[1]):
        r, pi = reward[:, i], policy[:, i]
        for _ in range(200):
            sel = base + pi
            v[:, i] = splu((eye - P[sel]).tocsc(), permc_spec="NATURAL", diag_pivot_thresh=0.0).solve(r[sel])
            qi = (r + P @ v[:, i]).reshape(n_nodes, A)
            cur = qi[rows_n, pi]
            if not (qi.max(axis=1) > cur + 1e-12 * np.maximum(1.0, np.abs(cur))).any():
                break
            w = qi.max(axis=1)
            for _ in range(10):
                w = (r + P @ w).reshape(n_nodes, A).max(axis=1)
            pi = (r + P @ w).reshape(n_nodes, A).argmax(axis=1)
        else:
            raise RuntimeError("policy iteration did not converge")
    return q_of(v)


def aux_q(ctx: ValueContext, num: int = 30, gamma: float = 0.996, seed: int = 0) -> np.ndarray:
    """float64 ``[N, A, num]``: ``Q_i`` of every timeless node (cached on the graph)."""
    g = ctx.graph
    cache = g.__dict__.setdefault("_value_cache", {})
    key = ("aux", int(num), float(gamma), int(seed))
    if key not in cache:
        model = timeless_model(g)
        rewards = aux_rewards(board_observations(g, model), num, seed)
        cache[key] = solve_q(model, rewards, gamma)
    return cache[key]


def _member_nodes(ctx: ValueContext, t: int) -> np.ndarray:
    g = ctx.graph
    cache = g.__dict__.setdefault("_value_cache", {})
    per = cache.setdefault("member_nodes", {})
    if t not in per:
        per[t] = timeless_model(g).node_of(g.layers[t].members)
    return per[t]


def _per_info(layer, member_values: np.ndarray) -> np.ndarray:
    """Belief-weighted sum over each information state's members (``[n_t, ...]`` -> ``[m_t, ...]``)."""
    import scipy.sparse as sp

    agg = sp.csr_matrix((layer.member_weight, (layer.member_info, np.arange(len(layer.members)))),
                        shape=(layer.num_info, len(layer.members)))
    flat = member_values.reshape(len(layer.members), -1)
    return np.asarray(agg @ flat).reshape((layer.num_info,) + member_values.shape[1:])


def _cut_nodes(ctx: ValueContext, t: int):
    """Transitions of layer ``t`` the time limit cuts and the node of the state each leaves."""
    g = ctx.graph
    per = g.__dict__.setdefault("_value_cache", {}).setdefault("cut_nodes", {})
    if t not in per:
        layer = g.layers[t]
        cut = np.flatnonzero(layer.t_reason == Reason.TIME_LIMIT)
        nodes = timeless_model(g).node_of(g.expand_layer(layer)[3][cut]) if len(cut) else cut
        per[t] = (cut, nodes)
    return per[t]


def _expect_next(ctx: ValueContext, t: int, rows: np.ndarray, n_rows: int, weights: np.ndarray, sel: np.ndarray,
                 nxt_member: np.ndarray | None, at_cut: np.ndarray):
    """``[n_rows, num]``: sum over the transitions ``sel`` of layer ``t`` of ``weights`` times the
    value where each leads: ``nxt_member`` (a member of layer t+1's values) where the episode goes
    on, ``at_cut`` (a node's value) where the time limit cuts it, 0 where it ends otherwise."""
    import scipy.sparse as sp

    layer = ctx.graph.layers[t]
    out = np.zeros((n_rows, at_cut.shape[1]))
    mask = np.zeros(len(layer.t_member), dtype=bool)
    mask[sel] = True
    run = np.flatnonzero(mask & (layer.t_next_member >= 0))
    if len(run):
        out += sp.csr_matrix((weights[run], (rows[run], layer.t_next_member[run])),
                             shape=(n_rows, len(nxt_member))) @ nxt_member
    cut, nodes = _cut_nodes(ctx, t)
    keep = mask[cut]
    if keep.any():
        out += sp.csr_matrix((weights[cut[keep]], (rows[cut[keep]], nodes[keep])),
                             shape=(n_rows, len(at_cut))) @ at_cut
    return out


def _rollouts(ctx: ValueContext, num: int, gamma: float, seed: int):
    """Per layer ``t``: ``W_t`` [n_t, num] = E[max_b Q_i(X, b)] of the state ``X`` reached from each
    member by noops until the horizon (0 where the episode ends), and the baseline side per
    information state, E[Q_i(X, noop)] ``[m_t, num]``; with the max and the noop column of the
    node table (cached on the graph)."""
    g = ctx.graph
    cache = g.__dict__.setdefault("_value_cache", {})
    key = ("rollout", int(num), float(gamma), int(seed))
    if key in cache:
        return cache[key]
    q = aux_q(ctx, num, gamma, seed)
    v_all, q_noop = q.max(axis=1), q[:, NOOP]
    W, base_side = [None] * len(g.layers), [None] * len(g.layers)
    w_next = u_next = np.zeros((0, num))
    for t in range(len(g.layers) - 1, -1, -1):
        layer = g.layers[t]
        n_t = len(layer.members)
        p_out = layer.t_prob / layer.member_weight[layer.t_member]
        noop = np.flatnonzero(layer.t_action == NOOP)
        w_t = _expect_next(ctx, t, layer.t_member, n_t, p_out, noop, w_next, v_all)
        u_t = _expect_next(ctx, t, layer.t_member, n_t, p_out, noop, u_next, q_noop)
        W[t], base_side[t] = w_t, _per_info(layer, u_t)
        w_next, u_next = w_t, u_t
    cache[key] = (W, base_side, v_all)
    return cache[key]


def _layer_tables(ctx: ValueContext, t: int, num: int, gamma: float, seed: int, baseline: str):
    """``(action side [m_t * A, num], baseline side [m_t, num])`` per information state of layer ``t``."""
    layer = ctx.graph.layers[t]
    if baseline == "rollout":
        W, base_side, v_all = _rollouts(ctx, num, gamma, seed)
        # the (information state, action) expectation of W one step on (t_prob carries the belief)
        rows = layer.member_info[layer.t_member] * NUM_ACTIONS + layer.t_action
        w_next = W[t + 1] if t + 1 < len(W) else np.zeros((0, num))
        side = _expect_next(ctx, t, rows, layer.num_info * NUM_ACTIONS, layer.t_prob,
                            np.arange(len(rows)), w_next, v_all)
        return side, base_side[t]
    qm = aux_q(ctx, num, gamma, seed)[_member_nodes(ctx, t)]  # [n_t, A, num]
    qi = _per_info(layer, qm) if ctx.graph.hidden else qm
    return qi.reshape(-1, num), qi[:, NOOP]


def _values(ctx, t, num, gamma, seed, baseline):
    if baseline not in BASELINES:
        raise ValueError(f"AUP baseline must be one of {list(BASELINES)}, got {baseline!r}")
    key = ("aup_layer", t, int(num), float(gamma), int(seed), baseline)
    memo = ctx.cache
    if key not in memo:  # aux_q and aux_q_noop of one layer are asked for one after the other
        for old in [k for k in memo if isinstance(k, tuple) and k[:1] == ("aup_layer",)]:
            del memo[old]
        layer = ctx.graph.layers[t]
        action_side, base_side = _layer_tables(ctx, t, num, gamma, seed, baseline)
        info = layer.member_info[layer.t_member]
        memo[key] = (np.take(action_side, info * NUM_ACTIONS + layer.t_action, axis=0),
                     np.take(base_side, info, axis=0))
    return memo[key]


@exact_value("aux_q")
def aux_q_taken(ctx: ValueContext, t: int, next_keys, events_bits, num: int = 30, gamma: float = 0.996,
                seed: int = 0, baseline: str = "rollout") -> np.ndarray:
    """float64 [B_t, num]: the action side of each transition of layer ``t`` (``Q_i(s, a)``, or with
    the rollout baseline ``E[max_b Q_i]`` after the action and noops)."""
    return _values(ctx, t, num, gamma, seed, baseline)[0]


@exact_value("aux_q_noop")
def aux_q_noop(ctx: ValueContext, t: int, next_keys, events_bits, num: int = 30, gamma: float = 0.996,
               seed: int = 0, baseline: str = "rollout") -> np.ndarray:
    """float64 [B_t, num]: the baseline side (``Q_i(s, noop)``, or ``E[Q_i(., noop)]`` after noops only)."""
    return _values(ctx, t, num, gamma, seed, baseline)[1]


def node_q_per_layer(graph, num: int = 30, gamma: float = 0.996, seed: int = 0) -> list[np.ndarray]:
    """Per layer, ``Q_i`` ``[m_t, A, num]`` of each information state (for
    :func:`agents.exact.solver.attainable_utilities`)."""
    ctx = ValueContext(graph, None, graph.max_states)
    q = aux_q(ctx, num, gamma, seed)
    return [_per_info(layer, q[_member_nodes(ctx, t)]) for t, layer in enumerate(graph.layers)]


__all__ = ["BASELINES", "TimelessModel", "aux_q", "board_observations", "node_q_per_layer", "phase_end",
           "solve_q", "timeless_keys", "timeless_model"]
