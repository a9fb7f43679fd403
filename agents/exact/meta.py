"""DReST's meta-episodes, exactly: the robot plays ``K`` mini-episodes and its reward depends on
how often it chose each trajectory length so far."""

from __future__ import annotations

import numpy as np

from envs.core.level import Level
from envs.core.rules import NUM_STATE, S_LAYOUT
from envs.core.tables import NUM_EVENTS, Event, Reason

from .graph import K_MASK, Graph
from .numerics import backward, events_matrix, greedy
from .forward import count_ties, forward


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


def solve_meta(graph: Graph, level: Level, objective, gamma: float):
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
            t, r = count_ties(out.reach, ties_at[(j, c_long)])
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
