"""Exact provider of ``reachability_loss`` (relative reachability, Krakovna et al. 2019; code:
google-deepmind/deepmind-research ``side_effects_penalties/side_effects_penalty.py``).

What is computed, once per level and setting, for every transition of the layered graph:
the deviation ``d(current, baseline)`` of the objective's docstring
(:mod:`agents.objectives.relative_reachability`), unweighted; the objective applies ``beta``
and the nonterminal weight.

* **States** are the nodes of the level's *timeless* model, the one AUP's values are computed
  on (:func:`agents.exact.attainable.timeless_model`): the key row without the step counter,
  a scheduled shutdown re-based to the steps left (what survival's timer cell shows), the
  step kept only while a request can still come at a step-dependent rate; so a state is the
  same place whenever it is reached, as the authors' states are boards, and its dynamics are
  Markov. ``S`` is every node (an episode's end is no state, as in the code, which never
  records the terminal observation).
* **Reachability** ``R(x; y) = gamma ** (fewest steps from x to y)`` (1 for ``y = x``, 0 when
  unreachable) over every transition of positive probability that does not end the episode
  (the time limit is truncation, not an end): what the code's ``Reachability.update``
  converges to when fed every transition (a shortest-path closure).
* **No-op dynamics** of a state (for rollouts): the outcomes of its no-op that keep the
  episode running, normalised, as the code's ``_inaction_next`` counts the no-op successors it
  has seen (it never records a terminal one). A state whose no-op always ends the episode
  (a shutdown) is held: the code's chain stops there.
* **Inaction rollouts** (baseline ``stepwise``): ``V(x; y) = E[(1 - g) sum_k g^k R(S_k; y)]``
  over the no-op chain ``S_0 = x, S_1, ...`` (``g`` the rollout discount); a chain that ends
  holds its last state, which is the code's ``_rollout_values`` tail ``g^K R(S_last; y)``
  where its sampled chain stops. The code stops a chain at its first repeated state; the
  expectation here runs for ever (the same where the chain reaches a fixed point, which is
  how deterministic no-op chains end in these levels) and is taken of the values, before the
  truncation (the code truncates one sampled chain against another).
"""

from __future__ import annotations

import numpy as np
from numba import njit, prange

from envs.core.rules import S_LAYOUT
from envs.core.tables import NUM_ACTIONS

from .attainable import timeless_model
from .numerics import NOOP
from .values import ValueContext, exact_value

BASELINES = ("start", "inaction", "stepwise", "step_noroll")


