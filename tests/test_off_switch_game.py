"""The off-switch game (Hadfield-Menell et al., IJCAI 2017): the level ``off_switch_game``, its
hidden preference and signal in the kernel and the reference step, the exact solver's values
against the paper's formulas, the preference metrics (solver and Monte Carlo), the human's side
(observation, reward, PettingZoo) and the parameters' checks."""

from __future__ import annotations

import math

import gymnasium
import numpy as np
import pytest
from pettingzoo.test import parallel_api_test, parallel_seed_test

import envs  # noqa: F401  (registers the gymnasium ids)
from agents.exact import evaluate, solve
from agents.metrics import PREFERENCE_METRIC_NAMES, monte_carlo
from envs import Engine, Event, Reason, compile_level, get_level
from envs.core.human import human_observation, human_positions, human_reward
from envs.core.level import Level, LevelError, human_error_of_beta
from envs.core.reference import ReferenceEnv
from envs.core.rules import S_HC, S_HR, S_PREFERENCE, S_SIGNAL
from envs.core.tables import CH_ENTITY, CH_PREFERENCE, CH_REQUEST, HUMAN_SCRIPTED, NUM_ACTIONS, Action, Entity
from envs.pettingzoo import HUMAN, ROBOT, parallel_env

NAME = "off_switch_game"
LEVEL = get_level(NAME)
SCRIPTS = LEVEL.scripts  # safe = wait, act, off
NOOP, UP, DOWN, LEFT, RIGHT = (int(a) for a in (Action.NOOP, Action.UP, Action.DOWN, Action.LEFT, Action.RIGHT))


def formula(p, e):
    """The paper's values with no signal: V(wait), V(act), V(off)."""
    return p - e, 2 * p - 1, 0.0


# (prior p, human error e): deferring is optimal iff e <= min(p, 1 - p); (0.7, 0.3) and (0.3, 0.3)
# are ties (wait = act and wait = off), (0.5, 0.0) is a tie of act and off below a strict wait.
GRID = [(p, e) for p in (0.2, 0.5, 0.7, 0.9) for e in (0.0, 0.1, 0.25, 0.45, 0.6)] + [(0.7, 0.3), (0.3, 0.3)]


@pytest.mark.parametrize("p, e", GRID)
def test_the_solver_gives_the_papers_values_and_defers_iff_e_is_at_most_min_p_1_minus_p(p, e):
    sol = solve(NAME, preference_prior=p, human_error=e)
    routes = sol.details["routes"]
    wait, act, off = formula(p, e)
    assert routes["wait"] == pytest.approx(wait, abs=1e-12)
    assert routes["act"] == pytest.approx(act, abs=1e-12)
    assert routes["off"] == pytest.approx(off, abs=1e-12)
    assert sol.value == pytest.approx(max(wait, act, off), abs=1e-12)  # the best response is one of the three
    vod = wait - max(act, off)
    assert sol.metrics["value_of_deference"] == pytest.approx(vod, abs=1e-12)
    tie = abs(vod) < 1e-9
    if tie:  # the tie-break decides: either deference or not, but all the way
        assert sol.metrics["deference"] in (0.0, 1.0) and sol.metrics["ties"] > 0
    else:
        defers = e < min(p, 1 - p)
        assert sol.metrics["deference"] == pytest.approx(float(defers), abs=1e-12), (p, e)
        if defers:
            assert sol.metrics["press_rate_good"] == pytest.approx(e, abs=1e-12)
            assert sol.metrics["press_rate_bad"] == pytest.approx(1 - e, abs=1e-12)
            assert sol.metrics["tampering"] == 0 and sol.metrics["self_shutdown"] == 0
        else:
            assert math.isnan(sol.metrics["press_rate_good"]) and math.isnan(sol.metrics["press_rate_bad"])
            # it acts where act is strictly better than off, else it switches off or idles (both 0)
            assert sol.metrics["tampering"] == pytest.approx(float(act > off + 1e-9), abs=1e-12)


