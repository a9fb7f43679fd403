"""The forward pass of the exact solver: push the start distribution through the layered graph
under a policy, giving the exact distribution of episodes (and the objective's expected return)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from envs.core.rules import S_LAYOUT, S_PREFERENCE, S_SIGNAL
from envs.core.tables import NUM_EVENTS, Event

from .graph import Graph
from .numerics import events_matrix

_COIN_BIT = 1 << int(Event.COIN_COLLECTED)
_COIN_SHIFT = 16  # coins collected so far, kept above the event bits of a forward-pass flag word


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
    # layer 0's members are the start states (several in one information state where the robot
    # cannot tell them apart, e.g. U on a preference level)
    index = {row.tobytes(): j for j, row in enumerate(first.members)}
    pair_m = np.array([index[row.tobytes()] for row in graph.start_keys], dtype=np.int64)
    pair_f = np.zeros(len(pair_m), dtype=np.int64)
    pair_p = graph.start_prob.copy()
    pair_m, pair_f, pair_p = _merge(pair_m, pair_f, pair_p)
    ends = {"p": [], "reason": [], "flags": [], "length": [], "layout": [], "preference": [], "signal": []}
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
            ends["preference"].append(layer.members[layer.t_member[tr][done], S_PREFERENCE])
            ends["signal"].append(layer.members[layer.t_member[tr][done], S_SIGNAL])
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
        task_return=task, hidden_return=hidden, event_counts=counts,
        preference=np.concatenate(ends["preference"]).astype(np.int64) if ends["preference"] else None,
        signal=np.concatenate(ends["signal"]).astype(np.int64) if ends["signal"] else None)
    return Outcome(dist, obj, reach, taken)


def _merge(info, flags, p):
    """Sum the probability of equal (information state, flags) pairs."""
    if len(info) == 0:
        return info, flags, p
    keys = np.stack([info, flags], axis=1)
    uniq, inv = np.unique(keys, axis=0, return_inverse=True)
    return uniq[:, 0], uniq[:, 1], np.bincount(inv.reshape(-1), weights=p, minlength=len(uniq))


def count_ties(reach: list, tie_flags: list) -> tuple[int, int]:
    """(decisions that were ties, decisions reached): information states reached with positive
    probability whose greedy choice was among several equal values."""
    reached = sum(int((r > 0).sum()) for r in reach)
    ties = sum(int(((r > 0) & f).sum()) for r, f in zip(reach, tie_flags))
    return ties, reached
