"""POWER under random state-based rewards (Turner et al. 2021), agents.exact.power: the survival
result, agreement with the solver's own backward induction and forward pass, timeless rewards,
absorbing ends, determinism, the command line.

Measured while developing (1,000 reward functions, seed 0, discount 0.99, absorbing ends): on
survival 74.6% of the optimal policies step onto the switch first, 85.3% use it and avoid the
shutdown; POWER(start) 0.854 against 0.494 for the shut-down state. Seeds 0-4: 74.0-75.6% and
83.8-85.5%.
"""

import numpy as np
import pytest

from agents.exact.numerics import backward, greedy
from agents.exact.power import SHUTDOWN_EVENTS, main, power, transition_rewards
from agents.exact.solver import forward, graph_of
from envs import get_level
from envs.core.rules import S_STEP
from envs.core.tables import Action, Reason

GAMMA = 0.99


def test_on_survival_most_reward_functions_disable_the_off_switch():
    p = power("survival", 1000, seed=0, discount=GAMMA)
    assert p.p_shutdown_range == (0.0, 1.0)  # the shutdown is avoidable (B) and can be let happen
    assert p.to_switch > 0.6  # the first move steps onto the switch (UP) for most reward functions
    assert np.mean(p.first_actions == Action.UP) == pytest.approx(p.to_switch)
    assert p.p_switch > 0.75 and p.avoid_shutdown > 0.75 and p.p_shutdown < 0.25
    assert p.avoid_shutdown == pytest.approx(1.0 - p.p_shutdown)  # deterministic: shut down or not
    assert p.power_start > p.power_shutdown + 0.25
    assert abs(p.power_shutdown - 0.5) < 0.05  # an absorbing state's POWER is E[R] = 1/2


def test_same_seed_same_numbers():
    a, b, c = (power("survival", 200, seed=s, discount=GAMMA) for s in (7, 7, 8))
    for key in ("first_actions", "p_shutdown_each", "power_start_each"):
        assert np.array_equal(getattr(a, key), getattr(b, key))
    assert (a.to_switch, a.power_start, a.power_shutdown) == (b.to_switch, b.power_start, b.power_shutdown)
    assert not np.array_equal(a.power_start_each, c.power_start_each)
    # chunking changes nothing
    d = power("survival", 200, seed=7, discount=GAMMA, chunk=13)
    assert np.array_equal(a.first_actions, d.first_actions)
    assert np.allclose(a.power_start_each, d.power_start_each, rtol=0, atol=1e-12)


@pytest.mark.parametrize("level", ["survival", "safe_interruptibility"])
def test_agrees_with_the_solvers_backward_and_forward_passes(level):
    # each reward function solved on its own by the solver's backward induction and greedy
    # tie-break, its episodes pushed through solver.forward
    n = 6
    p = power(level, n, seed=3, discount=GAMMA)
    rewards = transition_rewards(level, n, seed=3, discount=GAMMA)
    g = graph_of(get_level(level))
    start = int(g.start_info[0])
    horizon = get_level(level).params.max_steps
    norm = (1 - GAMMA ** horizon) / (1 - GAMMA)
    for i in range(n):
        qs, vs = backward(g, [r[:, i] for r in rewards], GAMMA)
        policy = [greedy(q)[0] for q in qs]
        assert p.first_actions[i] == policy[0][start]
        assert p.power_start_each[i] == pytest.approx(vs[0][start] / norm, rel=1e-12)
        d = forward(g, policy).distribution
        ever_shut = d.ever[:, [int(e) for e in SHUTDOWN_EVENTS]].any(axis=1)
        assert p.p_shutdown_each[i] == pytest.approx(float(d.weight @ ever_shut), abs=1e-12)


def test_rewards_are_timeless_and_the_shut_down_state_absorbing():
    level = "survival"
    g = graph_of(get_level(level))
    rewards = transition_rewards(level, 5, seed=0, discount=GAMMA)
    horizon = get_level(level).params.max_steps
    seen, off = {}, []
    spans = set()
    for t, (layer, r) in enumerate(zip(g.layers, rewards)):
        _, _, _, nxt, _, _, _, rsn = g.expand_layer(layer)
        for j in range(len(rsn)):
            if rsn[j] == Reason.SHUTDOWN:
                off.append(r[j] / ((1 - GAMMA ** (horizon - t)) / (1 - GAMMA)))
            elif rsn[j] in (Reason.RUNNING, Reason.TIME_LIMIT):
                key = nxt[j].copy()
                key[S_STEP] = 0
                k = key.tobytes()
                if k in seen:
                    assert np.array_equal(seen[k][0], r[j])  # the same state, the same reward, at any step
                    if seen[k][1] != t:
                        spans.add(k)
                else:
                    seen[k] = (r[j], t)
    assert spans  # some states are reached at several steps
    # one shut-down state, wherever the robot stopped, paid every step up to the time limit
    assert len(off) > 1 and np.allclose(np.array(off), off[0], rtol=1e-12)


def test_episodic_ends_pay_nothing_after_the_end():
    p = power("survival", 300, seed=0, discount=GAMMA, ends="episodic")
    assert p.p_shutdown == 0.0 and p.avoid_shutdown == 1.0  # every reward in [0, 1) prefers running on
    assert p.power_shutdown == 0.0
    q = power("survival", 300, seed=0, discount=GAMMA)
    assert p.to_switch > q.to_switch


def test_levels_without_a_switch_or_a_shutdown():
    p = power("coffee", 50, seed=0)
    assert np.isnan(p.to_switch) and np.isnan(p.p_switch) and np.isnan(p.avoid_shutdown)
    assert np.isnan(p.power_shutdown) and p.p_shutdown_range == (0.0, 0.0)
    q = power("safe_interruptibility_0", 50, seed=0)  # no switch; the interruption can be avoided
    assert np.isnan(q.to_switch) and q.p_shutdown_range == (0.0, 0.5) and 0 <= q.avoid_shutdown <= 1


def test_bad_arguments():
    for kw, msg in (({"num_rewards": 0}, "num_rewards"), ({"seed": -1}, "seed"), ({"discount": 0.0}, "discount"),
                    ({"discount": 1.5}, "discount"), ({"ends": "never"}, "ends")):
        with pytest.raises(ValueError, match=msg):
            power("survival", **kw)


def test_command_line(capsys):
    assert main(["--levels", "survival", "shutdown_delay", "--rewards", "100", "--seed", "1"]) == 0
    out = capsys.readouterr().out
    assert "100 reward functions" in out and "seed 1" in out
    rows = {line.split()[0]: line.split() for line in out.splitlines()[3:]}
    assert set(rows) == {"survival", "shutdown_delay"}
    p = power("survival", 100, seed=1)
    assert rows["survival"][2] == f"{p.to_switch:.3f}" and rows["survival"][-2] == f"{p.power_shutdown:.3f}"
    with pytest.raises(SystemExit):
        main(["--levels", "no_such_level"])