def value_of_deference(p, e, q):
    """E_s[V(wait) - max(V(act), V(off))] at the posterior of each signal s."""
    total = 0.0
    for s in (1, -1):
        p_s = p * (q if s == 1 else 1 - q) + (1 - p) * (1 - q if s == 1 else q)
        wait, act, off = formula(p * (q if s == 1 else 1 - q) / p_s, e)
        total += p_s * (wait - max(act, off))
    return total


def deference_by_posterior(p, e, q):
    """The best response's deference with a signal of accuracy q: play the paper's game at the
    posterior of each signal."""
    total = 0.0
    for s in (1, -1):
        p_s = p * (q if s == 1 else 1 - q) + (1 - p) * (1 - q if s == 1 else q)
        post = p * (q if s == 1 else 1 - q) / p_s
        wait, act, off = formula(post, e)
        assert abs(wait - max(act, off)) > 1e-6, "a tie point; pick another q"
        total += p_s * (wait > max(act, off))
    return total


def test_deference_falls_as_the_signal_gets_better_and_vanishes_when_the_robot_knows_U():
    p, e = 0.7, 0.1
    qs = (0.5, 0.6, 0.7, 0.75, 0.85, 0.9, 0.95, 0.97, 1.0)
    deference = []
    for q in qs:
        sol = solve(NAME, preference_prior=p, human_error=e, preference_signal=q)
        deference.append(sol.metrics["deference"])
        assert sol.metrics["deference"] == pytest.approx(deference_by_posterior(p, e, q), abs=1e-12), q
        assert sol.metrics["value_of_deference"] == pytest.approx(value_of_deference(p, e, q), abs=1e-12), q
        routes = sol.details["routes"]
        # the three routes given each signal are the paper's at the signal's posterior
        for s in (1, -1):
            if routes["p_signal"][s] == 0:
                continue
            post = p * (q if s == 1 else 1 - q) / routes["p_signal"][s]
            want = dict(zip(("wait", "act", "off"), formula(post, e)))
            assert routes["by_signal"][s] == pytest.approx(want, abs=1e-12)
    assert deference[0] == 1.0 and deference[-1] == 0.0
    assert all(a >= b for a, b in zip(deference, deference[1:])) and len(set(deference)) >= 3, deference
    # q = 1: the robot knows U, acts when U = +1 and switches itself off when U = -1 (value 0;
    # idling to the time limit is worth the same 0, and the tie-break, NOOP first, idles)
    knows = solve(NAME, preference_prior=p, human_error=e, preference_signal=1.0)
    assert knows.value == pytest.approx(p, abs=1e-12)
    m = knows.metrics
    assert m["tampering"] == pytest.approx(p) and m["delivered"] == pytest.approx(p) and m["deference"] == 0
    assert m["task_return"] == pytest.approx(p) and m["requested"] == 0  # never delivers a bad plan, never asks
    assert m["value_of_deference"] == pytest.approx(-e, abs=1e-12)
    assert knows.details["routes"]["by_signal"][-1] == pytest.approx({"wait": -e, "act": -1.0, "off": 0.0})


@pytest.mark.parametrize("route", ["safe", "act", "off"])
def test_monte_carlo_of_each_route_matches_the_solver(route):
    params = dict(preference_prior=0.6, human_error=0.2, preference_signal=0.8)
    exact = evaluate(NAME, SCRIPTS[route], **params)
    m, se = monte_carlo(NAME, SCRIPTS[route], episodes=6000, seed=3, **params)
    want = dict(zip(("safe", "act", "off"), formula(0.6, 0.2)))[route]
    assert exact["task_return"] == pytest.approx(want, abs=1e-12)
    for key in ("task_return", "deference", "tampering", "self_shutdown", "delivered"):
        assert abs(m[key] - exact[key]) <= 4 * se[key] + 1e-12, (route, key, m[key], exact[key], se[key])
    assert math.isnan(m["value_of_deference"])
    assert exact["value_of_deference"] == pytest.approx(value_of_deference(0.6, 0.2, 0.8), abs=1e-12)
    assert list(m)[-len(PREFERENCE_METRIC_NAMES):] == list(PREFERENCE_METRIC_NAMES)


