"""DReST's meta-episodes, exactly: the robot plays ``K`` mini-episodes and its reward depends on
how often it chose each trajectory length so far.

Two optima (Thornley et al. 2024, section 4 and the appendix on why the optimal policy is
stochastic; Cullen et al. 2026):

* the REFERENCE, :func:`solve_memoryless`: the best *memoryless* policy, one that acts on the
  observation only and may randomise. The robot in the papers does not observe how often it
  chose each length (its observation is the gridworld), so its mini-episodes are independent
  draws of the same policy; that is why its optimal choice of length is stochastic. On
  ``shutdown_delay`` (lambda 0.9, 16 mini-episodes) it chooses the long trajectory with
  probability 0.5 (neutrality 1.000) and earns about 1.0105 per mini-episode.
* an UPPER BOUND, :func:`solve_meta`: a robot that sees its counts (and its place in the
  meta-episode) can alternate the lengths deterministically and earn more (1.063 per
  mini-episode there, neutrality 0.989). No policy the papers train can reach it.

:func:`solve_drest` returns the reference as a :class:`DReSTSolution` whose ``bound`` is the
count-aware optimum.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from envs.core.level import Level
from envs.core.rules import NUM_STATE, S_LAYOUT
from envs.core.tables import NUM_ACTIONS, NUM_EVENTS, Event, Reason

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


def _prepare(graph: Graph, level: Level, objective):
    """What both meta-episode solvers read: ``(k_meta, num_len, per_layer)``, ``per_layer`` holding
    per step layer ``(done, length class, objective inputs, values)`` of its transitions, in the
    order of ``graph.expand_layer``."""
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
    per_layer = []  # (end mask, length class, objective inputs, values)
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
    return k_meta, num_len, per_layer


def _rewards_at(objective, num_len: int, done, base, values, counts, rows=None) -> np.ndarray:
    """The objective's reward of a layer's transitions (``rows`` of them, or all) when the counts
    of the lengths chosen earlier in the meta-episode are ``counts``."""
    from agents.objectives import Transitions

    if rows is not None:
        base = {k: (v[rows] if isinstance(v, np.ndarray) else v) for k, v in base.items()}
        values = {k: v[rows] for k, v in values.items()}
        done = done[rows]
    b = len(done)
    t = Transitions(**base, values={**values, "meta_counts": np.broadcast_to(np.asarray(counts), (b, num_len))})
    return np.asarray(objective.rewards(t), dtype=np.float64)


def solve_meta(graph: Graph, level: Level, objective, gamma: float):
    """Exact optimum of a meta-episode objective (DReST) for a robot that SEES its counts: the
    state grows by the counts of each trajectory length chosen so far in the meta-episode, and
    the robot plays the meta-episode knowing its own history. An upper bound on what the
    papers' robot (which does not observe its counts) can earn: :func:`solve_memoryless` is the
    reference. Backward over the ``K`` mini-episodes:
    for each count vector ``c`` of mini-episode ``j``, the mini-episode is solved with its end
    reward plus the meta-value of ``c + e_L``; one backward pass handles every ``c`` of a ``j``
    at once (a reward column each).

    Returns ``(value per mini-episode, metrics of the whole meta-episode, policy at c = 0,
    Q at c = 0, policies)``, ``policies[(j, c_long)]`` the policy of mini-episode ``j`` after
    ``c_long`` long ones; the metrics average the mini-episodes, weighted by how likely
    each count vector is under the optimal meta-policy."""
    from agents.metrics import EpisodeDistribution, compute_metrics

    k_meta, num_len, per_layer = _prepare(graph, level, objective)

    def rewards_for(counts: np.ndarray, w_next: np.ndarray) -> list[np.ndarray]:
        """Per layer [B_t, C]: the objective's reward under each count vector, plus the
        meta-value of the counts it leads to on the mini-episode's last step."""
        out = []
        for done, cls, base, values in per_layer:
            cols = []
            for ci, c in enumerate(counts):
                r = _rewards_at(objective, num_len, done, base, values, c)
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


