"""The off-switch game's route values, exactly: what waiting, acting and switching off are worth
to the robot, given its signal of the human's preference (Hadfield-Menell et al., "The
Off-Switch Game", IJCAI 2017; Wängberg et al., AGI 2017, for irrational humans).

A preference level (``request="preference"``, :attr:`envs.Level.has_preference`) names its
three routes in its scripts, by :data:`ROUTE_SCRIPTS`: ``safe`` is "wait" (put the plan to the
human with the button working), ``act`` (disable the button, then deliver) and ``off`` (press
the button itself). Each script is an open-loop action string; the robot of the off-switch game
commits to its route before it learns anything, so a route's value is its script's value. On
the solver's graph (:mod:`agents.exact.graph`) each script is evaluated backwards from the time
limit, giving its exact expected task return from every start information state, that is, for
each signal s the robot may see: ``Q_route(s)``, the expectation under the posterior of U
given s. Then

    value_of_deference = E_s[ Q_wait(s) - max(Q_act(s), Q_off(s)) ],

which without a signal (``preference_signal=0.5``) is the paper's ``V(wait) - max(V(act),
V(off))`` = ``p - e - max(2p - 1, 0)`` for prior p and human error e. It is positive exactly
where deferring is the robot's strict best response at every signal (the robot's choice may
differ by signal; this is the mean of its advantage of waiting).
"""

from __future__ import annotations

import math

import numpy as np

from envs.core.level import Level
from envs.core.rules import S_SIGNAL
from envs.core.tables import ACTION_LETTERS

from .graph import Graph
from .numerics import NOOP

#: Route name (the paper's) -> the script of a preference level that plays it.
ROUTE_SCRIPTS = {"wait": "safe", "act": "act", "off": "off"}


def script_actions(graph: Graph, script: str) -> list[np.ndarray]:
    """An open-loop action string as per-layer actions of every information state (noop once
    it runs out)."""
    acts = [int(ACTION_LETTERS[ch]) for ch in script]
    return [np.full(layer.num_info, acts[t] if t < len(acts) else NOOP, dtype=np.int64)
            for t, layer in enumerate(graph.layers)]


def policy_values(graph: Graph, actions: list[np.ndarray], rewards: list[np.ndarray] | None = None) -> np.ndarray:
    """float64 [m_0]: the expected return (task reward, or ``rewards`` per layer) of following
    ``actions`` (per layer, one per information state) from each information state of layer 0,
    under its belief."""
    v_next = None
    for t in range(len(graph.layers) - 1, -1, -1):
        layer = graph.layers[t]
        r = layer.t_reward if rewards is None else rewards[t]
        info = layer.member_info[layer.t_member]
        sel = layer.t_action == actions[t][info]
        cont = np.zeros(len(r))
        running = layer.t_next >= 0
        if v_next is not None and running.any():
            cont[running] = v_next[layer.t_next[running]]
        v = np.zeros(layer.num_info)
        np.add.at(v, info[sel], (layer.t_prob * (r + cont))[sel])
        v_next = v
    return v_next


def route_values(graph: Graph, level: Level) -> dict | None:
    """The three routes' exact task values on a preference level, or None where the level is
    none or lacks one of the scripts (:data:`ROUTE_SCRIPTS`).

    Returns ``{"wait", "act", "off"}``: each route's value expected over the signal;
    ``"value_of_deference"`` (see the module docstring); ``"by_signal"``: ``{+1: {...}, -1:
    {...}}``, the three values given each signal the robot can see (its posterior's), and
    ``"p_signal"``: each signal's probability."""
    if not level.has_preference or any(s not in level.scripts for s in ROUTE_SCRIPTS.values()):
        return None
    v = {route: policy_values(graph, script_actions(graph, level.scripts[script]))
         for route, script in ROUTE_SCRIPTS.items()}
    info, prob = graph.start_info, graph.start_prob
    per_start = {route: values[info] for route, values in v.items()}
    out = {route: float(prob @ values) for route, values in per_start.items()}
    advantage = per_start["wait"] - np.maximum(per_start["act"], per_start["off"])
    out["value_of_deference"] = float(prob @ advantage)
    signal = graph.start_keys[:, S_SIGNAL]
    out["by_signal"], out["p_signal"] = {}, {}
    for s in (1, -1):
        mask = signal == s
        p_s = float(prob[mask].sum())
        out["p_signal"][s] = p_s
        out["by_signal"][s] = {route: (float(prob[mask] @ values[mask]) / p_s if p_s > 0 else math.nan)
                               for route, values in per_start.items()}
    return out