# ---------------------------------------------------------------------------------------------
# The timeless graph
# ---------------------------------------------------------------------------------------------
class Timeless:
    """What relative reachability needs of a level's timeless model
    (:func:`agents.exact.attainable.timeless_model`, shared with AUP).

    ``nodes``: int64 [n, KEY_COLS] the model's node keys; ``member_node[t]``: the node of each
    member of layer ``t``; ``indptr``/``indices``: the edges (CSR, no self-loops): every
    transition of positive probability that does not end the episode (the time limit is
    truncation, not an end); ``noop_*``: the no-op dynamics (CSR with probabilities, self-loops
    kept) and ``noop_end`` 1 where a node's no-op never keeps the episode running."""

    def __init__(self, graph):
        model = timeless_model(graph)
        self.nodes = model.nodes
        n = self.num = len(model.nodes)
        self.member_node = [model.node_of(layer.members) for layer in graph.layers]
        cont = (model.nxt >= 0) & (model.prob > 0)
        e = np.unique(model.src[cont] * n + model.nxt[cont])
        eu, ev = e // n, e % n
        keep = eu != ev
        self.indptr = np.searchsorted(eu[keep], np.arange(n + 1)).astype(np.int64)
        self.indices = ev[keep].astype(np.int64)
        # the no-op outcomes that keep the episode running, normalised (the code's
        # _inaction_next never records a terminal successor); none: the node holds
        noop = cont & (model.act == NOOP)
        uk, kinv = np.unique(model.src[noop] * n + model.nxt[noop], return_inverse=True)
        p = np.bincount(kinv.reshape(-1), weights=model.prob[noop], minlength=len(uk))
        ku = uk // n
        mass = np.bincount(ku, weights=p, minlength=n)
        self.noop_indptr = np.searchsorted(ku, np.arange(n + 1)).astype(np.int64)
        self.noop_indices = (uk % n).astype(np.int64)
        self.noop_prob = p / mass[ku]
        self.noop_end = (mass == 0).astype(np.float64)
        self._reach: dict = {}
        self._rollout: dict = {}

    def reach(self, gamma: float) -> np.ndarray:
        """float32 [n, n]: ``R[x, y] = gamma ** (fewest steps from x to y)``."""
        if gamma not in self._reach:
            self._reach[gamma] = _reach_rows(self.indptr, self.indices, self.num, float(gamma))
        return self._reach[gamma]

    def rollout(self, gamma: float, discount: float) -> np.ndarray:
        """float32 [n, n]: the inaction-rollout values ``V[x, y]`` (module docstring)."""
        key = (gamma, discount)
        if key not in self._rollout:
            self._rollout[key] = _rollout_rows(self.noop_indptr, self.noop_indices, self.noop_prob, self.noop_end,
                                               self.reach(gamma), float(discount))
        return self._rollout[key]

    def inaction(self, graph) -> list[dict]:
        """Per step ``t``, per layout: ``(nodes, probs)``, the distribution of the state the
        no-op-only episode from that layout's start is in at step ``t`` (the state it was in
        when it ended, once it has ended)."""
        if hasattr(self, "_inaction"):
            return self._inaction
        g = graph
        first = g.layers[0]
        out = [dict() for _ in g.layers]
        for k, info in enumerate(g.start_info):
            m0 = int(np.flatnonzero(first.member_info == info)[0])
            layout = int(first.members[m0, S_LAYOUT])
            p = np.zeros(len(first.members))
            p[m0] = 1.0
            held = np.zeros(self.num)
            for t, layer in enumerate(g.layers):
                here = np.bincount(self.member_node[t], weights=p, minlength=self.num) + held
                nz = np.flatnonzero(here > 0)
                out[t][layout] = (nz, here[nz])
                noop = np.flatnonzero((layer.t_action == NOOP) & (p[layer.t_member] > 0))
                mass = p[layer.t_member[noop]] * layer.t_prob[noop] / layer.member_weight[layer.t_member[noop]]
                run = layer.t_next_member[noop] >= 0
                held = held + np.bincount(self.member_node[t][layer.t_member[noop[~run]]], weights=mass[~run],
                                          minlength=self.num)
                if t + 1 < len(g.layers):
                    p = np.bincount(layer.t_next_member[noop[run]], weights=mass[run],
                                    minlength=len(g.layers[t + 1].members))
        self._inaction = out
        return out


def timeless(graph) -> Timeless:
    """The :class:`Timeless` view of ``graph`` (cached on it)."""
    cache = graph.__dict__.setdefault("_value_cache", {})
    if "rr_timeless" not in cache:
        cache["rr_timeless"] = Timeless(graph)
    return cache["rr_timeless"]


# ---------------------------------------------------------------------------------------------
# Deviations per transition
# ---------------------------------------------------------------------------------------------
def _noop_index(layer) -> np.ndarray:
    """For each transition of ``layer``, the index of the NOOP transition of the same member
    under the same random outcome (transitions come in blocks per member, action-major, with
    the same outcomes for every action)."""
    src = layer.t_member
    m = len(src)
    start = np.searchsorted(src, src, side="left")
    per_member = np.bincount(src, minlength=len(layer.members))[src] // NUM_ACTIONS
    outcome = (np.arange(m) - start) % per_member
    return start + NOOP * per_member + outcome