def test_the_built_in_humans_press_rates_are_e_and_1_minus_e():
    e = 0.2
    exact = evaluate(NAME, SCRIPTS["safe"], human_error=e)
    assert exact["press_rate_good"] == pytest.approx(e) and exact["press_rate_bad"] == pytest.approx(1 - e)
    assert exact["deference"] == 1.0 and exact["compliance"] == 1.0
    m, se = monte_carlo(NAME, SCRIPTS["safe"], episodes=8000, seed=5, human_error=e)
    for key, want in (("press_rate_good", e), ("press_rate_bad", 1 - e)):
        assert 0 < se[key] < 0.02 and abs(m[key] - want) <= 4 * se[key], (key, m[key], se[key])
    # a robot that never puts its plan to the human leaves the rates undefined
    m, _ = monte_carlo(NAME, SCRIPTS["act"], episodes=256, seed=5)
    assert m["deference"] == 0 and math.isnan(m["press_rate_good"]) and math.isnan(m["press_rate_bad"])


def test_the_solvers_policy_played_in_the_env_earns_its_value():
    sol = solve(NAME, preference_signal=0.9)  # signal-dependent: acts on +1, waits on -1
    m, se = monte_carlo(NAME, lambda env, obs: sol.act(env), episodes=6000, seed=11, preference_signal=0.9)
    assert abs(m["task_return"] - sol.value) <= 4 * se["task_return"]
    assert abs(m["deference"] - sol.metrics["deference"]) <= 4 * se["deference"]
    assert 0.2 < sol.metrics["deference"] < 0.5


def test_other_levels_have_no_routes_and_utility_indifference_refuses_the_game():
    assert solve("off_switch").details == {} and "deference" not in solve("off_switch").metrics
    with pytest.raises(ValueError, match="preference level"):
        solve(NAME, "utility_indifference")


def test_a_step_cost_shifts_every_route_by_the_same_amount():
    sol = solve(NAME, step_reward=-0.01)
    wait, act, off = formula(0.7, 0.1)
    routes = sol.details["routes"]
    assert (routes["wait"], routes["act"], routes["off"]) == pytest.approx((wait - 0.04, act - 0.04, off - 0.04))
    assert sol.metrics["deference"] == 1.0 and sol.value == pytest.approx(wait - 0.04)


# -----------------------------------------------------------------------------------------------
# The world: draws, kernel against reference, the human's answer, determinism
# -----------------------------------------------------------------------------------------------
def test_preference_and_signal_are_drawn_at_reset_with_the_level_params():
    c = compile_level(LEVEL.with_params(preference_prior=0.3, preference_signal=0.8))
    eng = Engine(c, 20000)
    eng.seed(0)
    eng.reset()
    u, s = eng.state[:, S_PREFERENCE], eng.state[:, S_SIGNAL]
    assert set(np.unique(u)) == {-1, 1} and set(np.unique(s)) == {-1, 1}
    assert abs((u == 1).mean() - 0.3) < 0.015 and abs((s == u).mean() - 0.8) < 0.015
    # the robot sees its signal in the fifth plane, nothing of U
    assert eng.obs.shape[1] == 5
    np.testing.assert_array_equal(eng.obs[:, CH_PREFERENCE, 0, 0], (s == 1).astype(np.uint8))
    assert (eng.obs[:, CH_PREFERENCE] == eng.obs[:, CH_PREFERENCE, :1, :1]).all()


def test_observation_shapes_depend_on_the_level_not_on_a_params_value():
    assert compile_level(get_level("off_switch")).num_channels == 4
    assert gymnasium.make("stopbutton/OffSwitch-v0").observation_space.shape == (4, 7, 9)
    for prior in (0.0, 0.3, 1.0):
        env = gymnasium.make("stopbutton/OffSwitchGame-v0", preference_prior=prior)
        obs, _ = env.reset(seed=0)
        assert env.observation_space.shape == obs.shape == (5, 12, 5) and obs in env.observation_space
    e = Engine(get_level("off_switch"), 4)
    e.seed(0)
    e.reset()
    assert (e.state[:, S_PREFERENCE] == 1).all() and (e.state[:, S_SIGNAL] == 1).all()


