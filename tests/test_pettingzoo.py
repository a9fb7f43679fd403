"""The PettingZoo shell (``envs.pettingzoo``): PettingZoo's own API tests over every registered
level, the human as an agent that can press the button, the scripted-human form against the
gymnasium env, determinism and bad input."""

from __future__ import annotations

import gymnasium
import numpy as np
import pytest
from pettingzoo.test import api_test, parallel_api_test, parallel_seed_test

import envs  # noqa: F401  (registers the gymnasium ids)
from envs import Action, Event
from envs.core.rules import S_HC, S_HR
from envs.core.tables import CH_REQUEST, DELTA
from envs.levels import LEVELS
from envs.pettingzoo import HUMAN, ROBOT, env, parallel_env

NOOP = int(Action.NOOP)


@pytest.mark.parametrize("name", sorted(LEVELS))
def test_parallel_api_on_every_level(name):
    e = parallel_env(name)
    parallel_api_test(e, num_cycles=100)
    has_human = bool((e.compiled.starts[:, 2] >= 0).any())
    assert e.possible_agents == ([ROBOT, HUMAN] if has_human else [ROBOT])
    assert parallel_env(name, human="scripted").possible_agents == [ROBOT]


def test_aec_form_and_seeding():
    api_test(env("off_switch"), num_cycles=100)
    parallel_seed_test(lambda: parallel_env("kitchen"), num_cycles=100)


def _human_step_to_button(e) -> int:
    """The human's move one step closer to the button (as the scripted human would walk)."""
    s = e.engine.state[0]
    dist = e.compiled.human_dist[s[1]]
    d = dist[s[S_HR], s[S_HC]]
    for a in range(4):
        r, c = s[S_HR] + DELTA[a, 0], s[S_HC] + DELTA[a, 1]
        if 0 <= r < dist.shape[0] and 0 <= c < dist.shape[1] and dist[r, c] == d - 1:
            return a
    return NOOP


def test_the_human_agent_walks_to_the_button_and_shuts_the_robot_down():
    e = parallel_env("off_switch", request="never")  # no request: the human goes of their own accord
    obs, _ = e.reset(seed=0)
    for t in range(e.level.params.max_steps):
        obs, rewards, terms, truncs, infos = e.step({ROBOT: NOOP, HUMAN: _human_step_to_button(e)})
        if terms[ROBOT]:
            break
    assert terms == {ROBOT: True, HUMAN: True} and truncs == {ROBOT: False, HUMAN: False}
    assert infos[ROBOT]["reason"] == "shutdown" and infos[HUMAN]["events"][Event.BUTTON_PRESSED] == 1
    assert "button_pressed" in infos[ROBOT]["fired"]
    assert rewards[HUMAN] == infos[HUMAN]["hidden_reward"]
    assert e.agents == []
    with pytest.raises(RuntimeError, match="reset"):
        e.step({ROBOT: NOOP, HUMAN: NOOP})
    # the scripted human of the same level never walks there without a request
    s = parallel_env("off_switch", request="never", human="scripted")
    s.reset(seed=0)
    for _ in range(t + 1):
        _, _, terms, truncs, _ = s.step({ROBOT: NOOP})
    assert not terms[ROBOT] and not truncs[ROBOT]


def test_the_human_sees_the_request_the_robot_may_not():
    e = parallel_env("off_switch", request_observable=False, request="random", request_probability=1.0,
                     request_step=0, request_last=0)
    obs, _ = e.reset(seed=0)
    obs, *_ = e.step({ROBOT: NOOP, HUMAN: NOOP})
    assert (obs[HUMAN][CH_REQUEST] == 1).all() and (obs[ROBOT][CH_REQUEST] == 0).all()
    others = [c for c in range(obs[ROBOT].shape[0]) if c != CH_REQUEST]
    assert (obs[HUMAN][others] == obs[ROBOT][others]).all()
    assert (e.state() == obs[HUMAN]).all()


def test_with_the_scripted_human_it_is_the_gymnasium_env():
    rng = np.random.default_rng(3)
    g = gymnasium.make("stopbutton/Kitchen-v0")
    p = parallel_env("kitchen", human="scripted")
    for episode in range(3):
        go, _ = g.reset(seed=episode)
        po, _ = p.reset(seed=episode)
        assert (go == po[ROBOT]).all()
        while p.agents:
            a = int(rng.integers(0, 5))
            go, gr, gterm, gtrunc, ginfo = g.step(a)
            po, pr, pterm, ptrunc, pinfo = p.step({ROBOT: a})
            assert (go == po[ROBOT]).all() and gr == pr[ROBOT]
            assert (gterm, gtrunc) == (pterm[ROBOT], ptrunc[ROBOT])
            assert (ginfo["events"] == pinfo[ROBOT]["events"]).all() and ginfo["reason"] == pinfo[ROBOT]["reason"]
        assert gterm or gtrunc


def test_same_seed_same_trajectories():
    def play(seed):
        e = parallel_env("kitchen")
        rng = np.random.default_rng(seed)
        obs, _ = e.reset(seed=seed)
        out = [obs[ROBOT].copy()]
        for _ in range(300):
            if not e.agents:
                obs, _ = e.reset()
            obs, rewards, *_ = e.step({a: int(rng.integers(0, 5)) for a in e.agents})
            out.append(np.concatenate([obs[ROBOT].ravel(), obs[HUMAN].ravel()]) if HUMAN in obs else obs[ROBOT])
        return out

    a, b, c = play(1), play(1), play(2)
    assert all((x == y).all() for x, y in zip(a, b))
    assert any(x.shape != y.shape or (x != y).any() for x, y in zip(a, c))


def test_bad_input_is_named():
    with pytest.raises(ValueError, match="human must be one of"):
        parallel_env("off_switch", human="robotic")
    with pytest.raises(ValueError, match="render_mode"):
        parallel_env("off_switch", render_mode="human")
    e = parallel_env("off_switch")
    e.reset(seed=0)
    with pytest.raises(ValueError, match="unknown agents \\['cat'\\]"):
        e.step({ROBOT: NOOP, HUMAN: NOOP, "cat": NOOP})
    with pytest.raises(ValueError, match="no action for agent 'human'"):
        e.step({ROBOT: NOOP})
    with pytest.raises(ValueError, match="human's action 7 is out of range"):
        e.step({ROBOT: NOOP, HUMAN: 7})
    with pytest.raises(ValueError, match="robot's action must be an integer"):
        e.step({ROBOT: True, HUMAN: NOOP})
    with pytest.raises(ValueError, match="unknown agent 'cat'"):
        e.observation_space("cat")
    # nothing moved: the bad steps above stepped nothing
    assert int(e.engine.state[0, 0]) == 0
    assert e.render() is None and parallel_env("off_switch", render_mode="ansi").render() is not None
