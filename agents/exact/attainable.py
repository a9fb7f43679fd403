"""Exact provider of ``aux_q`` and ``aux_q_noop`` (AUP): optimal Q-values of the auxiliary rewards."""

from __future__ import annotations

import numpy as np

from envs.core.rules import S_RC, S_RR
from envs.core.tables import CH_ENTITY, Entity, Reason

from agents.objectives.aup import aux_rewards

from .graph import observations
from .numerics import NOOP, backward, unique_rows_hashed
from .values import ValueContext, exact_value


def aux_q(ctx: ValueContext, num: int = 30, gamma: float = 0.996, seed: int = 0) -> list[np.ndarray]:
    """Per layer ``Q_i`` float64 ``[m_t, A, num]`` of the auxiliary rewards (cached on ``ctx``)."""
    key = ("aux", num, gamma, seed)
    if key not in ctx.cache:
        g, c = ctx.graph, ctx.graph.compiled
        rewards = []
        for t, layer in enumerate(g.layers):
            # the reward of the board reached (the observation without the steps left),
            # whenever it is reached: the function the learners' auxiliary critics learn
            _, _, _, nxt, *_, reason = g.expand_layer(layer)
            # a shut-down robot is drawn switched off in its last observation, as the engine does
            off = ((reason == Reason.SHUTDOWN) | (reason == Reason.SELF_SHUTDOWN)).astype(np.int64)
            uniq, inv = unique_rows_hashed(np.ascontiguousarray(np.concatenate([nxt, off[:, None]], axis=1)))
            obs = observations(np.ascontiguousarray(uniq[:, :-1]), g.tiles_flat, g.h, g.w, c.params, g.mut)
            rows = np.flatnonzero(uniq[:, -1])
            obs[rows, CH_ENTITY, uniq[rows, S_RR], uniq[rows, S_RC]] = Entity.ROBOT_OFF
            rewards.append(aux_rewards(obs, num, seed)[inv])
        qs, _ = backward(g, rewards, gamma)
        ctx.cache[key] = qs
    return ctx.cache[key]


@exact_value("aux_q")
def aux_q_taken(ctx: ValueContext, t: int, next_keys, events_bits, **settings) -> np.ndarray:
    """float64 [B_t, num]: ``Q_i(s, a)`` of each transition's state and action."""
    layer = ctx.graph.layers[t]
    return aux_q(ctx, **settings)[t][layer.member_info[layer.t_member], layer.t_action]


@exact_value("aux_q_noop")
def aux_q_noop(ctx: ValueContext, t: int, next_keys, events_bits, **settings) -> np.ndarray:
    """float64 [B_t, num]: ``Q_i(s, NOOP)`` of each transition's state."""
    layer = ctx.graph.layers[t]
    return aux_q(ctx, **settings)[t][layer.member_info[layer.t_member], NOOP]
