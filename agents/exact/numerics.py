"""Numerical helpers of the exact solver shared by the solver and the value providers:
backward induction over the layered graph, greedy tie-breaking, event flags and row hashing."""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from envs.core.tables import NUM_ACTIONS, NUM_EVENTS, Action

if TYPE_CHECKING:
    from .graph import Graph

NOOP = int(Action.NOOP)


def events_matrix(bits: np.ndarray) -> np.ndarray:
    """uint8 [B, NUM_EVENTS] flags from int64 event bitmasks."""
    return ((bits[:, None] >> np.arange(NUM_EVENTS)) & 1).astype(np.uint8)


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


def unique_rows_hashed(rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``np.unique(rows, axis=0, return_inverse=True)`` through 64-bit row hashes (many times
    faster on millions of rows); the grouping is checked row by row, so a collision cannot pass."""
    _, first, inv = np.unique(row_hash(rows), return_index=True, return_inverse=True)
    inv = inv.reshape(-1)
    uniq = rows[first]
    if not (uniq[inv] == rows).all():
        uniq, inv = np.unique(rows, axis=0, return_inverse=True)
        inv = inv.reshape(-1)
    return uniq, inv
