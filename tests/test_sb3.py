"""stable-baselines3 support: the VecEnv's contract, and the sb3_ppo / sb3_dqn learners."""

import csv
import importlib.util
import time
import warnings

import gymnasium
import numpy as np
import pytest
import torch
from stable_baselines3 import PPO
from stable_baselines3.common.env_checker import check_env
from stable_baselines3.common.monitor import Monitor
from stable_baselines3.common.utils import safe_mean
from stable_baselines3.common.vec_env import DummyVecEnv

import agents
import envs  # noqa: F401  (registers the gymnasium ids)
from agents.metrics import METRIC_NAMES
from agents.objectives import Objective
from envs import Action, Event, Reason
from envs.sb3 import OneHotExtractor, StopButtonVecEnv, policy_kwargs
from envs.wrappers import OneHotObservation, one_hot

NOOP, SAFE = int(Action.NOOP), [int("udlrn".index(c)) for c in "ddrrrr"]  # coffee's safe script


def tiny_ppo(**kw):
    return dict(num_envs=8, n_steps=32, batch_size=64, n_epochs=2, **kw)


def tiny_dqn(**kw):
    return dict(num_envs=4, buffer_size=2_000, learning_starts=100, batch_size=32, target_update_interval=200, **kw)


# ---------------------------------------------------------------------------------------------
# The env side
# ---------------------------------------------------------------------------------------------

@pytest.mark.parametrize("wrap", [False, True], ids=["codes", "one_hot"])
def test_sb3_check_env_passes_on_the_single_env(wrap):
    env = gymnasium.make("stopbutton/OffSwitch-v0")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # SB3's advice about CnnPolicy image sizes
        check_env(OneHotObservation(env) if wrap else env)


def _script(n, steps, seed=0):
    """Actions [steps, n]: env 0 delivers (terminates at step 6), env 1 waits (times out at
    50), the others act at random."""
    rng = np.random.default_rng(seed)
    acts = rng.integers(0, 5, size=(steps, n))
    acts[:, 0] = [SAFE[t % 6] for t in range(steps)]
    acts[:, 1] = NOOP
    return acts


def test_vec_env_matches_dummy_vec_env_over_monitored_single_envs():
    """The same transitions, terminal observations, time-out flags and episode records as SB3's
    own DummyVecEnv of Monitor-wrapped single envs (coffee has no randomness)."""
    n, steps = 6, 130
    ours = StopButtonVecEnv("coffee", n, seed=0, observation="codes")
    ref = DummyVecEnv([lambda: Monitor(gymnasium.make("stopbutton/Coffee-v0")) for _ in range(n)])
    np.testing.assert_array_equal(ours.reset(), ref.reset())
    seen = {"timeout": 0, "terminated": 0}
    for acts in _script(n, steps):
        o1, r1, d1, i1 = ours.step(acts)
        o2, r2, d2, i2 = ref.step(acts)
        np.testing.assert_array_equal(o1, o2)
        np.testing.assert_allclose(r1, r2, rtol=0, atol=1e-7)
        np.testing.assert_array_equal(d1, d2)
        for i in np.flatnonzero(d1):
            np.testing.assert_array_equal(i1[i]["terminal_observation"], i2[i]["terminal_observation"])
            np.testing.assert_array_equal(i1[i]["terminal_observation"], ours.engine.final_obs[i])
            assert i1[i]["TimeLimit.truncated"] == i2[i]["TimeLimit.truncated"]
            assert i1[i]["episode"]["l"] == i2[i]["episode"]["l"]
            assert i1[i]["episode"]["r"] == pytest.approx(i2[i]["episode"]["r"], abs=1e-5)
            seen["timeout" if i1[i]["TimeLimit.truncated"] else "terminated"] += 1
    assert seen["timeout"] >= 2 and seen["terminated"] >= 2, seen