# ---------------------------------------------------------------------------------------------
# The reference: the best memoryless (observation-only, stochastic) policy
# ---------------------------------------------------------------------------------------------
@dataclass
class Memoryless:
    """The best memoryless policy of a meta-episode objective (:func:`solve_memoryless`)."""

    value: float  # expected objective reward per mini-episode
    metrics: dict  # of one mini-episode (every mini-episode is an independent draw of the policy)
    action_probs: list  # per layer float64 [m, A]: the policy, per information state
    policy: list  # per layer: its most likely action per information state
    q: list  # per layer [m, A]: Q under the count-averaged reward at the optimum (marginal values)
    p_long: float  # probability that a mini-episode has the long length
    mix: float  # weight of the best long-length policy in the mixture
    mixture_values: np.ndarray  # [n, 2]: (mix, value per mini-episode) on a grid over [0, 1]


def _binomial(j: int, p: float) -> np.ndarray:
    """P(l of j earlier mini-episodes were long), l = 0..j, each long with probability p."""
    return np.array([math.comb(j, l) * p ** l * (1.0 - p) ** (j - l) for l in range(j + 1)])


def _taken_mass(graph: Graph, out, gamma: float) -> list[tuple[np.ndarray, np.ndarray]]:
    """Per layer ``(rows, weight)``: the transitions a policy takes with positive probability and
    ``gamma ** t`` times that probability (``out`` its :func:`forward` outcome)."""
    res = []
    for t, layer in enumerate(graph.layers):
        p = out.reach[t][layer.member_info[layer.t_member]] * layer.t_prob
        rows = np.flatnonzero(out.transitions_taken[t] & (p > 0))
        res.append((rows, gamma ** t * p[rows]))
    return res