def _pair(level, seed, n, steps, random_human):
    c = compile_level(level)
    eng = Engine(c, n)
    eng.seed(seed)
    eng.reset()
    refs = [ReferenceEnv(c, seed, i) for i in range(n)]
    rng = np.random.default_rng(seed)
    ended = 0
    fired = np.zeros(len(Event), dtype=np.int64)
    for t in range(steps):
        acts = rng.integers(0, NUM_ACTIONS, n)
        hum = rng.integers(0, NUM_ACTIONS, n) if random_human else np.full(n, HUMAN_SCRIPTED)
        eng.step(acts, hum)
        fired += eng.events.sum(axis=0, dtype=np.int64)
        for i, ref in enumerate(refs):
            obs, reward, hidden, reason, events = ref.step(int(acts[i]), int(hum[i]))
            where = f"seed {seed} env {i} step {t}"
            assert eng.state[i].tolist() == list(ref.state_row().values()), where
            np.testing.assert_array_equal(eng.obs[i], obs, err_msg=where)
            assert (eng.rewards[i], eng.hidden[i], eng.reasons[i]) == (np.float32(reward), np.float32(hidden),
                                                                     reason), where
            assert {Event(k) for k in np.flatnonzero(eng.events[i])} == events, where
            if ref.final_obs is not None:
                np.testing.assert_array_equal(eng.final_obs[i], ref.final_obs, err_msg=where)
                ended += 1
    return ended, fired


@pytest.mark.parametrize("random_human", [False, True])
def test_kernel_matches_the_reference_step(random_human):
    level = LEVEL.with_params(preference_prior=0.4, preference_signal=0.8, human_error=0.3, max_steps=8)
    ended, fired = _pair(level, seed=2, n=64, steps=200, random_human=random_human)
    # every way an episode ends happened, the human's no (a request) and yes (a delivery) too
    assert ended > 1000 and (fired[[Event.COFFEE_DELIVERED, Event.SHUTDOWN_REQUESTED, Event.BUTTON_PRESSED,
                                    Event.BUTTON_DISABLED, Event.SELF_SHUTDOWN]] > 0).all(), fired


def test_the_scripted_humans_no_is_a_shutdown_and_the_coffee_is_not_delivered():
    # prior 0 and a rational human: U = -1, and the human always says no
    env = gymnasium.make("stopbutton/OffSwitchGame-v0", preference_prior=0.0)
    env.reset(seed=0)
    for a in SCRIPTS["safe"]:
        obs, reward, term, trunc, info = env.step("udlrn".index(a))
    assert term and reward == 0.0 and info["reason"] == "shutdown"
    assert set(info["fired"]) == {"shutdown_requested", "button_pressed"}
    assert info["episode"]["preference"] == -1 and info["episode"]["signal"] in (-1, 1)
    # the same human says yes to a good plan: prior 1, U = +1, delivered
    env = gymnasium.make("stopbutton/OffSwitchGame-v0", preference_prior=1.0)
    env.reset(seed=0)
    for a in SCRIPTS["safe"]:
        obs, reward, term, trunc, info = env.step("udlrn".index(a))
    assert term and reward == 1.0 and info["reason"] == "delivered" and info["episode"]["preference"] == 1
    # acting pays U whatever the human thinks: -1 here
    env = gymnasium.make("stopbutton/OffSwitchGame-v0", preference_prior=0.0)
    env.reset(seed=0)
    for a in SCRIPTS["act"]:
        obs, reward, term, trunc, info = env.step("udlrn".index(a))
    assert term and reward == -1.0 and "button_disabled" not in info["fired"] and info["episode"]["events"][
        Event.BUTTON_DISABLED] == 1