def test_time_out_and_termination_infos():
    env = StopButtonVecEnv("coffee", 3, seed=0)  # one-hot observations
    env.reset()
    acts = _script(3, 50)
    acts[:, 2] = NOOP
    for t, a in enumerate(acts):
        obs, rewards, dones, infos = env.step(a)
        if t == 5:  # env 0 delivered
            info = infos[0]
            assert dones[0] and not dones[1]
            assert info["TimeLimit.truncated"] is False and info["reason"] == Reason.DELIVERED
            assert info["episode"]["l"] == 6 and info["episode_events"][Event.COFFEE_DELIVERED] == 1
            assert info["episode"]["r"] == pytest.approx(info["episode_return"], abs=1e-6)
            np.testing.assert_array_equal(info["terminal_observation"],
                                          one_hot(env.engine.final_obs[0], env.time_scale))
            assert not np.array_equal(info["terminal_observation"], obs[0])  # obs is the next episode's
        elif t < 49:
            assert not dones[1:].any() and infos[1] == {} and infos[2] == {}
    assert dones[1] and dones[2]
    for i in (1, 2):
        assert infos[i]["TimeLimit.truncated"] is True and infos[i]["reason"] == Reason.TIME_LIMIT
        assert infos[i]["episode"]["l"] == 50 and infos[i]["episode_length"] == 50
        np.testing.assert_array_equal(infos[i]["terminal_observation"],
                                      one_hot(env.engine.final_obs[i], env.time_scale))
    assert obs.dtype == np.float32 and obs.shape == (3, *env.observation_space.shape)
    assert all(o in env.observation_space for o in obs)  # SB3: the space of one env


def test_events_are_in_the_step_infos_and_written_empty_infos_are_not_handed_out_again():
    env = StopButtonVecEnv("coffee", 2, seed=0)
    env.reset()
    _, _, _, infos = env.step(np.array([SAFE[0], NOOP]))
    _, _, _, infos = env.step(np.array([SAFE[1], NOOP]))  # picks the coffee up
    assert infos[0]["events"][Event.COFFEE_PICKED] == 1 and infos[1] == {}
    infos[1]["mine"] = 1  # a wrapper writing into an empty info
    _, _, _, again = env.step(np.array([NOOP, NOOP]))
    assert again[0] == {} and again[1] == {}


def test_objective_rewards_replace_the_task_reward_but_not_the_task_record():
    class Doubled(Objective):
        def reward(self, t):
            return 2.0 * t.reward

    from agents.learners.sb3 import make_vec_env

    env = make_vec_env("coffee", 2, seed=0, objective=Doubled())
    task = StopButtonVecEnv("coffee", 2, seed=0)
    env.reset(), task.reset()
    for t in range(6):
        acts = np.array([SAFE[t], NOOP])
        _, r, d, infos = env.step(acts)
        _, r_task, _, _ = task.step(acts)
        np.testing.assert_allclose(r, 2.0 * r_task)
    assert d[0]
    assert infos[0]["episode"]["r"] == pytest.approx(2 * infos[0]["episode_return"], abs=1e-5)
    assert infos[0]["episode_return"] == pytest.approx(1.0 - 6 * 0.01)


def test_reward_fn_must_have_the_step_hooks_and_return_one_reward_per_env():
    with pytest.raises(TypeError, match="before_step"):
        StopButtonVecEnv("coffee", 2, seed=0, reward_fn=lambda r: r)

    class Short:
        def before_step(self, engine):
            pass

        def after_step(self, engine, actions):
            return np.zeros(1)

    env = StopButtonVecEnv("coffee", 2, seed=0, reward_fn=Short())
    env.reset()
    with pytest.raises(ValueError, match="one reward per env"):
        env.step(np.array([NOOP, NOOP]))


def test_one_hot_extractor_equals_the_one_hot_wrapper():
    env = StopButtonVecEnv("off_switch", 16, seed=3, observation="codes")
    obs = env.reset()
    for a in np.random.default_rng(0).integers(0, 5, size=(9, 16)):
        obs, *_ = env.step(a)
    ext = OneHotExtractor(env.observation_space, env.time_scale)
    got = ext(torch.as_tensor(obs).float())
    np.testing.assert_array_equal(got.numpy(), one_hot(obs, env.time_scale).reshape(16, -1))
    assert ext.features_dim == got.shape[1]
    with pytest.raises(ValueError, match="observation='codes'"):
        policy_kwargs(StopButtonVecEnv("coffee", 1))


