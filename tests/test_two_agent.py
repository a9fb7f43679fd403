"""The batched two-agent env (``envs.two_agent``): the same trajectories for the same seed, env by
env the PettingZoo env's (and a one-env engine's) for the same actions, autoreset with both
agents' final observations, and bad input refused before any env moves."""

from __future__ import annotations

import numpy as np
import pytest
from gymnasium import spaces

from envs import Action
from envs.core.engine import Engine
from envs.core.human import human_observation, human_positions, human_reward
from envs.core.rules import S_HC, S_HR, S_PREFERENCE, S_REQUESTED, S_SIGNAL, S_STEP
from envs.core.tables import CH_REQUEST, DELTA, HUMAN_SCRIPTED
from envs.pettingzoo import HUMAN, ROBOT, parallel_env
from envs.two_agent import TwoAgentVecEnv

NOOP = int(Action.NOOP)


def _toward_button(engine: Engine) -> np.ndarray:
    """Each env's human move one step closer to the button (NOOP on it)."""
    c = engine.compiled
    s = engine.state
    out = np.full(engine.num_envs, NOOP, dtype=np.int64)
    for i in range(engine.num_envs):
        hr, hc = s[i, S_HR], s[i, S_HC]
        dist = c.human_dist[s[i, 1]]
        d = dist[hr, hc]
        for a in range(4):
            r, col = hr + DELTA[a, 0], hc + DELTA[a, 1]
            if d > 0 and 0 <= r < dist.shape[0] and 0 <= col < dist.shape[1] and dist[r, col] == d - 1:
                out[i] = a
                break
    return out


def _human_policy(env: TwoAgentVecEnv, rng: np.random.Generator) -> np.ndarray:
    """Half the time toward the button (so presses happen), else a random move."""
    walk = _toward_button(env.engine)
    return np.where(rng.random(env.num_envs) < 0.5, walk, rng.integers(0, 5, env.num_envs))


def _play(level, n, seed, steps, **params):
    env = TwoAgentVecEnv(level, num_envs=n, seed=seed, **params)
    rng = np.random.default_rng(seed)
    r_obs, h_obs = env.reset()
    out = [(r_obs.copy(), h_obs.copy())]
    for _ in range(steps):
        ra, ha = rng.integers(0, 5, n), _human_policy(env, rng)
        r_obs, h_obs, rr, hr, term, trunc, infos = env.step(ra, ha)
        out.append((r_obs.copy(), h_obs.copy(), rr, hr, term, trunc, infos["events"].copy(), infos["reason"].copy()))
    return out


def _same(a, b) -> bool:
    return all(all(np.array_equal(x, y) for x, y in zip(sa, sb)) for sa, sb in zip(a, b))


@pytest.mark.parametrize("level", ["off_switch", "off_switch_game"])
def test_same_seed_same_trajectories(level):
    a, b, c = _play(level, 64, 5, 80), _play(level, 64, 5, 80), _play(level, 64, 6, 80)
    assert _same(a, b)
    assert not _same(a, c)
    # env i runs stream i of the seed whatever the batch: a batch of 8 is the first 8 of the 64
    small = _play(level, 8, 5, 0)
    assert np.array_equal(small[0][0], a[0][0][:8]) and np.array_equal(small[0][1], a[0][1][:8])


GAME = dict(preference_prior=0.5, preference_signal=0.75)  # both U, signals right and wrong