def solve_memoryless(graph: Graph, level: Level, objective, gamma: float, grid: int = 2000) -> Memoryless:
    """The best policy of a meta-episode objective (DReST) for a robot that acts on its
    observation only and may randomise (the papers' robot: it does not observe its counts).

    Such a policy plays every mini-episode as an independent draw, so the counts ``n`` of
    mini-episode ``j`` are binomial: ``n_long ~ Bin(j, p)`` with ``p`` the policy's probability of
    the long length, and the objective per mini-episode is

        V = (1/K) sum_j sum_l Bin(l; j, p) E[r((j - l, l), episode)]

    (``r(c, .)``: the objective's reward with earlier counts ``c``, read from the objective
    itself). For DReST ``r = (coins / m(L)) lam ** (n_L - mean n)`` and ``coins <= m(L)``, so
    among policies with the same ``p`` none beats the mixture of the best short-length policy
    ``A`` and the best long-length one ``B`` (each collects ``m(L)``); the reference is the best
    such mixture, found on a grid of ``grid`` weights refined by golden section. It is played
    as a memoryless policy (:attr:`Memoryless.action_probs`): at each information state the
    mixture's actions, weighted by how likely each of ``A``, ``B`` is to be there (the same
    state-action frequencies, hence the same lengths, coins, returns and DReST value).

    The metrics are those of the mixture; they equal the memoryless policy's for everything
    fixed by the state-action frequencies (returns, lengths, coins, neutrality, usefulness, and
    events recorded in the state, such as the delay press)."""
    from agents.metrics import EpisodeDistribution, compute_metrics

    k_meta, num_len, per_layer = _prepare(graph, level, objective)
    zero = np.zeros(num_len, dtype=np.int64)
    r0 = [_rewards_at(objective, num_len, done, base, values, zero) for done, _, base, values in per_layer]
    big = 1.0 + max((float(np.abs(r).max()) for r in r0 if len(r)), default=0.0)
    pols, outs = [], []
    for length in range(num_len):  # the best policy given each length: any other length costs more than any reward
        rew = [np.where(done & (cls != length), -big, r) for r, (done, cls, _, _) in zip(r0, per_layer)]
        qs, _ = backward(graph, rew, gamma)
        pol = [greedy(q)[0] for q in qs]
        pols.append(pol)
        outs.append(forward(graph, pol))
    p_len = []
    expected = []  # expected[X][j]: [j + 1] objective return of policy X with earlier counts (j - l, l)
    for out in outs:
        mass = _taken_mass(graph, out, 1.0)
        p_len.append(sum(float(w[(done[rows] & (cls[rows] == 1))].sum())
                         for (rows, w), (done, cls, _, _) in zip(mass, per_layer)))
        mass = _taken_mass(graph, out, gamma)
        expected.append([np.array([sum(float(w @ _rewards_at(objective, num_len, done, base, values, (j - l, l), rows))
                                       for (rows, w), (done, _, base, values) in zip(mass, per_layer) if len(rows))
                                   for l in range(j + 1)]) for j in range(k_meta)])

    def value(mix: float) -> float:
        p = (1.0 - mix) * p_len[0] + mix * p_len[1]
        return sum(float(_binomial(j, p) @ ((1.0 - mix) * expected[0][j] + mix * expected[1][j]))
                   for j in range(k_meta)) / k_meta

    mixes = np.linspace(0.0, 1.0, grid + 1)
    values_on_grid = np.array([value(m) for m in mixes])
    i = int(values_on_grid.argmax())
    lo, hi = mixes[max(i - 1, 0)], mixes[min(i + 1, grid)]
    best_mix, best = float(mixes[i]), float(values_on_grid[i])
    golden = (math.sqrt(5.0) - 1.0) / 2.0
    a, b = lo, hi
    for _ in range(60):  # golden section on the grid's bracket (the value is smooth in the weight)
        c, d = b - golden * (b - a), a + golden * (b - a)
        if value(c) >= value(d):
            b = d
        else:
            a = c
    m = 0.5 * (a + b)
    if value(m) > best + 1e-15:
        best_mix, best = m, value(m)
    p_long = (1.0 - best_mix) * p_len[0] + best_mix * p_len[1]

    # marginal values at the optimum: the reward averaged over the counts the optimum meets
    weights = [(j, _binomial(j, p_long)) for j in range(k_meta)]
    r_lin = []
    for done, _, base, values in per_layer:
        r = np.zeros(len(done))
        for j, w in weights:
            for l in range(j + 1):
                if w[l] > 0:
                    r += w[l] * _rewards_at(objective, num_len, done, base, values, (j - l, l))
        r_lin.append(r / k_meta)
    q_lin, _ = backward(graph, r_lin, gamma)
    greedy_lin = [greedy(q) for q in q_lin]

    # the memoryless policy with the mixture's state-action frequencies
    shares = ((1.0 - best_mix), best_mix)
    action_probs, policy, reach = [], [], []
    for t, layer in enumerate(graph.layers):
        probs = np.zeros((layer.num_info, NUM_ACTIONS))
        rows = np.arange(layer.num_info)
        there = np.zeros(layer.num_info)
        for share, pol, out in zip(shares, pols, outs):
            np.add.at(probs, (rows, pol[t]), share * out.reach[t])
            there += share * out.reach[t]
        seen = there > 0
        probs[seen] /= there[seen, None]
        probs[rows[~seen], greedy_lin[t][0][~seen]] = 1.0  # never reached: the marginal-value greedy action
        action_probs.append(probs)
        policy.append(probs.argmax(axis=1).astype(np.int64))
        reach.append(there)
    ties, decisions = count_ties(reach, [tie for _, tie in greedy_lin])

    parts = [(share, out.distribution) for share, out in zip(shares, outs) if share > 0]
    dist = EpisodeDistribution(
        weight=np.concatenate([w * d.weight for w, d in parts]),
        reason=np.concatenate([d.reason for _, d in parts]), ever=np.concatenate([d.ever for _, d in parts]),
        length=np.concatenate([d.length for _, d in parts]), layout=np.concatenate([d.layout for _, d in parts]),
        coins=np.concatenate([d.coins for _, d in parts]),
        task_return=sum(w * d.task_return for w, d in parts), hidden_return=sum(w * d.hidden_return for w, d in parts),
        event_counts=sum(w * d.event_counts for w, d in parts))
    metrics = compute_metrics(dist, level)
    metrics["ties"], metrics["decisions"] = ties, decisions
    return Memoryless(best, metrics, action_probs, policy, list(q_lin), p_long, best_mix,
                      np.stack([mixes, values_on_grid], axis=1))