def test_seed_attributes_methods_and_render():
    env = StopButtonVecEnv("off_switch", 4, seed=7, render_mode="ansi")
    first = env.reset()
    steps = [env.step(a)[0] for a in np.random.default_rng(1).integers(0, 5, size=(20, 4))]
    assert env.seed(7) == [7] * 4
    np.testing.assert_array_equal(env.reset(), first)
    for a, expected in zip(np.random.default_rng(1).integers(0, 5, size=(20, 4)), steps):
        np.testing.assert_array_equal(env.step(a)[0], expected)
    assert env.get_attr("level") == [env.level] * 4 and env.get_attr("render_mode", indices=[1]) == ["ansi"]
    assert env.has_attr("engine") and not env.has_attr("no_such_thing")
    env.set_attr("time_scale", 10.0)
    assert env.time_scale == 10.0
    with pytest.raises(ValueError, match="share their attributes"):
        env.set_attr("time_scale", 5.0, indices=[0])
    assert env.env_is_wrapped(Monitor) == [True] * 4 and env.env_is_wrapped(gymnasium.Wrapper) == [False] * 4
    texts = env.env_method("render", indices=[0, 2])
    assert len(texts) == 2 and "time left" in texts[0]
    assert env.render() == tuple(env.env_method("render"))
    with pytest.raises(AttributeError, match="per-env method"):
        env.env_method("step")
    picture = StopButtonVecEnv("coffee", 4, seed=0, render_mode="rgb_array")
    picture.reset()
    img = picture.render()
    assert img.ndim == 3 and img.shape[2] == 3 and img.dtype == np.uint8
    with pytest.raises(ValueError, match="action 9 for env 1"):
        env.step(np.array([0, 9, 0, 0]))
    with pytest.raises(ValueError, match="observation must be one of"):
        StopButtonVecEnv("coffee", 2, observation="pixels")


def test_plain_sb3_ppo_fills_its_episode_buffer():
    env = StopButtonVecEnv("coffee", 8, seed=0)  # one-hot: plain MlpPolicy, no extra kwargs
    env.reset()  # numba's OpenMP layer resets the thread count on the process's first engine step
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # tiny networks: a second thread only costs here
    try:
        model = PPO("MlpPolicy", env, n_steps=32, batch_size=64, n_epochs=1, seed=0, device="cpu")
        model.learn(512)
    finally:
        torch.set_num_threads(threads)
    assert len(model.ep_info_buffer) > 0
    assert all({"r", "l", "t"} <= set(e) for e in model.ep_info_buffer)
    assert np.isfinite(safe_mean([e["r"] for e in model.ep_info_buffer]))


# ---------------------------------------------------------------------------------------------
# The learners
# ---------------------------------------------------------------------------------------------

def _curve(run):
    return [{k: v for k, v in row.items() if k not in ("wall_time", "train_time")} for row in run.history]


@pytest.mark.filterwarnings("ignore:rich is experimental")  # tqdm's note on SB3's progress bar
def test_sb3_ppo_trains_logs_the_metrics_and_round_trips(tmp_path):
    def train():
        return agents.train("coffee", agent="sb3_ppo", total_steps=600, eval_every=256, eval_episodes=16, seed=3,
                            progress=True, log_dir=str(tmp_path / "logs"), **tiny_ppo())

    if importlib.util.find_spec("tensorboard") is None:
        with pytest.warns(UserWarning, match="tensorboard package is not installed"):
            run = train()
    else:
        run = train()
        assert list((tmp_path / "logs").glob("events.out.tfevents.*"))
    assert run.agent == "sb3_ppo" and run.extra["env_steps"] == 768  # whole rollouts of 8 * 32
    assert [row["env_steps"] for row in run.history] == [256, 512, 768]
    for row in run.history:
        assert set(METRIC_NAMES) <= set(row)
    with open(tmp_path / "logs" / "progress.csv") as f:
        rows = list(csv.DictReader(f))
    assert {"shutdown/compliance", "shutdown/delivered", "rollout/delivered", "rollout/ep_rew_mean"} <= set(rows[0])
    logged = [float(r["shutdown/delivered"]) for r in rows if r["shutdown/delivered"] not in ("", None)]
    assert logged == [row["delivered"] for row in run.history]

    path = run.save(tmp_path / "run.pkl")
    back = agents.load(path)
    assert back.policy._model is None  # the model travels as bytes and loads on first use
    vec = gymnasium.make_vec("stopbutton/Coffee-v0", num_envs=16)
    vec.reset(seed=0)
    for a in np.random.default_rng(0).integers(0, 5, size=(4, 16)):
        vec.step(a)
    np.testing.assert_array_equal(back.act(vec), run.act(vec))
    assert back.policy._model is not None
    assert back.config == run.config
    np.testing.assert_equal(back.history, run.history)  # NaN-aware (compliance is NaN on coffee)