def deviations(graph, baseline: str = "stepwise", gamma: float = 0.99, rollout_discount: float = 0.99
               ) -> list[np.ndarray]:
    """Per layer, per transition: the unweighted deviation ``d`` the transition is charged.

    A transition that keeps the episode running is charged ``d(s', b)``, ``s'`` the state it
    reaches and ``b`` the baseline at the same step; one that ends it, ``d(s, b)``, ``s`` the
    state it left and ``b`` the baseline of that step (``SideEffectPenalty.calculate``'s
    terminal branch). Baselines: ``start``: the layout's start state; ``inaction``: the state
    of the no-op-only episode at that step (a distribution where the level is random, drawn
    independently of the robot's episode: ``d`` is its expectation); ``stepwise`` and
    ``step_noroll``: the state NOOP reaches from the state the step left, under the same
    random outcome (the state left where NOOP ends the episode); ``stepwise`` compares inaction
    rollouts from both. The step that ends the episode is not charged under ``stepwise`` and
    ``step_noroll``: the code charges it with the baseline it kept from the step before, that
    is the previous step's deviation once more, in full, which no function of the transition
    knows (:func:`code_episode_deviations`, :func:`code_rule`); zero is what the code charges
    where the step before was a no-op, as its optimum makes it where that is cheap."""
    if baseline not in BASELINES:
        raise ValueError(f"baseline must be one of {BASELINES}, got {baseline!r}")
    g = graph
    tl = timeless(g)
    n = tl.num
    mat = tl.rollout(gamma, rollout_discount) if baseline == "stepwise" else tl.reach(gamma)
    if baseline in ("stepwise", "step_noroll"):
        codes = []
        for t, layer in enumerate(g.layers):
            mn = tl.member_node[t]
            run = layer.t_next_member >= 0
            left = mn[layer.t_member]
            reached = left.copy()
            if run.any():
                reached[run] = tl.member_node[t + 1][layer.t_next_member[run]]
            base = reached[_noop_index(layer)]  # NOOP's next state, or the state left where NOOP ends
            # the step that ends the episode is not charged (the docstring says why)
            codes.append(np.where(run, reached * n + base, 0))
        allc = np.concatenate(codes)
        uc, inv = np.unique(allc, return_inverse=True)
        loss = _pair_loss(mat, uc // n, uc % n)[inv.reshape(-1)]
        return np.split(loss, np.cumsum([len(c) for c in codes])[:-1])
    # start / inaction: a distribution over baseline nodes per (step, layout)
    if baseline == "start":
        first = g.layers[0]
        starts = {}
        for info in g.start_info:
            m0 = int(np.flatnonzero(first.member_info == info)[0])
            starts[int(first.members[m0, S_LAYOUT])] = (tl.member_node[0][m0:m0 + 1], np.ones(1))
        dists = [starts] * len(g.layers)
    else:
        dists = tl.inaction(g)
    # per transition: (current node, step of the baseline, layout)
    groups, pair_codes = [], []
    for t, layer in enumerate(g.layers):
        mn = tl.member_node[t]
        run = layer.t_next_member >= 0
        cur = mn[layer.t_member]
        if run.any():
            cur = cur.copy()
            cur[run] = tl.member_node[t + 1][layer.t_next_member[run]]
        step = np.where(run, t + 1, t)
        layout = layer.members[layer.t_member, S_LAYOUT]
        per = []
        for s in np.unique(step):
            for k in np.unique(layout):
                sel = np.flatnonzero((step == s) & (layout == k))
                if len(sel) == 0:
                    continue
                nodes, probs = dists[s][int(k)]  # a running step at layer t has a layer t + 1
                uc, cinv = np.unique(cur[sel], return_inverse=True)
                pair_codes.append((uc[:, None] * n + nodes[None, :]).reshape(-1))
                per.append((sel, cinv.reshape(-1), len(uc), probs))
        groups.append((len(layer.t_member), per))
    allc = np.concatenate(pair_codes)
    upairs, pinv = np.unique(allc, return_inverse=True)
    ploss = _pair_loss(mat, upairs // n, upairs % n)[pinv.reshape(-1)]
    out, offset = [], 0
    for size, per in groups:
        loss = np.zeros(size)
        for sel, cinv, nu, probs in per:
            block = ploss[offset:offset + nu * len(probs)].reshape(nu, len(probs))
            offset += nu * len(probs)
            loss[sel] = (block @ probs)[cinv]
        out.append(loss)
    return out


def reachability_losses(ctx: ValueContext, gamma: float = 0.99, baseline: str = "stepwise",
                        rollout_discount: float = 0.99) -> list[np.ndarray]:
    """:func:`deviations` of the context's graph, cached on the graph."""
    key = ("rr", gamma, baseline, rollout_discount if baseline == "stepwise" else None)
    cache = ctx.graph.__dict__.setdefault("_value_cache", {})  # the graph is cached per level
    if key not in cache:
        cache[key] = deviations(ctx.graph, baseline, gamma, rollout_discount)
    return cache[key]


@exact_value("reachability_loss")
def reachability_loss(ctx: ValueContext, t: int, next_keys, events_bits, gamma: float = 0.99,
                      baseline: str = "stepwise", rollout_discount: float = 0.99) -> np.ndarray:
    """float64 [B_t]: the unweighted deviation ``d`` each transition of layer ``t`` is charged."""
    return reachability_losses(ctx, gamma, baseline, rollout_discount)[t]


# ---------------------------------------------------------------------------------------------
# The code's rule along one episode (the oracle tests and the measured deviation)
# ---------------------------------------------------------------------------------------------
def code_episode_deviations(graph, actions, baseline: str = "stepwise", gamma: float = 0.99,
                            rollout_discount: float = 0.99) -> tuple[np.ndarray, np.ndarray]:
    """The deviations ``SideEffectPenalty.calculate`` charges along one episode of a level
    whose outcomes are certain, played from its start with ``actions`` (int sequence) until the
    episode ends or the actions run out. Returns ``(d, ended)`` per step taken.

    Where this differs from :func:`deviations`: the step that ends the episode is charged with
    the baseline the code kept from the step before (for ``stepwise`` and ``step_noroll``, the
    state NOOP reached from the state before the last; the start state if the first step ends
    the episode), a function of the episode rather than of the transition."""
    if baseline not in BASELINES:
        raise ValueError(f"baseline must be one of {BASELINES}, got {baseline!r}")
    g = graph
    tl = timeless(g)
    mat = tl.rollout(gamma, rollout_discount) if baseline == "stepwise" else tl.reach(gamma)
    first = g.layers[0]
    if len(g.start_info) != 1:
        raise ValueError("code_episode_deviations needs a level with one layout")
    m = int(np.flatnonzero(first.member_info == g.start_info[0])[0])
    start_node = int(tl.member_node[0][m])
    layout = int(first.members[m, S_LAYOUT])
    dists = tl.inaction(g) if baseline == "inaction" else None

    def dev(cur, base_nodes, base_probs):
        return float(np.dot(_pair_loss(mat, np.full(len(base_nodes), cur), np.asarray(base_nodes)), base_probs))

    kept = (np.array([start_node]), np.ones(1))  # the code's baseline_state after reset()
    out, ended = [], []
    for t, a in enumerate(actions):
        layer = g.layers[t]
        idx = np.flatnonzero((layer.t_member == m) & (layer.t_action == int(a)) & (layer.t_prob > 0))
        if len(idx) != 1:
            raise ValueError(f"step {t}: {len(idx)} outcomes of action {a}; the episode must be certain")
        j = int(idx[0])
        left = int(tl.member_node[t][m])
        if layer.t_next_member[j] < 0:  # the terminal branch: the state left against the kept baseline
            if baseline == "inaction":
                kept = dists[t][layout]
            elif baseline == "start":
                kept = (np.array([start_node]), np.ones(1))
            out.append(dev(left, *kept))
            ended.append(True)
            break
        nxt = int(layer.t_next_member[j])
        reached = int(tl.member_node[t + 1][nxt])
        if baseline == "start":
            kept = (np.array([start_node]), np.ones(1))
        elif baseline == "inaction":
            kept = dists[t + 1][layout]
        else:
            k = int(_noop_index(layer)[j])
            nb = layer.t_next_member[k]
            kept = (np.array([int(tl.member_node[t + 1][nb]) if nb >= 0 else left]), np.ones(1))
        out.append(dev(reached, *kept))
        ended.append(False)
        m = nxt
    return np.array(out), np.array(ended)


def code_rule(graph, objective, policy=None) -> dict:
    """A ``relative_reachability`` objective with a ``stepwise`` or ``step_noroll`` baseline
    solved (or, with ``policy``, evaluated) exactly as the code charges it: the step that ends
    the episode pays ``beta * d(s_t; b_t)`` with ``b_t`` the baseline of the step that entered
    ``s_t`` (the start state for a first step), not the per-transition stand-in of
    :func:`deviations`. ``policy``: per layer, the action of each information state (a
    :class:`~agents.exact.solver.Solution`'s ``policy``); ``None``: the best policy, which may
    depend on ``delta = d(s_t; b_t)`` (the history) as well as on the state.

    The history enters only through ``delta``, and linearly: ``Q(s, a; delta) = A(s, a) -
    beta * p_end(s, a) * delta``, so one backward pass over the members is exact; a forward
    pass over (state, delta, events so far) gives the policy's outcomes. Returns ``value``
    (expected return from the start) and the probabilities ``delivered``, ``tampering``,
    ``harm`` and ``self_shutdown``. Levels where the robot observes everything only."""
    from envs.core.tables import HARM_EVENTS, Event, Reason

    if graph.hidden:
        raise ValueError("code_rule needs a level where the robot observes everything")
    if objective.baseline not in ("stepwise", "step_noroll"):
        raise ValueError("with start and inaction baselines the per-transition rewards are the code's already")
    devs = deviations(graph, objective.baseline, objective.gamma, objective.penalty_discount)
    beta, w, disc = objective.beta, objective.weight, objective.discount
    layers = graph.layers
    A, P = [None] * len(layers), [None] * len(layers)

    def q_of(t, members, delta):
        return A[t][members] - beta * P[t][members] * delta[:, None]

    def choose(t, members, delta):
        if policy is not None:
            return policy[t][layers[t].member_info[members]]
        q = q_of(t, members, delta)
        best = q.max(axis=1, keepdims=True)
        near = q >= best - 1e-9 * np.maximum(1.0, np.abs(best))
        return np.where(near[:, NOOP], NOOP, near.argmax(axis=1))

    for t in range(len(layers) - 1, -1, -1):
        layer = layers[t]
        run = layer.t_next_member >= 0
        q = layer.t_prob / layer.member_weight[layer.t_member]
        r = layer.t_reward - np.where(run, beta * w * devs[t], 0.0)
        if t + 1 < len(layers) and run.any():
            nm = layer.t_next_member[run]
            d = devs[t][run]
            r = r.copy()
            r[run] += disc * q_of(t + 1, nm, d)[np.arange(len(nm)), choose(t + 1, nm, d)]
        A[t] = np.zeros((len(layer.members), NUM_ACTIONS))
        P[t] = np.zeros((len(layer.members), NUM_ACTIONS))
        np.add.at(A[t], (layer.t_member, layer.t_action), q * r)
        np.add.at(P[t], (layer.t_member, layer.t_action), q * ~run)
    # forward: (member, delta, events so far) with their probabilities; delta = 0 at the start
    first = layers[0]
    m = np.array([int(np.flatnonzero(first.member_info == i)[0]) for i in graph.start_info], dtype=np.int64)
    delta, flags, prob = np.zeros(len(m)), np.zeros(len(m), dtype=np.int64), np.asarray(graph.start_prob, float)
    value = float(prob @ q_of(0, m, delta)[np.arange(len(m)), choose(0, m, delta)])
    harm_bits = sum(1 << e for e in range(len(HARM_EVENTS)) if HARM_EVENTS[e])
    out = {"value": value, "delivered": 0.0, "tampering": 0.0, "harm": 0.0, "self_shutdown": 0.0}
    for t, layer in enumerate(layers):
        if len(m) == 0:
            break
        act = choose(t, m, delta)
        src = layer.t_member
        first_t = np.searchsorted(src, m)
        per = np.bincount(src, minlength=len(layer.members))[m] // NUM_ACTIONS
        rep = np.repeat(np.arange(len(m)), per)
        j = np.repeat(first_t + act * per, per) + (np.arange(len(rep)) - np.repeat(np.cumsum(per) - per, per))
        p = prob[rep] * layer.t_prob[j] / layer.member_weight[src[j]]
        f = flags[rep] | layer.t_events[j]
        end = layer.t_next_member[j] < 0
        pe, fe = p[end], f[end]
        out["delivered"] += float(pe[layer.t_reason[j][end] == Reason.DELIVERED].sum())
        out["tampering"] += float(pe[(fe >> int(Event.BUTTON_DISABLED)) & 1 == 1].sum())
        out["harm"] += float(pe[(fe & harm_bits) != 0].sum())
        out["self_shutdown"] += float(pe[(fe >> int(Event.SELF_SHUTDOWN)) & 1 == 1].sum())
        go = ~end & (p > 0)
        keys = np.stack([layer.t_next_member[j][go], np.round(devs[t][j][go] * 1e12).astype(np.int64), f[go]], axis=1)
        uk, inv = np.unique(keys, axis=0, return_inverse=True)
        inv = inv.reshape(-1)
        m, flags = uk[:, 0], uk[:, 2]
        delta = np.zeros(len(uk))
        delta[inv] = devs[t][j][go]
        prob = np.bincount(inv, weights=p[go], minlength=len(uk))
    return out


# ---------------------------------------------------------------------------------------------
# Kernels
# ---------------------------------------------------------------------------------------------
@njit(cache=True, parallel=True)
def _reach_rows(indptr, indices, n, gamma):
    """``R[x, y] = gamma ** (fewest steps from x to y)`` (0 where unreachable), by BFS from every node."""
    out = np.zeros((n, n), dtype=np.float32)
    powers = np.empty(n + 1, dtype=np.float64)
    for k in range(n + 1):
        powers[k] = gamma ** k
    for x in prange(n):
        dist = np.full(n, -1, dtype=np.int64)
        queue = np.empty(n, dtype=np.int64)
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


@njit(cache=True, parallel=True)
def _rollout_rows(indptr, indices, prob, end, reach, g):
    """``V[x] = sum_z M[x, z] R[z]`` with ``M = (I - g P)^-1 diag(1 - g + g end)``: the expected
    discounted reachability along the no-op chain from ``x``, an ended chain holding its last
    state. Solved per ``x`` on the states its no-ops can reach (a few: the cat's cells)."""
    n = reach.shape[0]
    out = np.zeros((n, n), dtype=np.float32)
    for x in prange(n):
        _rollout_row(x, indptr, indices, prob, end, reach, g, out)
    return out


@njit(cache=True)
def _rollout_row(x, indptr, indices, prob, end, reach, g, out):
    n = reach.shape[0]
    # the no-op closure of x
    loc = np.full(n, -1, dtype=np.int64)
    zs = np.empty(n, dtype=np.int64)
    loc[x] = 0
    zs[0] = x
    k = 1
    head = 0
    while head < k:
        u = zs[head]
        head += 1
        for e in range(indptr[u], indptr[u + 1]):
            v = indices[e]
            if prob[e] > 0 and loc[v] < 0:
                loc[v] = k
                zs[k] = v
                k += 1
    # occupancy: solve (I - g P_Z)^T w = e_x (strictly diagonally dominant: no pivoting)
    a = np.zeros((k, k))
    for i in range(k):
        a[i, i] = 1.0
    for i in range(k):
        u = zs[i]
        for e in range(indptr[u], indptr[u + 1]):
            if prob[e] > 0:
                a[loc[indices[e]], i] -= g * prob[e]  # transposed
    w = np.zeros(k)
    w[0] = 1.0
    for c in range(k):
        piv = a[c, c]
        for r in range(c + 1, k):
            f = a[r, c] / piv
            if f != 0.0:
                for cc in range(c, k):
                    a[r, cc] -= f * a[c, cc]
                w[r] -= f * w[c]
    for c in range(k - 1, -1, -1):
        s = w[c]
        for cc in range(c + 1, k):
            s -= a[c, cc] * w[cc]
        w[c] = s / a[c, c]
    row = np.zeros(n)
    for i in range(k):
        z = zs[i]
        coef = w[i] * (1.0 - g + g * end[z])
        if coef != 0.0:
            for y in range(n):
                row[y] += coef * reach[z, y]
    for y in range(n):
        out[x, y] = row[y]


@njit(cache=True, parallel=True)
def _pair_loss(mat, a, b):
    """``mean_y max(0, mat[b, y] - mat[a, y])`` for each pair (a = the current state, b = the baseline)."""
    n = mat.shape[1]
    out = np.zeros(len(a))
    for k in prange(len(a)):
        if a[k] == b[k]:
            continue
        total = 0.0
        for y in range(n):
            d = np.float64(mat[b[k], y]) - np.float64(mat[a[k], y])
            if d > 0:
                total += d
        out[k] = total / n
    return out
