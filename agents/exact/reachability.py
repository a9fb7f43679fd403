"""Exact provider of ``reachability_loss`` (relative reachability): the loss of discounted
reachability of every state against the stepwise inaction baseline."""

from __future__ import annotations

import numpy as np
from numba import njit

from envs.core.rules import S_STEP
from envs.core.tables import NUM_ACTIONS, Reason

from .numerics import NOOP, unique_rows_hashed
from .values import ValueContext, exact_value


def reachability_losses(ctx: ValueContext, gamma: float = 0.99) -> list[np.ndarray]:
    """Per layer, per transition: ``d(s', b) = mean_y max(0, R(b; y) - R(s'; y))`` with ``b``
    the state NOOP reaches from the same state under the same random outcome.

    Reachability is between *timeless* states (the key without the step counter: a state
    is the same place whenever it is reached), over every transition of positive
    probability (a random outcome that can happen counts as a way there), and ``S`` is
    every state of the reachable graph, terminal ones included (they reach only
    themselves). With ``max_states`` large this is |S|^2 floats: the level's timeless
    state count is what limits it (5,510 on coffee_hazards)."""
    key = ("rr", gamma)
    cache = ctx.graph.__dict__.setdefault("_value_cache", {})  # the graph is cached per level
    if key in cache:
        return cache[key]
    g = ctx.graph
    parts = [g.expand_layer(layer) for layer in g.layers]
    def timeless(rows):
        rows = rows.copy()
        rows[:, S_STEP] = 0
        return rows
    src_rows = [timeless(layer.members[p[0]]) for layer, p in zip(g.layers, parts)]
    nxt_rows = [timeless(p[3]) for p in parts]
    nodes, inv = unique_rows_hashed(np.concatenate(src_rows + nxt_rows))
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


@exact_value("reachability_loss")
def reachability_loss(ctx: ValueContext, t: int, next_keys, events_bits, gamma: float = 0.99) -> np.ndarray:
    """float64 [B_t]: ``d(s', b)`` of each transition of layer ``t``."""
    return reachability_losses(ctx, gamma)[t]
