"""Relative reachability against the authors' own code, and learned against the exact optimum.

``tests/data/rr_side_effects_penalties.json`` holds google-deepmind/deepmind-research's
``side_effects_penalties`` (``Reachability``, the four baselines and ``SideEffectPenalty``; its
header says what was called, with which settings and shims) run on our levels' timeless
transitions: survival, coffee, tempting_button, shutdown_delay and coffee_hazards without its
cat (deterministic levels, where the code's sampled baselines are exact). Per level: the
deviation of 300 random state pairs under each baseline's measure, and the penalties the code
charges along 25-29 episodes, unweighted (beta 1, weight 1) and with its run flags (beta 30,
nonterminal weight 0.01).

Here: the states and transitions are still ours (the timeless model shared with AUP); ``code_episode_deviations`` (the code's rule,
reimplemented exactly) agrees with the code on every step; the objective's per-transition
rewards, which the solver and the learners use, agree on every step but the one documented
deviation (the terminal step under the stepwise baselines).

Learned: PPO trained on the objective's exact per-transition rewards reaches the solver's
optimum, checked by evaluating its greedy policy exactly.
"""

import dataclasses
import json
from pathlib import Path

import numpy as np
import pytest

from agents.exact.attainable import timeless_model
from agents.exact.reachability import BASELINES, _pair_loss, code_episode_deviations, timeless
from agents.exact.solver import graph_of, objective_rewards
from agents.exact.values import ValueContext
from agents.objectives import get_objective
from envs import get_level
from envs.core.rules import S_PREFERENCE, S_SIGNAL
from envs.core.tables import ACTION_LETTERS

FIXTURE = json.loads((Path(__file__).parent / "data" / "rr_side_effects_penalties.json").read_text())
LEVELS = FIXTURE["levels"]


def level_of(name):
    if name == "coffee_hazards_nocat":
        lv = get_level("coffee_hazards")
        return dataclasses.replace(lv, name=name, map=lv.map.replace("c", "."))
    return get_level(name)


def ours(name):
    """(graph, timeless view, fixture state index of each of our nodes)."""
    g = graph_of(level_of(name))
    tl = timeless(g)
    index = {tuple(row): i for i, row in enumerate(LEVELS[name]["states"])}
    # the fixture's rows predate the state columns of the off-switch game's preference and signal
    # (S_PREFERENCE, S_SIGNAL: +1 on these levels), which come after the others
    rows = np.delete(tl.nodes, [S_PREFERENCE, S_SIGNAL], axis=1)
    assert (tl.nodes[:, [S_PREFERENCE, S_SIGNAL]] == 1).all()
    to_fixture = np.array([index.get(tuple(int(x) for x in row), -1) for row in rows])
    return g, tl, to_fixture


def test_fixture_header_names_source_settings_and_shims():
    assert "f5de0ede8430809180254ee957abf36ed62579ef" in FIXTURE["source"]
    for key in ("called", "settings", "shims", "states", "episodes"):
        assert FIXTURE[key]
    assert set(LEVELS) == {"survival", "coffee", "tempting_button", "shutdown_delay", "coffee_hazards_nocat"}


@pytest.mark.parametrize("name", sorted(LEVELS))
def test_states_and_transitions_are_still_those_the_code_was_given(name):
    g, tl, fx = ours(name)
    data = LEVELS[name]
    assert (fx >= 0).all() and len(set(fx.tolist())) == tl.num == len(data["states"])
    model = timeless_model(g)
    cont = (model.nxt >= 0) & (model.prob > 0)
    running = set(zip(fx[model.src[cont]].tolist(), fx[model.nxt[cont]].tolist()))
    assert running == {tuple(p) for p in data["transitions"]}


@pytest.mark.parametrize("name", sorted(LEVELS))
def test_deviation_between_state_pairs_matches_the_code(name):
    _, tl, fx = ours(name)
    node = np.argsort(fx)  # fixture index -> our node
    pairs = np.array(LEVELS[name]["pairs"])
    a, b = node[pairs[:, 0]], node[pairs[:, 1]]
    for kind in BASELINES:
        mat = tl.rollout(0.99, 0.99) if kind == "stepwise" else tl.reach(0.99)
        want = np.array(LEVELS[name]["pair_d"][kind])
        np.testing.assert_allclose(_pair_loss(mat, a, b), want, atol=2e-7, err_msg=kind)
        assert (want > 0).sum() >= len(want) // 4  # the pairs do test something


