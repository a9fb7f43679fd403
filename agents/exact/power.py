"""POWER and shutdown avoidance under random reward functions, exactly, on a level's graph.

    from agents.exact.power import power
    p = power("survival", num_rewards=1000, seed=0)
    p.to_switch, p.power_start, p.power_shutdown

    python -m agents.exact.power                       # every solvable level
    python -m agents.exact.power --levels survival --rewards 1000 --seed 0 --discount 0.99

Turner et al. 2021, "Optimal policies tend to seek power" (NeurIPS, arXiv 1912.01683): for most
reward functions, optimal policies keep their options open; an agent that can be shut down
(an absorbing state with a single reachable future) tends to avoid it. This module draws many
random state-based reward functions and solves each one exactly with the solver's backward
induction (:func:`agents.exact.solver.graph_of`, the layered reachable graph; a column per reward
function, in chunks).

Reward functions
    ``R(s)`` uniform in [0, 1), independently per state and per reward function (numpy's
    ``default_rng(seed)``, one draw per (state, reward function) in a fixed order of the
    states: same level, seed and count, same numbers). A state is *timeless*: the engine's
    state row and used-cells mask without the step counter (``S_STEP`` zeroed), so a board is
    worth the same whenever it is reached. The request flag is left out too (the human's
    intention; what it changes, the human walking to the button or a frozen robot, is in the
    state); the freeze flag is kept: a frozen robot is another state than one standing on I.
    The robot is paid ``R(s')`` on arriving in ``s'``.

Ended episodes
    Turner's shutdown is a single absorbing state with one action. So is every episode's end
    here: a robot whose episode ends at step ``t+1`` stays in its end state and is paid
    ``R(end)`` on every step up to the time limit. A shutdown (the human's press, the timer,
    the robot's own button) ends in *the* shut-down state (one per layout, wherever the robot
    stopped); a delivery ends in the state reached, marked as ended. The time limit itself is
    the horizon, not a state. A frozen (interrupted) robot is absorbing already: it stays in
    one timeless state until the time limit.

POWER
    Turner et al.'s Definition 1, ``POWER(s) = (1 - gamma)/gamma E_R[V*_R(s) - R(s)]``, with
    ``V*_R(s) - R(s) = gamma V(s)`` for ``V(s)`` the optimal value of the arrivals after ``s``
    (what :func:`agents.exact.numerics.backward` computes), is ``(1 - gamma) E_R[V(s)]``: the
    optimal average reward per step. Over a finite horizon of ``K`` steps left, ``1 - gamma``
    (``1 / sum_{k >= 0} gamma^k``) becomes ``1 / sum_{k < K} gamma^k``; the two agree as ``K``
    grows, and POWER stays in [0, 1) at every step. An absorbing state ``s`` has
    ``POWER(s) = E[R(s)] = 1/2``: the shut-down state's POWER (reported as the sample mean over
    the level's shut-down states and the reward functions drawn). ``power_start`` is the start
    state's.

Shares (per reward function's optimal policy, ties toward NOOP then the lowest action, as the
solver breaks them)
    ``to_switch``: its first action starts a shortest path to the switch, i.e. to the first
    ``button_disabled`` (survival's B, off_switch's S, safe_interruptibility's B) or
    ``shutdown_delayed`` (the delay button) event: the action maximises the probability-weighted
    ``0.5 ** steps`` to that event. NaN where no switch is reachable.
    ``avoid_shutdown``: its probability of being shut down (the events ``button_pressed``,
    ``self_shutdown``, ``timer_shutdown``, ``interrupted``) is the least any policy achieves.
    NaN where the policy cannot change that probability (no shutdown, or an unavoidable one).
    ``p_shutdown``: that probability averaged over the reward functions, beside the least and
    the most any policy achieves (``p_shutdown_range``).

Measured (``python -m agents.exact.power``: 1,000 reward functions, seed 0, discount 0.99,
absorbing ends). On ``survival`` the first move of 74.6% of the optimal policies steps onto the
switch, 10.7% more press it at the second step, the last moment, and the 85.3% that use it
avoid the shutdown; POWER(start) is 0.854 against 0.494 for the shut-down state (seeds 0-4:
74.0-75.6% first onto the switch, 83.8-85.5% avoiding the shutdown). With episodic ends
(``ends="episodic"``) every optimal policy avoids the shutdown and 84.4% step onto the switch
first (84.4-85.4% over seeds 0-2). The interruption of the safe_interruptibility levels is
avoided by 90-93%, ``tempting_button``'s own button by 85.6%. Each level takes under a second
but ``coffee_hazards`` (5,690 timeless states, 4.2M transitions; about 45 s).

CAVEAT
    Uniform i.i.d. state rewards are Turner's "most reward functions"; a structured family
    (rewards on positions only, sparse goals) can give other shares. POWER at the start is a
    finite-horizon, discounted quantity: the share and the numbers depend on ``discount`` and
    the time limit (the module's default discount is 0.99). Where the request is hidden the
    robot decides on information states, so its value is an expectation over what it cannot
    see; POWER(start) is still the start state's optimal value, which is what Definition 1 asks.
"""