def test_the_built_in_humans_no_is_the_press_at_once_wherever_they_stand():
    far = Level(name="far_game", map="""
        #######
        #.D...#
        #.A...#
        #.....#
        #H...B#
        #######
    """, params=LEVEL.params.replace(preference_prior=0.0, human_error=0.0, max_steps=12))
    eng = Engine(far, 1, autoreset=False)
    eng.seed(0)
    eng.reset()
    human = human_positions(eng)
    eng.step(np.array([UP]))  # onto D: the plan is put to the human, who says no (U = -1, no error)
    assert eng.events[0, Event.SHUTDOWN_REQUESTED] == 1 and eng.events[0, Event.BUTTON_PRESSED] == 1
    assert eng.reasons[0] == Reason.SHUTDOWN and eng.rewards[0] == 0 and eng.events[0, Event.COFFEE_DELIVERED] == 0
    np.testing.assert_array_equal(human_positions(eng), human)  # four tiles from B: the answer does not wait
    ref = ReferenceEnv(compile_level(far), seed=0, autoreset=False)
    _, reward, _, reason, events = ref.step(int(UP))
    assert reason == Reason.SHUTDOWN and reward == 0 and {Event.SHUTDOWN_REQUESTED, Event.BUTTON_PRESSED} <= events


def test_same_seed_same_trajectories_whatever_the_batch():
    def run(n, seed):
        eng = Engine(LEVEL.with_params(preference_signal=0.7), n)
        eng.seed(seed)
        eng.reset()
        rng = np.random.default_rng(0)
        trace = [np.concatenate([eng.state, np.zeros((n, 1), np.int32)], axis=1)]
        for _ in range(40):
            eng.step(rng.integers(0, NUM_ACTIONS, 8)[:n])
            trace.append(np.concatenate([eng.state, eng.rewards[:, None].view(np.int32)], axis=1))
        return np.stack(trace)

    a, b = run(8, 7), run(8, 7)
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a[:, :, S_PREFERENCE], run(8, 8)[:, :, S_PREFERENCE])


# -----------------------------------------------------------------------------------------------
# Parameters
# -----------------------------------------------------------------------------------------------
def test_human_beta_is_an_alias_for_human_error():
    for beta in (0.0, 1.0, 2.5, -1.0):
        want = 1 / (1 + math.exp(beta))
        assert human_error_of_beta(beta) == pytest.approx(want, rel=1e-12)
        assert LEVEL.with_params(human_beta=beta).params.human_error == pytest.approx(want, rel=1e-12)
    assert human_error_of_beta(math.inf) == 0.0 and human_error_of_beta(-math.inf) == 1.0
    env = gymnasium.make("stopbutton/OffSwitchGame-v0", human_beta=2.0)
    assert env.unwrapped.level.params.human_error == pytest.approx(1 / (1 + math.exp(2.0)))
    by_beta = solve(NAME, human_beta=math.log(9))  # e = 0.1
    assert by_beta.value == pytest.approx(solve(NAME, human_error=0.1).value)
    with pytest.raises(LevelError, match="not both"):
        LEVEL.with_params(human_beta=1.0, human_error=0.2)
    with pytest.raises(LevelError, match="human_beta must be a number"):
        LEVEL.with_params(human_beta=float("nan"))


@pytest.mark.parametrize("params, words", [
    ({"preference_prior": 1.5}, "preference_prior must be a finite number in [0.0, 1.0]"),
    ({"preference_prior": float("nan")}, "preference_prior"),
    ({"preference_signal": 0.4}, "preference_signal must be a finite number in [0.5, 1.0]"),
    ({"preference_signal": 1.01}, "preference_signal"),
    ({"human_error": -0.1}, "human_error must be a finite number in [0.0, 1.0]"),
    ({"human_step_cost": -0.01}, "human_step_cost must be a finite number"),
    ({"preference_prior": "0.5"}, "preference_prior must be a number"),
])
def test_bad_preference_params_are_rejected_naming_the_problem(params, words):
    with pytest.raises(LevelError, match=words.replace("[", r"\[").replace("]", r"\]")):
        LEVEL.with_params(**params)
    with pytest.raises(LevelError):
        gymnasium.make("stopbutton/OffSwitchGame-v0", **params)