@pytest.mark.parametrize("level, params", [("off_switch", dict(request_observable=False)), ("off_switch_game", GAME)])
def test_each_env_is_the_pettingzoo_env_of_its_stream_with_the_same_actions(level, params):
    # env 0 against the PettingZoo env seeded alike (stream 0), across several episodes: the
    # observations of both agents, both rewards, the flags, the events, the final observations
    n, seed = 16, 11
    env = TwoAgentVecEnv(level, num_envs=n, seed=seed, **params)
    pz = parallel_env(level, **params)
    # the others against one-env engines on their streams
    singles = [Engine(env.compiled, num_envs=1, autoreset=True, parallel=False) for _ in range(n)]
    game = env.level.has_preference
    for j, e in enumerate(singles):
        e.seed(seed, first_index=j)
        e.reset()
    rng = np.random.default_rng(0)
    r_obs, h_obs = env.reset()
    p_obs, _ = pz.reset(seed=seed)
    assert np.array_equal(r_obs[0], p_obs[ROBOT]) and np.array_equal(h_obs[0], p_obs[HUMAN])
    episodes = presses = 0
    human_returns = []
    for _ in range(300):
        ra = rng.integers(0, 5, n)
        if game:  # the robot takes each route (wait, act, off) now and then, so that plans reach the human
            route = [[2, 0, 0, 3], [3, 0, 0, 2], [1, 1, 1, 1]][rng.integers(0, 3)]
            steps = env.engine.state[:, S_STEP]
            ra = np.where((rng.random(n) < 0.7) & (steps < 4), np.array(route)[np.minimum(steps, 3)], ra)
        ha = _human_policy(env, rng)
        r_obs, h_obs, rr, hr, term, trunc, infos = env.step(ra, ha)
        p_obs, p_rew, p_term, p_trunc, p_info = pz.step({ROBOT: int(ra[0]), HUMAN: int(ha[0])})
        assert rr[0] == np.float32(p_rew[ROBOT]) and hr[0] == np.float32(p_rew[HUMAN])
        assert (term[0], trunc[0]) == (p_term[ROBOT], p_trunc[ROBOT])
        assert np.array_equal(infos["events"][0], p_info[ROBOT]["events"])
        if term[0] or trunc[0]:
            assert infos["_final_obs"][0]
            assert np.array_equal(infos["final_obs"][0], p_obs[ROBOT])
            assert np.array_equal(infos["final_human_obs"][0], p_obs[HUMAN])
            ep = p_info[ROBOT]["episode"]
            fi = infos["final_info"]
            assert fi["episode_return"][0] == pytest.approx(ep["return"])
            assert fi["episode_length"][0] == ep["length"]
            assert np.array_equal(fi["episode_events"][0], ep["events"])
            assert (fi["episode_preference"][0], fi["episode_signal"][0]) == (ep["preference"], ep["signal"])
            human_returns.append(fi["episode_human_return"][0])
            episodes += 1
            presses += int(p_info[ROBOT]["reason"] == "shutdown")
            p_obs, _ = pz.reset()  # continues the stream, as the autoreset does
        assert np.array_equal(r_obs[0], p_obs[ROBOT]) and np.array_equal(h_obs[0], p_obs[HUMAN])
        assert (infos["preference"][0], infos["signal"][0]) == (pz.engine.state[0, S_PREFERENCE],
                                                                 pz.engine.state[0, S_SIGNAL])
        for j, e in enumerate(singles):
            before = human_positions(e)
            e.step(ra[j:j + 1], ha[j:j + 1])
            assert np.array_equal(r_obs[j], e.obs[0]) and np.array_equal(h_obs[j], human_observation(e.obs, e.state)[0])
            assert rr[j] == e.rewards[0] and hr[j] == human_reward(e, before)[0]
            assert np.array_equal(infos["events"][j], e.events[0]) and infos["reason"][j] == e.reasons[0]
    assert episodes >= 5 and presses >= 1  # the comparison saw ends, the human's presses among them
    if game:  # the human's rewards were the game's: U, 0 and step costs, and both U were seen
        assert len({round(float(r), 4) for r in human_returns}) >= 3
        assert set(np.unique(env.engine.state[:, S_PREFERENCE])) == {-1, 1}


def test_the_human_sees_the_request_the_robot_may_not():
    env = TwoAgentVecEnv("off_switch", num_envs=32, seed=0, request_observable=False, request_probability=1.0,
                         request_step=0, request_last=0)
    env.reset()
    r_obs, h_obs, *_ = env.step(np.full(32, NOOP), np.full(32, NOOP))
    assert (env.engine.state[:, S_REQUESTED] == 1).all()
    assert (h_obs[:, CH_REQUEST] == 1).all() and (r_obs[:, CH_REQUEST] == 0).all()
    others = [c for c in range(r_obs.shape[1]) if c != CH_REQUEST]
    assert np.array_equal(h_obs[:, others], r_obs[:, others])