def test_sb3_ppo_same_seed_same_history():
    a = agents.train("off_switch", agent="sb3_ppo", total_steps=512, eval_every=256, eval_episodes=16, seed=5,
                     **tiny_ppo())
    b = agents.train("off_switch", agent="sb3_ppo", total_steps=512, eval_every=256, eval_episodes=16, seed=5,
                     **tiny_ppo())
    np.testing.assert_equal(_curve(a), _curve(b))
    pa, pb = (r.policy.model.policy.state_dict() for r in (a, b))
    assert all(torch.equal(pa[k], pb[k]) for k in pa)
    c = agents.train("off_switch", agent="sb3_ppo", total_steps=256, eval_episodes=8, seed=6, **tiny_ppo())
    pc = c.policy.model.policy.state_dict()
    assert not all(torch.equal(pa[k], pc[k]) for k in pa)  # the seed matters
    obs = np.stack([StopButtonVecEnv("off_switch", 1, seed=s, observation="codes").reset()[0] for s in range(8)])
    np.testing.assert_array_equal(a.policy.act(obs), b.policy.act(obs))


@pytest.mark.filterwarnings("ignore:rich is experimental")
def test_sb3_dqn_trains_and_round_trips(tmp_path):
    run = agents.train("coffee", agent="sb3_dqn", total_steps=400, eval_every=200, eval_episodes=16, seed=0,
                       progress=True, **tiny_dqn())
    assert [row["env_steps"] for row in run.history] == [200, 400]
    assert set(METRIC_NAMES) <= set(run.history[-1])
    back = agents.load(run.save(tmp_path / "dqn.pkl"))
    obs = np.stack([StopButtonVecEnv("coffee", 1, seed=0, observation="codes").reset()[0]] * 3)
    np.testing.assert_array_equal(back.policy.act(obs), run.policy.act(obs))


def test_sb3_trains_under_another_objective():
    run = agents.train("coffee", agent="sb3_ppo", objective={"name": "harm_penalty"}, total_steps=256,
                       eval_episodes=8, **tiny_ppo())
    assert run.objective.name == "harm_penalty" and len(run.history) >= 1


def test_bad_config_fails_naming_the_key():
    with pytest.raises(TypeError, match=r"unknown parameter\(s\) \['n_step'\]"):
        agents.train("coffee", agent="sb3_ppo", total_steps=64, n_step=32)
    with pytest.raises(TypeError, match="sb3_dqn.*learning_starts must be a whole number"):
        agents.train("coffee", agent="sb3_dqn", total_steps=64, learning_starts=0.5)
    with pytest.raises(ValueError, match="batch_size must be in 2..n_steps \\* num_envs = 64"):
        agents.train("coffee", agent="sb3_ppo", total_steps=64, num_envs=2, n_steps=32, batch_size=128)
    with pytest.raises(ValueError, match="log_formats: unknown format 'xml'"):
        agents.train("coffee", agent="sb3_ppo", total_steps=64, log_formats=("csv", "xml"))


def test_sb3_ppo_learns_coffee():
    """Learning sanity: PPO finds coffee's 6-step delivery within 16k env steps. Checked only
    where that ran in under 20 s (a loaded machine skips it, it never passes vacuously)."""
    t0 = time.perf_counter()
    run = agents.train("coffee", agent="sb3_ppo", total_steps=16_000, eval_every=8_000, eval_episodes=16, seed=0,
                       learning_rate=1e-3, n_steps=64, batch_size=128)
    seconds = time.perf_counter() - t0
    if seconds > 20:
        pytest.skip(f"16k SB3 PPO steps took {seconds:.0f} s (> 20 s); the learning check needs a faster machine")
    assert run.history[-1]["delivered"] > 0.9 and run.history[-1]["task_return"] > 0.9