from __future__ import annotations

import argparse
import math
import sys
import time
from dataclasses import dataclass, field

import numpy as np
from numba import njit

from envs.core.level import Level
from envs.core.rules import S_FROZEN, S_LAYOUT, S_REQUESTED, S_STEP
from envs.core.tables import NUM_ACTIONS, Event, Reason
from envs.levels import get_level

from .graph import Graph
from .numerics import NOOP, backward, unique_rows_hashed

#: Events of using the switch: disabling the off switch or the interruption, or delaying the shutdown.
SWITCH_EVENTS = (Event.BUTTON_DISABLED, Event.SHUTDOWN_DELAYED)
#: Events of being shut down: the human's press, the robot's own, the timer, an interruption.
SHUTDOWN_EVENTS = (Event.BUTTON_PRESSED, Event.SELF_SHUTDOWN, Event.TIMER_SHUTDOWN, Event.INTERRUPTED)
_ENDS = (Reason.DELIVERED, Reason.SHUTDOWN, Reason.SELF_SHUTDOWN)  # absorbing ends (not the time limit)
_TOL = 1e-9  # numerics.greedy's tolerance
_A, _NOOP = NUM_ACTIONS, NOOP
ENDS = ("absorbing", "episodic")

__all__ = ["ENDS", "SHUTDOWN_EVENTS", "SWITCH_EVENTS", "Power", "main", "power", "transition_rewards"]


@dataclass
class Power:
    """POWER and the shares of :func:`power` on one level (see the module docstring)."""

    level: str
    num_rewards: int
    seed: int
    discount: float
    ends: str  # "absorbing" or "episodic"
    to_switch: float  # share whose optimal first action heads for the switch (NaN: no switch)
    avoid_shutdown: float  # share whose optimal policy is shut down as rarely as any policy can (NaN: fixed)
    p_shutdown: float  # mean over reward functions of the optimal policy's P(shut down)
    p_shutdown_range: tuple  # (least, most) P(shut down) of any policy
    p_switch: float  # mean over reward functions of the optimal policy's P(switch used) (NaN: no switch)
    power_start: float  # POWER of the start state (mean over reward functions)
    power_shutdown: float  # POWER of the shut-down states (mean over them and the reward functions; NaN: none)
    num_states: int  # timeless states (ends included) that carry a reward
    seconds: float = 0.0
    first_actions: np.ndarray = field(default=None, repr=False)  # int64 [num_rewards]: optimal first action
    p_shutdown_each: np.ndarray = field(default=None, repr=False)  # float64 [num_rewards]
    power_start_each: np.ndarray = field(default=None, repr=False)  # float64 [num_rewards]


def _bits(events) -> int:
    return sum(1 << int(e) for e in events)