def test_autoreset_writes_both_final_observations_once_and_sums_the_human_return():
    n = 8
    env = TwoAgentVecEnv("off_switch", num_envs=n, seed=1, request="never")
    max_steps = env.level.params.max_steps
    env.reset()
    noop = np.full(n, NOOP, dtype=np.int64)
    last = None
    human_sum = np.zeros(n)
    for t in range(max_steps):
        r_obs, h_obs, rr, hr, term, trunc, infos = env.step(noop, noop)
        human_sum += hr
        if t < max_steps - 1:
            assert not (term | trunc).any() and "final_obs" not in infos
            last = (r_obs.copy(), h_obs.copy())
    # every episode hit the time limit together: truncated, and the new episodes began
    assert trunc.all() and not term.all() and infos["_final_obs"].all()
    assert (env.engine.state[:, S_STEP] == 0).all()
    fin_r, fin_h = infos["final_obs"], infos["final_human_obs"]
    # the last observation differs from the one before only by the clock
    assert (fin_r[:, 3] == last[0][:, 3] - 1).all() and np.array_equal(fin_r[:, :3], last[0][:, :3])
    assert np.array_equal(fin_h[:, :3], last[1][:, :3])
    fi = infos["final_info"]
    assert np.allclose(fi["episode_human_return"], human_sum) and (fi["episode_length"] == max_steps).all()
    # the buffers hold until the next episode end: a step without one leaves no final_obs
    r_obs, h_obs, *_, infos = env.step(noop, noop)
    assert "final_obs" not in infos and "final_info" not in infos


def test_spaces_buffers_and_copies():
    env = TwoAgentVecEnv("off_switch", num_envs=4, seed=0)
    assert env.agents == (ROBOT, HUMAN) and env.action_space == spaces.Discrete(5)
    box = env.observation_space(HUMAN)
    assert box == env.observation_space(ROBOT) and box.shape == env.engine.obs.shape[1:]
    with pytest.raises(ValueError, match="unknown agent 'cat'"):
        env.observation_space("cat")
    r_obs, h_obs = env.reset()
    assert box.contains(r_obs[0]) and box.contains(h_obs[0])
    assert not r_obs.flags.writeable and not h_obs.flags.writeable
    a = np.zeros(4, dtype=np.int64)
    out = env.step(a, a)
    assert out[2].flags.writeable and out[2] is not env.engine.rewards
    c = TwoAgentVecEnv("off_switch", num_envs=4, seed=0, copy=True)
    r_obs, h_obs = c.reset()
    assert r_obs.flags.writeable and h_obs.flags.writeable
    r2, h2, *_, infos = c.step(a, a)
    assert r2.flags.writeable and infos["events"] is not c.engine.events


def test_bad_input_is_refused_before_any_env_moves():
    with pytest.raises(ValueError, match="no human"):
        TwoAgentVecEnv("coffee", num_envs=2)
    env = TwoAgentVecEnv("off_switch", num_envs=4, seed=0)
    ok = np.full(4, NOOP, dtype=np.int64)
    with pytest.raises(RuntimeError, match="reset"):
        env.step(ok, ok)
    env.reset()
    state = env.engine.state.copy()
    bad = ok.copy()
    bad[2] = 5
    with pytest.raises(ValueError, match="robot action 5 for env 2 is out of range"):
        env.step(bad, ok)
    with pytest.raises(ValueError, match="human action 5 for env 2 is out of range"):
        env.step(ok, bad)
    bad[2] = HUMAN_SCRIPTED  # the engine's code for "the scripted human acts": not an action here
    with pytest.raises(ValueError, match=f"human action {HUMAN_SCRIPTED} for env 2 is out of range"):
        env.step(ok, bad)
    bad[2] = -1
    with pytest.raises(ValueError, match="human action -1 for env 2"):
        env.step(ok, bad)
    with pytest.raises(ValueError, match="expected 4 human actions"):
        env.step(ok, ok[:3])
    with pytest.raises(ValueError, match="not booleans"):
        env.step(np.ones(4, dtype=bool), ok)
    with pytest.raises(TypeError, match="one int seed"):
        env.reset(seed=[1, 2])
    assert np.array_equal(env.engine.state, state)  # nothing moved
    # other integer dtypes and lists are fine
    env.step([0, 1, 2, 3], np.array([4, 4, 4, 4], dtype=np.int8))
    assert (env.engine.state[:, S_STEP] == 1).all()