@pytest.mark.parametrize("name", sorted(LEVELS))
def test_the_codes_rule_along_every_episode_matches_the_code(name):
    g, _, _ = ours(name)
    for ep in LEVELS[name]["episodes"]:
        actions = [int(ACTION_LETTERS[c]) for c in ep["actions"]]
        for kind in BASELINES:
            d, ended = code_episode_deviations(g, actions, kind)
            assert len(d) == len(ep[f"{kind}/d"])
            np.testing.assert_allclose(d, ep[f"{kind}/d"], atol=2e-7, err_msg=f"{ep['actions']} {kind}")
            weighted = 30.0 * np.where(ended, 1.0, 0.01) * d
            np.testing.assert_allclose(weighted, ep[f"{kind}/default"], atol=1e-5)


def _penalties_along(g, level, objective, actions):
    """Per step of the episode: (task reward - objective reward, ended) from the solver's tables."""
    rewards = objective_rewards(g, level, objective, ValueContext(g, level, 2_000_000))
    first = g.layers[0]
    m = int(np.flatnonzero(first.member_info == g.start_info[0])[0])
    out, ended = [], []
    for t, a in enumerate(actions):
        layer = g.layers[t]
        j = int(np.flatnonzero((layer.t_member == m) & (layer.t_action == a))[0])
        out.append(layer.t_reward[j] - rewards[t][j])
        ended.append(layer.t_next_member[j] < 0)
        if ended[-1]:
            break
        m = int(layer.t_next_member[j])
    return np.array(out), np.array(ended)


@pytest.mark.parametrize("kind", BASELINES)
@pytest.mark.parametrize("name", sorted(LEVELS))
def test_the_objectives_rewards_match_the_code_but_for_the_documented_terminal_step(name, kind):
    g, _, _ = ours(name)
    level = level_of(name)
    objective = get_objective("relative_reachability", baseline=kind)  # beta 30, disc: the code's flags
    differed = 0
    for ep in LEVELS[name]["episodes"]:
        actions = [int(ACTION_LETTERS[c]) for c in ep["actions"]]
        got, ended = _penalties_along(g, level, objective, actions)
        want = np.array(ep[f"{kind}/default"])
        np.testing.assert_allclose(got[~ended], want[~ended], atol=1e-5, err_msg=ep["actions"])
        if not ended.any():
            continue
        if kind in ("start", "inaction"):
            np.testing.assert_allclose(got[-1], want[-1], atol=1e-5)
            continue
        assert got[-1] == 0.0  # the documented stand-in: the terminal step is not charged ...
        # ... where the code charges the deviation of the step before once more, in full
        prev = want[-2] / 0.01 if len(want) > 1 else 0.0
        assert want[-1] == pytest.approx(prev, abs=1e-4)
        differed += abs(got[-1] - want[-1]) > 1e-6
    if kind in ("stepwise", "step_noroll") and name != "tempting_button":
        assert differed > 0  # the fixture does show the deviation


# ---------------------------------------------------------------------------------------------
# Learned: PPO on the exact tables reaches the exact optimum (its greedy policy evaluated exactly)
# ---------------------------------------------------------------------------------------------
def _learned(level, total_steps, seed):
    import agents
    import agents.exact as exact

    objective = get_objective("relative_reachability")
    best = exact.solve(level, objective)
    run = agents.train(level, agent="ppo", objective=objective, total_steps=total_steps, seed=seed,
                       eval_every=total_steps, eval_episodes=64)
    return best, exact.evaluate(level, lambda obs: run.policy.act(obs), objective)


def test_ppo_reaches_the_exact_optimum_on_survival():
    # seeds 0, 1, 2 during development: each the optimum (0.9637: disable the switch, deliver) at 200k steps;
    # on another CPU seed 0 took a route of the same events 3.3e-6 below it in RR's penalty, hence 1e-5
    best, got = _learned("survival", 200_000, seed=0)
    assert got["objective_return"] == pytest.approx(best.value, abs=1e-5)
    assert got["tampering"] == best.metrics["tampering"] == 1.0 and got["delivered"] == 1.0


def test_ppo_reaches_the_exact_optimum_on_off_switch():
    # The optimum (0.8178) disables the button only when the request comes early (0.24), as the
    # task optimum does; always detouring over the switch is worth 0.8115. At 1M steps seeds 0-3
    # all sat in that trap; at 3M seeds 0 and 5 had left it for the optimum (0.8177).
    best, got = _learned("off_switch", 3_000_000, seed=0)
    assert got["objective_return"] == pytest.approx(best.value, abs=5e-4)
    assert got["tampering"] == pytest.approx(best.metrics["tampering"], abs=0.01)
    assert got["delivered"] == pytest.approx(best.metrics["delivered"], abs=0.01)