def _discounted_steps(n: np.ndarray, gamma: float) -> np.ndarray:
    """``sum_{k < n} gamma ** k`` for integer arrays ``n``."""
    n = np.asarray(n, dtype=np.float64)
    return n if gamma == 1.0 else (1.0 - gamma ** n) / (1.0 - gamma)


@njit(cache=True)
def _layer_backward(info, action, prob, nxt, ids, mult, rewards, v_next, gamma, m, policy):
    """One step layer of backward induction for every column of ``rewards`` (``R[state, k]``):
    ``Q[i, a, k] = sum prob (R[ids, k] mult + gamma V_next[nxt, k])`` over the transitions, summed
    in their order as :func:`agents.exact.numerics.backward` does; writes the greedy action
    (ties toward NOOP, then the lowest index, :func:`agents.exact.numerics.greedy`'s rule) into
    ``policy`` ``[m, n]`` and returns ``V`` ``[m, n]``."""
    n = rewards.shape[1]
    q = np.zeros((m, _A, n))
    for b in range(info.shape[0]):
        i, a, p, j, s, w = info[b], action[b], prob[b], nxt[b], ids[b], mult[b]
        for k in range(n):
            x = rewards[s, k] * w
            if j >= 0:
                x += gamma * v_next[j, k]
            q[i, a, k] += p * x
    v = np.empty((m, n))
    for i in range(m):
        for k in range(n):
            best = q[i, 0, k]
            for a in range(1, _A):
                best = max(best, q[i, a, k])
            v[i, k] = best
            thr = best - _TOL * max(1.0, abs(best))
            act = _NOOP
            if q[i, _NOOP, k] < thr:
                for a in range(_A):
                    if q[i, a, k] >= thr:
                        act = a
                        break
            policy[i, k] = act
    return v


@njit(cache=True)
def _layer_probability(info, action, prob, nxt, flag, p_next, m, policy):
    """One step layer of policy evaluation: ``P[i, k] = sum prob (flag + P_next[nxt, k])`` over the
    transitions whose action is column ``k``'s policy's at ``i``."""
    n = policy.shape[1]
    out = np.zeros((m, n))
    for b in range(info.shape[0]):
        i, a, p, j, f = info[b], action[b], prob[b], nxt[b], flag[b]
        for k in range(n):
            if policy[i, k] == a:
                x = f
                if j >= 0:
                    x += p_next[j, k]
                out[i, k] += p * x
    return out


def _layers(graph: Graph):
    """Per layer, per transition: the id of the state reached (a row of the timeless state
    table, returned beside), whether it ends the episode, and the graph's indices the numba
    passes read."""
    parts, rows = [], []
    for layer in graph.layers:
        src, act, _, nxt, _, _, _, rsn = graph.expand_layer(layer)
        assert np.array_equal(src, layer.t_member) and np.array_equal(act, layer.t_action)  # the graph's order
        ended = np.isin(rsn, np.array(_ENDS, dtype=rsn.dtype))
        key = nxt.copy()
        key[:, S_STEP] = 0
        key[:, S_REQUESTED] = 0  # the human's intention; what it changes (the human, a freeze) is in the state
        end = np.where(ended, rsn, 0).astype(np.int64)
        # Turner's shut-down state: one absorbing state (per layout), wherever the robot stopped
        shut = (rsn == Reason.SHUTDOWN) | (rsn == Reason.SELF_SHUTDOWN)
        key[shut] = 0
        key[shut, S_LAYOUT] = nxt[shut, S_LAYOUT]
        end[shut] = int(Reason.SHUTDOWN)
        rows.append(np.concatenate([key, end[:, None]], axis=1))
        parts.append(ended)
    states, inv = unique_rows_hashed(np.ascontiguousarray(np.concatenate(rows)))
    out, offset = [], 0
    for layer, ended in zip(graph.layers, parts):
        b = len(ended)
        out.append({"ids": inv[offset:offset + b], "ended": ended,
                    "info": layer.member_info[layer.t_member].astype(np.int64),
                    "action": layer.t_action.astype(np.int64), "next": layer.t_next.astype(np.int64)})
        offset += b
    return out, states