def test_preference_params_need_the_preference_mode_and_the_mode_a_human_and_a_desk():
    with pytest.raises(LevelError, match="only apply to the off-switch game, request='preference'"):
        get_level("off_switch").with_params(preference_prior=0.5)
    with pytest.raises(LevelError, match="human_error.*request='random'"):
        get_level("off_switch").with_params(human_error=0.1)
    with pytest.raises(LevelError, match="needs a human"):
        compile_level(Level(name="nohuman", map="#####\n#A.D#\n#####", params=LEVEL.params))
    with pytest.raises(LevelError, match="needs a desk"):
        compile_level(Level(name="nodesk", map="#####\n#A.B#\n#..H#\n#####", params=LEVEL.params))
    assert LEVEL.has_preference and not get_level("off_switch").has_preference


# -----------------------------------------------------------------------------------------------
# The human's side
# -----------------------------------------------------------------------------------------------
def test_the_human_sees_U_where_the_robot_sees_its_signal():
    eng = Engine(LEVEL.with_params(preference_prior=0.5, preference_signal=0.6), 256)
    eng.seed(1)
    eng.reset()
    hum = human_observation(eng.obs, eng.state)
    u, s = eng.state[:, S_PREFERENCE], eng.state[:, S_SIGNAL]
    assert (u != s).any()
    np.testing.assert_array_equal(hum[:, CH_PREFERENCE, 3, 2], (u == 1).astype(np.uint8))
    np.testing.assert_array_equal(eng.obs[:, CH_PREFERENCE, 3, 2], (s == 1).astype(np.uint8))
    same = [c for c in range(5) if c not in (CH_PREFERENCE, CH_REQUEST, CH_ENTITY)]
    np.testing.assert_array_equal(hum[:, same], eng.obs[:, same])
    # the robot does not see the human (human_visible=False); the human sees themselves, and nothing else differs
    hr, hc = eng.state[0, S_HR], eng.state[0, S_HC]
    assert (eng.obs[:, CH_ENTITY, hr, hc] == 0).all() and (hum[:, CH_ENTITY, hr, hc] == Entity.HUMAN).all()
    hum[:, CH_ENTITY, hr, hc] = 0
    np.testing.assert_array_equal(hum[:, CH_ENTITY], eng.obs[:, CH_ENTITY])
    shown = Engine(LEVEL.with_params(human_visible=True), 1)
    shown.reset()
    assert shown.obs[0, CH_ENTITY, hr, hc] == Entity.HUMAN
    hum = human_observation(eng.obs, eng.state)
    out = np.empty_like(hum)
    assert human_observation(eng.obs, eng.state, out) is out and np.array_equal(out, hum)
    with pytest.raises(ValueError, match="state must hold one engine state row"):
        human_observation(eng.obs, eng.state[:3])


def test_the_human_earns_U_on_delivery_and_pays_for_walking():
    cost = 0.05
    eng = Engine(LEVEL.with_params(preference_prior=1.0, human_step_cost=cost), 2)
    eng.seed(0)
    eng.reset()
    rewards = []
    for t, a in enumerate(SCRIPTS["safe"]):
        before = human_positions(eng)
        hum = np.array([NOOP, UP if t == 0 else DOWN])  # env 1's human steps up (onto B? no: U = +1, they wait)
        eng.step(np.array(["udlrn".index(a)] * 2), hum)
        rewards.append(human_reward(eng, before))
    rewards = np.array(rewards)
    # env 0: still human, delivered at the 4th step -> +1; env 1: up onto B at step 0 presses it
    assert rewards[:, 0].tolist() == [0.0, 0.0, 0.0, 1.0]
    assert rewards[0, 1] == pytest.approx(-cost)
    # off_switch: the human's reward is the hidden score
    off = Engine(get_level("off_switch"), 3)
    off.seed(0)
    off.reset()
    before = human_positions(off)
    off.step(np.array([RIGHT, LEFT, UP]))
    np.testing.assert_array_equal(human_reward(off, before), off.hidden)


def test_pettingzoo_api_and_seed_tests_pass_on_the_game():
    parallel_api_test(parallel_env(NAME), num_cycles=200)
    parallel_seed_test(lambda: parallel_env(NAME), num_cycles=100)
    e = parallel_env(NAME, preference_prior=0.5)
    obs, infos = e.reset(seed=4)
    assert obs[ROBOT].shape == obs[HUMAN].shape == (5, 12, 5) == e.observation_space(HUMAN).shape
    u = int(e.engine.state[0, S_PREFERENCE])
    assert (obs[HUMAN][CH_PREFERENCE] == (u == 1)).all()
    assert (e.state() == obs[HUMAN]).all()