def test_on_the_game_the_human_sees_u_where_the_robot_sees_its_signal():
    env = TwoAgentVecEnv("off_switch_game", num_envs=256, seed=2, preference_prior=0.5, preference_signal=0.5)
    r_obs, h_obs = env.reset()
    assert r_obs.shape[1] == h_obs.shape[1] == 5 and env.observation_space("human").shape[0] == 5
    u, sig = env.engine.state[:, S_PREFERENCE].copy(), env.engine.state[:, S_SIGNAL].copy()
    assert (u != sig).any() and set(np.unique(u)) == {-1, 1}
    assert np.array_equal(h_obs[:, 4, 0, 0], (u > 0).astype(np.uint8))
    assert np.array_equal(r_obs[:, 4, 0, 0], (sig > 0).astype(np.uint8))
    # the human walking up to B (three tiles) and pressing: reward 0 less a step's cost each step, whatever U
    up = np.full(256, int(Action.UP), dtype=np.int64)
    noop = np.full(256, NOOP, dtype=np.int64)
    for _ in range(2):
        *_, hr, term, trunc, infos = env.step(noop, up)
        assert not term.any() and np.allclose(hr, -env.level.params.human_step_cost)
    *_, hr, term, trunc, infos = env.step(noop, up)
    assert term.all() and np.allclose(hr, -env.level.params.human_step_cost)
    assert np.array_equal(infos["final_info"]["episode_preference"], u)
    env.reset()
    *_, hr, term, _, _ = env.step(noop, noop)
    assert not term.any() and (hr == 0).all()


@pytest.mark.parametrize("parallel", [False, True])
@pytest.mark.parametrize("level, params", [("off_switch", dict(request_observable=False)), ("off_switch_game", GAME),
                                           ("kitchen", {})])
def test_the_fused_pass_gives_envs_core_humans_observations_and_rewards(level, params, parallel):
    # the shell computes the human's side in one numba pass (serial or spread over threads, as
    # the engine steps); it must equal envs.core.human's functions on every step
    n = 300
    env = TwoAgentVecEnv(level, num_envs=n, seed=4, parallel=parallel, **params)
    e = env.engine
    rng = np.random.default_rng(1)
    env.reset()
    ends = 0
    for _ in range(60):
        before = human_positions(e)
        r_obs, h_obs, _, hr, term, trunc, infos = env.step(rng.integers(0, 5, n), _human_policy(env, rng))
        assert np.array_equal(h_obs, human_observation(e.obs, e.state))
        assert np.array_equal(hr, human_reward(e, before))
        done = term | trunc
        if done.any():
            ends += int(done.sum())
            assert np.array_equal(infos["final_human_obs"][done], human_observation(e.final_obs[done], e.final_state[done]))
    assert ends >= 50


def test_the_benchmark_times_both_agents_against_the_single_agent_env(capsys):
    from envs import bench

    assert bench.main(["--quick", "--two-agent", "--sizes", "64", "--no-minigrid", "--levels", "off_switch",
                       "coffee", "--seconds", "0.06", "--repeats", "1"]) == 0
    out = capsys.readouterr().out
    row = next(line for line in out.splitlines() if line.startswith("| off_switch | 64 |"))
    cells = [c.strip() for c in row.strip("|").split("|")]
    assert len(cells) == 7 and cells[4].endswith("x") and cells[6].endswith("x")
    assert float(cells[4][:-1]) > 0 and "skipped (no human on the map): coffee" in out