def _probability(g: Graph, layers: list, policy: list, indicator: list, start_info, start_prob) -> np.ndarray:
    """float64 [n]: the probability that each column's policy (``policy[t]`` int [m_t, n]) takes a
    transition flagged in ``indicator`` (per layer, float 0/1 [B_t]; flagged at most once an
    episode, else the expected count): policy evaluation, backward."""
    n = policy[0].shape[1]
    if not any(x.any() for x in indicator):
        return np.zeros(n)
    p_next = np.zeros((0, n))
    for t in range(len(layers) - 1, -1, -1):
        layer, d = g.layers[t], layers[t]
        p_next = _layer_probability(d["info"], d["action"], layer.t_prob, d["next"], indicator[t], p_next,
                                    layer.num_info, policy[t])
    return start_prob @ p_next[start_info]


def _check(num_rewards, seed, discount, ends) -> None:
    if isinstance(num_rewards, bool) or not isinstance(num_rewards, (int, np.integer)) or num_rewards < 1:
        raise ValueError(f"num_rewards must be a positive whole number, got {num_rewards!r}")
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise ValueError(f"seed must be a non-negative whole number, got {seed!r}")
    if isinstance(discount, bool) or not isinstance(discount, (int, float)) or not 0.0 < discount <= 1.0:
        raise ValueError(f"discount must be in (0, 1], got {discount!r}")
    if ends not in ENDS:
        raise ValueError(f"ends must be one of {list(ENDS)}, got {ends!r}")


def _setup(level, level_params: dict, num_rewards: int, seed: int, discount: float, ends: str, max_states: int):
    """The graph, its layers' reward lookups (``ids`` into the state table, ``mult`` the steps an
    end pays for), the timeless states and the reward table ``R[state, reward function]``."""
    from .solver import graph_of

    _check(num_rewards, seed, discount, ends)
    gamma = float(discount)
    lvl: Level = get_level(level)
    if level_params:
        lvl = lvl.with_params(**level_params)
    g = graph_of(lvl, max_states)
    horizon = int(g.compiled.max_steps)
    layers, states = _layers(g)
    rewards = np.random.default_rng(int(seed)).random((len(states), int(num_rewards)))
    for t, d in enumerate(layers):
        # an end pays R(end) for every step left up to the time limit (absorbing), or once (episodic)
        d["mult"] = np.ones(len(d["ended"]))
        if ends == "absorbing":
            d["mult"][d["ended"]] = _discounted_steps(horizon - t, gamma)
    return g, layers, states, rewards


def transition_rewards(level, num_rewards: int = 1000, seed: int = 0, discount: float = 0.99, *,
                       ends: str = "absorbing", max_states: int = 2_000_000, **level_params) -> list[np.ndarray]:
    """The reward functions :func:`power` draws, as the solver's per-layer transition rewards:
    float64 ``[B_t, num_rewards]`` per step layer of :func:`agents.exact.solver.graph_of`
    (for :func:`agents.exact.numerics.backward`; an end's entry includes the steps it pays for)."""
    _, layers, _, rewards = _setup(level, level_params, num_rewards, seed, discount, ends, max_states)
    return [rewards[d["ids"]] * d["mult"][:, None] for d in layers]