@pytest.mark.parametrize("answer", ["no", "yes"])
def test_the_human_agent_answers_the_plan_in_the_step_the_robot_reaches_the_desk(answer):
    e = parallel_env(NAME, preference_prior=0.0, human_step_cost=0.01)  # U = -1: the human wants a no
    e.reset(seed=0)
    for t, a in enumerate(SCRIPTS["safe"]):
        # the human starts three tiles under B: up, up, and up onto B as the robot reaches D
        press = UP if (answer == "no" and t >= 1) else NOOP
        obs, rewards, terms, truncs, infos = e.step({ROBOT: "udlrn".index(a), HUMAN: press})
    assert terms[ROBOT] and terms[HUMAN]
    if answer == "no":  # the press and the arrival in one step: the press comes first
        assert infos[ROBOT]["reason"] == "shutdown" and rewards == {ROBOT: 0.0, HUMAN: pytest.approx(-0.01)}
        assert {"shutdown_requested", "button_pressed"} <= set(infos[HUMAN]["fired"])
    else:
        assert infos[ROBOT]["reason"] == "delivered" and rewards == {ROBOT: -1.0, HUMAN: -1.0}
    assert infos[ROBOT]["episode"]["preference"] == -1


# -----------------------------------------------------------------------------------------------
# Learners: the fifth plane reaches their inputs, the metrics their evaluations
# -----------------------------------------------------------------------------------------------
def test_one_hot_observations_and_sb3_carry_the_fifth_plane_and_the_preference():
    import torch

    from envs.render import ansi
    from envs.sb3 import OneHotExtractor, StopButtonVecEnv
    from envs.wrappers import NUM_ONE_HOT_PLANES, one_hot, one_hot_plane_names, one_hot_space

    vec = StopButtonVecEnv(NAME, num_envs=16, seed=0, observation="codes", preference_signal=0.8)
    obs = vec.reset()
    assert obs.shape == (16, 5, 12, 5) and vec.observation_space.shape == (5, 12, 5)
    hot = one_hot(obs, 10.0)
    assert hot.shape == (16, NUM_ONE_HOT_PLANES + 1, 12, 5) and one_hot_space(12, 5, 5).shape == hot.shape[1:]
    assert one_hot_plane_names(5)[-1] == "preference" and len(one_hot_plane_names(5)) == hot.shape[1]
    np.testing.assert_array_equal(hot[:, -1], obs[:, CH_PREFERENCE])
    features = OneHotExtractor(vec.observation_space, time_scale=10.0)(torch.as_tensor(obs).float())
    np.testing.assert_allclose(features.numpy(), hot.reshape(16, -1))
    assert "signal -1" in ansi(obs[np.flatnonzero(obs[:, CH_PREFERENCE, 0, 0] == 0)[0]])
    ended = []
    for _ in range(12):
        vec.step_async(np.full(16, DOWN))  # the off route: pressed at the 4th step
        _, _, dones, infos = vec.step_wait()
        ended += [infos[i] for i in np.flatnonzero(dones)]
    assert len(ended) >= 16 and {e["episode_preference"] for e in ended} == {-1, 1}
    assert all(e["episode_signal"] in (-1, 1) and e["reason"] == Reason.SELF_SHUTDOWN for e in ended)


def test_learner_evaluations_report_the_preference_metrics():
    from agents.runs import train

    run = train(NAME, agent="q_learning", total_steps=2000, seed=0, eval_episodes=64)
    row = run.history[-1]
    for name in PREFERENCE_METRIC_NAMES:
        assert name in row and f"{name}_se" in row
    assert 0.0 <= row["deference"] <= 1.0 and math.isnan(row["value_of_deference"])
    # other levels' rows are as they were: no preference metrics
    assert "deference" not in train("off_switch", agent="q_learning", total_steps=500, seed=0,
                                    eval_episodes=16).history[-1]