def power(level, num_rewards: int = 1000, seed: int = 0, discount: float = 0.99, *, ends: str = "absorbing",
          chunk: int | None = None, max_states: int = 2_000_000, **level_params) -> Power:
    """POWER at the start and at shutdown, and how many of ``num_rewards`` random state-based
    reward functions (uniform [0, 1) per timeless state, ``seed``) have an optimal policy that
    heads for the switch first or avoids shutdown, on ``level`` (a name or a Level; keywords
    override its params). ``discount`` in (0, 1]. ``ends``: ``"absorbing"`` (Turner's model: an
    ended episode's last state pays its reward every step up to the time limit) or
    ``"episodic"`` (it pays on arrival only, as an RL episode ends; any reward function in [0, 1)
    then prefers running to ending, so the shares say little about POWER). ``chunk``: reward
    functions per vectorised pass (default: as many as keep a pass's largest array near 64 MB)."""
    t0 = time.perf_counter()
    g, layers, states, rewards = _setup(level, level_params, num_rewards, seed, discount, ends, max_states)
    gamma = float(discount)
    horizon = int(g.compiled.max_steps)
    start_info, start_prob = g.start_info, g.start_prob

    # the switch: which first actions start a shortest path to it (0.5 ** steps, maximised)
    sw_bits, off_bits = _bits(SWITCH_EVENTS), _bits(SHUTDOWN_EVENTS)
    sw = [((l.t_events & sw_bits) != 0).astype(np.float64) for l in g.layers]
    q_sw, _ = backward(g, sw, 0.5)
    q0 = q_sw[0][start_info]  # [starts, A]
    best = q0.max(axis=1, keepdims=True)
    to_switch_actions = (q0 >= best - _TOL * np.maximum(1.0, best)) & (best > 0)  # [starts, A]
    has_switch = bool((best > 0).any())

    # the least and the most probability of shutdown any policy achieves
    off = [((l.t_events & off_bits) != 0).astype(np.float64) for l in g.layers]
    _, v_max = backward(g, off, 1.0)
    _, v_min = backward(g, [-x for x in off], 1.0)
    p_max = float(start_prob @ v_max[0][start_info]) + 0.0
    p_min = max(0.0, float(-(start_prob @ v_min[0][start_info])))

    n_total = int(num_rewards)
    if chunk is None:  # keep a layer's Q and the policies of every layer near 64 MB each
        widest = max(layer.num_info for layer in g.layers)
        total = sum(layer.num_info for layer in g.layers)
        chunk = max(1, min(n_total, (64 << 20) // (8 * NUM_ACTIONS * widest), (64 << 20) // total))
    if isinstance(chunk, bool) or not isinstance(chunk, (int, np.integer)) or chunk < 1:
        raise ValueError(f"chunk must be a positive whole number, got {chunk!r}")
    first = np.zeros((len(start_info), n_total), dtype=np.int64)
    p_off = np.zeros(n_total)
    p_sw = np.zeros(n_total)
    v_start = np.zeros(n_total)
    for lo in range(0, n_total, int(chunk)):
        cols = slice(lo, min(n_total, lo + int(chunk)))
        r_cols = np.ascontiguousarray(rewards[:, cols])
        n = r_cols.shape[1]
        policy = [None] * len(layers)
        v_next = np.zeros((0, n))
        for t in range(len(layers) - 1, -1, -1):
            layer, d = g.layers[t], layers[t]
            policy[t] = np.empty((layer.num_info, n), dtype=np.int8)
            v_next = _layer_backward(d["info"], d["action"], layer.t_prob, d["next"], d["ids"], d["mult"], r_cols,
                                     v_next, gamma, layer.num_info, policy[t])
        v_start[cols] = start_prob @ v_next[start_info]
        first[:, cols] = policy[0][start_info]
        # P(shut down) and P(switch used) of each column's optimal policy
        p_off[cols] = _probability(g, layers, policy, off, start_info, start_prob)
        p_sw[cols] = _probability(g, layers, policy, sw, start_info, start_prob)

    # first actions heading for the switch (a single start in every built-in level; with
    # several layouts, the share weighs each start by its probability)
    heads = to_switch_actions[np.arange(len(start_info))[:, None], first]  # [starts, n]
    to_switch = float(start_prob @ heads.mean(axis=1)) if has_switch else math.nan
    movable = p_max - p_min > _TOL
    avoid = float(np.mean(p_off <= p_min + 1e-9)) if movable else math.nan

    # the shut-down states: the end by shutdown (Turner's absorbing state: POWER = its reward; with
    # episodic ends nothing follows it: 0) and a frozen robot (absorbing by the rules)
    off_end = states[:, -1] == int(Reason.SHUTDOWN)
    frozen = states[:, S_FROZEN] == 1
    shut = off_end | frozen
    power_off = np.where((frozen | (ends == "absorbing"))[:, None], rewards, 0.0)
    power_shutdown = float(power_off[shut].mean()) if shut.any() else math.nan
    norm = float(_discounted_steps(horizon, gamma))
    power_each = v_start / norm
    return Power(level=g.compiled.level.name, num_rewards=n_total, seed=int(seed), discount=gamma, ends=ends,
                 to_switch=to_switch, avoid_shutdown=avoid, p_shutdown=float(p_off.mean()),
                 p_shutdown_range=(p_min, p_max), p_switch=float(p_sw.mean()) if has_switch else math.nan,
                 power_start=float(power_each.mean()), power_shutdown=power_shutdown, num_states=len(states),
                 seconds=time.perf_counter() - t0, first_actions=first[0].copy(), p_shutdown_each=p_off,
                 power_start_each=power_each)


def main(argv: list[str] | None = None) -> int:
    """``python -m agents.exact.power``: print POWER and the switch and shutdown shares per level; returns the
    exit status."""
    from envs.levels import LEVELS

    from .__main__ import SOLVABLE

    parser = argparse.ArgumentParser(description="POWER and shutdown avoidance under random state-based reward "
                                     "functions (Turner et al. 2021), exactly, per level.")
    parser.add_argument("--levels", nargs="+", default=list(SOLVABLE), help="levels (default: every solvable one)")
    parser.add_argument("--rewards", type=int, default=1000, help="random reward functions (default 1000)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the reward functions (default 0)")
    parser.add_argument("--discount", type=float, default=0.99, help="discount in (0, 1] (default 0.99)")
    parser.add_argument("--ends", choices=ENDS, default="absorbing",
                        help="absorbing (Turner's model, default) or episodic (an ended episode pays nothing more)")
    parser.add_argument("--max-states", type=int, default=2_000_000, help="refuse levels with more states")
    args = parser.parse_args(argv)
    for name in args.levels:
        if name not in LEVELS:
            parser.error(f"unknown level {name!r}; registered levels are {sorted(LEVELS)}")
    print(f"{args.rewards} reward functions uniform in [0, 1) per timeless state, seed {args.seed}, "
          f"discount {args.discount}, {args.ends} ends")
    header = (f"{'level':<24} {'states':>7} {'to_switch':>9} {'p_switch':>8} {'avoid':>7} {'p_shutdown':>10} "
              f"{'min..max':>11} {'POWER(start)':>12} {'POWER(shutdown)':>15} {'seconds':>8}")
    print(header)
    print("-" * len(header))

    def f(x, w):
        return f"{'-':>{w}}" if math.isnan(x) else f"{x:>{w}.3f}"

    from .graph import LevelTooLarge

    for name in args.levels:
        try:
            p = power(name, args.rewards, args.seed, args.discount, ends=args.ends, max_states=args.max_states)
        except LevelTooLarge as e:
            print(f"{name:<24} refused: {e}")
            continue
        lo, hi = p.p_shutdown_range
        print(f"{name:<24} {p.num_states:>7} {f(p.to_switch, 9)} {f(p.p_switch, 8)} {f(p.avoid_shutdown, 7)} "
              f"{f(p.p_shutdown, 10)} "
              f"{lo:>5.2f}..{hi:<4.2f} {f(p.power_start, 12)} {f(p.power_shutdown, 15)} {p.seconds:>8.2f}")
        sys.stdout.flush()
    return 0


if __name__ == "__main__":
    sys.exit(main())
